"""The Google Health source, in three tiers.

1. Pure: data points -> rows, filters, civil days, the rate limiter (plain data).
2. Against the fake API on 127.0.0.1 (tests/fake_google_health.py): pagination, the filter
   the server receives, retries, timeouts, token refresh and rotation, invalid_grant.
3. Against the real TimescaleDB: the token store (rotation survives a rolled-back data
   transaction, the refresh lock, needs-consent) and the command end to end.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import tracemalloc
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from fake_google_health import (
    FakeGoogleHealth,
    active_zone_minutes,
    daily_respiratory_rate,
    heart_rate,
    heart_rate_variability,
    oxygen_saturation,
    paired_device,
    respiratory_rate_sleep_summary,
    steps,
)
from ingester import credentials, http, state
from ingester import devices as devices_module
from ingester.config import Settings
from ingester.errors import (
    ConfigError,
    NeedsConsent,
    PayloadError,
    ScopeNotGranted,
    SourceUnavailable,
)
from ingester.metrics import METRICS
from ingester.model import GOOGLE_HEALTH, DeliveryBound, Participant, ReadReport, Row, Window
from ingester.oauth import EXPIRY_MARGIN, GoogleOAuth
from ingester.sources import google_health as google_health_source
from ingester.sources.google_health import GoogleHealthSource, civil_days, list_filter
from ingester.transform.google_health import ACTIVITY, DATA_TYPES, SETTINGS, rows_from_page
from support import ingest_env, query, rollup_mismatches, run_ingest
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.util.retry import RequestHistory

BERLIN = ZoneInfo("Europe/Berlin")
P1 = Participant("p1", "Europe/Berlin", GOOGLE_HEALTH, date(2026, 3, 1))
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def page_rows(data_type: str, *points: dict, participant: Participant = P1):
    report = ReadReport()
    rows, _token = rows_from_page(
        {"dataPoints": list(points)}, DATA_TYPES[data_type], participant, report
    )
    return rows, report


# --- 1. pure ------------------------------------------------------------------------------


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
        ("steps", steps(utc("2026-03-02T10:01:00"), 31), [("steps", "2026-03-02T10:01:00", 31.0)]),
        # proto3 JSON leaves out an int64 that is 0: a minute without steps is a 0, not garbage
        ("steps", steps(utc("2026-03-02T10:02:00"), 0), [("steps", "2026-03-02T10:02:00", 0.0)]),
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
                ("active_zone_minutes", "2026-03-02T18:00:00", 2.0),
                ("cardio_active_zone_minutes", "2026-03-02T18:00:00", 2.0),
            ],
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
        ("steps", spoil(steps(T0, 5), "steps", "count", value="-1")),
        ("steps", spoil(steps(T0, 5), "steps", "interval", delete=True)),
        ("steps", spoil(steps(T0, 0), "steps", "count", value=None)),  # null is not "left out"
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
        "steps": steps(T0, 12),
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


@pytest.mark.parametrize(
    ("data_type", "start", "end", "expected"),
    [
        (
            "heart-rate",
            "2026-03-02T00:00:00",
            "2026-03-03T00:00:00",
            (
                'heart_rate.sample_time.physical_time >= "2026-03-02T00:00:00Z" AND '
                'heart_rate.sample_time.physical_time < "2026-03-03T00:00:00Z"'
            ),
        ),
        (
            "steps",
            "2026-03-02T00:00:00.250000",  # whole seconds, widened outwards
            "2026-03-02T12:30:15.000001",
            (
                'steps.interval.start_time >= "2026-03-02T00:00:00Z" AND '
                'steps.interval.start_time < "2026-03-02T12:30:16Z"'
            ),
        ),
        (
            "respiratory-rate-sleep-summary",
            "2026-03-02T00:00:00",
            "2026-03-02T06:00:00",
            (
                "respiratory_rate_sleep_summary.sample_time.physical_time"
                ' >= "2026-03-02T00:00:00Z" AND '
                "respiratory_rate_sleep_summary.sample_time.physical_time"
                ' < "2026-03-02T06:00:00Z"'
            ),
        ),
        (
            "daily-respiratory-rate",  # Berlin midnights in the window: 3rd and 4th March
            "2026-03-02T23:00:00",
            "2026-03-04T22:30:00",
            'daily_respiratory_rate.date >= "2026-03-03" AND '
            'daily_respiratory_rate.date < "2026-03-05"',
        ),
    ],
)
def test_the_list_filter_has_the_documented_form(data_type, start, end, expected):
    window = Window(utc(start), utc(end))
    assert list_filter(DATA_TYPES[data_type], window, BERLIN) == expected


@pytest.mark.parametrize(
    ("start", "end", "first", "stop"),
    [
        ("2026-03-01T23:00:00", "2026-03-02T23:00:00", date(2026, 3, 2), date(2026, 3, 3)),
        ("2026-03-01T23:00:01", "2026-03-02T23:00:01", date(2026, 3, 3), date(2026, 3, 4)),
        ("2026-03-02T08:00:00", "2026-03-02T20:00:00", date(2026, 3, 3), date(2026, 3, 3)),
        # Berlin's spring DST change: 29 March starts at 23:00 UTC, 30 March at 22:00 UTC
        ("2026-03-28T23:00:00", "2026-03-29T22:00:00", date(2026, 3, 29), date(2026, 3, 30)),
    ],
)
def test_civil_days_are_the_dates_whose_local_midnight_is_in_the_window(start, end, first, stop):
    assert civil_days(Window(utc(start), utc(end)), BERLIN) == (first, stop)


def test_no_filter_and_no_request_when_no_day_starts_in_the_window():
    window = Window(utc("2026-03-02T08:00:00"), utc("2026-03-02T20:00:00"))
    assert list_filter(DATA_TYPES["daily-respiratory-rate"], window, BERLIN) is None
    assert list_filter(DATA_TYPES["heart-rate"], Window(T0, T0), BERLIN) is None


def test_the_rate_limiter_keeps_to_its_limit_in_any_sliding_period():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = http.RateLimiter(limit=3, period=60.0, clock=lambda: now[0], sleep=sleep)
    times = []
    for _ in range(7):
        limiter.acquire()
        times.append(now[0])
        now[0] += 1.0
    assert times == [0.0, 1.0, 2.0, 60.0, 61.0, 62.0, 120.0]
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 60.0


def test_the_documented_limit_is_respected_with_room_for_retries():
    assert http.REQUESTS_PER_MINUTE < 300


# --- 2. against the fake API --------------------------------------------------------------


class MemoryStore:
    """A token store in memory: changes made under lock() count only on a clean exit."""

    def __init__(self, refresh_token: str) -> None:
        self.refresh_token = refresh_token
        self.needs_consent_since: datetime | None = None
        self.commits = 0
        self.missing_scopes: set[str] = set()
        self.devices: list = []

    def record_missing_scope(self, participant_id: str, scope: str) -> None:
        self.missing_scopes.add(scope)

    def save_devices(self, participant_id: str, devices: list, seen_at: datetime) -> None:
        self.devices = list(devices)

    @contextmanager
    def lock(self, participant_id: str):
        grant = MemoryGrant(participant_id, self.refresh_token, self.needs_consent_since)
        yield grant
        self.refresh_token, self.needs_consent_since = (
            grant.refresh_token,
            grant.needs_consent_since,
        )
        self.commits += 1


@dataclass
class MemoryGrant:
    participant_id: str
    refresh_token: str
    needs_consent_since: datetime | None

    def rotate(self, refresh_token: str) -> bool:
        self.refresh_token = refresh_token
        return True

    def mark_needs_consent(self) -> bool:
        self.needs_consent_since = datetime.now(UTC)
        return True


@pytest.fixture
def fake():
    with FakeGoogleHealth() as server:
        yield server


@pytest.fixture
def fast_retries(monkeypatch):
    """Two retries, 10 ms apart: the transport's behaviour without its production waits."""
    monkeypatch.setattr(http, "RETRIES", 2)
    monkeypatch.setattr(http, "BACKOFF_FACTOR", 0.01)


