"""Synthetic sleep: wearipedia's sleep logs, through ingest.py, into the real TimescaleDB."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ingester.model import Participant, ReadReport
from ingester.sleep_log import (
    NONEXISTENT_LOCAL_TIME,
    OVERLAPPING_STAGE,
    STAGE_PAST_END,
    session_from_log,
)
from ingester.sources.synthetic.source import day_seed, load_wearipedia
from support import ingest_env, ok, query, run_ingest

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)  # 7 March to here: the DST night of 8 March
LEVELS = {"wake": "awake", "light": "light", "deep": "deep", "rem": "rem"}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NEW_YORK).astimezone(UTC)


def expected_night(log: dict) -> tuple[tuple, set]:
    """The session and stages the documented rule makes of a log: from its start, `duration`
    long; its levels.data in order, a segment dropped if it starts before the one kept before
    it ends or at or after the session's end, and cut at the end."""
    start = local(log["startTime"])
    end = start + timedelta(milliseconds=log["duration"])
    stages, last_end = set(), start
    for segment in log["levels"]["data"]:
        if not segment["seconds"]:
            continue
        first = local(segment["dateTime"])
        if first.astimezone(NEW_YORK).replace(tzinfo=None) != datetime.fromisoformat(
                segment["dateTime"]):
            continue  # a clock time the DST jump skipped
        if first >= end or first < last_end:
            continue
        last_end = min(first + timedelta(seconds=segment["seconds"]), end)
        stages.add((first, last_end, LEVELS[segment["level"]], start))
    return (start, end, log["isMainSleep"], "synthetic", "stages", True), stages


def test_synthetic_sleep_equals_wearipedias_logs(db, tmp_path):
    env = ingest_env(db.env, tmp_path)
    ok(run_ingest(env, "participant", "add", "p1", "--timezone", "America/New_York", "--seed",
                  "7", "--start-date", "2026-03-07"))
    ok(run_ingest(env, "--now", NOW.isoformat()))

    participant = Participant("p1", "America/New_York", "synthetic", date(2026, 3, 7), 7)
    library = load_wearipedia()
    sessions, stages = set(), set()
    for day in (date(2026, 3, 6) + timedelta(days=n) for n in range(5)):
        with library.seeded(day_seed(participant, day, "sleep log")) as gen:
            log = gen.get_sleep(day.isoformat())
        session, its_stages = expected_night(log)
        if local("2026-03-07T00:00:00") <= session[1] < NOW:
            sessions.add(session)
            stages |= its_stages
    assert len(sessions) >= 3
    assert set(query(env, "SELECT session_start, session_end, is_main_sleep, source, kind, "
                          "processed FROM sleep_sessions")) == sessions
    assert set(query(env, "SELECT stage_start, stage_end, stage, session_start "
                          "FROM sleep_stages")) == stages
    # Time asleep: the minutes in light, deep and rem, as stored.
    assert query(env, """
        SELECT count(*) FROM sleep_sessions s WHERE minutes_asleep <> (
            SELECT round(COALESCE(sum(extract(epoch FROM stage_end - stage_start)), 0) / 60)
            FROM sleep_stages st WHERE st.session_start = s.session_start
              AND stage IN ('light', 'deep', 'rem'))""") == [(0,)]

    before = query(env, "SELECT * FROM sleep_stages ORDER BY stage_start")
    ok(run_ingest(env, "--now", (NOW + timedelta(hours=1)).isoformat()))  # the overlap again
    assert query(env, "SELECT * FROM sleep_stages ORDER BY stage_start") == before

    # The dashboard's reader may read them (migration 12; 10 granted them only if there).
    assert query(env, "SELECT has_table_privilege('dashboard_reader', 'sleep_sessions', "
                      "'SELECT'), has_table_privilege('dashboard_reader', 'sleep_stages', "
                      "'SELECT')") == [(True, True)]
    # Removed, the data stays; purged, it goes (the stages with their sessions).
    ok(run_ingest(env, "participant", "remove", "p1"))
    assert query(env, "SELECT count(*) FROM sleep_stages") == [(len(before),)]
    ok(run_ingest(env, "participant", "remove", "p1", "--purge", "--yes"))
    assert query(env, "SELECT (SELECT count(*) FROM sleep_sessions), "
                      "(SELECT count(*) FROM sleep_stages)") == [(0, 0)]


