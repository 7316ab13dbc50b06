"""`participant import-takeout`: a donated archive, built here from the documented format,
into the real TimescaleDB (docs/takeout.md)."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
import zipfile
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg2.extensions
import pytest
from conftest import scratch_database
from fake_google_health import steps
from google_support import heart_rate_every
from ingester import takeout_import
from ingester.config import Settings
from ingester.model import ReadReport
from ingester.sources.google_health.transform import DATA_TYPES
from ingester.sources.takeout import catalog, transform
from ingester.sources.takeout.transform import CSV_VALUES, LocalClock, recorder_rule
from support import ROOT as REPOSITORY
from support import fingerprint, ingest_env, ok, query, run_ingest, start_ingest, utc
from takeout_support import (
    CSV_DIR,
    JSON_DIR,
    ROOT,
    WEARABLE,
    Archive,
    Night,
    classic,
    days,
    heart_rate,
    intraday_archive,
    iso,
    per_minute,
    sample_lines,
    sleep_json,
    sleep_log,
)
from test_google_pipeline import enrol_p1, fake_env, run_at

NEW_YORK = "America/New_York"
DST_WEEK = days(date(2026, 10, 29), 7)  # Oct 29 - Nov 4



def segments(*cuts: tuple[str, str]) -> list[tuple[datetime, datetime, str]]:
    """Stages that follow one another: (UTC start "MM-DDTHH:MM" in 2026, level), ..., then
    (the end, "")."""
    instants = [(utc(f"2026-{at}:00"), level) for at, level in cuts]
    return [(a, b, level) for (a, level), (b, _) in zip(instants, instants[1:], strict=False)]


# A staged night across the change: 23:00 EDT Oct 31 to 06:30 EST Nov 1, 8.5 h. Its light
# stage at 06:40Z is 01:40 on the clock's second pass (the rem before it began 01:50 EDT).
STAGED_NIGHT = Night("stages", True, segments(
    ("11-01T03:00", "wake"), ("11-01T03:20", "light"), ("11-01T05:00", "deep"),
    ("11-01T05:50", "rem"), ("11-01T06:40", "light"), ("11-01T07:30", "deep"),
    ("11-01T09:00", "rem"), ("11-01T10:10", "light"), ("11-01T11:15", "wake"),
    ("11-01T11:30", "")))
# 22:30 EST Nov 2 to 06:00 EST Nov 3; then a nap 14:00-14:45 EST.
CLASSIC_NIGHT = Night("classic", True, segments(
    ("11-03T03:30", "awake"), ("11-03T03:45", "asleep"), ("11-03T07:00", "restless"),
    ("11-03T07:10", "asleep"), ("11-03T10:50", "awake"), ("11-03T11:00", "")))
NAP = Night("classic", False, segments(
    ("11-03T19:00", "asleep"), ("11-03T19:40", "awake"), ("11-03T19:45", "")))
SESSIONS = """SELECT source, session_start, session_end, is_main_sleep, minutes_asleep,
                     minutes_awake, kind, processed FROM sleep_sessions
              WHERE participant_id = %s ORDER BY session_start"""
STAGES = """SELECT session_start, stage_start, stage_end, stage FROM sleep_stages
            WHERE participant_id = %s AND source = 'takeout' ORDER BY stage_start"""
FITBIT_LEVEL = {"wake": "awake"}

STORED = """SELECT metric_type, "timestamp", value FROM raw_data WHERE participant_id = %s
            ORDER BY 1, 2"""


def stored(env, pid: str) -> list[tuple[str, datetime, float]]:
    return query(env, STORED, (pid,))


def rows_of(expected: dict[str, list[tuple[datetime, float]]]) -> list[tuple]:
    return sorted((metric, t, v) for metric, series in expected.items() for t, v in series)


def import_takeout(env, pid: str, path, *extra: str):
    return run_ingest(env, "participant", "import-takeout", pid, str(path), *extra)


# --- the 7-day archive across New York's change to winter time (2026-11-01, 02:00 -> 01:00) --


def dst_week_archive() -> tuple[Archive, list[tuple]]:
    archive, expected = intraday_archive(DST_WEEK[0], 7, hr_step=300)
    day = DST_WEEK[2]
    # The classic JSON twin of heart rate, 2 s apart from the CSV's points: read as well, it
    # would add rows; and a Health Connect round trip inside the CSV.
    for d in DST_WEEK:
        archive.add(JSON_DIR + f"heart_rate-{d}.json", json.dumps(
            [{"dateTime": classic(t.replace(second=2)), "value": {"bpm": v, "confidence": 3}}
             for t, v in heart_rate(d, 300)]))
    name = CSV_DIR + f"heart_rate_{day}.csv"
    archive.add(name, archive.entries[name] + f"{iso(utc('2026-10-31T10:00:01'))},99,"
                "Phone Health Connect\n" + f"{iso(utc('2026-10-31T10:00:02'))},400,{'Charge 6'}\n")
    # The phone records steps and distance beside the tracker, at offset instants.
    phone = [(t.replace(second=30), v) for t, v in per_minute(day, 3, 10)]
    name = CSV_DIR + "steps_2026-10-01.csv"
    archive.add(name, archive.entries[name] + "\n".join(
        sample_lines(phone, "MobileTrack") + sample_lines(phone[:3], "Strava Health Connect"))
        + "\n")
    name = CSV_DIR + "distance_2026-10-01.csv"
    archive.add(name, archive.entries[name] + "\n".join(sample_lines(phone, "MobileTrack")) + "\n")
    # Naive local time: the repeated hour 01:00-02:00 of Nov 1 comes twice (EDT, then EST).
    azm = ROOT + "Active Zone Minutes (AZM)/Active Zone Minutes - "
    archive.add(azm + "2026-10-01.csv", "date_time,heart_zone_id,total_minutes\n"
                "2026-10-30T07:00,FAT_BURN,1\n")
    archive.add(azm + "2026-11-01.csv", "date_time,heart_zone_id,total_minutes\n"
                "2026-11-01T01:30,FAT_BURN,1\n2026-11-01T01:45,CARDIO,1\n"
                "2026-11-01T01:10,PEAK,1\n2026-11-03T09:00,CARDIO,1\n")
    archive.csv("daily_resting_heart_rate.csv", "timestamp,beats per minute,data source",
                [f"{d}T00:00:00Z,{55 + n},Charge 6" for n, d in enumerate(DST_WEEK)])
    archive.csv("daily_heart_rate_variability.csv",
                "timestamp,average heart rate variability milliseconds,non rem heart rate beats "
                "per minute,entropy,deep sleep root mean square of successive differences "
                "milliseconds", ["2026-10-31T00:00:00Z,41.5,52,2.1,44", "2026-11-02T00:00:00Z,"
                                 "38.25,53,2.0,40"])
    archive.csv("oxygen_saturation_2026-10-01.csv",
                "timestamp,oxygen saturation percentage,data source",
                ["2026-10-30T07:01:00Z,95.5,Charge 6", "2026-10-30T07:02:00Z,96,Charge 6"])
    archive.csv("heart_rate_variability_2026-11-01.csv",
                "timestamp,root mean square of successive differences milliseconds,standard "
                "deviation milliseconds,data source", ["2026-11-01T06:30:00Z,35.2,50.1,Charge 6"])
    archive.csv("respiratory_rate_sleep_summary_2026-11-01.csv",
                "timestamp,deep sleep stats - milli breaths per minute,full sleep stats - milli "
                "breaths per minute,data source", ["2026-11-02T11:00:00Z,14.1,15.3,Charge 6"])
    archive.csv("calories_2026-10-01.csv", "timestamp,calories,data source",
                ["2026-10-30T12:00:00Z,1.25,Charge 6"])
    archive.csv("floors_2026-11-01.csv", "timestamp,floors,data source",
                ["2026-11-03T12:00:00Z,2,Charge 6"])
    # Fitbit writes sleep in files of 30 nights, named by the first.
    archive.add(JSON_DIR + "sleep-2026-10-03.json", sleep_json([STAGED_NIGHT], ZoneInfo(NEW_YORK)))
    archive.add(JSON_DIR + "sleep-2026-11-02.json",
                sleep_json([CLASSIC_NIGHT, NAP], ZoneInfo(NEW_YORK)))
    archive.add(ROOT + "UserSensorCompressionToken/token_2026-10-29.csv", "token\nabc\n")
    archive.add("Takeout/archive_browser.html", "<html></html>")
    expected = rows_of(expected) + sorted([
        ("active_zone_minutes", utc("2026-10-30T11:00:00"), 1.0),
        ("fat_burn_active_zone_minutes", utc("2026-10-30T11:00:00"), 1.0),
        ("active_zone_minutes", utc("2026-11-01T05:30:00"), 1.0),  # 01:30 EDT
        ("fat_burn_active_zone_minutes", utc("2026-11-01T05:30:00"), 1.0),
        ("active_zone_minutes", utc("2026-11-01T05:45:00"), 2.0),  # 01:45 EDT
        ("cardio_active_zone_minutes", utc("2026-11-01T05:45:00"), 1.0),
        ("active_zone_minutes", utc("2026-11-01T06:10:00"), 2.0),  # 01:10 EST, second pass
        ("peak_active_zone_minutes", utc("2026-11-01T06:10:00"), 1.0),
        ("active_zone_minutes", utc("2026-11-03T14:00:00"), 2.0),  # 09:00 EST
        ("cardio_active_zone_minutes", utc("2026-11-03T14:00:00"), 1.0),
        # Daily values at local midnight: EDT until Nov 1, EST from Nov 2.
        *[("resting_heart_rate", utc(f"{d}T04:00:00"), 55.0 + n)
          for n, d in enumerate(DST_WEEK[:4])],
        *[("resting_heart_rate", utc(f"{d}T05:00:00"), 59.0 + n)
          for n, d in enumerate(DST_WEEK[4:])],
        ("hrv_rmssd_daily", utc("2026-10-31T04:00:00"), 41.5),
        ("hrv_rmssd_daily", utc("2026-11-02T05:00:00"), 38.25),
        ("spo2", utc("2026-10-30T07:01:00"), 95.5),
        ("spo2", utc("2026-10-30T07:02:00"), 96.0),
        ("hrv_rmssd", utc("2026-11-01T06:30:00"), 35.2),
        ("breathing_rate_sleep", utc("2026-11-02T11:00:00"), 15.3),
        ("calories", utc("2026-10-30T12:00:00"), 1.25),
        ("floors", utc("2026-11-03T12:00:00"), 2.0),
    ])
    return archive, sorted(expected)


def test_a_week_across_dst_west_of_utc_loads_exactly_and_once(env, tmp_path):
    archive, expected = dst_week_archive()
    path = archive.write(tmp_path / "takeout.zip")
    done = ok(import_takeout(env, "p-ny", path, "--timezone", NEW_YORK))
    assert stored(env, "p-ny") == [(m, t, pytest.approx(v)) for m, t, v in expected]
    summary = done.stdout
    assert "enrolled p-ny (takeout, America/New_York); no nightly pull" in summary
    assert "p-ny: start date 2026-10-28, its first day in the archive" in summary
    assert "1 rejected (1 heart_rate values out of range)" in summary
    assert "rows\theart_rate\t2016" in summary
    assert "sleep: import follows the sleep tables" not in summary
    assert "  sleep\t3 sessions" in summary
    assert "7 files: JSON twin of a stream loaded from its CSV (the CSV wins)" in summary
    assert "not loaded\t320 rows the phone recorded (MobileTrack), not the wearable" in summary
    assert "not loaded\t4 rows Health Connect synced in from other apps (round trips)" in summary
    assert query(env, "SELECT source, timezone, start_date FROM participants") == [
        ("takeout", NEW_YORK, date(2026, 10, 28))]  # 00:00Z is 20:00 the day before
    rollup = query(env, "SELECT sum(sum) FROM data_1d WHERE metric_type = 'steps'")[0][0]
    assert rollup == pytest.approx(sum(v for m, _, v in expected if m == "steps"))
    # Provenance: the archive loaded every row, and a CSV row names the recorder it lists.
    origins = query(env, "SELECT DISTINCT source, device FROM raw_data_sourced")
    assert {source for source, _ in origins} == {"takeout"}
    assert ("takeout", WEARABLE) in origins

    nights = query(env, SESSIONS, ("p-ny",)), query(env, STAGES, ("p-ny",))
    assert_sleep(*nights)

    before = fingerprint(env)
    # The row versions of the stored nights: a re-import that rewrote them alike would still
    # have written them (and moved loaded_at).
    versions = ("SELECT session_start, xmin::text, loaded_at FROM sleep_sessions UNION ALL "
                "SELECT stage_start, xmin::text, NULL FROM sleep_stages ORDER BY 1, 2")
    written = query(env, versions)
    again = ok(import_takeout(env, "p-ny", path))
    assert ", 0 written," in again.stdout
    assert fingerprint(env) == before
    assert (query(env, SESSIONS, ("p-ny",)), query(env, STAGES, ("p-ny",))) == nights
    assert query(env, versions) == written
    assert query(env, "SELECT sum(rows_written) FROM ingest_runs WHERE run_id = (SELECT "
                      "run_id FROM ingest_runs ORDER BY id DESC LIMIT 1)")[0][0] == 0


def assert_sleep(sessions: list[tuple], stages: list[tuple]) -> None:
    """The three sessions, exact: minutes asleep exclude awake and restless, awake counts
    the awake stages; each stage in UTC, under its session."""
    assert sessions == [
        ("takeout", utc("2026-11-01T03:00"), utc("2026-11-01T11:30"), True, 475, 35,
         "stages", True),
        ("takeout", utc("2026-11-03T03:30"), utc("2026-11-03T11:00"), True, 415, 25,
         "classic", True),
        ("takeout", utc("2026-11-03T19:00"), utc("2026-11-03T19:45"), False, 40, 5,
         "classic", True),
    ]
    assert stages == [(night.span[0], a, b, FITBIT_LEVEL.get(level, level))
                      for night in (STAGED_NIGHT, CLASSIC_NIGHT, NAP)
                      for a, b, level in night.stages]


def test_the_nightly_run_skips_a_takeout_participant(env, tmp_path):
    archive, _ = intraday_archive(date(2026, 11, 2), 1)
    ok(import_takeout(env, "donor", archive.write(tmp_path / "a.zip"), "--timezone", NEW_YORK))
    runs = query(env, "SELECT count(*) FROM ingest_runs")[0][0]
    night = run_ingest(env, "--participant", "donor")
    assert night.returncode == 0, night.stderr
    assert "no nightly pull for 1 Takeout participant(s): donor" in night.stderr
    assert query(env, "SELECT count(*) FROM ingest_runs")[0][0] == runs


# --- a kill halfway through a 60-day import, then the same command again -----------------

HOLD = 4_225  # the advisory lock the test holds while the import waits in its fifth slice
HOLD_FIFTH_SLICE = f"""
CREATE FUNCTION hold_fifth_slice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM ingest_runs) >= 5 THEN PERFORM pg_advisory_xact_lock({HOLD}); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER hold_fifth_slice AFTER INSERT ON ingest_runs FOR EACH ROW
EXECUTE FUNCTION hold_fifth_slice();
"""


def test_a_killed_import_finishes_on_the_same_command(db, db_server, template_db, tmp_path):
    archive, _ = intraday_archive(date(2026, 8, 1), 60)
    path = archive.write(tmp_path / "sixty.zip")
    with scratch_database(db_server, template_db) as other:
        whole = ingest_env(other.env, tmp_path)
        ok(import_takeout(whole, "p60", path, "--timezone", "Europe/Berlin"))
        uninterrupted = fingerprint(whole)
    env = ingest_env(db.env, tmp_path)
    query(env, HOLD_FIFTH_SLICE)
    holder = db.connect()
    holder.autocommit = True
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
    run = start_ingest(env, "participant", "import-takeout", "p60", str(path), "--timezone",
                       "Europe/Berlin")
    try:
        deadline = time.monotonic() + 300
        while not query(env, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                             "AND NOT granted")[0][0]:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        committed = query(env, "SELECT count(*), sum(rows_written) FROM ingest_runs")[0]
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    finally:
        holder.close()
    assert committed[0] == 4 and 0 < committed[1] < uninterrupted[0]
    query(env, "DROP TRIGGER hold_fifth_slice ON ingest_runs")
    ok(run_ingest(env, "participant", "import-takeout", "p60", str(path)))
    assert fingerprint(env) == uninterrupted


# --- untrusted input ---------------------------------------------------------------------


def nothing_written(env) -> None:
    assert query(env, "SELECT (SELECT count(*) FROM raw_data), (SELECT count(*) FROM "
                      "participants), (SELECT count(*) FROM ingest_runs)") == [(0, 0, 0)]


@pytest.mark.parametrize("name", ["Takeout/../../etc/cron.d/x", "/etc/passwd",
                                  "Takeout/Google Health/..\\..\\x.csv"])
def test_an_entry_that_escapes_is_refused_before_anything_is_written(env, tmp_path, name):
    archive, _ = intraday_archive(date(2026, 11, 2), 1)
    archive.add(name, "x\n")
    done = import_takeout(env, "p1", archive.write(tmp_path / "escape.zip"), "--timezone",
                          NEW_YORK)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert repr(name) in done.stderr
    nothing_written(env)


def test_a_zip_bomb_is_refused_before_anything_is_written(env, tmp_path):
    archive, _ = intraday_archive(date(2026, 11, 2), 1)
    path = archive.write(tmp_path / "bomb.zip")
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr(CSV_DIR + "steps_2026-12-01.csv", b"0" * (64 << 20))  # ~1000x
    done = import_takeout(env, "p1", path, "--timezone", NEW_YORK)
    assert done.returncode == 2, done.stderr
    assert "inflates" in done.stderr and "zip bomb" in done.stderr
    nothing_written(env)


def declare_size(path, name: str, size: int) -> None:
    """Rewrite an entry's declared uncompressed size in both of its headers."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at != -1 and data[at + name_at: at + name_at + len(encoded)] != encoded:
            at = data.find(signature, at + 1)
        struct.pack_into("<I", data, at + offset, size)
    path.write_bytes(bytes(data))