def settings_for(fake: FakeGoogleHealth, timeout: float = 2.0, **db: object) -> Settings:
    return Settings(
        google_health_url=fake.url,
        google_token_url=fake.token_url,
        google_client_id=fake.client_id,
        google_client_secret=fake.client_secret,
        http_timeout=timeout,
        **db,
    )


def read(source, stream: str, window: Window, participant: Participant = P1):
    report = ReadReport()
    rows = list(source.read(participant, stream, window, report))
    return rows, report


def heart_rate_every(seconds: int, start: datetime, end: datetime) -> list[dict]:
    points, at, bpm = [], start, 60
    while at < end:
        points.append(heart_rate(at, bpm))
        at += timedelta(seconds=seconds)
        bpm = 60 + (bpm - 59) % 40
    return points


def test_pagination_is_followed_to_the_end_with_the_maximum_page_size(fake):
    fake.max_page_size = 100
    fake.add("heart-rate", heart_rate_every(10, T0, T0 + timedelta(hours=2)))
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0 + timedelta(minutes=30), T0 + timedelta(minutes=90))
    rows, report = read(source, "heart-rate", window)
    assert len(rows) == 360 and report.rejected_total == 0
    assert {r.timestamp for r in rows} == {
        window.start + timedelta(seconds=10 * i) for i in range(360)
    }
    assert rows[0].timestamp > rows[-1].timestamp  # newest first, as the API documents
    requests_seen = fake.api_requests("heart-rate")
    assert len(requests_seen) == 4
    assert {s.query["pageSize"] for s in requests_seen} == {"10000"}
    assert "pageToken" not in requests_seen[0].query
    assert all("pageToken" in s.query for s in requests_seen[1:])
    assert {s.query["filter"] for s in requests_seen} == {
        (
            'heart_rate.sample_time.physical_time >= "2026-03-02T00:30:00Z" AND '
            'heart_rate.sample_time.physical_time < "2026-03-02T01:30:00Z"'
        )
    }


def test_every_stream_is_read_with_a_filter_the_server_accepts(fake):
    fake.add("heart-rate", [heart_rate(T0 + timedelta(hours=1), 70)])
    fake.add(
        "steps", [steps(T0 + timedelta(hours=1), 40), steps(T0 + timedelta(hours=1, minutes=1), 0)]
    )
    fake.add("oxygen-saturation", [oxygen_saturation(T0 + timedelta(hours=3), 95.0)])
    fake.add("heart-rate-variability", [heart_rate_variability(T0 + timedelta(hours=3), 38.0)])
    fake.add("active-zone-minutes", [active_zone_minutes(T0 + timedelta(hours=18), 2, "PEAK")])
    fake.add(
        "respiratory-rate-sleep-summary",
        [respiratory_rate_sleep_summary(T0 + timedelta(hours=6), 14.0)],
    )
    fake.add("daily-respiratory-rate", [daily_respiratory_rate(date(2026, 3, 2), 15.0)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(utc("2026-03-01T23:00:00"), utc("2026-03-02T23:00:00"))  # Berlin's 2 March
    metrics = []
    for stream in source.streams:
        rows, report = read(source, stream, window)
        assert report.rejected_total == 0, stream
        metrics += [r.metric_type for r in rows]
    assert sorted(metrics) == sorted(
        [
            "heart_rate",
            "steps",
            "steps",
            "spo2",
            "hrv_rmssd",
            "active_zone_minutes",
            "peak_active_zone_minutes",
            "breathing_rate_sleep",
            "breathing_rate",
        ]
    )
    assert len(fake.token_requests()) == 1  # one access token serves every stream


def test_points_outside_the_window_are_not_yielded(fake):
    fake.add(
        "heart-rate", heart_rate_every(1, T0 - timedelta(seconds=3), T0 + timedelta(seconds=5))
    )
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0 + timedelta(microseconds=500_000), T0 + timedelta(seconds=2, microseconds=1))
    rows, report = read(source, "heart-rate", window)
    assert sorted(r.timestamp for r in rows) == [
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    ]
    assert report.rejected_total == 0


def test_two_data_sources_at_the_same_instant_keep_one_row(fake):
    fake.add(
        "heart-rate",
        [heart_rate(T0, 70), heart_rate(T0, 71), heart_rate(T0 + timedelta(seconds=1), 72)],
    )
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, report = read(source, "heart-rate", Window(T0, T0 + timedelta(minutes=1)))
    assert len(rows) == 2 and len({r.timestamp for r in rows}) == 2
    assert report.rejected_total == 1


def test_each_reason_is_logged_once_per_page_with_an_example(fake, caplog):
    fake.max_page_size = 3  # two pages
    fake.add(
        "heart-rate",
        [heart_rate(T0 + timedelta(seconds=i), 301 + i) for i in range(5)]
        + [heart_rate(T0 + timedelta(seconds=10), 70)],
    )
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with caplog.at_level(logging.DEBUG, logger=google_health_source.__name__):
        rows, report = read(source, "heart-rate", Window(T0, T0 + timedelta(minutes=1)))
    assert len(rows) == 1
    assert report.rejected == {"heart-rate: beatsPerMinute out of range": 5}
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    # newest first: page 1 holds 70, 305, 304; page 2 holds 303, 302, 301
    assert lines == [
        "p1: rejected heart-rate: beatsPerMinute out of range, e.g. 305",
        "p1: rejected heart-rate: beatsPerMinute out of range, e.g. 303",
    ]


def scripted_pages(monkeypatch, tokens: Iterable[str | None]) -> None:
    """The source's transport answers pages with these next-page tokens, in turn."""
    replies = iter(tokens)

    def send(session, method, url, **kwargs):
        token = next(replies)
        return {"nextPageToken": token} if token else {}

    monkeypatch.setattr(google_health_source, "send", send)
    monkeypatch.setattr(google_health_source, "classify", lambda page: page)


def test_a_repeated_page_token_is_a_payload_error(monkeypatch):
    scripted_pages(monkeypatch, ["a", "b", "c", "b", "d", None])
    source = GoogleHealthSource(settings_for_no_server(), MemoryStore("1//x"))
    with pytest.raises(PayloadError, match="repeated a page token"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))


def test_memory_for_page_tokens_stays_flat_however_many_pages(monkeypatch):
    pages, size = 300, 64 * 1024
    # Each token is made when its page is served, so that only what the source keeps of
    # them is counted.
    tokens = (f"{i:06d}".ljust(size, "x") if i < pages - 1 else None for i in range(pages))
    scripted_pages(monkeypatch, tokens)
    source = GoogleHealthSource(settings_for_no_server(), MemoryStore("1//x"))
    tracemalloc.start()
    try:
        rows, _ = read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == []
    assert peak < 50 * size  # keeping every token would hold 300 of them (~19 MB)


