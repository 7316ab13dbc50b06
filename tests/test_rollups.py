"""data_1m, data_1h, data_1d and adherence_daily always equal a fresh aggregation of raw_data.

The real command against the real TimescaleDB for runs, reruns and a kill; the real
pipeline function with a small test source for late rows and corrected values.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import date, timedelta

import psycopg2
import pytest
from conftest import SCHEMA_FILE
from ingester import rollups
from ingester.model import SYNTHETIC, Participant, Row, Window
from support import (
    fingerprint,
    load_batch,
    ok,
    query,
    rollup_mismatches,
    rollup_rows,
    run_ingest,
    start_ingest,
    utc,
)

# New York springs forward on 8 March 2026; Kolkata is UTC+5:30, so its local days do not
# start on a UTC hour: both catch a rollup that assumes whole hours or 24-hour days.
COHORT = [("ny", "America/New_York", "1"), ("kol", "Asia/Kolkata", "3")]
START = "2026-03-07"
DAY1 = "2026-03-08T12:00:00Z"
DAY2 = "2026-03-09T12:00:00Z"
DAY3 = "2026-03-10T12:00:00Z"


def enrol(env, cohort=COHORT):
    for pid, zone, seed in cohort:
        ok(run_ingest(env, "participant", "add", pid, "--timezone", zone, "--seed", seed,
                      "--start-date", START))


def assert_identical(env):
    assert rollup_mismatches(env) == {}
    assert all(n > 0 for n in rollup_rows(env))


@pytest.mark.editions("apache", "community")
def test_rollups_equal_raw_data_through_runs_reruns_a_kill_late_rows_and_corrections(db, env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    assert_identical(env)
    ok(run_ingest(env, "--now", DAY2))  # the second nightly run
    assert_identical(env)
    rerun = ok(run_ingest(env, "--now", DAY2))  # re-reads the overlap, writes nothing
    assert "0 written" in rerun.stderr
    assert_identical(env)

    # SIGKILL in the middle of a COPY, after at least one slice of this run committed: each
    # committed slice has its rows and rollups together, the slice being copied neither.
    before = query(env, "SELECT count(*) FROM ingest_runs")[0][0]
    run = start_ingest(env, "--now", DAY3)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        committed = query(env, "SELECT count(*) FROM ingest_runs")[0][0]
        copying = query(env, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                             "'wearable-ingester' AND query LIKE 'COPY%%'")[0][0]
        if committed > before and copying:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the run never reached a COPY after a committed slice")
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    assert query(env, "SELECT count(*) FROM ingest_runs")[0][0] > before
    assert_identical(env)
    ok(run_ingest(env, "--now", DAY3))
    assert_identical(env)

    # A late batch: steps of ny that arrive after the day was rolled up, in a window that
    # starts and ends inside an hour (the hour and the local day must still be whole).
    ny = Participant("ny", "America/New_York", SYNTHETIC, date(2026, 3, 7), 1)
    late = [Row(utc("2026-03-08T15:20:00") + timedelta(seconds=30 * n), "ny", "steps", float(n))
            for n in range(20)]
    window = Window(utc("2026-03-08T15:19:07"), utc("2026-03-08T15:31:00"))
    outcome = load_batch(db, ny, window, late)
    assert (outcome.status, outcome.rows_written) == ("ok", 20)
    assert query(env, "SELECT count, sum FROM data_1h WHERE participant_id = 'ny' AND "
                      "metric_type = 'steps'") == [(20, float(sum(range(20))))]
    assert_identical(env)

    # A corrected value: the source re-sends one heart-rate point with a new value.
    instant = utc("2026-03-09T03:59:59")  # the last second of ny's 8 March (23:59:59 EDT)
    (old,) = query(env, "SELECT value FROM raw_data WHERE participant_id = 'ny' AND "
                        "metric_type = 'heart_rate' AND \"timestamp\" = %s", (instant,))[0]
    day_before = query(env, "SELECT max FROM data_1d WHERE participant_id = 'ny' AND "
                            "metric_type = 'heart_rate' AND day = '2026-03-08'")[0][0]
    corrected = Row(instant, "ny", "heart_rate", day_before + 50.0)
    outcome = load_batch(db, ny, Window(instant, instant + timedelta(seconds=1)), [corrected])
    assert (outcome.status, outcome.rows_written) == ("ok", 1)
    assert old <= day_before
    assert query(env, "SELECT max FROM data_1d WHERE participant_id = 'ny' AND "
                      "metric_type = 'heart_rate' AND day = '2026-03-08'") == [(day_before + 50,)]
    assert_identical(env)

    # A participant whose zone changes gets its local days rebuilt in the new zone.
    query(env, "UPDATE participants SET timezone = 'Asia/Tokyo' WHERE participant_id = 'kol'")
    assert_identical(env)


def test_a_bucket_left_empty_disappears_and_a_rerun_writes_no_rollups(db, env):
    ny = Participant("ny", "America/New_York", SYNTHETIC, date(2026, 3, 7), 1)
    enrol(env, COHORT[:1])
    rows = [Row(utc("2026-03-08T10:00:00") + timedelta(seconds=20 * n), "ny", "heart_rate",
                60.0 + n) for n in range(9)]  # 10:00:00 .. 10:02:40, three minutes
    window = Window(utc("2026-03-08T10:00:00"), utc("2026-03-08T10:03:00"))
    assert load_batch(db, ny, window, rows).rows_written == 9
    assert rollup_rows(env) == (3, 1, 1, 1)
    assert_identical(env)
    # The same batch again writes nothing, so nothing is recomputed: the rows keep their
    # physical place (ctid) instead of being deleted and inserted again.
    where = "WHERE participant_id = 'ny'"
    ctids = query(env, f"SELECT ctid::text FROM data_1m {where} ORDER BY bucket")
    assert load_batch(db, ny, window, rows).rows_written == 0
    assert query(env, f"SELECT ctid::text FROM data_1m {where} ORDER BY bucket") == ctids
    # Rows gone from raw_data (a repair by hand) and a refresh of their window: the minute
    # that lost its rows disappears, the hour and the day shrink.
    query(env, "DELETE FROM raw_data WHERE \"timestamp\" >= '2026-03-08T10:01:00Z'")
    connection = db.connect()
    try:
        rollups.refresh(connection, "ny", Window(utc("2026-03-08T10:01:30"),
                                                 utc("2026-03-08T10:04:00")))
        connection.commit()
    finally:
        connection.close()
    assert rollup_rows(env) == (1, 1, 1, 1)
    assert query(env, "SELECT count FROM data_1h") == [(3,)]
    assert_identical(env)


def test_purge_removes_the_participants_rollups_and_keeps_the_others(db, env):
    rows = {pid: [Row(utc("2026-03-08T10:00:00") + timedelta(minutes=n), pid, "heart_rate", 70.0)
                  for n in range(5)] for pid in ("ny", "kol")}
    enrol(env)
    window = Window(utc("2026-03-08T10:00:00"), utc("2026-03-08T11:00:00"))
    for pid, zone, seed in COHORT:
        participant = Participant(pid, zone, SYNTHETIC, date(2026, 3, 7), int(seed))
        assert load_batch(db, participant, window, rows[pid]).rows_written == 5
    ok(run_ingest(env, "participant", "remove", "ny", "--purge", "--yes"))
    for table in rollups.ROLLUP_TABLES:
        assert query(env, f"SELECT participant_id, count(*) FROM {table} GROUP BY 1") == [
            ("kol", 5 if table == "data_1m" else 1)], table
    assert_identical(env)


def test_the_migration_backfills_rollups_of_an_existing_database(db_server, template_db, env):
    """A database made by the schema before rollups existed, with data, upgrades in place."""
    before_rollups = (SCHEMA_FILE.parent.parent / "tests" / "fixtures" / "init-6484521.sql"
                      ).read_text()
    name = f"test_{uuid.uuid4().hex}"
    with db_server.admin() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        params = db_server.params(name)
        connection = psycopg2.connect(**params)
        with connection, connection.cursor() as cursor:
            cursor.execute(before_rollups)
            cursor.execute("SELECT to_regclass('data_1m')")
            assert cursor.fetchone() == (None,)
            cursor.execute("INSERT INTO participants VALUES ('kol', 'Asia/Kolkata', 'synthetic', "
                           "'2026-03-07', 3)")
            cursor.execute("""INSERT INTO raw_data SELECT t, 'kol', m, extract(second FROM t) + 0.1
                FROM generate_series('2026-03-07T18:00Z'::timestamptz, '2026-03-08T20:00Z',
                                     INTERVAL '7 seconds') t,
                     unnest(ARRAY['heart_rate', 'spo2']) m""")
        connection.close()
        db_env = {**env, "DB_NAME": name}
        ok(run_ingest(db_env, "participant", "list"))  # any command applies the schema
        assert query(db_env, "SELECT version FROM schema_migrations WHERE version = 6") == [(6,)]
        assert rollup_mismatches(db_env) == {}
        assert rollup_rows(db_env)[0] == 2 * 26 * 60  # two metrics, 26 hours of minutes
        assert fingerprint(db_env)[0] > 0
    finally:
        with db_server.admin() as cur:
            cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
