"""An analyst's idle transaction never hangs a run: the real command, the real TimescaleDB.

Every command used to re-apply init.sql, whose ALTER TABLE and CREATE OR REPLACE VIEW wait
for ACCESS EXCLUSIVE locks without a timeout: one `BEGIN; SELECT … FROM participant_status`
left idle in psql hung the night's run, `status`, `participant list`, and every reader
queued behind them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support import ingest_env, query, run_ingest

NOW = "2026-03-08T02:00:00Z"  # two hours of one participant: a real run, and a short one
# Generous: a run that hangs never ends; one that works ends in seconds (or, with a
# migration pending, after its bounded wait of about 20 s).
TIMEOUT = 180
READER_APP = "analyst-psql"


@pytest.fixture
def env(db, tmp_path):
    env = ingest_env(db.env, tmp_path)
    done = run_ingest(env, "participant", "add", "p1", "--timezone", "UTC", "--seed", "1",
                      "--start-date", "2026-03-08")
    assert done.returncode == 0, done.stderr
    return env


@contextmanager
def idle_reader(db, table: str) -> Iterator[int]:
    """A second session, as psql leaves it: `BEGIN; SELECT … FROM table;` then idle."""
    conn = db.connect(application_name=READER_APP)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")  # opens the transaction, holds its lock
            cur.fetchall()
            yield conn.get_backend_pid()
    finally:
        conn.close()


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


@pytest.mark.parametrize("table", ["participant_status", "ingest_runs", "raw_data"])
def test_a_run_with_the_schema_current_ignores_an_idle_reader(db, env, table):
    with idle_reader(db, table) as pid:
        done = run_ingest(env, "--now", NOW, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        assert "run finished: 1 participants (1 ok)" in done.stderr
        # The reader was there all along, still idle in its transaction.
        assert query(env, "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)) == [
            ("idle in transaction",)]
    assert query(env, "SELECT count(*) > 0 FROM raw_data") == [(True,)]


@pytest.mark.parametrize("table", ["participant_status", "ingest_runs", "raw_data"])
def test_status_and_participant_list_ignore_an_idle_reader(db, env, table):
    with idle_reader(db, table):
        status = run_ingest(env, "status", timeout=TIMEOUT)
        listed = run_ingest(env, "participant", "list", timeout=TIMEOUT)
    assert status.returncode == 0, status.stderr
    assert listed.returncode == 0 and "\np1\tsynthetic" in listed.stdout, listed.stderr


@pytest.mark.parametrize("table", ["participant_status", "ingest_runs"])
def test_a_pending_migration_blocked_by_a_reader_exits_5_naming_it(db, env, table):
    # The baseline's ALTER TABLE ingest_runs and CREATE OR REPLACE VIEW need ACCESS EXCLUSIVE.
    query(env, "DELETE FROM schema_migrations WHERE version = 1")
    with idle_reader(db, table) as pid:
        done = run_ingest(env, "--now", NOW, timeout=TIMEOUT)
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    [line] = errors(done.stderr)
    assert "schema migration 1 (baseline)" in line
    assert f"pid {pid} (application '{READER_APP}'" in line and "idle in transaction" in line
    # Nothing was loaded, and the migration is still pending: it rolled back whole.
    assert query(env, "SELECT count(*) FROM raw_data") == [(0,)]
    assert query(env, "SELECT count(*) FROM schema_migrations WHERE version = 1") == [(0,)]

    # Once the reader is gone, the next run applies it and loads.
    done = run_ingest(env, "--now", NOW, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "applying schema migrations 1 (baseline)" in done.stderr
    assert query(env, "SELECT count(*) FROM schema_migrations WHERE version = 1") == [(1,)]