def settings_for_no_server() -> Settings:
    return Settings(google_client_id="id", google_client_secret="secret")


HORIZON = timedelta(days=7)


def test_without_the_settings_scope_the_horizon_bounds_the_watermarks(fake):
    store = MemoryStore(fake.refresh_token)  # the fake's grant lacks settings.readonly
    source = GoogleHealthSource(settings_for(fake), store)
    assert source.delivered_until(P1, T0) == DeliveryBound(T0 - HORIZON, "horizon")
    assert store.missing_scopes == {SETTINGS}
    assert len(fake.device_requests()) == 1


def test_the_tracker_in_use_bounds_the_watermarks(fake):
    fake.granted_scopes.add(SETTINGS)
    fake.devices = [
        paired_device("old", last_sync=T0 - timedelta(days=40)),  # retired, still paired
        paired_device("scale", "SCALE", last_sync=T0 - timedelta(hours=1)),  # never bounds
        paired_device("new", last_sync=T0 - timedelta(hours=5), battery_level=42),
    ] + [paired_device(f"spare{i}", "TRACKER") for i in range(5)]  # 2 pages, no sync time
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    bound = source.delivered_until(P1, T0)
    assert bound == DeliveryBound(T0 - timedelta(hours=5), "device sync")
    assert store.missing_scopes == set()
    assert {d.device_id: d.battery_level for d in store.devices}["users/me/pairedDevices/new"] == 42
    assert len(store.devices) == 8 and len(fake.device_requests()) == 1  # pageSize 100


@pytest.mark.parametrize(
    ("syncs", "expected"),
    [
        ([], ("horizon", T0 - HORIZON)),  # no device, or no sync time: the horizon
        ([("SCALE", T0 - timedelta(hours=1))], ("horizon", T0 - HORIZON)),
        ([("TRACKER", T0 - timedelta(days=8))], ("horizon", T0 - HORIZON)),  # retired
        ([("TRACKER", T0 - timedelta(days=2))], ("device sync", T0 - timedelta(days=2))),
        (  # two trackers in use: each has delivered only up to its own sync
            [("TRACKER", T0 - timedelta(days=2)), ("TRACKER", T0 - timedelta(days=1))],
            ("device sync", T0 - timedelta(days=2)),
        ),
        (  # a tracker silent for longer than the horizon is retired
            [("TRACKER", T0 - timedelta(days=9)), ("TRACKER", T0 - timedelta(days=1))],
            ("device sync", T0 - timedelta(days=1)),
        ),
        ([("TRACKER", T0 + timedelta(days=1))], ("device sync", T0)),  # never after now
    ],
)
def test_which_device_bounds_the_data(syncs, expected):
    devices = [
        devices_module.PairedDevice(f"d{i}", kind, at, None, None, None)
        for i, (kind, at) in enumerate(syncs)
    ]
    bound = devices_module.delivery_bound(devices, T0, HORIZON)
    assert (bound.rule, bound.until) == expected


def test_a_device_list_that_fails_takes_the_horizon(fake, fast_retries):
    fake.granted_scopes.add(SETTINGS)
    fake.fail("devices", status=503, times=10)
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    assert source.delivered_until(P1, T0) == DeliveryBound(T0 - HORIZON, "horizon")
    assert store.missing_scopes == set()  # an outage is not a missing scope


def test_without_a_device_sync_the_watermark_stays_a_horizon_behind_now(fake):
    # A Fitbit that syncs days late puts points before the start of later windows: the
    # watermark may not pass now - LATE_SYNC_HORIZON_DAYS, so every run re-reads that much.
    now = utc("2026-03-10T00:00:00")
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    assert source.delivered_until(P1, now) == DeliveryBound(now - timedelta(days=7), "horizon")
    longer = dataclasses.replace(settings_for(fake), late_sync_horizon=timedelta(days=14))
    bound = GoogleHealthSource(longer, MemoryStore(fake.refresh_token)).delivered_until(P1, now)
    assert bound.until == now - timedelta(days=14)


def test_an_empty_day_is_no_rows_and_no_error(fake):
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, report = read(source, "steps", Window(T0, T0 + timedelta(days=1)))
    assert rows == [] and report.rejected_total == 0
    assert len(fake.api_requests("steps")) == 1


