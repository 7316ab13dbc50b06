"""Faults in the middle of a run, held at the point where they hurt: the real command
against the real TimescaleDB (and, for Google participants, the fake Google server)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from daemons import poll
from fake_google_health import FakeGoogleHealth
from google_support import heart_rate_every
from ingester import db as service_db
from ingester.sources.google_health import credentials
from support import ingest_env, query, run_ingest, start_ingest, utc


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
    """The window's first slice (four local days) commits; the second waits on a chunk the
    test holds, and its connection is killed there: exit 3, and the summary counts the
    first."""
    env = ingest_env(db.env, tmp_path, DEMO_COHORT="false", OVERLAP_HOURS="0")
    ok(run_ingest(env, "participant", "add", "p1", "--timezone", "UTC", "--seed", "1",
                  "--start-date", "2026-03-02"))
    ok(run_ingest(env, "--participant", "p1", "--now", "2026-03-03T00:00:00Z"))
    before = query(db.env, P1_ROWS)[0][0]
    with chunk_locked(db, "2026-03-07T12:00:00Z"):  # the second slice: 7 and 8 March
        run = start_ingest(env, "--participant", "p1", "--now", "2026-03-09T00:00:00Z")
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
    assert stored > 4 * 80_000  # 3-6 March: their heart rate alone is 4 x 86,400 rows
    summary = SUMMARY.search(stderr)
    assert summary is not None, stderr
    participants, statuses, _read, written = summary.groups()
    assert (participants, statuses, int(written)) == ("1", "1 failed", stored), stderr


# --- purge and re-enrol while a run is busy with the participant ---------------------------

NOW = "2026-03-03T00:00:00Z"
# No request limit in reach: pacing is not what these tests are about.
UNPACED = {"GOOGLE_USER_REQUESTS_PER_MINUTE": "100000",
           "GOOGLE_PROJECT_REQUESTS_PER_MINUTE": "1000000"}


def google_env(db, fake: FakeGoogleHealth, workdir) -> dict[str, str]:
    return ingest_env(db.env, workdir, DEMO_COHORT="false", GOOGLE_HEALTH_URL=fake.url,
                      GOOGLE_TOKEN_URL=fake.token_url, GOOGLE_CLIENT_ID=fake.client_id,
                      GOOGLE_CLIENT_SECRET=fake.client_secret, **UNPACED)


@contextmanager
def token_lock_held(db, participant_id: str) -> Iterator[object]:
    """The participant's token lock, held by a session of the test's (session-level, so it
    outlasts the commits of whatever the test does on that session): a run that refreshes
    the participant's access token waits there, after it has read the watermarks and before
    its first slice. The session is yielded; the enrolment it does takes the lock again."""
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                           (credentials.TOKEN_LOCK_CLASS, participant_id))
        connection.commit()
        yield connection
    finally:
        connection.close()  # ends the session: the lock goes with it


def test_a_purge_and_re_enrolment_during_a_run_loses_nothing(db, fake, tmp_path):
    """A run holds p1's old watermarks (20 Feb on, loaded to the late-sync horizon, 24 Feb)
    while p1 is purged and enrolled again from 1 Feb. The run must not commit the old
    enrolment's watermarks, and the next run loads everything from 1 Feb."""
    first_day = utc("2026-01-31T23:00:00")  # 1 Feb in Berlin
    fake.add("heart-rate", heart_rate_every(600, first_day, utc("2026-03-03T00:00:00")))
    env = google_env(db, fake, tmp_path)
    enrol = ("participant", "enrol", "p1", "--timezone", "Europe/Berlin", "--token-file", "-")
    ok(run_ingest(env, *enrol, "--start-date", "2026-02-20", stdin=fake.refresh_token))
    ok(run_ingest(env, "--now", NOW))
    assert query(db.env, "SELECT max(watermark) FROM ingest_runs")[0][0] is not None

    with token_lock_held(db, "p1") as session:
        run = start_ingest(env, "--now", NOW)
        try:
            poll(lambda: waiting_run(db), "the run to wait for p1's token lock")
            service_db.remove_participant(session, "p1", purge=True)
            credentials.enrol(session, "p1", "Europe/Berlin", date(2026, 2, 1),
                              fake.refresh_token)
        finally:
            session.close()  # the run goes on
            _, stderr = run.communicate(timeout=300)
    assert run.returncode == 1 and "removed and enrolled again" in stderr, stderr  # said
    assert query(db.env, "SELECT count(*) FROM ingest_runs WHERE status = 'ok'") == [(0,)]

    ok(run_ingest(env, "--now", NOW))
    expected = 30 * 144 + 6  # 1 Feb to 2 Mar (Berlin), a point each 10 min, and 2 Mar 23-24 UTC
    first, count = query(db.env, "SELECT min(\"timestamp\"), count(*) FROM raw_data "
                                 "WHERE participant_id = 'p1' AND metric_type = 'heart_rate'")[0]
    assert (first, count) == (first_day, expected)


# --- a state file that cannot be written ----------------------------------------------------

RUNS = """
SELECT run_id, min(window_start), max(watermark) FROM ingest_runs
WHERE participant_id = 'p1' GROUP BY run_id ORDER BY min(started_at)
"""


def test_an_unwritable_state_file_does_not_make_each_night_re_read_more(db, fake, tmp_path):
    """Nights 2 to 4 cannot write the state file (its lock file's name is taken by a
    directory: root may write anything else). Each night still re-reads only the overlap
    before the watermark the run log committed the night before, and so does night 5, once
    the file can be written again; then the file mirrors the run log."""
    fake.add("heart-rate", heart_rate_every(600, utc("2026-02-19T23:00:00"),
                                            utc("2026-03-07T00:00:00")))
    env = google_env(db, fake, tmp_path)
    ok(run_ingest(env, "participant", "enrol", "p1", "--timezone", "Europe/Berlin",
                  "--start-date", "2026-02-20", "--token-file", "-", stdin=fake.refresh_token))
    state_file = tmp_path / "state" / "last_run.json"
    lock = state_file.with_name(state_file.name + ".lock")
    ok(run_ingest(env, "--now", "2026-03-03T00:00:00Z"))
    lock.unlink()
    lock.mkdir()
    for night in ("2026-03-04", "2026-03-05", "2026-03-06"):
        done = run_ingest(env, "--now", f"{night}T00:00:00Z")
        assert done.returncode == 1 and "not written" in done.stderr, done.stderr
    lock.rmdir()
    ok(run_ingest(env, "--now", "2026-03-07T00:00:00Z"))
    runs = query(db.env, RUNS)
    assert len(runs) == 5
    overlap = timedelta(hours=24)
    for (_, _, committed), (_, re_read_from, _) in zip(runs[:-1], runs[1:], strict=True):
        assert re_read_from == committed - overlap, runs
    last_mark = runs[-1][2]
    marks = json.loads(state_file.read_text())["watermarks"]["p1"]
    assert {datetime.fromisoformat(mark) for mark in marks.values()} == {last_mark}
