"""Fixtures for the tests that need the real TimescaleDB.

`make test` starts a throwaway server (scripts/timescaledb.sh) and exports TEST_DB_HOST,
TEST_DB_PORT, TEST_DB_USER and, optionally, TEST_DB_PASSWORD. Every test that asks for `db`
gets a database of its own, created from a per-session template that already holds the
TimescaleDB extension (creating the extension takes far longer than copying a database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO_ROOT / "timescaledb" / "init.sql"

# Every PostgreSQL cluster has it; databases are created and dropped from there.
MAINTENANCE_DB = "postgres"
SERVER_VARIABLES = ("TEST_DB_HOST", "TEST_DB_PORT", "TEST_DB_USER")


@dataclass(frozen=True)
class DbServer:
    host: str
    port: int
    user: str
    password: str

    def params(self, dbname: str) -> dict[str, object]:
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "dbname": dbname,
            "user": self.user,
        }
        if self.password:
            params["password"] = self.password
        return params

    @contextmanager
    def admin(self) -> Iterator[psycopg2.extensions.cursor]:
        """An autocommit cursor on the maintenance database: CREATE/DROP DATABASE need it."""
        conn = psycopg2.connect(**self.params(MAINTENANCE_DB))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()


@dataclass(frozen=True)
class ScratchDatabase:
    """One test's own database: how to reach it, from Python or from a subprocess."""

    server: DbServer
    dbname: str

    @property
    def params(self) -> dict[str, object]:
        """Keyword arguments for psycopg2.connect (host, port, dbname, user)."""
        return self.server.params(self.dbname)

    @property
    def dsn(self) -> str:
        return psycopg2.extensions.make_dsn(**self.params)

    @property
    def env(self) -> dict[str, str]:
        """The service's DB_* variables, to merge into a subprocess's environment."""
        return {
            "DB_HOST": self.server.host,
            "DB_PORT": str(self.server.port),
            "DB_NAME": self.dbname,
            "DB_USER": self.server.user,
            "DB_PASSWORD": self.server.password,
        }

    def connect(self, **kwargs: object) -> psycopg2.extensions.connection:
        return psycopg2.connect(**self.params, **kwargs)

    def apply_schema(self) -> list[str]:
        """Run timescaledb/init.sql as the service does; return the server's notices."""
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(SCHEMA_FILE.read_text())
            return list(conn.notices)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def db_server() -> DbServer:
    """The server `make test` started; a plain `pytest` run without it fails, never skips."""
    missing = [name for name in SERVER_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run the tests with `make test`, which starts "
            "TimescaleDB (scripts/timescaledb.sh) and exports the connection settings",
            pytrace=False,
        )
    server = DbServer(
        host=os.environ["TEST_DB_HOST"],
        port=int(os.environ["TEST_DB_PORT"]),
        user=os.environ["TEST_DB_USER"],
        password=os.environ.get("TEST_DB_PASSWORD", ""),
    )
    try:
        with server.admin() as cur:
            cur.execute("SELECT 1")
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"cannot reach the test database at {server.host}:{server.port} ({error}); "
            "run the tests with `make test`",
            pytrace=False,
        )
    return server


@pytest.fixture(scope="session")
def template_db(db_server: DbServer) -> Iterator[str]:
    name = f"test_template_{uuid.uuid4().hex[:12]}"
    with db_server.admin() as cur:
        # IS_TEMPLATE keeps TimescaleDB's job scheduler out of it: CREATE DATABASE … TEMPLATE
        # fails while any other session is connected to the template.
        cur.execute(sql.SQL("CREATE DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name)))
    try:
        conn = psycopg2.connect(**db_server.params(name))
        try:
            with conn, conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        finally:
            conn.close()
        with db_server.admin() as cur:
            cur.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
        yield name
    finally:
        with db_server.admin() as cur:
            # A template database cannot be dropped.
            cur.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


@pytest.fixture
def db(db_server: DbServer, template_db: str) -> Iterator[ScratchDatabase]:
    """A fresh database with timescaledb/init.sql applied, dropped after the test."""
    with scratch_database(db_server, template_db) as database:
        yield database


@contextmanager
def scratch_database(db_server: DbServer, template_db: str) -> Iterator[ScratchDatabase]:
    """A fresh database with the schema, dropped at the end (for fixtures of any scope)."""
    name = f"test_{uuid.uuid4().hex}"
    with db_server.admin() as cur:
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    database = ScratchDatabase(db_server, name)
    try:
        database.apply_schema()
        yield database
    finally:
        with db_server.admin() as cur:
            # FORCE: a connection a test leaked (or a CLI subprocess left) must not keep it.
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_conn(db: ScratchDatabase) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the test's database, in a transaction (autocommit off)."""
    conn = db.connect()
    try:
        yield conn
    finally:
        conn.close()
