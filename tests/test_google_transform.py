"""The Google Health source, pure: data points -> rows (sources/google_health/transform.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fake_google_health import (
    active_zone_minutes,
    daily_heart_rate_variability,
    daily_respiratory_rate,
    daily_resting_heart_rate,
    heart_rate,
    heart_rate_variability,
    oxygen_saturation,
    respiratory_rate_sleep_summary,
    steps,
)
from google_support import P1, T0
from ingester.errors import PayloadError
from ingester.metrics import METRICS
from ingester.model import GOOGLE_HEALTH, Participant, ReadReport, Row
from ingester.sources.google_health.transform import (
    DATA_TYPES,
    rows_from_page,
    rows_from_rollup_page,
)
from support import utc


def page_rows(data_type: str, *points: dict, participant: Participant = P1):
    report = ReadReport()
    rows, _token = rows_from_page(
        {"dataPoints": list(points)}, DATA_TYPES[data_type], participant, report
    )
    return rows, report


def test_every_stream_maps_to_a_metric_of_the_vocabulary():
    for data_type in DATA_TYPES.values():
        assert data_type.metric_type in METRICS, data_type.name
        for _zone, metric in data_type.zone_metrics:
            assert metric in METRICS, metric


@pytest.mark.parametrize(
    ("data_type", "point", "expected"),
    [
        (
            "heart-rate",
            heart_rate(utc("2026-03-02T10:00:05"), 72),
            [("heart_rate", "2026-03-02T10:00:05", 72.0)],
        ),
        (
            "oxygen-saturation",
            oxygen_saturation(utc("2026-03-02T03:00:00"), 96.5),
            [("spo2", "2026-03-02T03:00:00", 96.5)],
        ),
        (
            "heart-rate-variability",
            heart_rate_variability(utc("2026-03-02T03:05:00"), 41.25, sdnn=55.0),
            [("hrv_rmssd", "2026-03-02T03:05:00", 41.25)],
        ),
        (
            "active-zone-minutes",
            active_zone_minutes(utc("2026-03-02T18:00:00"), 2, "CARDIO"),
            [
                # The score counts a cardio minute 2; the zone metric holds 1 minute in it.
                ("active_zone_minutes", "2026-03-02T18:00:00", 2.0),
                ("cardio_active_zone_minutes", "2026-03-02T18:00:00", 1.0),
            ],
        ),
        (
            "active-zone-minutes",
            active_zone_minutes(utc("2026-03-02T18:02:00"), 2, "PEAK"),
            [
                ("active_zone_minutes", "2026-03-02T18:02:00", 2.0),
                ("peak_active_zone_minutes", "2026-03-02T18:02:00", 1.0),
            ],
        ),
        # proto3 JSON leaves out an int64 that is 0: a minute of no score is a 0, not garbage
        (
            "active-zone-minutes",
            active_zone_minutes(utc("2026-03-02T18:03:00"), 0, "FAT_BURN"),
            [
                ("active_zone_minutes", "2026-03-02T18:03:00", 0.0),
                ("fat_burn_active_zone_minutes", "2026-03-02T18:03:00", 0.0),
            ],
        ),
        (
            "daily-resting-heart-rate",
            daily_resting_heart_rate(date(2026, 3, 2), 54),
            [("resting_heart_rate", "2026-03-01T23:00:00", 54.0)],
        ),
        (
            "daily-heart-rate-variability",
            daily_heart_rate_variability(date(2026, 3, 2), 38.5),
            [("hrv_rmssd_daily", "2026-03-01T23:00:00", 38.5)],
        ),
        (
            "active-zone-minutes",
            active_zone_minutes(utc("2026-03-02T18:01:00"), 1, "FAT_BURN"),
            [
                ("active_zone_minutes", "2026-03-02T18:01:00", 1.0),
                ("fat_burn_active_zone_minutes", "2026-03-02T18:01:00", 1.0),
            ],
        ),
        (
            "respiratory-rate-sleep-summary",
            respiratory_rate_sleep_summary(utc("2026-03-02T06:30:00"), 14.5, deep=13.0),
            [("breathing_rate_sleep", "2026-03-02T06:30:00", 14.5)],
        ),
        # A daily type's civil date becomes local midnight in the participant's zone:
        # 2026-03-02 00:00 in Berlin (UTC+1) is 2026-03-01 23:00 UTC.
        (
            "daily-respiratory-rate",
            daily_respiratory_rate(date(2026, 3, 2), 15.2),
            [("breathing_rate", "2026-03-01T23:00:00", 15.2)],
        ),
    ],
)
def test_a_documented_point_becomes_rows(data_type, point, expected):
    rows, report = page_rows(data_type, point)
    assert rows == [Row(utc(at), "p1", metric, value) for metric, at, value in expected]
    assert report.rejected_total == 0


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc"),
    [
        ("Europe/Berlin", date(2026, 7, 1), "2026-06-30T22:00:00"),  # summer time, UTC+2
        ("America/New_York", date(2026, 3, 8), "2026-03-08T05:00:00"),  # the day DST starts
        ("America/New_York", date(2026, 3, 9), "2026-03-09T04:00:00"),
        ("Asia/Kolkata", date(2026, 1, 1), "2025-12-31T18:30:00"),
        ("UTC", date(2026, 1, 1), "2026-01-01T00:00:00"),
    ],
)
def test_a_daily_point_is_stamped_at_local_midnight(zone, day, expected_utc):
    participant = Participant("p1", zone, GOOGLE_HEALTH, date(2026, 1, 1))
    rows, _ = page_rows(
        "daily-respiratory-rate", daily_respiratory_rate(day, 15.0), participant=participant
    )
    assert [r.timestamp for r in rows] == [utc(expected_utc)]


@pytest.mark.parametrize(
    ("raw", "value"),
    [("97", 97.0), ("97.5", 97.5), (97, 97.0), (97.5, 97.5), ("9.75e1", 97.5)],
)
def test_numbers_are_read_from_json_numbers_and_strings(raw, value):
    point = oxygen_saturation(T0, 0)
    point["oxygenSaturation"]["percentage"] = raw
    rows, report = page_rows("oxygen-saturation", point)
    assert [r.value for r in rows] == [value] and report.rejected_total == 0


def test_nanoseconds_are_truncated_not_rounded():
    point = heart_rate(T0, 60)
    point["heartRate"]["sampleTime"]["physicalTime"] = "2026-03-02T10:00:59.999999999Z"
    rows, _ = page_rows("heart-rate", point)
    assert rows[0].timestamp == datetime(2026, 3, 2, 10, 0, 59, 999999, tzinfo=UTC)


def test_an_offset_timestamp_is_converted_to_utc():
    point = heart_rate(T0, 60)
    point["heartRate"]["sampleTime"]["physicalTime"] = "2026-03-02T11:00:00+01:00"
    rows, _ = page_rows("heart-rate", point)
    assert rows[0].timestamp == utc("2026-03-02T10:00:00") and rows[0].timestamp.tzinfo == UTC


def spoil(point: dict, *path: str, value: object = None, delete: bool = False) -> dict:
    target = point
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return point


@pytest.mark.parametrize(
    ("data_type", "point"),
    [
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value="seventy")),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value="nan")),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value="1_000")),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value=True)),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value=" 70")),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value="-5")),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value=[70])),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", delete=True)),
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "sampleTime", delete=True)),
        (
            "heart-rate",
            spoil(
                heart_rate(T0, 70),
                "heartRate",
                "sampleTime",
                "physicalTime",
                value="2026-03-02T10:00:00",
            ),
        ),
        (
            "heart-rate",
            spoil(heart_rate(T0, 70), "heartRate", "sampleTime", "physicalTime", value="yesterday"),
        ),
        (
            "heart-rate",
            spoil(heart_rate(T0, 70), "heartRate", "sampleTime", "physicalTime", value=1772409600),
        ),
        ("heart-rate", {"steps": steps(T0, 5)["steps"]}),  # the wrong type's member
        ("heart-rate", "not an object"),
        (
            "oxygen-saturation",
            spoil(oxygen_saturation(T0, 95), "oxygenSaturation", "percentage", value=101),
        ),
        (
            "oxygen-saturation",
            spoil(oxygen_saturation(T0, 95), "oxygenSaturation", "percentage", value=None),
        ),
        # Too large to convert (OverflowError before the fix): counted, not a failed slice.
        ("heart-rate", spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value=10**400)),
        (
            "heart-rate",
            spoil(heart_rate(T0, 70), "heartRate", "sampleTime", "physicalTime",
                  value="0001-01-01T00:30:00+05:00"),
        ),
        (
            "heart-rate",
            spoil(heart_rate(T0, 70), "heartRate", "sampleTime", "physicalTime",
                  value="9999-12-31T23:30:00-05:00"),
        ),
        (
            "daily-respiratory-rate",
            daily_respiratory_rate(date(1, 1, 1), 15.0),  # Berlin's midnight is in year 0
        ),
        (
            "respiratory-rate-sleep-summary",
            spoil(
                respiratory_rate_sleep_summary(T0, 14),
                "respiratoryRateSleepSummary",
                "fullSleepStats",
                delete=True,
            ),
        ),
        (
            "daily-respiratory-rate",
            spoil(
                daily_respiratory_rate(date(2026, 3, 2), 15),
                "dailyRespiratoryRate",
                "date",
                "day",
                value=0,
            ),
        ),
        (
            "daily-respiratory-rate",
            spoil(
                daily_respiratory_rate(date(2026, 3, 2), 15),
                "dailyRespiratoryRate",
                "date",
                "month",
                value=13,
            ),
        ),
        (
            "daily-respiratory-rate",
            spoil(
                daily_respiratory_rate(date(2026, 3, 2), 15),
                "dailyRespiratoryRate",
                "date",
                value="2026-03-02",
            ),
        ),
    ],
)
def test_an_unreadable_point_is_counted_and_skipped(data_type, point):
    good = {
        "heart-rate": heart_rate(T0, 61),
        "oxygen-saturation": oxygen_saturation(T0, 97.0),
        "respiratory-rate-sleep-summary": respiratory_rate_sleep_summary(T0, 14.0),
        "daily-respiratory-rate": daily_respiratory_rate(date(2026, 3, 3), 15.0),
    }[data_type]
    rows, report = page_rows(data_type, point, good)
    assert len(rows) == 1  # the good point survives its bad neighbour
    assert report.rejected_total == 1
    assert all(reason.startswith(f"{data_type}: ") for reason in report.rejected)


def test_rejection_reasons_are_a_fixed_set_whatever_the_bad_values():
    # The report counts reasons over a whole window: a key per distinct bad value would
    # grow without bound (and end up in the log).
    def at(second: int) -> datetime:
        return T0 + timedelta(seconds=second)

    points = [
        spoil(heart_rate(at(i), 70), "heartRate", "beatsPerMinute", value=f"bpm-{i}")
        for i in range(40)
    ]
    points += [heart_rate(at(100 + i), 301 + i) for i in range(40)]
    points += [
        spoil(heart_rate(at(200 + i), 70), "heartRate", "sampleTime", "physicalTime", value=f"t{i}")
        for i in range(40)
    ]
    points += [{"heartRate": {"beatsPerMinute": "70", "x": i}} for i in range(40)]
    report = ReadReport()
    rows, _ = rows_from_page({"dataPoints": points}, DATA_TYPES["heart-rate"], P1, report)
    assert rows == []
    assert report.rejected == {
        "heart-rate: beatsPerMinute not a number": 40,
        "heart-rate: beatsPerMinute out of range": 40,
        "heart-rate: sampleTime.physicalTime not an RFC 3339 time": 40,
        "heart-rate: sampleTime.physicalTime missing": 40,
    }


def test_an_example_of_each_reason_is_kept_per_page_on_request():
    points = [
        spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value="x" * 500),
        spoil(heart_rate(T0, 70), "heartRate", "beatsPerMinute", value="seventy"),
        heart_rate(T0, 999),
        heart_rate(T0, 0),
    ]
    examples: dict[str, str] = {}
    rows_from_page({"dataPoints": points}, DATA_TYPES["heart-rate"], P1, ReadReport(), examples)
    assert examples == {  # the first of each, cut short
        "heart-rate: beatsPerMinute not a number": "'" + "x" * 39,
        "heart-rate: beatsPerMinute out of range": "999",
    }


def test_hrv_with_sdnn_only_is_no_row_and_no_rejection():
    rows, report = page_rows("heart-rate-variability", heart_rate_variability(T0, None, sdnn=50.0))
    assert rows == [] and report.rejected_total == 0


@pytest.mark.parametrize(
    "page",
    [[], "dataPoints", None, {"dataPoints": {}}, {"dataPoints": "x"}, {"nextPageToken": 3}],
)
def test_a_page_of_the_wrong_shape_is_a_payload_error(page):
    with pytest.raises(PayloadError):
        rows_from_page(page, DATA_TYPES["heart-rate"], P1, ReadReport())


def test_an_empty_page_is_no_rows_and_the_last_page():
    # proto3 JSON leaves out an empty dataPoints list and an empty nextPageToken
    assert rows_from_page({}, DATA_TYPES["steps"], P1, ReadReport()) == ([], None)
    assert rows_from_page({"nextPageToken": ""}, DATA_TYPES["steps"], P1, ReadReport()) == (
        [],
        None,
    )


def test_a_date_whose_parts_are_strings_is_read():
    point = daily_respiratory_rate(date(2026, 3, 2), 15.0)
    point["dailyRespiratoryRate"]["date"] = {"year": "2026", "month": "3", "day": "02"}
    rows, report = page_rows("daily-respiratory-rate", point)
    assert [r.timestamp for r in rows] == [utc("2026-03-01T23:00:00")] and not report.rejected


# --- roll-ups ---------------------------------------------------------------------------


def rollup_rows(data_type: str, *points: object):
    report = ReadReport()
    rows, token = rows_from_rollup_page(
        {"rollupDataPoints": list(points)}, DATA_TYPES[data_type], P1, report
    )
    return rows, report


def window_of(start: str, member: str, sums: dict) -> dict:
    begin = utc(start)
    return {"startTime": start + "Z", "endTime": (begin + timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"), member: sums}


@pytest.mark.parametrize(
    ("data_type", "point", "expected"),
    [
        ("steps", window_of("2026-03-02T10:01:00", "steps", {"countSum": "31"}),
         [("steps", 31.0)]),
        # Distance comes in millimetres and is stored in metres.
        ("distance", window_of("2026-03-02T10:01:00", "distance", {"millimetersSum": 41500}),
         [("distance", 41.5)]),
        ("total-calories", window_of("2026-03-02T10:01:00", "totalCalories", {"kcalSum": 1.25}),
         [("calories", 1.25)]),
        ("floors", window_of("2026-03-02T10:01:00", "floors", {"countSum": "2"}),
         [("floors", 2.0)]),
        # proto3 JSON leaves out a sum of 0: the minute has data, and it is 0.
        ("steps", window_of("2026-03-02T10:01:00", "steps", {}), [("steps", 0.0)]),
        # A window without the member has no data: nothing is stored.
        ("steps", {"startTime": "2026-03-02T10:01:00Z", "endTime": "2026-03-02T10:02:00Z"},
         []),
    ],
)
def test_a_rollup_window_becomes_a_row_per_minute(data_type, point, expected):
    rows, report = rollup_rows(data_type, point)
    assert [(r.metric_type, r.value) for r in rows] == expected
    assert all(r.timestamp == utc("2026-03-02T10:01:00") for r in rows)
    assert not report.rejected


@pytest.mark.parametrize(
    "bad",
    [
        window_of("2026-03-02T10:01:00", "steps", {"countSum": "-1"}),
        window_of("2026-03-02T10:01:00", "steps", {"countSum": 10**400}),
        window_of("2026-03-02T10:01:00", "steps", "twelve"),
        {"steps": {"countSum": "3"}},  # no startTime
        {"startTime": "0001-01-01T00:00:00+01:00", "steps": {"countSum": "3"}},
        "not an object",
    ],
)
def test_an_unreadable_rollup_window_is_counted_and_skipped(bad):
    good = window_of("2026-03-02T10:02:00", "steps", {"countSum": "12"})
    rows, report = rollup_rows("steps", bad, good)
    assert [r.value for r in rows] == [12.0]
    assert report.rejected_total == 1


def test_a_rollup_page_that_is_not_one_fails_its_slice():
    for page in ([], {"rollupDataPoints": {}}, {"nextPageToken": 5}):
        with pytest.raises(PayloadError):
            rows_from_rollup_page(page, DATA_TYPES["steps"], P1, ReadReport())


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "UTC", "Asia/Tokyo"])
def test_daily_resting_heart_rate_and_hrv_are_stamped_at_local_midnight(zone):
    who = Participant("p1", zone, GOOGLE_HEALTH, date(2026, 3, 1))
    midnight = datetime(2026, 3, 2, tzinfo=who.zone).astimezone(UTC)
    rhr, _ = page_rows("daily-resting-heart-rate",
                       daily_resting_heart_rate(date(2026, 3, 2), 57), participant=who)
    hrv, _ = page_rows("daily-heart-rate-variability",
                       daily_heart_rate_variability(date(2026, 3, 2), 41.75), participant=who)
    assert rhr + hrv == [Row(midnight, "p1", "resting_heart_rate", 57.0),
                         Row(midnight, "p1", "hrv_rmssd_daily", 41.75)]
