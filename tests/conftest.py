"""Fixtures for the tests that need the real TimescaleDB.

`make test` starts a throwaway server (scripts/timescaledb.sh) and exports TEST_DB_HOST,
TEST_DB_PORT, TEST_DB_USER and, optionally, TEST_DB_PASSWORD. Every test that asks for `db`
gets a database of its own, created from a per-session template that already holds the
TimescaleDB extension (creating the extension takes far longer than copying a database).

Two editions of TimescaleDB: `apache` (Debian's build, TEST_DB_*) and `community` (the
official image's, TEST_COMMUNITY_DB_*, which `make test` starts when the TimescaleDB source
is beside the repository: docs/development.md, "Both editions"). A test runs on the Apache
edition only, unless it is marked `editions(...)`: then once on each edition named. Without
the community server its runs skip, saying why; in CI (CI=true) they fail instead.
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
from fake_google_health import FakeGoogleHealth
from ingester.sources.google_health import http
from psycopg2 import sql
from support import ingest_env

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO_ROOT / "timescaledb" / "init.sql"

# Every PostgreSQL cluster has it; databases are created and dropped from there.
MAINTENANCE_DB = "postgres"
EDITIONS = ("apache", "community")
# The prefix of each edition's TEST_*_HOST, _PORT, _USER and _PASSWORD variables.
SERVER_PREFIX = {"apache": "TEST_DB_", "community": "TEST_COMMUNITY_DB_"}
LICENCE = {"apache": "apache", "community": "timescale"}  # timescaledb.license of each


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "editions(*names): run once per TimescaleDB edition named (apache, community)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("editions")
    if marker is None or "db_server" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(EDITIONS)
    if unknown or not marker.args:
        raise pytest.UsageError(f"editions(...) takes some of {EDITIONS}, got {marker.args}")
    metafunc.parametrize("edition", marker.args, indirect=True, scope="session")


# Test files whose tests share what one machine has once: the Docker stack (one compose
# project, built once, whose fixture removes stale ones) and the machine's cron daemon (one
# /var/run/crond.pid). With parallel workers (make test) each of these files runs on one
# worker. pytest-xdist's own xdist_group marker cannot do it under pytest 9.2 (xdist 3.8
# renames item._nodeid, which pytest no longer reads), so the files are named here.
DOCKER_TESTS = "tests/test_docker.py"
ONE_WORKER_FILES = (DOCKER_TESTS, "tests/test_containers.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The Docker tests first: they are the longest group one worker must run alone, so with
    parallel workers the others share out the rest of the suite meanwhile."""
    items.sort(key=lambda item: not item.nodeid.startswith(DOCKER_TESTS))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """For the load modes: every test is a unit of its own, except that each of
    ONE_WORKER_FILES is one unit. Other modes (--dist each, ...) stay xdist's."""
    if config.getvalue("dist") not in ("load", "loadscope", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerFiles(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in ONE_WORKER_FILES else nodeid

    return OneWorkerFiles(config, log)


@pytest.fixture(scope="session")
def edition(request: pytest.FixtureRequest) -> str:
    """The edition the test's server runs: its `editions` parameter, else apache."""
    return getattr(request, "param", "apache")


@dataclass(frozen=True)
class DbServer:
    host: str
    port: int
    user: str
    password: str
    edition: str = "apache"

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

    def freeze(self) -> None:
        """Make it a template other databases are copied from: no connections any more."""
        with self.server.admin() as cur:
            name = sql.Identifier(self.dbname)
            cur.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false")
                        .format(name))
            # TimescaleDB's job scheduler may still be connected.
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname,))

    def pause_compression_policy(self) -> None:
        """Compress only when a test says so: the policy would compress a test's chunks (all
        older than its compress_after) at a moment of the job scheduler's choosing."""
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT alter_job(job_id, scheduled => false) FROM "
                            "timescaledb_information.jobs WHERE proc_name = 'policy_compression'")
        finally:
            conn.close()

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
def db_server(edition: str) -> DbServer:
    """The server `make test` started; a plain `pytest` run without it fails, never skips."""
    prefix = SERVER_PREFIX[edition]
    missing = [prefix + key for key in ("HOST", "PORT", "USER") if not os.environ.get(prefix + key)]
    if missing and edition == "community" and os.environ.get("CI") != "true":
        pytest.skip(
            "no community-edition server: `make test` starts one when the TimescaleDB source "
            "is at ../shared/timescaledb-src or TSDB_COMMUNITY_SOURCE "
            "(docs/development.md, 'Both editions')"
        )
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run the tests with `make test`, which starts "
            "TimescaleDB (scripts/timescaledb.sh) and exports the connection settings",
            pytrace=False,
        )
    server = DbServer(
        host=os.environ[prefix + "HOST"],
        port=int(os.environ[prefix + "PORT"]),
        user=os.environ[prefix + "USER"],
        password=os.environ.get(prefix + "PASSWORD", ""),
        edition=edition,
    )
    try:
        with server.admin() as cur:
            cur.execute("SELECT current_setting('timescaledb.license', true)")
            (licence,) = cur.fetchone()
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"cannot reach the {edition} test database at {server.host}:{server.port} "
            f"({error}); run the tests with `make test`",
            pytrace=False,
        )
    if licence != LICENCE[edition]:
        pytest.fail(f"the {edition} server at {server.host}:{server.port} runs with "
                    f"timescaledb.license = {licence!r}, not {LICENCE[edition]!r}", pytrace=False)
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


@contextmanager
def scratch_database(server: DbServer, template: str, prefix: str = "test", schema: bool = True
                     ) -> Iterator[ScratchDatabase]:
    """A fresh copy of the template database, with the schema applied unless told otherwise,
    dropped at the end (for fixtures of any scope)."""
    name = f"{prefix}_{uuid.uuid4().hex}"
    with server.admin() as cur:
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    database = ScratchDatabase(server, name)
    try:
        if schema:
            database.apply_schema()
            if server.edition == "community":
                database.pause_compression_policy()
        yield database
    finally:
        with server.admin() as cur:
            # A template (ScratchDatabase.freeze) cannot be dropped. FORCE: a connection a
            # test leaked (or a CLI subprocess left) must not keep it.
            cur.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(db_server: DbServer, template_db: str) -> Iterator[ScratchDatabase]:
    """A fresh database with timescaledb/init.sql applied, dropped after the test."""
    with scratch_database(db_server, template_db) as database:
        yield database


@pytest.fixture
def db_conn(db: ScratchDatabase) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the test's database, in a transaction (autocommit off)."""
    conn = db.connect()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def env(db: ScratchDatabase, tmp_path: Path) -> dict[str, str]:
    """The environment of ingest.py against the test's database (support.ingest_env)."""
    return ingest_env(db.env, tmp_path)


# --- the Google Health source (tests/test_google_*.py; helpers in tests/google_support.py) --


@pytest.fixture
def fake():
    with FakeGoogleHealth() as server:
        yield server


@pytest.fixture
def fast_retries(monkeypatch):
    """Two retries, 10 ms apart: the transport's behaviour without its production waits."""
    monkeypatch.setattr(http, "RETRIES", 2)
    monkeypatch.setattr(http, "BACKOFF_FACTOR", 0.01)
