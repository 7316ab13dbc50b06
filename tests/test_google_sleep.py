"""Google Health sleep end to end: ingest.py against the fake API and the real TimescaleDB.

Four nights as the fake serves them (a staged night, a classic night, a nap and a night
whose staging is still pending), and the pending one served again once processed.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fake_google_health import FakeGoogleHealth, paired_device, sleep
from google_support import P1, MemoryStore, settings_for
from ingester import state
from ingester.dashboard import pages
from ingester.model import ReadReport, Window
from ingester.sleep import PENDING_AT_MOST, hold_until
from ingester.sources.google_health.sleep import session_from_point, sessions_from_page
from ingester.sources.google_health.source import GoogleHealthSource
from ingester.sources.google_health.transform import SETTINGS
from support import query, run_ingest, utc
from test_google_pipeline import enrol_p1, fake_env

ROOT = Path(__file__).resolve().parent.parent


def night(start: str, *parts: tuple[int, str]) -> list[tuple[datetime, datetime, str]]:
    """Stages from `start` (UTC), each (minutes, STAGE), back to back."""
    stages, at = [], utc(start)
    for minutes, stage in parts:
        stages.append((at, at + timedelta(minutes=minutes), stage))
        at += timedelta(minutes=minutes)
    return stages


STAGED = night("2026-11-01T22:00:00", (12, "AWAKE"), (95, "LIGHT"), (64, "DEEP"), (48, "REM"),
               (130, "LIGHT"), (7, "AWAKE"), (71, "REM"), (33, "LIGHT"), (20, "AWAKE"))
NAP = night("2026-11-02T13:10:00", (5, "RESTLESS"), (38, "ASLEEP"), (2, "AWAKE"))
CLASSIC = night("2026-11-02T22:30:00", (9, "AWAKE"), (150, "ASLEEP"), (14, "RESTLESS"),
                (210, "ASLEEP"), (3, "AWAKE"), (41, "ASLEEP"))
# Before staging: the classic cut; once processed, Google re-cuts it (and its start moves).
PENDING = night("2026-11-03T23:00:00", (20, "RESTLESS"), (380, "ASLEEP"), (15, "AWAKE"))
PROCESSED = night("2026-11-03T23:04:00", (16, "AWAKE"), (120, "LIGHT"), (90, "DEEP"),
                  (100, "REM"), (74, "LIGHT"), (15, "AWAKE"))


def served(points: list[dict]) -> tuple[set, set]:
    """What the fake serves, read straight off its JSON: (sessions, stages)."""
    sessions, stages = set(), set()
    for point in points:
        body = point["sleep"]
        start = datetime.fromisoformat(body["interval"]["startTime"])
        summary, metadata = body["summary"], body["metadata"]
        sessions.add((start, datetime.fromisoformat(body["interval"]["endTime"]),
                      metadata.get("mainSleep", False), int(summary.get("minutesAsleep", 0)),
                      int(summary.get("minutesAwake", 0)), "google_health",
                      body["type"].lower(), metadata.get("processed", False)))
        stages |= {(datetime.fromisoformat(s["startTime"]), datetime.fromisoformat(s["endTime"]),
                    s["type"].lower(), start) for s in body["stages"]}
    return sessions, stages


def stored(env: dict[str, str]) -> tuple[set, set]:
    sessions = query(env, "SELECT session_start, session_end, is_main_sleep, minutes_asleep, "
                          "minutes_awake, source, kind, processed FROM sleep_sessions "
                          "WHERE participant_id = 'p1'")
    stages = query(env, "SELECT stage_start, stage_end, stage, session_start FROM sleep_stages "
                        "WHERE participant_id = 'p1'")
    return set(sessions), set(stages)


def run(env: dict[str, str], fake: FakeGoogleHealth, now: datetime):
    # The tracker synced half an hour ago: the watermarks may move up to then.
    fake.devices = [paired_device("tracker", last_sync=now - timedelta(minutes=30))]
    done = run_ingest(env, "--now", now.isoformat(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def env(db, fake, tmp_path) -> dict[str, str]:
    fake.granted_scopes.add(SETTINGS)
    env = fake_env(db, fake, tmp_path, HTTP_TIMEOUT="2", DEMO_COHORT="false")
    enrol_p1(env, fake, "Europe/Berlin", "2026-11-01")
    return env


def test_sleep_is_stored_as_served_and_a_pending_night_is_replaced_once_processed(env, fake, db):
    fake.add("sleep", [sleep(STAGED), sleep(NAP, kind="CLASSIC", main=False),
                       sleep(CLASSIC, kind="CLASSIC")])
    fake.add("sleep", [sleep(PENDING, kind="CLASSIC", processed=False)])
    first = utc("2026-11-04T12:00:00")
    run(env, fake, first)

    assert stored(env) == served(fake.points["sleep"])
    assert len(stored(env)[0]) == 4 and len(stored(env)[1]) == 9 + 3 + 6 + 3
    # The requests: on the session's end, at most 25 a page (the fake refuses otherwise).
    [request, *_] = fake.api_requests("sleep")
    assert "sleep.interval.end_time >=" in request.query["filter"]
    # The pending night holds the sleep watermark at its end; the other streams move on.
    marks = state.load(Path(env["STATE_FILE"])).watermarks["p1"]
    assert marks["sleep"] == PENDING[-1][1]
    assert marks["heart-rate"] == first - timedelta(minutes=30)

    pending = fake.points["sleep"][-1]
    fake.points["sleep"].remove(pending)
    fake.add("sleep", [sleep(PROCESSED)])
    run(env, fake, first + timedelta(days=1))

    assert stored(env) == served(fake.points["sleep"])  # the pending cut is gone, stages too
    assert not query(env, "SELECT 1 FROM sleep_stages WHERE stage IN ('restless', 'asleep') "
                          "AND stage_start >= '2026-11-03T23:00Z'")
    marks = state.load(Path(env["STATE_FILE"])).watermarks["p1"]
    assert marks["sleep"] == first + timedelta(days=1, minutes=-30)

    again = stored(env)
    run(env, fake, first + timedelta(days=1, hours=1))  # a re-read changes nothing
    assert stored(env) == again

    connection = db.connect()  # the dashboard's hypnogram: the last main sleep's stages
    try:
        assert pages.last_night(connection, "p1", first + timedelta(days=1)) == [
            (start, end, stage.lower()) for start, end, stage in PROCESSED]
    finally:
        connection.close()


def test_a_stored_night_re_read_and_now_rejected_stays_as_stored(env, fake):
    # A valid night is never traded for nothing: the re-read that rejects its new cut
    # leaves the stored one (still marked unprocessed) in place, and counts the reject.
    fake.add("sleep", [sleep(STAGED), sleep(PENDING, kind="CLASSIC", processed=False)])
    first = utc("2026-11-04T12:00:00")
    run(env, fake, first)
    before = stored(env)
    assert len(before[0]) == 2

    fake.points["sleep"].pop()
    broken = sleep(PROCESSED)
    broken["sleep"]["stages"][2]["type"] = "DOZING"
    fake.add("sleep", [broken])
    run(env, fake, first + timedelta(days=1))

    assert stored(env) == before
    [(rejected,)] = query(env, "SELECT rows_rejected FROM ingest_runs WHERE participant_id = "
                               "'p1' ORDER BY started_at DESC LIMIT 1")
    assert rejected == 1


def per_night_query() -> str:
    """The query docs/metrics.md gives analysts for each night's sleep."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    [sql] = re.findall(r"<!-- sleep per night -->\n```sql\n(.*?)```", text, re.S)
    return sql