def test_an_entry_larger_than_it_declares_stops_the_import(env, tmp_path):
    archive, _ = intraday_archive(date(2026, 11, 2), 1)
    name = CSV_DIR + "heart_rate_2026-11-02.csv"
    path = archive.write(tmp_path / "liar.zip")
    declare_size(path, name, 100)
    done = import_takeout(env, "p1", path, "--timezone", NEW_YORK)
    assert done.returncode == 2, done.stderr
    assert "inflates past the 100 bytes it declares" in done.stderr
    assert not query(env, "SELECT count(*) FROM raw_data WHERE metric_type = 'heart_rate'")[0][0]


def test_a_damaged_file_is_reported_and_the_rest_loads(env, tmp_path):
    archive, expected = intraday_archive(date(2026, 11, 2), 2)
    archive.add(JSON_DIR + "floors-2026-11-02.json", '[{"dateTime": "11/02/26 12:00:00", "va')
    path = archive.write(tmp_path / "damaged.zip")
    done = import_takeout(env, "p1", path, "--timezone", NEW_YORK)
    assert done.returncode == 1, done.stderr
    assert f"rejected\t{JSON_DIR}floors-2026-11-02.json: not JSON" in done.stdout
    assert stored(env, "p1") == [(m, t, pytest.approx(v)) for m, t, v in rows_of(expected)]


