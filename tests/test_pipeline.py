"""The delta pipeline end to end: the real command against the real TimescaleDB."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support import fingerprint, query, run_ingest, start_ingest

pytestmark = pytest.mark.editions("apache", "community")

COHORT = [
    ("p1", "America/New_York", "1"), ("p2", "Europe/Berlin", "2"), ("p3", "Asia/Kolkata", "3"),
]
START = "2026-03-07"
DAY1 = "2026-03-08T12:00:00Z"  # New York springs forward at 07:00Z that morning
DAY2 = "2026-03-09T12:00:00Z"
DAY3 = "2026-03-10T12:00:00Z"


def enrol(env, cohort=COHORT, start=START):
    for pid, zone, seed in cohort:
        done = run_ingest(env, "participant", "add", pid, "--timezone", zone, "--seed", seed,
                          "--start-date", start)
        assert done.returncode == 0, done.stderr


def ok(done):
    assert done.returncode == 0, done.stderr
    return done


def reset(env):
    """Forget everything loaded, keep the cohort: the baseline an uninterrupted run gives."""
    query(env, "TRUNCATE raw_data, ingest_runs")
    Path(env["STATE_FILE"]).unlink(missing_ok=True)


def assert_same_as_a_fresh_load(env, now):
    """The table now equals what one uninterrupted load of the same cohort up to now gives."""
    loaded = fingerprint(env)
    reset(env)
    ok(run_ingest(env, "--now", now))
    assert fingerprint(env) == loaded


def test_two_nightly_runs_equal_one_backfill(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    ok(run_ingest(env, "--now", DAY2))
    assert fingerprint(env)[0] > 3 * 2 * 80_000  # heart rate alone is ~86,400 rows a day
    assert_same_as_a_fresh_load(env, DAY2)


def test_rerun_of_the_same_window_changes_nothing(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    before = fingerprint(env)
    again = ok(run_ingest(env, "--now", DAY1, "--since", START))
    assert fingerprint(env) == before
    written = query(env, "SELECT sum(rows_written) FROM ingest_runs WHERE run_id = "
                         "(SELECT run_id FROM ingest_runs ORDER BY finished_at DESC LIMIT 1)")
    assert "0 written" in again.stderr, again.stderr
    assert written[0][0] == 0


def test_no_point_after_now(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    latest = query(env, 'SELECT max("timestamp") FROM raw_data')[0][0]
    assert latest.isoformat() < "2026-03-08T12:00:00+00:00"
    assert query(env, "SELECT count(*) FROM raw_data WHERE \"timestamp\" >= %s", (DAY1,)) == [(0,)]
    # one run-log row per slice: 7 March and half of 8 March, two local days, are one slice
    # (windows.FIRST_SLICE_DAYS)
    slices = query(env, "SELECT participant_id, count(*) FROM ingest_runs GROUP BY 1 ORDER BY 1")
    assert slices == [("p1", 1), ("p2", 1), ("p3", 1)], slices


# Test-only triggers: the clock of every statement that wrote raw_data, and the transaction
# of every run-log row (a slice is one transaction).
WRITE_CLOCK = """
CREATE TABLE write_clock (tx bigint, at timestamptz);
CREATE TABLE run_log_tx (id bigint, tx bigint);
CREATE FUNCTION note_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO write_clock VALUES (txid_current(), clock_timestamp()); RETURN NULL; END $$;
CREATE FUNCTION note_run_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO run_log_tx VALUES (NEW.id, txid_current()); RETURN NULL; END $$;
CREATE TRIGGER note_write AFTER INSERT ON raw_data FOR EACH STATEMENT
    EXECUTE FUNCTION note_write();
CREATE TRIGGER note_run_log AFTER INSERT ON ingest_runs FOR EACH ROW
    EXECUTE FUNCTION note_run_log();
