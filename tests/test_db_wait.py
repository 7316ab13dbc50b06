"""Waiting for a database that is not up yet, and not waiting for one that says no.

A PostgreSQL server of the test's own (scripts/timescaledb.sh on another port and data
directory), stopped and started for real: `docker compose restart` restarts the database
and the ingester together, and the start-up run meets a server that refuses connections or
answers "the database system is starting up".
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from support import ROOT, ingest_env, run_ingest, start_ingest

TSDB = ROOT / "scripts" / "timescaledb.sh"
PASSWORD = "right-password"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LateServer:
    """A cluster of its own with password authentication, started and stopped on demand."""

    def __init__(self) -> None:
        self.port = unused_port()
        # Under /tmp, which the postgres user can reach whatever the checkout's permissions.
        self.data_dir = Path(f"/tmp/tsdb-test-wait-{uuid.uuid4().hex[:8]}")
        self.env = {**os.environ, "TSDB_PORT": str(self.port),
                    "TSDB_DATA_DIR": str(self.data_dir), "PGPASSWORD": PASSWORD}

    def tsdb(self, command: str) -> None:
        done = subprocess.run([str(TSDB), command], env=self.env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    def create(self) -> None:
        self.tsdb("start")  # the cluster and the database `wearables`, trusting everyone
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="postgres",
                                user="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ALTER USER postgres PASSWORD %s", (PASSWORD,))
        finally:
            conn.close()
        self.tsdb("stop")
        hba = self.data_dir / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        hba.write_text("\n".join(
            line.replace(" trust", " scram-sha-256") if line.startswith("host") else line
            for line in lines) + "\n")

    def db_env(self, password: str = PASSWORD, dbname: str = "wearables") -> dict[str, str]:
        return {"DB_HOST": "127.0.0.1", "DB_PORT": str(self.port), "DB_NAME": dbname,
                "DB_USER": "postgres", "DB_PASSWORD": password}


@pytest.fixture(scope="module")
def server():
    late = LateServer()
    try:
        late.create()
        yield late
    finally:
        subprocess.run([str(TSDB), "destroy"], env=late.env, capture_output=True, timeout=120)


def test_a_run_waits_for_a_database_that_starts_late(server, tmp_path):
    server.tsdb("stop")
    env = ingest_env(server.db_env(), tmp_path, DEMO_COHORT="false", DB_WAIT_SECONDS="120")
    run = start_ingest(env)
    try:
        # The server starts only once the run has met it down and said it waits: the run
        # connects through a retry, or not at all.
        said = []
        for line in run.stderr:
            said.append(line)
            if "is not ready (connection refused); waiting up to 120 s for it" in line:
                break
        else:
            pytest.fail("the run ended without waiting for the database: " + "".join(said))
        assert run.poll() is None  # still waiting, has not given up
        server.tsdb("start")
        stderr = "".join(said) + run.stderr.read()  # to the end of the run
        run.wait(timeout=180)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "is ready" in stderr and "run finished: 0 participants" in stderr
    assert "Traceback" not in stderr


def test_a_wrong_password_or_database_is_not_waited_for(server, tmp_path):
    server.tsdb("start")
    for db_env, reason in [(server.db_env(password="wrong"), "password authentication failed"),
                           (server.db_env(dbname="nowhere"), 'database "nowhere" does not exist')]:
        env = ingest_env(db_env, tmp_path, DB_WAIT_SECONDS="3600")
        done = run_ingest(env, timeout=60)  # far less than DB_WAIT_SECONDS: no retries
        assert done.returncode == 3, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], done.stderr
        assert "not ready" not in done.stderr and "wrong" not in done.stderr


def test_a_database_that_never_comes_exits_3_after_the_configured_wait(tmp_path):
    db_env = {"DB_HOST": "127.0.0.1", "DB_PORT": str(unused_port()), "DB_NAME": "wearables",
              "DB_USER": "postgres", "DB_PASSWORD": "hunter2"}
    began = time.monotonic()
    done = run_ingest(ingest_env(db_env, tmp_path, DB_WAIT_SECONDS="3"), timeout=120)
    waited = time.monotonic() - began
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert "not ready (connection refused); waiting up to 3 s for it (DB_WAIT_SECONDS)" in lines[0]
    assert "cannot connect to PostgreSQL at" in lines[1] and "(waited 3 s)" in lines[1]
    assert waited >= 3  # a lower bound: it did wait the configured time before giving up
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