def test_numbers_written_as_strings_are_read(fake):
    fake.numbers_as_strings = True
    fake.add("oxygen-saturation", [oxygen_saturation(T0, 97.25)])
    fake.add("daily-respiratory-rate", [daily_respiratory_rate(date(2026, 3, 2), 15.5)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert [r.value for r in read(source, "oxygen-saturation", window)[0]] == [97.25]
    assert [r.value for r in read(source, "daily-respiratory-rate", window)[0]] == [15.5]


@pytest.mark.slow
def test_429_waits_for_retry_after_then_succeeds(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", status=429, retry_after="1")
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    began = time.monotonic()
    rows, _ = read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1
    requests_seen = fake.api_requests()
    assert len(requests_seen) == 2
    assert requests_seen[1].at - requests_seen[0].at >= 1.0
    assert time.monotonic() - began >= 1.0


def test_a_retry_after_is_never_cut_short():
    policy = http.retry_policy(1, 0.0)
    assert policy.parse_retry_after("3600") == 3600.0
    assert policy.parse_retry_after("2") == 2.0


def test_a_retry_after_longer_than_the_run_waits_fails_without_an_early_retry(fake):
    # The old code cut a Retry-After over 60 s to 60 s and asked again after a minute.
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", status=429, retry_after="61")
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(http.RetryAfterTooLong, match="Retry-After 61 s.*HTTP_MAX_RETRY_AFTER"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 1


@pytest.mark.slow
def test_a_retry_after_within_the_configured_maximum_is_waited_out_in_full(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", status=503, retry_after="2")
    settings = dataclasses.replace(settings_for(fake), http_max_retry_after=3.0)
    rows, _ = read(GoogleHealthSource(settings, MemoryStore(fake.refresh_token)), "heart-rate",
                   Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1
    first, second = fake.api_requests()
    assert second.at - first.at >= 2.0  # as the server saw them: never before Retry-After
    fake.fail("api", status=503, retry_after="4")  # over the configured 3 s: not retried
    with pytest.raises(http.RetryAfterTooLong):
        read(GoogleHealthSource(settings, MemoryStore(fake.refresh_token)), "heart-rate",
             Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 3


@pytest.mark.parametrize(("retry", "low", "high"), [(1, 1.0, 2.0), (2, 2.0, 3.0), (4, 8.0, 9.0)])
def test_backoff_doubles_with_jitter_and_never_retries_at_once(retry, low, high):
    policy = http.retry_policy(5, 1.0)
    history = tuple(RequestHistory("GET", "/", None, 503, None) for _ in range(retry))
    waits = {policy.new(history=history).get_backoff_time() for _ in range(50)}
    assert all(low <= wait <= high for wait in waits) and len(waits) > 1
    assert policy.get_backoff_time() == 0.0  # before any failure


@pytest.mark.parametrize(
    ("method", "status", "retried"),
    [
        ("GET", 429, True),
        ("GET", 500, True),
        ("GET", 503, True),
        ("GET", 504, True),
        ("GET", 400, False),
        # The token POST: only statuses that say Google did not act on the request.
        ("POST", 429, True),
        ("POST", 503, True),
        ("POST", 500, False),
        ("POST", 502, False),
        ("POST", 504, False),
        ("POST", 400, False),
    ],
)
def test_which_statuses_are_retried(method, status, retried):
    assert http.retry_policy(5, 1.0).is_retry(method, status) is retried


def test_a_token_post_is_retried_after_a_failed_connect_but_never_after_a_read_error():
    policy = http.retry_policy(5, 1.0)
    refused = NewConnectionError(None, "connection refused")
    assert policy.increment("POST", "/token", error=refused).connect == 4
    timeout = ReadTimeoutError(None, "/token", "read timed out")
    assert policy.increment("GET", "/v4/x", error=timeout).read == 4
    with pytest.raises(ReadTimeoutError):  # Google may have acted on it: no second POST
        policy.increment("POST", "/token", error=timeout)


def test_google_settings_missing_is_a_config_error():
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_ID"):
        GoogleHealthSource(Settings(), MemoryStore("1//x"))


def test_a_request_google_rejects_is_not_retried(fake, fast_retries):
    fake.fail("api", status=400)
    with pytest.raises(http.RequestRejected, match="400 INVALID_ARGUMENT"):
        read(
            GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token)),
            "steps",
            Window(T0, T0 + timedelta(hours=1)),
        )
    assert len(fake.api_requests()) == 1


def test_500_then_success(fake, fast_retries):
    fake.add("steps", [steps(T0, 10)])
    fake.fail("api", status=500)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, _ = read(source, "steps", Window(T0, T0 + timedelta(hours=1)))
    assert [r.value for r in rows] == [10.0]
    assert len(fake.api_requests()) == 2


def test_5xx_that_persists_is_source_unavailable(fake, fast_retries):
    fake.fail("api", status=503, times=10)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(SourceUnavailable, match="503"):
        read(source, "steps", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 3  # the request and its two retries


@pytest.mark.slow
def test_a_slow_reply_is_retried_after_the_timeout(fake, fast_retries):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", delay=3.0)
    source = GoogleHealthSource(settings_for(fake, timeout=0.3), MemoryStore(fake.refresh_token))
    rows, _ = read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1 and len(fake.api_requests()) == 2


@pytest.mark.slow
def test_timeouts_that_persist_are_source_unavailable(fake, fast_retries):
    fake.fail("api", delay=3.0, times=10)
    source = GoogleHealthSource(settings_for(fake, timeout=0.2), MemoryStore(fake.refresh_token))
    began = time.monotonic()
    with pytest.raises(SourceUnavailable, match="timed out"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 3
    assert time.monotonic() - began < 3.0  # bounded by the timeouts, not the server


def test_malformed_json_is_a_payload_error(fake):
    fake.fail("api", raw_body=b'{"dataPoints": [{"heartRate": ')
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(PayloadError, match="not JSON"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))


def test_a_page_that_is_not_the_documented_shape_is_a_payload_error(fake):
    fake.fail("api", raw_body=b'{"dataPoints": {"heartRate": {}}}')
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(PayloadError, match="array"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))


def test_401_refreshes_once_and_repeats_the_request(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0, T0 + timedelta(hours=1))
    read(source, "heart-rate", window)
    fake.expire_access_tokens()  # e.g. revoked server-side before its stated expiry
    rows, _ = read(source, "heart-rate", window)
    assert len(rows) == 1
    assert len(fake.token_requests()) == 2
    statuses = [s.authorization for s in fake.api_requests()]
    assert len(statuses) == 3 and statuses[1] != statuses[2]  # the repeat has the new token


def test_an_access_token_is_refreshed_lazily_before_it_expires(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    now = [1_000_000.0]
    session = http.build_session(2.0, fake.url)
    auth = GoogleOAuth(
        "p1",
        MemoryStore(fake.refresh_token),
        session,
        fake.token_url,
        fake.client_id,
        fake.client_secret,
        clock=lambda: now[0],
    )
    url = f"{fake.url}/v4/users/me/dataTypes/heart-rate/dataPoints"
    for _ in range(3):
        assert session.get(url, auth=auth).status_code == 200
    assert len(fake.token_requests()) == 1
    now[0] += fake.access_token_lifetime - EXPIRY_MARGIN  # just inside the margin
    assert session.get(url, auth=auth).status_code == 200
    assert len(fake.token_requests()) == 2


def test_a_rotated_refresh_token_is_stored_before_the_new_access_token_is_used(fake):
    fake.rotate_refresh_token = True
    fake.add("heart-rate", [heart_rate(T0, 70)])
    store = MemoryStore(fake.refresh_token)
    stored_when_used = []
    fake.on_api_request = lambda seen: stored_when_used.append((store.refresh_token, store.commits))
    source = GoogleHealthSource(settings_for(fake), store)
    read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert fake.refresh_tokens == {store.refresh_token} != {"1//test-refresh-token-0"}
    assert stored_when_used == [(store.refresh_token, 1)]


def test_invalid_grant_marks_needs_consent_and_stops_asking(fake):
    fake.revoke_grant()
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    with pytest.raises(NeedsConsent, match="invalid_grant"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert store.needs_consent_since is not None
    assert fake.api_requests() == []
    other = GoogleHealthSource(settings_for(fake), store)  # the next run
    with pytest.raises(NeedsConsent, match="needing consent"):
        read(other, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.token_requests()) == 1


def test_a_wrong_client_secret_is_not_blamed_on_the_participant(fake):
    settings = dataclasses.replace(settings_for(fake), google_client_secret="wrong")
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(http.RequestRejected, match="invalid_client"):
        read(GoogleHealthSource(settings, store), "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert store.needs_consent_since is None


def test_a_token_reply_lost_after_google_acted_is_not_retried(fake, fast_retries):
    # Google rotates the refresh token, and its reply is lost to our read timeout. A retry
    # would send the old token, get invalid_grant and mark a good grant as needing consent.
    fake.rotate_refresh_token = True
    fake.fail("token", reply_delay=2.0)
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake, timeout=0.3), store)
    with pytest.raises(SourceUnavailable, match="timed out"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.token_requests()) == 1
    assert store.needs_consent_since is None


def test_a_token_endpoint_outage_is_source_unavailable(fake, fast_retries):
    fake.fail("token", status=503, times=10)
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(SourceUnavailable):
        read(
            GoogleHealthSource(settings_for(fake), store),
            "heart-rate",
            Window(T0, T0 + timedelta(hours=1)),
        )
    assert store.needs_consent_since is None and len(fake.token_requests()) == 3


def test_a_rotated_refresh_token_is_kept_when_the_reply_lacks_expires_in(fake):
    fake.rotate_refresh_token = True
    fake.omit_expires_in = True  # RFC 6749 makes expires_in only RECOMMENDED
    fake.add("heart-rate", [heart_rate(T0, 70)])
    store = MemoryStore(fake.refresh_token)
    rows, _ = read(GoogleHealthSource(settings_for(fake), store), "heart-rate",
                   Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1
    assert fake.refresh_tokens == {store.refresh_token} != {"1//test-refresh-token-0"}


def test_a_rotated_refresh_token_is_stored_even_when_the_rest_of_the_reply_is_unusable(fake):
    fake.rotate_refresh_token = True
    fake.fail("token", token_reply={"access_token": None})
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(PayloadError, match="access_token"):
        read(GoogleHealthSource(settings_for(fake), store), "heart-rate",
             Window(T0, T0 + timedelta(hours=1)))
    assert fake.refresh_tokens == {store.refresh_token} != {"1//test-refresh-token-0"}


def test_a_missing_scope_refuses_only_its_streams(fake):
    fake.granted_scopes.discard(ACTIVITY)
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.add("steps", [steps(T0, 10)])
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    window = Window(T0, T0 + timedelta(hours=1))
    with pytest.raises(ScopeNotGranted) as refused:
        read(source, "steps", window)
    assert refused.value.scope == ACTIVITY and store.missing_scopes == {ACTIVITY}
    assert len(read(source, "heart-rate", window)[0]) == 1


def test_403_needs_consent_without_marking_the_grant(fake, fast_retries):
    fake.fail("api", status=403)
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(NeedsConsent, match="403"):
        read(
            GoogleHealthSource(settings_for(fake), store),
            "heart-rate",
            Window(T0, T0 + timedelta(hours=1)),
        )
    assert store.needs_consent_since is None


def test_no_token_appears_in_errors_or_reprs(fake, fast_retries):
    fake.fail("api", status=503, times=10)
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    with pytest.raises(SourceUnavailable) as caught:
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    auth = source._client[2]
    text = f"{caught.value} {caught.value.__cause__} {auth.token!r} {settings_for(fake)!r}"
    assert fake.refresh_token not in text and auth.token.value not in text
    assert fake.client_secret not in text


def test_the_rate_limiter_sits_on_api_requests_only(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    counted = []

    class Counting(http.RateLimiter):
        def acquire(self) -> None:
            counted.append(1)

    session = http.build_session(2.0, fake.url, limiter=Counting())
    auth = GoogleOAuth(
        "p1",
        MemoryStore(fake.refresh_token),
        session,
        fake.token_url,
        fake.client_id,
        fake.client_secret,
    )
    session.get(f"{fake.url}/v4/users/me/dataTypes/heart-rate/dataPoints", auth=auth)
    assert len(fake.token_requests()) == 1 and len(counted) == 1


def test_every_request_has_a_timeout(fake, fast_retries):
    session = http.build_session(0.2, fake.url)
    fake.fail("api", delay=2.0, times=20)
    with pytest.raises(requests.exceptions.RequestException):
        session.get(f"{fake.url}/v4/users/me/dataTypes/steps/dataPoints", auth=None)


# --- 3. with the real database ------------------------------------------------------------


def db_settings(database) -> dict[str, object]:
    return {
        "db_host": database.server.host,
        "db_port": database.server.port,
        "db_name": database.dbname,
        "db_user": database.server.user,
        "db_password": database.server.password,
    }


def enrolled(db_conn, token: str, participant: Participant = P1) -> None:
    credentials.enrol(
        db_conn, participant.participant_id, participant.timezone, participant.start_date, token
    )


def stored_grant(database, participant_id: str = "p1") -> tuple[str, datetime | None]:
    connection = database.connect()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT refresh_token, needs_consent_since FROM google_credentials "
                "WHERE participant_id = %s",
                (participant_id,),
            )
            return cursor.fetchone()
    finally:
        connection.close()


def test_enrol_stores_the_participant_and_grant_in_one_transaction(db, db_conn):
    enrolled(db_conn, "1//first-token-abc")
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT participant_id, timezone, source, start_date FROM participants")
        assert cursor.fetchall() == [("p1", "Europe/Berlin", "google_health", date(2026, 3, 1))]
    assert stored_grant(db) == ("1//first-token-abc", None)


def test_enrol_refuses_bad_input_and_leaves_nothing_behind(db, db_conn):
    with pytest.raises(credentials.EnrolError, match="IANA"):
        credentials.enrol(db_conn, "p1", "Mars/Olympus", None, "1//token-abcdef")
    with pytest.raises(credentials.EnrolError, match="participant id"):
        credentials.enrol(db_conn, "p 1", "UTC", None, "1//token-abcdef")
    with pytest.raises(credentials.EnrolError, match="refresh token"):
        credentials.enrol(db_conn, "p1", "UTC", None, "has spaces in it")
    with db_conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO participants VALUES ('s1', 'UTC', 'synthetic', '2026-03-01', 7)"
        )
    db_conn.commit()
    with pytest.raises(credentials.EnrolError, match="synthetic"):
        credentials.enrol(db_conn, "s1", "UTC", None, "1//token-abcdef")
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM google_credentials")
        assert cursor.fetchone() == (0,)


def test_re_enrolment_replaces_the_grant_and_clears_needs_consent(db, db_conn):
    enrolled(db_conn, "1//first-token-abc")
    with db_conn, db_conn.cursor() as cursor:
        cursor.execute("UPDATE google_credentials SET needs_consent_since = now()")
    assert [c.participant_id for c in credentials.needs_consent(db_conn)] == ["p1"]
    credentials.enrol(db_conn, "p1", "Europe/Paris", None, "1//second-token-xyz")
    assert stored_grant(db) == ("1//second-token-xyz", None)
    assert credentials.needs_consent(db_conn) == []
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT timezone, start_date FROM participants")
        assert cursor.fetchone() == ("Europe/Paris", date(2026, 3, 1))  # start date kept


def test_clear_consent(db, db_conn):
    enrolled(db_conn, "1//first-token-abc")
    assert credentials.clear_consent(db_conn, "p1") is False
    with db_conn, db_conn.cursor() as cursor:
        cursor.execute("UPDATE google_credentials SET needs_consent_since = now()")
    assert credentials.clear_consent(db_conn, "p1") is True
    assert stored_grant(db)[1] is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1//0gAbC-dEf_123\n", "1//0gAbC-dEf_123"),
        (
            '{"access_token": "ya29.x", "refresh_token": "1//0gFromJson", "expires_in": 3599}',
            "1//0gFromJson",
        ),
    ],
)
def test_the_refresh_token_is_read_from_a_file_or_stdin(tmp_path, content, expected):
    path = tmp_path / "token"
    path.write_text(content)
    assert credentials.read_refresh_token(str(path)) == expected

    class Stdin:
        def read(self):
            return content

    assert credentials.read_refresh_token("-", Stdin()) == expected


@pytest.mark.parametrize("content", ["", "two words", '{"access_token": "only"}', "{not json"])
def test_a_token_file_without_a_token_is_refused_without_echoing_it(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(credentials.EnrolError) as caught:
        credentials.read_refresh_token(str(path))
    assert not content or content not in str(caught.value)


def test_a_participant_without_a_grant_needs_consent(db, fake):
    store = credentials.TokenStore(Settings(), connect=db.connect)
    with pytest.raises(NeedsConsent, match="no stored Google grant"), store.lock("nobody"):
        pass


def test_a_rotated_token_is_committed_before_use_and_survives_a_rolled_back_run(db, db_conn, fake):
    fake.rotate_refresh_token = True
    fake.add("heart-rate", [heart_rate(T0, 70)])
    enrolled(db_conn, fake.refresh_token)
    in_db_when_used = []
    fake.on_api_request = lambda seen: in_db_when_used.append(stored_grant(db)[0])
    settings = settings_for(fake, **db_settings(db))
    source = GoogleHealthSource(settings, credentials.TokenStore(settings))
    # The pipeline's data transaction: rows go in, then the participant fails and rolls back.
    with db_conn.cursor() as cursor:
        for row in source.read(P1, "heart-rate", Window(T0, T0 + timedelta(hours=1)), ReadReport()):
            cursor.execute(
                "INSERT INTO raw_data VALUES (%s, %s, %s, %s)",
                (row.timestamp, row.participant_id, row.metric_type, row.value),
            )
    db_conn.rollback()
    (rotated,) = fake.refresh_tokens
    assert in_db_when_used == [rotated]  # committed before the first use of the new token
    assert stored_grant(db) == (rotated, None)  # and not lost with the data transaction


def test_invalid_grant_sets_needs_consent_in_the_database(db, db_conn, fake):
    enrolled(db_conn, fake.refresh_token)
    fake.revoke_grant()
    settings = settings_for(fake, **db_settings(db))
    source = GoogleHealthSource(settings, credentials.TokenStore(settings))
    with pytest.raises(NeedsConsent):
        read(source, "steps", Window(T0, T0 + timedelta(hours=1)))
    token, since = stored_grant(db)
    assert token == fake.refresh_token and since is not None
    assert [c.participant_id for c in credentials.needs_consent(db_conn)] == ["p1"]


def db_auth(fake: FakeGoogleHealth, settings: Settings) -> GoogleOAuth:
    return GoogleOAuth(
        "p1",
        credentials.TokenStore(settings),
        http.build_session(5.0, fake.url),
        fake.token_url,
        fake.client_id,
        fake.client_secret,
    )


def wait_for_token_request(fake: FakeGoogleHealth) -> None:
    deadline = time.monotonic() + 10
    while not fake.token_requests():
        assert time.monotonic() < deadline, "no token request"
        time.sleep(0.01)


@pytest.mark.slow
def test_re_enrolment_waits_for_a_refresh_in_flight(db, db_conn, fake):
    # The nightly run refreshes with the old, revoked grant while the operator re-enrols the
    # participant: the run's invalid_grant must not mark the fresh grant.
    enrolled(db_conn, fake.refresh_token)
    fake.revoke_grant()
    fake.fail("token", delay=1.0)  # the refresh is in flight for a second
    auth = db_auth(fake, settings_for(fake, **db_settings(db)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        refreshing = pool.submit(auth.refresh)
        wait_for_token_request(fake)
        credentials.enrol(db_conn, "p1", "Europe/Berlin", None, "1//fresh-consent-token")
        with pytest.raises(NeedsConsent):  # the old grant's, marked before enrol replaced it
            refreshing.result(timeout=30)
    assert stored_grant(db) == ("1//fresh-consent-token", None)


@pytest.mark.slow
@pytest.mark.parametrize("reply", ["rotated", "invalid_grant"])
def test_a_refresh_never_updates_a_grant_that_replaced_the_one_it_used(db, db_conn, fake, reply):
    enrolled(db_conn, fake.refresh_token)
    if reply == "rotated":
        fake.rotate_refresh_token = True
    else:
        fake.revoke_grant()
    fake.fail("token", delay=1.0)
    auth = db_auth(fake, settings_for(fake, **db_settings(db)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        refreshing = pool.submit(auth.refresh)
        wait_for_token_request(fake)
        # A writer that does not take the token lock replaces the grant meanwhile.
        with db_conn, db_conn.cursor() as cursor:
            cursor.execute(
                "UPDATE google_credentials SET refresh_token = '1//replacement-token', "
                "needs_consent_since = NULL"
            )
        with pytest.raises(SourceUnavailable, match="replaced"):
            refreshing.result(timeout=30)
    assert stored_grant(db) == ("1//replacement-token", None)


@pytest.mark.slow
def test_two_runs_never_refresh_one_participant_at_the_same_time(db, db_conn, fake):
    # With strict rotation, a refresh that read the token before the other stored its
    # replacement would present a dead token and get invalid_grant.
    fake.rotate_refresh_token = True
    fake.fail("token", delay=0.5)  # the first refresh is slow: the second must wait for it
    enrolled(db_conn, fake.refresh_token)
    settings = settings_for(fake, **db_settings(db))

    def refresh() -> None:
        session = http.build_session(5.0, fake.url)
        auth = GoogleOAuth(
            "p1",
            credentials.TokenStore(settings),
            session,
            fake.token_url,
            fake.client_id,
            fake.client_secret,
        )
        auth.refresh()

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(refresh) for _ in range(2)]
        for run in runs:
            run.result(timeout=30)  # re-raises a refresh's error, e.g. invalid_grant
    assert len(fake.token_requests()) == 2
    assert stored_grant(db) == (next(iter(fake.refresh_tokens)), None)


# --- end to end: the command against the fake API -----------------------------------------

NOW = "2026-03-03T00:00:00Z"


# Request limits no test of this file reaches: none of them is about pacing (that is
# tests/test_workers.py), and at an unverified app's default 150 a minute per user a run of
# a week's slices would sleep for most of its time.
UNPACED = {"GOOGLE_USER_REQUESTS_PER_MINUTE": "100000",
           "GOOGLE_PROJECT_REQUESTS_PER_MINUTE": "1000000"}


def fake_env(db, fake: FakeGoogleHealth, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of ingest.py against the fake."""
    return ingest_env(
        db.env,
        workdir,
        GOOGLE_HEALTH_URL=fake.url,
        GOOGLE_TOKEN_URL=fake.token_url,
        GOOGLE_CLIENT_ID=fake.client_id,
        GOOGLE_CLIENT_SECRET=fake.client_secret,
        **{**UNPACED, **extra},
    )


@pytest.fixture
def cli(db, fake, tmp_path):
    """Enrol p1 through the CLI, then run ingest.py against the fake."""
    env = fake_env(db, fake, tmp_path, HTTP_TIMEOUT="1")
    enrol = run_ingest(
        env,
        "participant",
        "enrol",
        "p1",
        "--timezone",
        "Europe/Berlin",
        "--start-date",
        "2026-03-02",
        "--token-file",
        "-",
        stdin=fake.refresh_token + "\n",
    )
    assert enrol.returncode == 0, enrol.stderr
    assert fake.refresh_token not in enrol.stdout + enrol.stderr

    @dataclass
    class Cli:
        env: dict[str, str]
        state_file: Path

        def run(self, *args: str):
            result = run_ingest(self.env, "--participant", "p1", "--now", NOW, *args, timeout=120)
            assert fake.refresh_token not in result.stdout + result.stderr
            return result

        def rows(self) -> list[tuple]:
            return query(
                db.env, 'SELECT metric_type, "timestamp", value FROM raw_data ORDER BY 1, 2'
            )

        def runs(self) -> list[tuple]:
            return query(db.env, "SELECT status, error FROM ingest_runs ORDER BY id")

        def watermarks(self) -> dict:
            return state.load(self.state_file).watermarks.get("p1", {})

    return Cli(env, Path(env["STATE_FILE"]))


def a_day_of_data(fake: FakeGoogleHealth) -> int:
    """Berlin's 2 March 2026 ([1 Mar 23:00, 2 Mar 23:00) UTC): returns the rows it makes."""
    day = utc("2026-03-01T23:00:00")
    fake.add("heart-rate", heart_rate_every(60, day, day + timedelta(hours=24)))  # 1440
    fake.add("steps", [steps(day + timedelta(hours=9, minutes=m), 20 + m) for m in range(30)])
    fake.add("oxygen-saturation", [oxygen_saturation(day + timedelta(hours=4), 96.0)])
    fake.add("daily-respiratory-rate", [daily_respiratory_rate(date(2026, 3, 2), 15.0)])
    return 1440 + 30 + 1 + 1


def assert_loaded(cli, expected_rows: int) -> None:
    assert len(cli.rows()) == expected_rows
    assert cli.runs()[-1] == ("ok", None)
    # The participant started a day before NOW, inside the late-sync horizon (7 days): all
    # of it may still change, so no watermark moves yet and the next run re-reads it.
    assert cli.watermarks() == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario",
    [
        "plain",
        "429",
        "500 then success",
        "401 then refresh",
        "rotated refresh token",
        "slow once",
        "numbers as strings",
    ],
)
def test_the_command_loads_a_google_participant(cli, fake, db, scenario):
    fake.max_page_size = 500  # heart rate comes in 3 pages
    expected = a_day_of_data(fake)
    if scenario == "429":
        fake.fail("api", status=429, retry_after="1")
    elif scenario == "500 then success":
        fake.fail("api", status=500)
    elif scenario == "401 then refresh":
        fake.fail("api", status=401)  # the fresh access token is refused once
    elif scenario == "rotated refresh token":
        fake.rotate_refresh_token = True
    elif scenario == "slow once":
        fake.fail("api", delay=3.0)
    elif scenario == "numbers as strings":
        fake.numbers_as_strings = True
    result = cli.run()
    assert result.returncode == 0, result.stderr
    assert_loaded(cli, expected)
    if scenario == "rotated refresh token":
        assert stored_grant(db)[0] == next(iter(fake.refresh_tokens))
    again = cli.run()  # a replay inserts nothing new
    assert again.returncode == 0 and len(cli.rows()) == expected


@pytest.mark.slow
def test_the_command_reports_an_empty_day_as_ok(cli, fake):
    result = cli.run()
    assert result.returncode == 0, result.stderr
    assert_loaded(cli, 0)


@pytest.mark.slow
def test_the_command_fails_the_participant_on_malformed_json(cli, fake):
    a_day_of_data(fake)
    fake.fail("api", raw_body=b"<html>oops</html>")
    result = cli.run()
    assert result.returncode == 1
    assert cli.rows() == []  # all or nothing: no stream of the participant is kept
    status, error = cli.runs()[-1]
    assert status == "failed" and "PayloadError" in error
    assert cli.watermarks() == {}


@pytest.mark.slow
def test_the_command_marks_a_revoked_grant_as_needing_consent(cli, fake, db):
    a_day_of_data(fake)
    fake.revoke_grant()
    result = cli.run()
    assert result.returncode == 1
    assert cli.rows() == [] and cli.watermarks() == {}
    status, error = cli.runs()[-1]
    assert status == "needs_consent" and "NeedsConsent" in error
    assert stored_grant(db)[1] is not None
    listed = run_ingest(cli.env, "participant", "needs-consent")
    assert listed.returncode == 0 and "p1" in listed.stdout
    # The participant consents again: re-enrolment with the new grant clears the mark.
    fake.refresh_tokens = {"1//after-new-consent"}
    enrol = ("participant", "enrol", "p1", "--timezone", "Europe/Berlin")
    again = run_ingest(
        cli.env,
        *enrol,
        "--start-date",
        "2026-03-02",
        "--token-file",
        "-",
        stdin="1//after-new-consent\n",
    )
    assert again.returncode == 0, again.stderr
    final = cli.run()
    assert final.returncode == 0, final.stderr
    assert cli.runs()[-1] == ("ok", None), (cli.runs(), final.stderr)
    assert len(cli.rows()) == 1472


@pytest.mark.slow
def test_eight_years_of_sparse_history_load_under_default_lock_settings(db, fake, tmp_path):
    # The point of the test: the server keeps PostgreSQL's default lock table, which one
    # transaction over thousands of daily chunks overflows ("out of shared memory").
    assert query(db.env, "SHOW max_locks_per_transaction") == [("64",)]
    # Thousands of requests for one participant, unpaced (fake_env): at an unverified app's
    # default pace they alone would take half an hour; this test is about locks.
    env = fake_env(db, fake, tmp_path, HTTP_TIMEOUT="5")
    first = date(2018, 3, 3)
    enrol = run_ingest(env, "participant", "enrol", "p1", "--timezone", "Europe/Berlin",
                       "--start-date", first.isoformat(), "--token-file", "-",
                       stdin=fake.refresh_token + "\n")
    assert enrol.returncode == 0, enrol.stderr
    days = (date(2026, 3, 2) - first).days + 1  # up to the day before NOW
    fake.add("daily-respiratory-rate",
             [daily_respiratory_rate(first + timedelta(days=n), 15.0) for n in range(days)])
    noon = datetime.combine(first, datetime.min.time(), UTC) + timedelta(hours=12)
    fake.add("heart-rate",
             [heart_rate(noon + timedelta(days=n), 60 + n % 30) for n in range(0, days, 3)])
    expected = days + len(range(0, days, 3))
    # A first load of 8 years is held until asked for: it says so, and how.
    held = run_ingest(env, "--now", NOW, timeout=120)
    assert held.returncode == 1 and "MAX_BACKFILL_DAYS" in held.stderr, held.stderr
    assert query(db.env, "SELECT count(*) FROM raw_data") == [(0,)]
    words = held.stderr.split()
    since = words[words.index("--since") + 1].strip("`")  # the local midnight of the start
    loaded = run_ingest(env, "--now", NOW, "--participant", "p1", "--since", since, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert query(db.env, "SELECT count(*) FROM raw_data") == [(expected,)]
    slices, failed = query(db.env, "SELECT count(*), count(*) FILTER (WHERE status <> 'ok') "
                                   "FROM ingest_runs WHERE run_id = (SELECT run_id FROM "
                                   "ingest_runs ORDER BY id DESC LIMIT 1)")[0]
    # Sparse days are loaded several at a time: far fewer slices (and requests) than days.
    assert failed == 0 and days / 20 < slices < days / 5, slices
    assert len(fake.api_requests()) < 7 * days / 5
    again = run_ingest(env, "--now", NOW, timeout=120)  # a nightly run after it: a delta
    assert again.returncode == 0, again.stderr[-2000:]
    assert query(db.env, "SELECT count(*) FROM raw_data") == [(expected,)]


# --- issue 9: late syncs, one value per key, a missing scope, end to end -----------------


@pytest.fixture
def google_env(db, fake, tmp_path) -> dict[str, str]:
    """The environment of ingest.py against the fake, nobody enrolled yet."""
    return fake_env(db, fake, tmp_path, HTTP_TIMEOUT="2", DEMO_COHORT="false")


def enrol_p1(env: dict[str, str], fake: FakeGoogleHealth, zone: str, start: str) -> None:
    enrol = run_ingest(env, "participant", "enrol", "p1", "--timezone", zone, "--start-date",
                       start, "--token-file", "-", stdin=next(iter(fake.refresh_tokens)) + "\n")
    assert enrol.returncode == 0, enrol.stderr


def run_at(env: dict[str, str], now: datetime):
    return run_ingest(env, "--now", now.isoformat(), timeout=120)


def stored(env: dict[str, str], metric: str) -> dict[datetime, float]:
    rows = query(env, 'SELECT "timestamp", value FROM raw_data WHERE metric_type = %s', (metric,))
    return dict(rows)


@pytest.mark.slow
@pytest.mark.parametrize("grant", ["settings scope (device sync)", "no settings scope (horizon)"])
def test_a_tracker_that_syncs_six_days_late_loses_nothing(google_env, fake, grant):
    # The tracker holds its data from Nov 3 12:00 to Nov 9 12:00 and syncs on Nov 9 12:00;
    # before and after, it syncs every half hour. A run every night at 01:00.
    if grant.startswith("settings"):
        fake.granted_scopes.add(SETTINGS)
    enrol_p1(google_env, fake, "UTC", "2026-11-01")
    measured = heart_rate_every(60, utc("2026-11-01T00:00:00"), utc("2026-11-12T00:00:00"))
    offline = (utc("2026-11-03T12:00:00"), utc("2026-11-09T12:00:00"))

    def synced_at(now: datetime) -> datetime:
        recent = now - timedelta(minutes=30)
        return offline[0] if offline[0] <= recent < offline[1] else recent

    served = set()
    for night in range(2, 13):
        now = utc(f"2026-11-{night:02d}T01:00:00")
        sync = synced_at(now)
        fake.points["heart-rate"] = [p for p in measured if utc_of(p) < sync]
        fake.devices = [paired_device("tracker", last_sync=sync)]
        served = {utc_of(p) for p in fake.points["heart-rate"]}
        result = run_at(google_env, now)
        assert result.returncode == 0, (night, result.stderr)
    assert set(stored(google_env, "heart_rate")) == served  # every point the fake serves
    assert len(served) > 15_000


def utc_of(point: dict) -> datetime:
    return datetime.fromisoformat(point["heartRate"]["sampleTime"]["physicalTime"])


def with_source(point: dict, source: dict) -> dict:
    return {**point, "dataSource": source}


@pytest.mark.slow
def test_a_duplicate_split_across_pages_keeps_one_value_over_three_runs(google_env, fake):
    fake.max_page_size = 3
    fake.flip_ties = True  # the order of the pair changes from one query to the next
    enrol_p1(google_env, fake, "UTC", "2026-11-01")
    at = utc("2026-11-02T10:00:00")
    watch = {"device": {"displayName": "Charge 6"}, "platform": "FITBIT"}
    phone = {"platform": "HEALTH_CONNECT", "recordingMethod": "MANUAL"}
    fake.add("heart-rate", [
        heart_rate(at - timedelta(minutes=2), 60),
        heart_rate(at - timedelta(minutes=1), 61),
        with_source(heart_rate(at, 70), phone),
        with_source(heart_rate(at, 200), watch),  # newest first: pages [+2, +1, at] [at, -1, -2]
        heart_rate(at + timedelta(minutes=1), 62),
        heart_rate(at + timedelta(minutes=2), 63),
    ])
    values = []
    for _ in range(3):
        result = run_at(google_env, utc("2026-11-03T01:00:00"))
        assert result.returncode == 0, result.stderr
        values.append(stored(google_env, "heart_rate")[at])
    assert values == [200.0, 200.0, 200.0]  # the wearable's own point, every run


@pytest.mark.slow
def test_re_enrolment_with_another_zone_keeps_one_daily_value_per_date(google_env, fake):
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-11-01")
    days = [date(2026, 11, day) for day in (2, 3, 4)]
    fake.add("daily-respiratory-rate", [daily_respiratory_rate(d, 14.0 + d.day) for d in days])
    assert run_at(google_env, utc("2026-11-05T01:00:00")).returncode == 0
    enrol_p1(google_env, fake, "America/Chicago", "2026-11-01")  # the README's re-consent
    assert rollup_mismatches(google_env) == {}  # the moved values' buckets, old and new
    assert run_at(google_env, utc("2026-11-06T01:00:00")).returncode == 0
    assert rollup_mismatches(google_env) == {}
    chicago = ZoneInfo("America/Chicago")
    assert stored(google_env, "breathing_rate") == {
        datetime.combine(d, datetime.min.time(), tzinfo=chicago): 14.0 + d.day for d in days
    }


@pytest.mark.slow
def test_a_missing_scope_blocks_only_its_streams_and_is_named(google_env, fake):
    fake.granted_scopes.discard(ACTIVITY)  # the participant unticked "activity and fitness"
    fake.granted_scopes.add(SETTINGS)  # (so that only the data scope is missing)
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-03-02")
    expected = a_day_of_data(fake)
    result = run_at(google_env, datetime.fromisoformat(NOW))
    assert result.returncode == 0, result.stderr
    metrics = {m for (m,) in query(google_env, "SELECT DISTINCT metric_type FROM raw_data")}
    assert metrics == {"heart_rate", "spo2", "breathing_rate"}  # no steps: no scope
    listed = run_ingest(google_env, "participant", "needs-consent")
    assert "p1\tgrant lacks" in listed.stdout
    assert "googlehealth.activity_and_fitness.readonly" in listed.stdout
    status = run_ingest(google_env, "status")
    assert "googlehealth.activity_and_fitness.readonly" in status.stdout, status.stdout
    # The participant consents again with the scope: steps load from their start date.
    fake.granted_scopes.add(ACTIVITY)
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-03-02")
    assert run_at(google_env, datetime.fromisoformat(NOW)).returncode == 0
    assert len(query(google_env, "SELECT 1 FROM raw_data")) == expected
    assert "grant lacks" not in run_ingest(google_env, "participant", "needs-consent").stdout


def test_a_missing_scope_does_not_make_every_night_reread_the_whole_history(google_env, fake):
    fake.granted_scopes.discard(ACTIVITY)
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-02-01")
    assert run_at(google_env, utc("2026-03-01T01:00:00")).returncode == 0
    fake.seen.clear()
    assert run_at(google_env, utc("2026-03-02T01:00:00")).returncode == 0
    heart_rate_filters = [s.query["filter"] for s in fake.api_requests("heart-rate")]
    # The second night re-reads the horizon (7 days) and the overlap, not from 1 February.
    assert heart_rate_filters and all("2026-02-0" not in f for f in heart_rate_filters), (
        heart_rate_filters)


def test_a_date_whose_parts_are_strings_is_read():
    point = daily_respiratory_rate(date(2026, 3, 2), 15.0)
    point["dailyRespiratoryRate"]["date"] = {"year": "2026", "month": "3", "day": "02"}
    rows, report = page_rows("daily-respiratory-rate", point)
    assert [r.timestamp for r in rows] == [utc("2026-03-01T23:00:00")] and not report.rejected


def test_one_value_per_instant_whatever_the_page_split_and_order():
    report = ReadReport()
    watch = {"device": {"displayName": "Charge 6"}, "platform": "FITBIT"}
    points = [with_source(heart_rate(T0, 70), {"platform": "HEALTH_CONNECT"}),
              with_source(heart_rate(T0, 200), watch), heart_rate(T0 - timedelta(seconds=1), 60)]
    results = set()
    for order in (points, points[1::-1] + points[2:]):
        for split in (1, 2, 3):
            pages = [
                google_health_source.candidates_from_page(
                    {"dataPoints": chunk}, DATA_TYPES["heart-rate"], P1, report
                )[0]
                for chunk in (order[:split], order[split:])
            ]
            rows = google_health_source.one_per_instant(pages, report, "duplicate")
            results.add(tuple(sorted((r.timestamp, r.value) for r in rows)))
    assert results == {((T0 - timedelta(seconds=1), 60.0), (T0, 200.0))}