"""


def test_the_run_log_says_when_each_slice_really_ended(env):
    """A slice's finished_at is after the last write of its transaction (not the
    transaction's start, which is what now() would give), and started_at before it."""
    query(env, WRITE_CLOCK)
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    slices = query(env, "SELECT r.participant_id, r.started_at, r.finished_at, min(w.at), "
                        "max(w.at) FROM ingest_runs r JOIN run_log_tx t ON t.id = r.id "
                        "LEFT JOIN write_clock w ON w.tx = t.tx GROUP BY 1, 2, 3")
    assert len(slices) == 3, slices  # a slice a participant: two local days
    for pid, started, finished, first_write, last_write in slices:
        assert last_write is not None, pid  # every slice wrote rows
        assert started < first_write <= last_write < finished, (pid, started, finished)


def test_a_run_killed_mid_write_then_rerun_equals_an_uninterrupted_run(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY2))
    uninterrupted = fingerprint(env)
    reset(env)
    run = start_ingest(env, "--now", DAY2)
    # Wait until the first participant has committed and the next one is mid-COPY.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        committed = query(env, "SELECT count(*) FROM ingest_runs")[0][0]
        copying = query(env, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE application_name = 'wearable-ingester' AND query LIKE 'COPY%%'"
                        )[0][0]
        if committed >= 1 and copying:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the run never reached a second participant's COPY")
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    partial = fingerprint(env)
    assert 0 < partial[0] < uninterrupted[0]
    ok(run_ingest(env, "--now", DAY2))
    assert fingerprint(env) == uninterrupted


