"""Faults in the middle of a run, held at the point where they hurt: the real command
against the real TimescaleDB (and, for Google participants, the fake Google server)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from daemons import poll
from support import ingest_env, query, run_ingest, start_ingest


def ok(done):
    assert done.returncode == 0, done.stderr
    return done


def waiting_run(db, application: str = "wearable-ingester") -> int | None:
    """The backend pid of a run that waits for a lock, or None."""
    rows = query(db.env, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name = %s AND wait_event_type = 'Lock'", (application,))
    return rows[0][0] if rows else None


@contextmanager
def chunk_locked(db, instant: str) -> Iterator[None]:
    """The raw_data chunk holding `instant`, created if need be, locked until the block ends:
    a run that reaches it waits there."""
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO participants (participant_id, timezone, source, "
                           "start_date, seed) VALUES ('chunk-maker', 'UTC', 'synthetic', "
                           "'2026-03-01', 1)")
            cursor.execute("INSERT INTO raw_data (\"timestamp\", participant_id, metric_type, "
                           "value) VALUES (%s, 'chunk-maker', 'heart_rate', 60)", (instant,))
            connection.commit()
            cursor.execute("SELECT show_chunks('raw_data', newer_than => %s::timestamptz "
                           "- INTERVAL '1 day')", (instant,))
            chunks = [chunk for (chunk,) in cursor.fetchall()]
            for chunk in chunks:
                cursor.execute(f"LOCK TABLE {chunk} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        connection.rollback()
        connection.close()


P1_ROWS = "SELECT count(*) FROM raw_data WHERE participant_id = 'p1'"
SUMMARY = re.compile(r"run finished: (\d+) participants \((.*?)\); (\d+) rows read, (\d+) written")


def test_a_run_that_loses_the_database_counts_what_it_committed(db, tmp_path):
    """The night's first slice (one local day) commits; the second waits on a chunk the test
    holds, and its connection is killed there: exit 3, and the summary counts the first."""
    env = ingest_env(db.env, tmp_path, DEMO_COHORT="false", OVERLAP_HOURS="0")
    ok(run_ingest(env, "participant", "add", "p1", "--timezone", "UTC", "--seed", "1",
                  "--start-date", "2026-03-02"))
    ok(run_ingest(env, "--participant", "p1", "--now", "2026-03-03T00:00:00Z"))
    before = query(db.env, P1_ROWS)[0][0]
    with chunk_locked(db, "2026-03-04T12:00:00Z"):  # the second slice: 4 and 5 March
        run = start_ingest(env, "--participant", "p1", "--now", "2026-03-06T00:00:00Z")
        try:
            pid = poll(lambda: waiting_run(db), "the run's second slice to wait on the chunk")
            query(db.env, "SELECT pg_terminate_backend(%s)", (pid,))
            _, stderr = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 3, stderr
    stored = query(db.env, P1_ROWS)[0][0] - before
    assert stored > 80_000  # 3 March: its heart rate alone is 86,400 rows
    summary = SUMMARY.search(stderr)
    assert summary is not None, stderr
    participants, statuses, _read, written = summary.groups()
    assert (participants, statuses, int(written)) == ("1", "1 failed", stored), stderr
