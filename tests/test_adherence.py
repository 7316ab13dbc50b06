"""Adherence per local day, the morning flags and `ingest.py report`, on the real database."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ingester import report
from ingester.model import GOOGLE_HEALTH, SYNTHETIC, Participant, Row, Window
from ingester.sources.synthetic.source import SyntheticSource
from support import load_batch, ok, query, rollup_mismatches, run_ingest, utc

NEW_YORK = ZoneInfo("America/New_York")


def local_day(day: date, zone: ZoneInfo) -> Window:
    start = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return Window(start, end)


def enrol(env, pid, zone, start, source=SYNTHETIC):
    query(env, "INSERT INTO participants VALUES (%s, %s, %s, %s, %s)",
          (pid, zone, source, start, 1 if source == SYNTHETIC else None))


def every_minute(pid: str, window: Window, bpm: float = 70.0) -> list[Row]:
    """One heart-rate sample 10 s into every minute of the window."""
    minutes = int((window.end - window.start).total_seconds() // 60)
    return [Row(window.start + timedelta(minutes=n, seconds=10), pid, "heart_rate", bpm)
            for n in range(minutes)]


def adherence(env, pid, day, as_of="2026-12-01T00:00:00Z"):
    rows = query(env, "SELECT day_minutes, wear_minutes, wear_fraction, valid_day, first_sample,"
                      " last_sample FROM adherence_at(%s) WHERE participant_id = %s AND day = %s",
                 (as_of, pid, day))
    assert len(rows) == 1, rows
    return rows[0]


class DropsNonWear:
    """The synthetic heart stream with the heart-rate samples of a non-wear gap dropped, as a
    tracker off the wrist records none."""

    streams = ("heart",)

    def __init__(self, gap: Window) -> None:
        self.inner, self.gap = SyntheticSource(), gap

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, participant, stream, window, report):
        return (row for row in self.inner.read(participant, stream, window, report)
                if not (row.metric_type == "heart_rate" and row.timestamp in self.gap))


def test_a_five_hour_non_wear_gap_leaves_1440_minus_300_wear_minutes(db, env):
    berlin = ZoneInfo("Europe/Berlin")
    day = date(2026, 3, 10)
    participant = Participant("gap", "Europe/Berlin", SYNTHETIC, day, 5)
    enrol(env, "gap", "Europe/Berlin", day)
    gap = Window(datetime(2026, 3, 10, 9, tzinfo=berlin).astimezone(UTC),
                 datetime(2026, 3, 10, 14, tzinfo=berlin).astimezone(UTC))
    outcome = load_batch(db, participant, local_day(day, berlin), [], DropsNonWear(gap))
    assert outcome.status == "ok", outcome.error
    assert query(env, "SELECT count(*) FROM raw_data WHERE metric_type = 'heart_rate' "
                      "AND \"timestamp\" >= %s AND \"timestamp\" < %s", (gap.start, gap.end)
                 ) == [(0,)]
    day_minutes, wear, fraction, valid, first, last = adherence(env, "gap", day)
    assert (day_minutes, wear) == (1440, 1440 - 300)
    assert fraction == pytest.approx(1140 / 1440)
    assert valid  # the default threshold: 600 minutes
    assert first == utc("2026-03-09T23:00:00") and last == utc("2026-03-10T22:59:59")
    assert rollup_mismatches(env) == {}
    # The threshold is a setting: minutes, or a share of the day (70% is 1,008 minutes).
    for setting, expected in [("1140", True), ("1141", False), ("70%", True), ("80%", False),
                              ("600", True)]:
        ok(run_ingest({**env, "VALID_DAY_WEAR": setting}, "participant", "list"))
        assert adherence(env, "gap", day)[3] is expected, setting


@pytest.mark.parametrize("day, minutes", [(date(2026, 3, 8), 1380), (date(2026, 11, 1), 1500)])
def test_new_york_dst_days_have_their_real_minutes(db, env, day, minutes):
    participant = Participant("ny", "America/New_York", SYNTHETIC, day, 1)
    enrol(env, "ny", "America/New_York", day)
    window = local_day(day, NEW_YORK)
    assert load_batch(db, participant, window, every_minute("ny", window)).status == "ok"
    day_minutes, wear, fraction, valid, _first, _last = adherence(env, "ny", day)
    assert (day_minutes, wear, fraction, valid) == (minutes, minutes, 1.0, True)
    ok(run_ingest({**env, "VALID_DAY_WEAR": "70%"}, "participant", "list"))
    assert query(env, "SELECT valid_day_percent / 100 * day_minutes FROM adherence_at(%s), "
                      "adherence_settings WHERE day = %s", ("2026-12-01T00:00Z", day)
                 ) == [(pytest.approx(0.7 * minutes),)]


def flags(env, as_of):
    rows = query(env, "SELECT participant_id, no_upload, low_wear, needs_consent, "
                      "invalid_days_of_7, last_data, last_sync, days_since_sync, battery "
                      "FROM participant_flags_at(%s) ORDER BY 1", (as_of,))
    return {row[0]: row[1:] for row in rows}


def test_flags_appear_and_clear_as_data_arrives(db, env):
    london = ZoneInfo("Europe/London")
    start = date(2026, 3, 1)
    walker = Participant("walker", "Europe/London", SYNTHETIC, start, 1)
    google = Participant("g1", "Europe/London", GOOGLE_HEALTH, start)
    enrol(env, "walker", "Europe/London", start)
    enrol(env, "g1", "Europe/London", start, GOOGLE_HEALTH)
    query(env, "INSERT INTO google_credentials (participant_id, refresh_token) VALUES "
               "('g1', 'not-a-real-token')")
    first_days = Window(local_day(start, london).start, utc("2026-03-04T00:00:00"))
    load_batch(db, walker, first_days, every_minute("walker", first_days))
    load_batch(db, google, first_days, every_minute("g1", first_days))

    seen = flags(env, "2026-03-04T06:00:00Z")
    assert seen["walker"][:4] == (False, False, False, 0)
    assert seen["walker"][4] == utc("2026-03-03T23:59:10")

    # Three days later with nothing new: no upload for 48 h, and 3 of the last 7 days are
    # not valid (the days before the start date do not count).
    as_of = "2026-03-07T06:00:00Z"
    # The Google tracker last synced 3 days ago (google_devices, issue 9).
    query(env, "INSERT INTO google_devices (participant_id, device_id, device_type, "
               "last_sync_time, battery_level, seen_at) VALUES "
               "('g1', 'devices/1', 'TRACKER', %s, 35, %s)", ("2026-03-04T06:00Z", as_of))
    seen = flags(env, as_of)
    assert seen["walker"][:4] == (True, True, False, 3)
    assert seen["g1"][:4] == (True, True, False, 3)
    assert seen["g1"][5:] == (utc("2026-03-04T06:00:00"), 3.0, 35)
    assert seen["walker"][5:] == (None, None, None)  # synthetic: no tracker

    # The grant is revoked: needs consent, until the participant enrols again.
    query(env, "UPDATE google_credentials SET needs_consent_since = %s", (as_of,))
    assert flags(env, as_of)["g1"][2] is True
    query(env, "UPDATE google_credentials SET needs_consent_since = NULL")
    assert flags(env, as_of)["g1"][2] is False

    # The late days arrive (and the tracker syncs): every flag clears.
    late = Window(first_days.end, utc("2026-03-07T05:00:00"))
    load_batch(db, walker, late, every_minute("walker", late))
    load_batch(db, google, late, every_minute("g1", late))
    query(env, "UPDATE google_devices SET last_sync_time = '2026-03-07T05:00Z'")
    seen = flags(env, as_of)
    assert seen["walker"][:4] == seen["g1"][:4] == (False, False, False, 0)
    # The view is the same function at the clock's time: weeks later, both are flagged.
    assert query(env, "SELECT participant_id, no_upload FROM participant_flags ORDER BY 1") == [
        ("g1", True), ("walker", True)]


def test_report_csv_equals_the_view_and_the_png_has_a_row_per_participant(db, env, tmp_path):
    berlin = ZoneInfo("Europe/Berlin")
    cohort = {"a-full": 1.0, "b-half": 0.5, "c-none": 0.0}
    start = date(2026, 3, 2)
    for pid, share in cohort.items():
        enrol(env, pid, "Europe/Berlin", start)
        participant = Participant(pid, "Europe/Berlin", SYNTHETIC, start, 1)
        for n in range(7):
            if pid == "c-none" and n >= 2:
                break  # stops uploading after two days
            window = local_day(start + timedelta(days=n), berlin)
            rows = every_minute(pid, window)
            load_batch(db, participant, window, rows[: int(len(rows) * share) or 1])
    now = "2026-03-09T08:00:00Z"
    csv_file, png_file = tmp_path / "a.csv", tmp_path / "a.png"
    ok(run_ingest(env, "--now", now, "report", "--days", "7", "--format", "csv",
                  "--out", str(csv_file)))
    parsed = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    view = query(env, "SELECT participant_id, day, day_minutes, wear_minutes, wear_fraction, "
                      "valid_day, has_data FROM adherence_at(%s, '2026-03-02') "
                      "WHERE day < '2026-03-09' ORDER BY 1, 2", (now,))
    assert len(parsed) == len(view) == 3 * 7
    for line, row in zip(parsed, view, strict=True):
        assert (line["participant_id"], date.fromisoformat(line["day"]), int(line["day_minutes"]),
                int(line["wear_minutes"]), float(line["wear_fraction"]),
                line["valid_day"] == "True", line["has_data"] == "True") == row
    by_id = {(line["participant_id"], line["day"]): line for line in parsed}
    assert by_id[("b-half", "2026-03-03")]["wear_minutes"] == "720"
    assert by_id[("c-none", "2026-03-06")]["has_data"] == "False"
    assert by_id[("c-none", "2026-03-06")]["no_upload"] == "True"

    table = ok(run_ingest(env, "--now", now, "report", "--days", "7")).stdout
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["participant", "ingestion", "03-02"]
    assert lines[1].split()[:7] == ["a-full", "ok", "100%", "100%", "100%", "100%", "100%"]
    assert lines[2].split()[:4] == ["b-half", "ok", "50%", "50%"]  # 720 minutes: valid at 600
    assert lines[3].split()[:5] == ["c-none", "ok", "0%!", "0%!", "-"]
    assert lines[1].endswith("100%") and lines[2].endswith("50%")  # no flags
    assert "low wear on 7 of the last 7 days" in lines[3] and "no upload" in lines[3]

    ok(run_ingest(env, "--now", now, "report", "--days", "7", "--format", "png",
                  "--out", str(png_file)))
    from PIL import Image

    with Image.open(png_file) as image:
        assert image.format == "PNG"
        assert image.size == report.heatmap_size(3, 7)
    # One row per participant, one column per day, in the drawn figure.
    figure = report.heatmap(_grid_of(env, now), 48)
    wear = figure.axes[0].images[1].get_array()
    assert wear.shape == (3, 7)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "a-full", "b-half", "\u25b6 c-none"]


def _grid_of(env, now):
    import psycopg2
    from ingester import adherence

    connection = psycopg2.connect(host=env["DB_HOST"], port=env["DB_PORT"],
                                  dbname=env["DB_NAME"], user=env["DB_USER"])
    try:
        dates = report.report_dates(date(2026, 3, 9), 7)
        as_of = datetime.fromisoformat(now.replace("Z", "+00:00"))
        return report.grid(dates, adherence.days(connection, as_of, dates[0]),
                           adherence.flags(connection, as_of))
    finally:
        connection.close()


def test_png_to_a_terminal_is_refused_and_bad_days_exit_2(env):
    done = run_ingest(env, "report", "--days", "0")
    assert done.returncode == 2 and "expected a whole number of days 1-366" in done.stderr
    done = run_ingest({**env, "VALID_DAY_WEAR": "lots"}, "report")
    assert done.returncode == 2
    assert done.stderr.strip() == ("configuration error: VALID_DAY_WEAR must be wear minutes "
                                   "0-1500 or a percentage of the day like 70%, got 'lots'")