def test_a_sleep_file_not_a_list_is_rejected_and_an_unreadable_log_counted(env, tmp_path):
    archive, _ = intraday_archive(date(2026, 11, 2), 2)
    archive.add(JSON_DIR + "sleep-2026-10-03.json", '{"sleep": []}')
    archive.add(JSON_DIR + "sleep-2026-11-02.json", json.dumps(
        [sleep_log(NAP, ZoneInfo(NEW_YORK), 1), {**sleep_log(NAP, ZoneInfo(NEW_YORK), 2),
                                                 "type": "nap"}]))
    path = archive.write(tmp_path / "sleep.zip")
    done = import_takeout(env, "p1", path, "--timezone", NEW_YORK)
    assert done.returncode == 1, done.stderr
    assert (f"rejected\t{JSON_DIR}sleep-2026-10-03.json: expected a JSON list, got dict"
            in done.stdout)
    assert "1 sleep logs of an unknown type" in done.stdout
    assert "  sleep\t1 sessions" in done.stdout
    assert query(env, SESSIONS, ("p1",)) == [
        ("takeout", utc("2026-11-03T19:00"), utc("2026-11-03T19:45"), False, 40, 5,
         "classic", True)]


def test_a_file_a_library_cannot_read_is_rejected_and_the_rest_loads(env, tmp_path):
    # Damage our parsers do not name: a CSV field past the csv module's limit, a sleep log
    # whose type is a list. Each fails its file, never the import (exit 1, not a traceback).
    archive, expected = intraday_archive(date(2026, 11, 2), 2)
    archive.add(CSV_DIR + "heart_rate_2026-11-05.csv",
                'timestamp,beats per minute,data source\n"' + "7" * 200_000 + '",1,x\n')
    archive.add(JSON_DIR + "sleep-2026-11-02.json", json.dumps([{"type": [], "levels": {}}]))
    path = archive.write(tmp_path / "odd.zip")
    done = import_takeout(env, "p1", path, "--timezone", NEW_YORK)
    assert done.returncode == 1, done.stderr
    assert f"rejected\t{CSV_DIR}heart_rate_2026-11-05.csv: unreadable (Error: field " \
        in done.stdout
    assert stored(env, "p1") == [(m, t, pytest.approx(v)) for m, t, v in rows_of(expected)]