def test_two_concurrent_runs_leave_no_errors_and_no_duplicates(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    runs = [start_ingest(env, "--now", DAY2) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert query(env, "SELECT count(*) FROM ingest_runs WHERE status <> 'ok'") == [(0,)]
    assert query(env, 'SELECT count(*) FROM (SELECT participant_id, metric_type, "timestamp" '
                      "FROM raw_data GROUP BY 1, 2, 3 HAVING count(*) > 1) d") == [(0,)]
    assert_same_as_a_fresh_load(env, DAY2)


@pytest.mark.parametrize("now, day, gap_utc, total", [
    # spring forward: local 02:00-02:59 does not exist, so the local day has 23 hours
    ("2026-03-09T12:00:00Z", "2026-03-08", ("2026-03-08T07:00Z", "2026-03-08T08:00Z"), 23 * 3600),
    # fall back: the device's clock shows 01:00-01:59 twice; the generator emits it once
    ("2026-11-02T12:00:00Z", "2026-11-01", ("2026-11-01T05:00Z", "2026-11-01T06:00Z"), 24 * 3600),
])
def test_dst_days_load_without_collisions_at_the_right_instants(env, now, day, gap_utc, total):
    enrol(env, [("ny", "America/New_York", "9")], start=day)
    done = ok(run_ingest(env, "--now", now))
    assert "1 ok" in done.stderr, done.stderr
    assert query(env, "SELECT DISTINCT status FROM ingest_runs") == [("ok",)]
    rows = query(env, """
        SELECT count(*), count(DISTINCT "timestamp"),
               count(*) FILTER (WHERE "timestamp" >= %s AND "timestamp" < %s)
        FROM raw_data
        WHERE metric_type = 'heart_rate'
          AND ("timestamp" AT TIME ZONE 'America/New_York')::date = %s
    """, (gap_utc[0], gap_utc[1], day))
    count, distinct, in_hour = rows[0]
    assert count == distinct == total
    # Every local second maps to one instant: the hour after the change holds 3600 points.
    assert in_hour == 3600
    # Stored instants, read back in the participant's zone, fall on whole local seconds of
    # that day and cover it without a hole.
    first, last = query(env, """
        SELECT min("timestamp" AT TIME ZONE 'America/New_York'),
               max("timestamp" AT TIME ZONE 'America/New_York')
        FROM raw_data WHERE metric_type = 'heart_rate'
          AND ("timestamp" AT TIME ZONE 'America/New_York')::date = %s""", (day,))[0]
    assert first.isoformat() == f"{day}T00:00:00" and last.isoformat() == f"{day}T23:59:59"


def test_bad_config_exits_2_with_one_line_and_touches_nothing(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    before, state_before = fingerprint(env), Path(env["STATE_FILE"]).read_text()
    done = run_ingest({**env, "DB_PORT": "abc"}, "--now", DAY2)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "configuration error: DB_PORT must be an integer 1-65535, got 'abc'"]
    assert fingerprint(env) == before and Path(env["STATE_FILE"]).read_text() == state_before


def test_unreachable_database_exits_3_with_one_clear_line(env):
    # DB_WAIT_SECONDS=0: no wait for a server to come up (test_db_wait.py tests the wait).
    done = run_ingest({**env, "DB_PORT": "1", "DB_PASSWORD": "hunter2", "DB_WAIT_SECONDS": "0"},
                      "--now", DAY1)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to PostgreSQL at" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_corrupt_state_is_said_recovered_from_the_database_and_flagged(env):
    enrol(env)
    ok(run_ingest(env, "--now", DAY1))
    ok(run_ingest(env, "--now", DAY2))
    expected = fingerprint(env)
    with open(env["STATE_FILE"], "w") as state_file:
        state_file.write('{"version": 1, "watermarks": {"p1": ')
    done = run_ingest(env, "--now", DAY2)
    assert done.returncode == 1
    assert sum("is corrupt" in line for line in done.stderr.splitlines()) == 1, done.stderr
    assert fingerprint(env) == expected
    # recovered, not re-ingested: each participant re-read only the overlap
    windows = query(env, "SELECT min(window_start) FROM ingest_runs WHERE run_id = "
                         "(SELECT run_id FROM ingest_runs ORDER BY finished_at DESC LIMIT 1)")
    assert windows[0][0].isoformat() >= "2026-03-08"
    marks = json.loads(Path(env["STATE_FILE"]).read_text())["watermarks"]
    assert set(marks) == {"p1", "p2", "p3"}
    assert ok(run_ingest(env, "--now", DAY2)).returncode == 0  # no crash loop


def test_one_participants_failure_does_not_stop_the_others(env):
    enrol(env)
    # A zone the synthetic source cannot use fails only that participant's window.
    query(env, "UPDATE participants SET timezone = 'Mars/Olympus' WHERE participant_id = 'p2'")
    done = run_ingest(env, "--now", DAY1)
    assert done.returncode == 1
    statuses = dict(query(env, "SELECT participant_id, status FROM participant_status"))
    assert statuses == {"p1": "ok", "p2": "failed", "p3": "ok"}
    marks = json.loads(Path(env["STATE_FILE"]).read_text())["watermarks"]
    assert set(marks) == {"p1", "p3"}
    assert query(env, "SELECT count(*) FROM raw_data WHERE participant_id = 'p2'") == [(0,)]


def test_demo_cohort_without_configuration(env):
    done = ok(run_ingest({**env, "BACKFILL_DAYS": "1"}, "--now", DAY1))
    assert "demo cohort" in done.stderr
    ids = [row[0] for row in query(env, "SELECT DISTINCT participant_id FROM raw_data ORDER BY 1")]
    assert ids == ["demo-01", "demo-02", "demo-03"]
    status = ok(run_ingest(env, "status"))
    assert "demo-01" in status.stdout and "heart_rate" in status.stdout


def test_dry_run_counts_and_writes_nothing(env):
    done = ok(run_ingest({**env, "BACKFILL_DAYS": "1"}, "--now", DAY1, "--dry-run"))
    counts = [line.split("\t") for line in done.stdout.splitlines()]
    assert [c[0] for c in counts] == ["demo-01", "demo-02", "demo-03"]
    assert all(int(c[2].split()[0]) > 80_000 for c in counts), done.stdout
    assert query(env, "SELECT (SELECT count(*) FROM raw_data), (SELECT count(*) FROM ingest_runs),"
                      " (SELECT count(*) FROM participants)") == [(0, 0, 0)]
    assert not Path(env["STATE_FILE"]).exists()


def watermark_of(env, pid):
    state_file = Path(env["STATE_FILE"])
    if not state_file.exists():
        return {}
    return json.loads(state_file.read_text())["watermarks"].get(pid, {})


def test_a_recent_backfill_does_not_skip_the_days_before_it(env):
    enrol(env, COHORT[:1])
    ok(run_ingest(env, "--now", DAY2, "--since", "2026-03-09T00:00:00Z"))
    assert watermark_of(env, "p1") == {}  # 7 and 8 March are not loaded yet
    ok(run_ingest(env, "--now", DAY2))
    assert_same_as_a_fresh_load(env, DAY2)


def test_a_database_restored_from_a_backup_is_reloaded(env):
    enrol(env, COHORT[:1])
    ok(run_ingest(env, "--now", DAY1))
    expected = fingerprint(env)
    ok(run_ingest(env, "--now", DAY2))
    ok(run_ingest(env, "--now", DAY3))
    # The restore: the database as after day 1, the state file as after day 3.
    query(env, "DELETE FROM raw_data WHERE \"timestamp\" >= %s", (DAY1,))
    query(env, "DELETE FROM ingest_runs WHERE window_end > %s", (DAY1,))
    assert fingerprint(env) == expected
    ok(run_ingest(env, "--now", DAY3))
    assert_same_as_a_fresh_load(env, DAY3)


def test_a_purged_participant_enrolled_again_is_loaded_from_its_start(env):
    enrol(env, COHORT[:1])
    ok(run_ingest(env, "--now", DAY2))
    first = fingerprint(env)
    ok(run_ingest(env, "participant", "remove", "p1", "--purge", "--yes"))
    assert fingerprint(env)[0] == 0
    enrol(env, COHORT[:1])
    ok(run_ingest(env, "--now", DAY2))
    assert fingerprint(env) == first


def test_now_in_the_future_is_refused(env):
    done = run_ingest(env, "--now", "2099-01-01T00:00:00Z")
    assert done.returncode == 2
    assert done.stderr.startswith("--now must not be later than the current time")
    assert query(env, "SELECT count(*) FROM participants") == [(0,)]


def test_a_dry_run_leaves_a_corrupt_state_file_for_the_real_run_to_flag(env):
    enrol(env, COHORT[:1])
    Path(env["STATE_FILE"]).parent.mkdir(parents=True)
    Path(env["STATE_FILE"]).write_text("garbage")
    dry = run_ingest(env, "--now", DAY1, "--dry-run")
    assert dry.returncode == 1 and "is corrupt" in dry.stderr
    assert Path(env["STATE_FILE"]).read_text() == "garbage"
    assert run_ingest(env, "--now", DAY1).returncode == 1


# --- slices: a long window commits day by day --------------------------------------------

BACKFILL_START, BACKFILL_NOW = "2026-03-09", "2026-04-08T00:00:00Z"  # 30 local days


def test_a_30_day_backfill_killed_halfway_keeps_its_committed_slices(env):
    enrol(env, [("p1", "Europe/Berlin", "1")], start=BACKFILL_START)
    run = start_ingest(env, "--now", BACKFILL_NOW)
    deadline = time.monotonic() + 600
    halfway = datetime.fromisoformat("2026-03-24T00:00:00+01:00")  # 15 local days in
    while not query(env, "SELECT coalesce(max(window_end) >= %s, false) FROM ingest_runs",
                    (halfway,))[0][0]:
        if run.poll() is not None or time.monotonic() > deadline:
            run.kill()
            pytest.fail(f"the run never got halfway: {run.communicate()}")
        time.sleep(0.1)
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    stored = fingerprint(env)[0]
    logged = query(env, "SELECT count(*), sum(rows_written), max(watermark), "
                        "bool_and(status = 'ok') FROM ingest_runs")[0]
    slices, written, watermark, all_ok = logged
    # every committed slice is there with its run-log row, and nothing else is
    assert stored > 0 and slices >= 2 and all_ok and written == stored
    assert halfway <= watermark < datetime.fromisoformat(BACKFILL_NOW)
    ok(run_ingest(env, "--now", BACKFILL_NOW, timeout=900))
    # The rerun continues from the last committed slice, less the overlap (a day more if the
    # kill came between a slice's commit and its state-file write), not from the start.
    resumed = query(env, "SELECT min(window_start) FROM ingest_runs WHERE run_id = (SELECT "
                         "run_id FROM ingest_runs ORDER BY id DESC LIMIT 1)")[0][0]
    assert watermark - timedelta(days=2) <= resumed <= watermark - timedelta(hours=24)
    assert_same_as_a_fresh_load(env, BACKFILL_NOW)


# --- containment: nothing one participant raises ends the run -----------------------------


def test_a_planted_participant_from_year_1_fails_alone_and_the_run_says_so(env):
    enrol(env, [COHORT[0], COHORT[2]])
    # bypassing validation, as an old version or a hand-written INSERT could
    query(env, "INSERT INTO participants (participant_id, timezone, source, start_date, seed) "
               "VALUES ('old', 'Asia/Tokyo', 'synthetic', '0001-01-01', 1)")
    done = run_ingest(env, "--now", DAY1)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    summary = [line for line in done.stderr.splitlines() if "run finished:" in line]
    assert len(summary) == 1 and "3 participants (1 held, 2 ok)" in summary[0], done.stderr
    loaded = dict(query(env, "SELECT participant_id, count(*) FROM raw_data GROUP BY 1"))
    assert set(loaded) == {"p1", "p3"} and min(loaded.values()) > 80_000
    status, error = query(env, "SELECT status, error FROM participant_status "
                               "WHERE participant_id = 'old'")[0]
    assert status == "failed" and "MAX_BACKFILL_DAYS" in error
    # it says so before it starts, in the log and in `status`
    assert any("old held" in line and "MAX_BACKFILL_DAYS" in line
               for line in done.stderr.splitlines()), done.stderr
    shown = ok(run_ingest(env, "status")).stdout
    assert any(line.startswith("old: a first load of") for line in shown.splitlines()), shown


# --- status: the watermark the next run uses, and where it comes from ---------------------


def status_marks(env, pid):
    """stream -> (watermark, origin) as `status` prints them."""
    lines = ok(run_ingest(env, "status")).stdout.split("\n\n")[0].splitlines()
    header = next(line for line in lines if line.startswith("participant\t")).split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines
            if line.startswith(f"{pid}\t")]
    return {r["stream"]: (r["watermark"], r["from"], r["bound"].split()[0]) for r in rows}


def test_status_shows_the_watermark_the_next_run_uses_and_where_it_comes_from(env):
    enrol(env, COHORT[:1])
    ok(run_ingest(env, "--now", DAY1))
    after_run = status_marks(env, "p1")
    assert {v[0] for v in after_run.values()} == {"2026-03-08T12:00:00+00:00"}
    assert {v[2] for v in after_run.values()} == {"generated"}
    Path(env["STATE_FILE"]).unlink()  # no state file: the database's watermark
    assert status_marks(env, "p1") == after_run
    assert {v[1] for v in after_run.values()} == {"run log"}
    ok(run_ingest(env, "--now", DAY1))  # the file again
    ok(run_ingest(env, "participant", "remove", "p1", "--purge", "--yes"))
    enrol(env, COHORT[:1])
    # the file still remembers yesterday, but the next run reloads from the start date
    purged = status_marks(env, "p1")
    assert set(purged.values()) == {("-", "start date", "generated")}, purged