def test_the_documented_query_gives_each_nights_time_asleep_and_minutes_per_stage(env, fake):
    fake.add("sleep", [sleep(STAGED), sleep(NAP, kind="CLASSIC", main=False),
                       sleep(CLASSIC, kind="CLASSIC")])
    run(env, fake, utc("2026-11-04T12:00:00"))
    rows = query(env, per_night_query())
    # participant, night (local wake date), main, asleep, awake, light, deep, rem, asleep
    # (classic), restless
    assert [(r[0], str(r[1]), *r[4:]) for r in rows] == [
        ("p1", "2026-11-02", True, 95 + 64 + 48 + 130 + 71 + 33, 12 + 7 + 20,
         95 + 130 + 33, 64, 48 + 71, 0, 0),
        ("p1", "2026-11-02", False, 38, 2, 0, 0, 0, 38, 5),
        ("p1", "2026-11-03", True, 150 + 210 + 41, 9 + 3, 0, 0, 0, 150 + 210 + 41, 14),
    ]


def test_an_unreadable_session_is_counted_and_the_others_kept():
    good = sleep(STAGED)
    bad_stage = sleep(CLASSIC, kind="CLASSIC")
    bad_stage["sleep"]["stages"][1]["type"] = "DOZING"
    no_type = sleep(NAP, kind="CLASSIC")
    del no_type["sleep"]["type"]
    report = ReadReport()
    sessions, token = sessions_from_page({"dataPoints": [bad_stage, good, no_type],
                                          "nextPageToken": "t"}, report, {})
    assert [s.start for s in sessions] == [STAGED[0][0]] and token == "t"
    assert sessions[0].minutes_asleep == 95 + 64 + 48 + 130 + 71 + 33
    assert sessions[0].processed and sessions[0].is_main_sleep
    assert report.rejected == {"sleep: unknown stage type": 1,
                               "sleep: type neither STAGES nor CLASSIC": 1}


def test_sleep_is_read_25_a_page_and_only_the_sessions_that_end_in_the_window(fake):
    first = utc("2026-11-01T12:00:00")
    naps = [night((first + timedelta(hours=n)).isoformat()[:19], (20, "ASLEEP"))
            for n in range(30)]
    fake.add("sleep", [sleep(nap, kind="CLASSIC", main=False) for nap in naps])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    # From the first nap's end to the last one's: the first ends inside, the last outside.
    window = Window(naps[0][-1][1], naps[-1][-1][1])
    report = ReadReport()
    sessions = source.read_sleep(P1, window, report)
    assert sorted(s.start for s in sessions) == [nap[0][0] for nap in naps[:-1]]
    requests = fake.api_requests("sleep")
    assert len(requests) == 2 and {r.query["pageSize"] for r in requests} == {"25"}
    assert report.rejected_total == 0


def test_a_session_pending_for_days_no_longer_holds_the_watermark():
    pending = session_from_point(sleep(PENDING, kind="CLASSIC", processed=False))
    done = session_from_point(sleep(STAGED))
    end = PENDING[-1][1]
    assert hold_until([done, pending], end + timedelta(hours=1)) == end
    assert hold_until([done, pending], end + PENDING_AT_MOST) == end
    assert hold_until([done, pending], end + PENDING_AT_MOST + timedelta(seconds=1)) is None
    assert hold_until([done], end) is None
