"""Scratch databases on a PostgreSQL + TimescaleDB server: one per measurement.

The server is the local test database (`make bench` starts it) or any server given by a DSN
whose user may create databases. Every database a run creates is named bench_<run>_<what>
and dropped before the run ends, whatever happens.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from ingester import db
from ingester.config import Settings
from ingester.schema import migrate
from psycopg2 import sql

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "timescaledb" / "init.sql"
MAINTENANCE_DB = "postgres"
# Shown with the results: the server settings that decide bulk-load speed.
SETTINGS_SHOWN = (
    "timescaledb.license",  # the edition: apache (Debian) or timescale (community)
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "timescaledb.license",
)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str = field(default="", repr=False)
    maintenance_db: str = MAINTENANCE_DB

    @classmethod
    def from_dsn(cls, dsn: str) -> Server:
        """A libpq DSN or URI; its dbname (default postgres) is where databases are made."""
        params = psycopg2.extensions.parse_dsn(dsn)
        return cls(
            host=params.get("host", "localhost"),
            port=int(params.get("port", 5432)),
            user=params.get("user", "postgres"),
            password=params.get("password", ""),
            maintenance_db=params.get("dbname", MAINTENANCE_DB),
        )

    @classmethod
    def from_arguments(cls, dsn: str | None, environ: Mapping[str, str]) -> Server:
        """A benchmark's server: its --dsn if given, else the environment's."""
        return cls.from_dsn(dsn) if dsn else cls.from_environment(environ)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Server:
        """The service's DB_HOST, DB_PORT, DB_USER and DB_PASSWORD (what `make bench` sets)."""
        defaults = Settings()
        return cls(
            host=environ.get("DB_HOST") or defaults.db_host,
            port=int(environ.get("DB_PORT") or defaults.db_port),
            user=environ.get("DB_USER") or defaults.db_user,
            password=environ.get("DB_PASSWORD", ""),
        )

    def settings(self, dbname: str, **overrides: object) -> Settings:
        return Settings(
            db_host=self.host,
            db_port=self.port,
            db_name=dbname,
            db_user=self.user,
            db_password=self.password,
            **overrides,  # type: ignore[arg-type]
        )

    def env(self, dbname: str) -> dict[str, str]:
        """DB_* variables for a subprocess of the service."""
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_NAME": dbname,
            "DB_USER": self.user,
            "DB_PASSWORD": self.password,
        }

    def connect(self, dbname: str) -> db.Connection:
        """A connection set up as the service sets up its own (UTC session, autocommit off)."""
        return db.connect(self.settings(dbname))

    @contextmanager
    def admin(self) -> Iterator[psycopg2.extensions.cursor]:
        connection = psycopg2.connect(**self.settings(self.maintenance_db).db_params())
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    def checkpoint(self) -> None:
        """Flush what earlier measurements left dirty, so none pays for another's writes."""
        # Not a superuser (a DSN to a shared server): measure without.
        with self.admin() as cursor, suppress(psycopg2.errors.InsufficientPrivilege):
            cursor.execute("CHECKPOINT")


class Scratch:
    """The databases of one benchmark run. Use as a context manager: leaving drops them all."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.prefix = f"bench_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []  # still there
        self.names: list[str] = []  # every database made, for the record
        self._template: str | None = None

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name in reversed(list(self.created)):
            self.drop(name)

    def fresh(self, what: str, schema: bool = True) -> str:
        """A new database holding the TimescaleDB extension and, with schema, init.sql."""
        if self._template is None:
            self._template = self._make_template()
        name = f"{self.prefix}_{what}"
        with self.server.admin() as cursor:
            cursor.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self._template)
                )
            )
        self.created.append(name)
        self.names.append(name)
        if schema:
            connection = self.server.connect(name)
            try:
                migrate(connection, SCHEMA_FILE)
                with connection.cursor() as cursor:
                    # The community edition's compression policy would compress the
                    # benchmark's chunks (all older than its compress_after) at a moment of
                    # the job scheduler's choosing, in the middle of a measurement.
                    cursor.execute("SELECT alter_job(job_id, scheduled => false) FROM "
                                   "timescaledb_information.jobs "
                                   "WHERE proc_name = 'policy_compression'")
                connection.commit()
            finally:
                connection.close()
        return name

    def drop(self, name: str) -> None:
        with self.server.admin() as cursor:
            if name == self._template:  # a template database cannot be dropped
                cursor.execute(
                    sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name))
                )
            # FORCE: an ingest.py that was killed must not keep its database alive.
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self.created.remove(name)

    def _make_template(self) -> str:
        # Creating the extension takes far longer than copying a database that has it.
        # IS_TEMPLATE keeps TimescaleDB's scheduler out: a copy fails while anyone is connected.
        name = f"{self.prefix}_template"
        with self.server.admin() as cursor:
            cursor.execute(
                sql.SQL("CREATE DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name))
            )
        self.created.append(name)
        self.names.append(name)
        connection = psycopg2.connect(**self.server.settings(name).db_params())
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute("SET client_min_messages = warning")
                cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        finally:
            connection.close()
        with self.server.admin() as cursor:
            cursor.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
        return name


def server_facts(connection: db.Connection) -> dict[str, str]:
    """PostgreSQL and TimescaleDB versions and the settings that matter for bulk loads."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        (timescaledb,) = cursor.fetchone()
        facts = {"postgresql": version, "timescaledb": timescaledb}
        for name in SETTINGS_SHOWN:
            cursor.execute("SELECT current_setting(%s, true)", (name,))
            facts[name] = cursor.fetchone()[0]
    connection.commit()
    return facts


# A benchmark's exit codes: measured (whether or not a target passed), a measurement failed,
# the database is unreachable (bad arguments, 2, are argparse's).
EXIT_OK, EXIT_FAILED, EXIT_DATABASE = 0, 1, 3
T = TypeVar("T")


class BenchError(Exception):
    """A measurement failed (exit EXIT_FAILED)."""


def measured(server: Server, prefix: str, log: logging.Logger,
             measure: Callable[[Scratch, Path], T]) -> tuple[T | None, int]:
    """`measure(scratch, work)` with scratch databases on the server and a temporary folder,
    both gone afterwards; its result and EXIT_OK, or None and the exit code of why not
    (logged in one line)."""
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as work, Scratch(server) as scratch:
            return measure(scratch, Path(work)), EXIT_OK
    except BenchError as error:
        log.error("%s", error)
        return None, EXIT_FAILED
    except psycopg2.OperationalError as error:
        log.error("database at %s:%s: %s", server.host, server.port, str(error).strip())
        return None, EXIT_DATABASE


def write_results(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