def test_a_log_is_cut_to_its_span_and_its_overlaps_are_counted():
    log = {
        # Five hours, which end at 05:00 on the clock, not endTime's 04:00 (DST).
        "startTime": "2026-03-07T23:00:00", "endTime": "2026-03-08T04:00:00",
        "duration": 5 * 3_600_000,
        "isMainSleep": True, "type": "stages",
        "levels": {"data": [
            {"dateTime": "2026-03-07T23:00:00", "level": "wake", "seconds": 0},
            {"dateTime": "2026-03-07T23:00:00", "level": "wake", "seconds": 600},
            {"dateTime": "2026-03-07T23:05:00", "level": "deep", "seconds": 600},  # overlaps
            {"dateTime": "2026-03-07T23:10:00", "level": "light", "seconds": 3600},
            {"dateTime": "2026-03-08T02:30:00", "level": "rem", "seconds": 600},  # DST gap
            {"dateTime": "2026-03-08T04:30:00", "level": "rem", "seconds": 3600},  # cut
            {"dateTime": "2026-03-08T05:00:00", "level": "light", "seconds": 60},  # past
        ], "shortData": [{"dateTime": "2026-03-07T23:30:00", "level": "wake", "seconds": 60}]},
    }
    report = ReadReport()
    session = session_from_log(log, NEW_YORK, report)
    assert session is not None
    assert [(s.start, s.end, s.stage) for s in session.stages] == [
        (local("2026-03-07T23:00:00"), local("2026-03-07T23:10:00"), "awake"),
        (local("2026-03-07T23:10:00"), local("2026-03-08T00:10:00"), "light"),
        (local("2026-03-08T04:30:00"), local("2026-03-08T05:00:00"), "rem"),
    ]
    assert (session.minutes_asleep, session.minutes_awake) == (90, 10)
    assert report.rejected == {OVERLAPPING_STAGE: 1, NONEXISTENT_LOCAL_TIME: 1,
                               STAGE_PAST_END: 1}


def test_a_participant_loaded_before_the_sleep_stream_gets_its_sleep_history(db, tmp_path):
    """A participant loaded by a version without the sleep stream: its run log and state
    file hold every other stream's watermark and none for sleep. The next run loads sleep
    from the start date (within MAX_BACKFILL_DAYS), not from the other streams' watermark."""
    env = ingest_env(db.env, tmp_path)
    ok(run_ingest(env, "participant", "add", "p1", "--timezone", "Europe/Berlin", "--seed",
                  "3", "--start-date", "2026-03-01"))
    ok(run_ingest(env, "--now", "2026-03-06T12:00:00Z"))
    nights = "SELECT session_start, session_end FROM sleep_sessions ORDER BY 1"
    loaded = query(env, nights)
    assert len(loaded) >= 4
    # As the older version left it: no sleep stored, no sleep watermark anywhere.
    query(env, "DELETE FROM sleep_stages")
    query(env, "DELETE FROM sleep_sessions")
    query(env, "UPDATE ingest_runs SET stream_watermarks = stream_watermarks - 'sleep'")
    state_file = tmp_path / "state" / "last_run.json"
    filed = json.loads(state_file.read_text())
    for streams in filed["watermarks"].values():
        del streams["sleep"]
    state_file.write_text(json.dumps(filed))
    # status plans with the real clock: the start date lies more than MAX_BACKFILL_DAYS
    # (92) back from it, so there the new stream starts 92 days before today.
    planned = run_ingest(env, "status")
    assert planned.returncode == 0, planned.stderr
    assert [line.split("\t")[7::2] for line in planned.stdout.splitlines()
            if line.startswith("p1\tsynthetic")][4] == ["sleep", "new stream"]
    ok(run_ingest(env, "--now", "2026-03-07T12:00:00Z"))
    reloaded = query(env, nights)
    assert reloaded[: len(loaded)] == loaded  # every night before, back
    assert len(reloaded) > len(loaded)