def test_a_truncated_entry_is_reported_and_the_rest_loads(env, tmp_path):
    archive, expected = intraday_archive(date(2026, 11, 2), 2)
    name = CSV_DIR + "heart_rate_2026-11-03.csv"
    path = archive.write(tmp_path / "truncated.zip")
    with zipfile.ZipFile(path) as whole:
        info = whole.getinfo(name)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(name.encode()) + len(info.extra)
    data[start + info.compress_size // 2: start + info.compress_size] = bytes(
        info.compress_size - info.compress_size // 2)  # the second half of its data lost
    path.write_bytes(bytes(data))
    done = import_takeout(env, "p1", path, "--timezone", NEW_YORK)
    assert done.returncode == 1, done.stderr
    assert f"rejected\t{name}: " in done.stdout
    kept = [r for r in rows_of(expected) if not (r[0] == "heart_rate" and r[1].day == 3)]
    assert stored(env, "p1") == [(m, t, pytest.approx(v)) for m, t, v in kept]


def test_a_new_id_needs_a_zone_and_a_synthetic_one_is_refused(env, tmp_path):
    path = intraday_archive(date(2026, 11, 2), 1)[0].write(tmp_path / "a.zip")
    done = import_takeout(env, "p1", path)
    assert done.returncode == 2 and "--timezone ZONE is required" in done.stderr
    ok(run_ingest(env, "participant", "add", "syn", "--timezone", NEW_YORK, "--seed", "1",
                  "--start-date", "2026-11-01"))
    done = import_takeout(env, "syn", path)
    assert done.returncode == 2 and "syn is a synthetic participant" in done.stderr
    assert query(env, "SELECT count(*) FROM raw_data")[0][0] == 0


# --- pure parts --------------------------------------------------------------------------


def test_the_csv_wins_over_its_json_twin_and_json_alone_loads():
    names = [CSV_DIR + "heart_rate_2026-11-02.csv", JSON_DIR + "heart_rate-2026-11-02.json",
             JSON_DIR + "steps-2026-11-02.json", ROOT + "Sleep Score/sleep_score.csv",
             "Takeout/Fit/All Data/raw.json", ROOT + "Mystery/new_thing.csv"]
    entries, skipped = catalog.classify(names)
    assert [(e.stream, e.form) for e in entries] == [("heart_rate", "csv"), ("steps", "json")]
    assert {s.name: s.reason for s in skipped} == {
        JSON_DIR + "heart_rate-2026-11-02.json": catalog.TWIN,
        ROOT + "Sleep Score/sleep_score.csv": catalog.SLEEP_SUMMARY,
        "Takeout/Fit/All Data/raw.json": "outside Takeout/Google Health/ and Takeout/Fitbit/",
        ROOT + "Mystery/new_thing.csv": "not recognised (a file this importer does not know)",
    }


def test_the_ranges_are_the_google_transforms():
    google = {t.metric_type: (t.low, t.high) for t in DATA_TYPES.values()}
    for value in CSV_VALUES.values():
        assert (value.low, value.high) == google[value.metric], value.metric


@pytest.mark.parametrize(("source", "dropped"), [
    ("Charge 6", None), ("Pixel Watch 2", None), ("", None),
    ("MobileTrack", transform.PHONE), ("Phone Health Connect", transform.ROUND_TRIP),
    ("Garmin Connect Health Connect", transform.ROUND_TRIP),
])
def test_only_the_wearables_rows_load(source, dropped):
    assert recorder_rule(source) == dropped


def test_json_distance_is_centimetres_and_its_instants_utc():
    report = ReadReport()
    data = transform.load_json('[{"dateTime": "03/08/26 07:00:00", "value": "1250"}]')
    (row,) = transform.json_rows(data, "distance", "p", report).rows
    assert (row.timestamp, row.value) == (utc("2026-03-08T07:00:00"), 12.5)


def test_the_repeated_hour_goes_to_its_second_offset_on_the_second_pass():
    clock, report = LocalClock(ZoneInfo(NEW_YORK)), ReadReport()
    texts = ["2026-11-01T00:59", "2026-11-01T01:30", "2026-11-01T01:05", "2026-11-01T01:50",
             "2026-11-01T02:10"]
    assert [iso(clock.instant(t, report)) for t in texts] == [
        "2026-11-01T04:59:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:05:00Z",
        "2026-11-01T06:50:00Z", "2026-11-01T07:10:00Z"]


# --- beside the API ----------------------------------------------------------------------


def test_the_api_then_the_archive_give_one_value_per_key(db, fake, tmp_path):
    env = fake_env(db, fake, tmp_path, HTTP_TIMEOUT="2", DEMO_COHORT="false")
    enrol_p1(env, fake, "UTC", "2026-11-01")
    day = utc("2026-11-02T00:00:00")
    points = heart_rate_every(60, day, day + timedelta(hours=24))
    fake.add("heart-rate", points)
    walk = [(day + timedelta(hours=9, minutes=m), 20.0 + m) for m in range(30)]
    fake.add("steps", [steps(t, int(v)) for t, v in walk])
    ok(run_at(env, utc("2026-11-03T01:00:00")))
    # A night the API gave: the archive's slices over its days must not replace it.
    api_night = ("p1", utc("2026-11-01T23:00:00"), utc("2026-11-02T07:00:00"))
    query(env, "INSERT INTO sleep_sessions (participant_id, source, session_start, "
               "session_end, is_main_sleep, minutes_asleep, minutes_awake, kind) "
               "VALUES (%s, 'google_health', %s, %s, true, 450, 30, 'stages')", api_night)
    from_api = fingerprint(env)

    # The archive holds the same day as the API, and the day before, which the API lacks.
    archive = Archive()
    served = [(datetime.fromisoformat(p["heartRate"]["sampleTime"]["physicalTime"]),
               float(p["heartRate"]["beatsPerMinute"])) for p in points]
    earlier = heart_rate(date(2026, 11, 1), 60)
    for name, series in (("heart_rate_2026-11-01.csv", earlier),
                         ("heart_rate_2026-11-02.csv", served)):
        archive.csv(name, "timestamp,beats per minute,data source", sample_lines(series))
    phone = [(t + timedelta(seconds=30), v) for t, v in walk]
    archive.csv("steps_2026-11-01.csv", "timestamp,steps,data source",
                sample_lines(walk) + sample_lines(phone, "MobileTrack"))
    archive.add(JSON_DIR + "sleep-2026-11-01.json", sleep_json([NAP], ZoneInfo("UTC")))
    done = ok(import_takeout(env, "p1", archive.write(tmp_path / "p1.zip")))
    assert f"{len(earlier) + len(served) + len(walk)} rows read, {len(earlier)} written" \
        in done.stdout
    rows = query(env, 'SELECT metric_type, "timestamp", count(*), min(value), max(value) '
                      "FROM raw_data GROUP BY 1, 2 ORDER BY 1, 2")
    assert len(rows) == from_api[0] + len(earlier)
    assert {(m, t, v) for m, t, _, v, _ in rows} == {
        *(("heart_rate", t, v) for t, v in earlier + served), *(("steps", t, v) for t, v in walk)}
    assert {n for _, _, n, _, _ in rows} == {1}
    assert query(env, "SELECT source FROM participants") == [("google_health",)]
    assert query(env, "SELECT participant_id, session_start, session_end FROM sleep_sessions "
                      "WHERE source = 'google_health'") == [api_night]
    assert query(env, "SELECT source, session_start FROM sleep_sessions WHERE NOT "
                      "is_main_sleep") == [("takeout", NAP.span[0])]
    # What the archive added is the archive's: the day the API lacked says takeout.
    assert query(env, "SELECT DISTINCT source, device FROM raw_data_sourced WHERE "
                      "\"timestamp\" < %s", (day,)) == [("takeout", WEARABLE)]


# --- the benchmark -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_benchmark_measures_both_targets_on_tiny_archives(db_server, tmp_path):
    results = tmp_path / "takeout.json"
    dsn = psycopg2.extensions.make_dsn(**db_server.params("postgres"))
    done = subprocess.run([sys.executable, str(REPOSITORY / "bench" / "takeout.py"), "--days", "1",
                           "--long-days", "2", "--rounds", "1", "--dsn", dsn, "--json",
                           str(results)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(results.read_text())
    assert set(doc["measurements"]) == {"import", "writer", "rss_short", "rss_long"}
    assert doc["measurements"]["import"]["rows"] == doc["measurements"]["writer"]["rows"] > 0
    assert doc["measurements"]["rss_long"]["rows"] > doc["measurements"]["rss_short"]["rows"]
    for target in doc["targets"].values():
        assert target["ratio"] > 0 and target["label"] in done.stdout
    with db_server.admin() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'bench_%%_rss_%%'")
        assert cursor.fetchone()[0] == 0


def test_an_older_export_under_takeout_fitbit_loads_its_json():
    names = ["Takeout/Fitbit/Global Export Data/heart_rate-2019-05-01.json",
             "Takeout/Fitbit/Global Export Data/distance-2019-05-01.json",
             "Takeout/Fitbit/Global Export Data/heart_rate-2019-13-45.json"]
    entries, skipped = catalog.classify(names)
    assert [(e.stream, e.form, e.day) for e in entries] == [
        ("distance", "json", date(2019, 5, 1)), ("heart_rate", "json", date(2019, 5, 1))]
    assert [s.reason for s in skipped] == ["not recognised (a file this importer does not know)"]


# --- issue 25 review: memory, zones, sleep, odd dates, two roots -------------------------


def import_in_process(db, pid: str, path, timezone: str | None = NEW_YORK, **options) -> int:
    """The command in this process, for what a test sets by parameter (a file limit)."""
    connection = db.connect()
    try:
        return takeout_import.command(connection, Settings(), pid, str(path), timezone,
                                      **options)
    finally:
        connection.close()


def test_a_file_past_the_file_limit_is_rejected_and_the_rest_loads(db, env, tmp_path, capsys):
    # Within the zip limits an entry may inflate to gigabytes: a JSON file is read whole and
    # a file's rows are held, so one file past the limit is rejected before it is read.
    archive, expected = intraday_archive(date(2026, 11, 2), 2)
    name = JSON_DIR + "floors-2026-11-02.json"
    points = [{"dateTime": f"11/02/26 {n // 3600 % 24:02}:{n // 60 % 60:02}:{n % 60:02}",
               "value": str(n * 7919 % 1000)} for n in range(40_000)]
    archive.add(name, json.dumps(points))
    big_csv = CSV_DIR + "calories_2026-11-01.csv"
    archive.csv("calories_2026-11-01.csv", "timestamp,calories,data source",
                [f"2026-11-02T12:{n // 60 % 60:02}:{n % 60:02}Z,{n * 7919 % 1000 / 100},"
                 "Charge 6" for n in range(40_000)])
    path = archive.write(tmp_path / "large.zip")
    with zipfile.ZipFile(path) as written:
        assert written.getinfo(name).file_size > 1 << 20
        assert written.getinfo(big_csv).file_size > 1 << 20
    assert import_in_process(db, "p1", path, file_limit=1 << 20) == 1
    out = capsys.readouterr().out
    assert f"rejected\t{name}: " in out and "expected at most 1048576 for one file" in out
    assert f"rejected\t{big_csv}: " in out
    assert stored(env, "p1") == [(m, t, pytest.approx(v)) for m, t, v in rows_of(expected)]


def test_an_archive_adds_the_nights_it_holds_and_deletes_none_it_lacks(env, tmp_path):
    # A newer archive holds three nights; an older one, imported after it, holds the first
    # only, and the second as a log it cannot read: both nights it lacks stay as stored.
    newer, _ = intraday_archive(date(2026, 10, 31), 4)
    newer.add(JSON_DIR + "sleep-2026-10-03.json", sleep_json([STAGED_NIGHT], ZoneInfo(NEW_YORK)))
    newer.add(JSON_DIR + "sleep-2026-11-02.json",
              sleep_json([CLASSIC_NIGHT, NAP], ZoneInfo(NEW_YORK)))
    ok(import_takeout(env, "p1", newer.write(tmp_path / "newer.zip"), "--timezone", NEW_YORK))
    nights = query(env, SESSIONS, ("p1",)), query(env, STAGES, ("p1",))
    assert_sleep(*nights)

    older, _ = intraday_archive(date(2026, 10, 31), 4)
    older.add(JSON_DIR + "sleep-2026-10-03.json", sleep_json([STAGED_NIGHT], ZoneInfo(NEW_YORK)))
    older.add(JSON_DIR + "sleep-2026-11-02.json", json.dumps(
        [{**sleep_log(CLASSIC_NIGHT, ZoneInfo(NEW_YORK), 1), "type": "nap"}]))
    done = ok(import_takeout(env, "p1", older.write(tmp_path / "older.zip")))
    assert "1 sleep logs of an unknown type" in done.stdout
    assert (query(env, SESSIONS, ("p1",)), query(env, STAGES, ("p1",))) == nights


def test_a_reimport_in_another_zone_replaces_the_local_times_and_counts_once(env, tmp_path):
    # The coordinator gave the wrong zone: the same command with the right one moves the
    # archive's local-time rows (zone minutes, sleep, daily values) to the right instants,
    # leaving nothing at the old ones: exactly what a first import in that zone stores.
    archive, _ = dst_week_archive()
    path = archive.write(tmp_path / "takeout.zip")
    ok(import_takeout(env, "p-ny", path, "--timezone", "Asia/Tokyo"))
    ok(import_takeout(env, "right", path, "--timezone", NEW_YORK))
    again = ok(import_takeout(env, "p-ny", path, "--timezone", NEW_YORK))
    assert "timezone Asia/Tokyo -> America/New_York" in again.stdout
    assert stored(env, "p-ny") == stored(env, "right")
    by = "SELECT session_start, session_end, minutes_asleep FROM sleep_sessions WHERE " \
         "participant_id = %s ORDER BY 1"
    assert query(env, by, ("p-ny",)) == query(env, by, ("right",))
    stages = "SELECT count(*) FROM sleep_stages WHERE participant_id = %s"
    assert query(env, stages, ("p-ny",)) == query(env, stages, ("right",))
    rollup = ("SELECT metric_type, bucket, sum FROM data_1h WHERE participant_id = %s AND "
              "metric_type LIKE '%%active_zone%%' ORDER BY 1, 2")
    assert query(env, rollup, ("p-ny",)) == query(env, rollup, ("right",))


def test_rows_before_the_earliest_start_date_are_rejected_and_bound_the_span(env, tmp_path):
    # A daily row dated year 1 overflowed datetime (its file was rejected); one from 1900
    # started the import's span, and its slices, in 1900.
    archive, expected = intraday_archive(date(2026, 11, 2), 2)
    archive.csv("daily_resting_heart_rate.csv", "timestamp,beats per minute,data source",
                ["1900-01-01T00:00:00Z,60,Charge 6", "2026-11-02T00:00:00Z,61,Charge 6"])
    archive.csv("daily_heart_rate_variability.csv",
                "timestamp,average heart rate variability milliseconds",
                ["0001-01-01T00:00:00Z,40", "2026-11-03T00:00:00Z,41"])
    archive.add(ROOT + "Active Zone Minutes (AZM)/Active Zone Minutes - 2026-11-01.csv",
                "date_time,heart_zone_id,total_minutes\n0001-01-01T00:30,CARDIO,1\n"
                "2026-11-02T09:00,CARDIO,1\n")
    archive.csv("floors_2026-11-01.csv", "timestamp,floors,data source",
                ["0001-01-01T00:00:00+09:00,1,Charge 6", "2026-11-02T12:00:00Z,2,Charge 6"])
    archive.csv("heart_rate_1900-01-01.csv", "timestamp,beats per minute,data source",
                ["1900-01-01T00:00:00Z,60,Charge 6"])
    done = ok(import_takeout(env, "p1", archive.write(tmp_path / "early.zip"),
                             "--timezone", "Asia/Tokyo"))
    assert "4 rejected (4 dates before 2009-01-01, the earliest start date)" in done.stdout
    assert f"skipped\t1 files: {catalog.EARLY}" in done.stdout
    slices = int(done.stdout.split(" slices,")[0].rsplit(" ", 1)[1])
    assert slices < 10, done.stdout  # the days of 2026 the files cover, not 1900 on
    assert "p1: start date 2026-11-02" in done.stdout
    tokyo = ZoneInfo("Asia/Tokyo")
    loaded = sorted(rows_of(expected) + [
        ("active_zone_minutes", datetime(2026, 11, 2, 9, tzinfo=tokyo), 2.0),
        ("cardio_active_zone_minutes", datetime(2026, 11, 2, 9, tzinfo=tokyo), 1.0),
        ("floors", utc("2026-11-02T12:00:00"), 2.0),
        ("hrv_rmssd_daily", datetime(2026, 11, 3, tzinfo=tokyo), 41.0),
        ("resting_heart_rate", datetime(2026, 11, 2, tzinfo=tokyo), 61.0)])
    assert stored(env, "p1") == [(m, t, pytest.approx(v)) for m, t, v in loaded]


def test_an_archive_with_both_roots_loads_the_newer_and_lists_the_older_as_skipped():
    names = [ROOT + "Global Export Data/heart_rate-2026-11-02.json",
             "Takeout/Fitbit/Global Export Data/heart_rate-2026-11-02.json",
             "Takeout/Fitbit/Global Export Data/steps-2026-11-02.json"]
    entries, skipped = catalog.classify(names)
    assert [e.name for e in entries] == [names[0]]
    assert {s.name: s.reason for s in skipped} == {names[1]: catalog.OLDER_ROOT,
                                                   names[2]: catalog.OLDER_ROOT}


def test_a_sleep_log_that_starts_on_the_repeated_hours_second_pass_ends_at_its_end_time():
    # A nap 01:20-02:00 EST on the night New York falls back: 01:20 comes twice, and only the
    # second reading ends, 40 minutes on, at the log's endTime (02:00). Read as the first,
    # the nap landed an hour early (05:20-06:00Z) and ended at 01:00 on the clock.
    log = {"startTime": "2026-11-01T01:20:00.000", "endTime": "2026-11-01T02:00:00.000",
           "duration": 40 * 60 * 1000, "isMainSleep": False, "type": "classic",
           "levels": {"data": [{"dateTime": "2026-11-01T01:20:00.000", "level": "asleep",
                                "seconds": 1800},
                               {"dateTime": "2026-11-01T01:50:00.000", "level": "awake",
                                "seconds": 600}]}}
    report = ReadReport()
    (nap,) = transform.sleep_sessions([log], ZoneInfo(NEW_YORK), report)
    assert (nap.start, nap.end) == (utc("2026-11-01T06:20"), utc("2026-11-01T07:00"))
    assert [(s.start, s.end) for s in nap.stages] == [
        (utc("2026-11-01T06:20"), utc("2026-11-01T06:50")),
        (utc("2026-11-01T06:50"), utc("2026-11-01T07:00"))]
    # On the first pass: 30 minutes on, the clock reads 01:50 EDT (not gone back yet).
    first = {**log, "endTime": "2026-11-01T01:50:00.000", "duration": 30 * 60 * 1000,
             "levels": {"data": log["levels"]["data"][:1]}}
    (early,) = transform.sleep_sessions([first], ZoneInfo(NEW_YORK), report)
    assert (early.start, early.end) == (utc("2026-11-01T05:20"), utc("2026-11-01T05:50"))
    assert not report.rejected
