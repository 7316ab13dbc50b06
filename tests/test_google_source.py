"""The Google Health source (sources/google_health/source.py): the list filter and civil
days (pure), then against the fake API on 127.0.0.1 (tests/fake_google_health.py):
pagination, the filter the server receives, one value per instant, missing scopes.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterable
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from fake_google_health import (
    PHONE,
    WEARABLES,
    active_zone_minutes,
    activity,
    daily_heart_rate_variability,
    daily_respiratory_rate,
    daily_resting_heart_rate,
    heart_rate,
    heart_rate_variability,
    oxygen_saturation,
    respiratory_rate_sleep_summary,
    steps,
)
from google_support import P1, T0, MemoryStore, heart_rate_every, read, settings_for, with_source
from ingester.config import Settings
from ingester.errors import ConfigError, PayloadError, ScopeNotGranted
from ingester.model import ReadReport, Window
from ingester.sources.google_health import source as google_health_source
from ingester.sources.google_health.source import GoogleHealthSource, civil_days, list_filter
from ingester.sources.google_health.transform import ACTIVITY, DATA_TYPES
from support import utc

BERLIN = ZoneInfo("Europe/Berlin")


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
            "active-zone-minutes",
            "2026-03-02T00:00:00.250000",  # whole seconds, widened outwards
            "2026-03-02T12:30:15.000001",
            (
                'active_zone_minutes.interval.start_time >= "2026-03-02T00:00:00Z" AND '
                'active_zone_minutes.interval.start_time < "2026-03-02T12:30:16Z"'
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
    fake.add("distance", [activity("distance", T0 + timedelta(hours=1), 800)])
    fake.add("total-calories", [activity("total-calories", T0 + timedelta(hours=1), 1.5)])
    fake.add("floors", [activity("floors", T0 + timedelta(hours=1), 1)])
    fake.add("daily-resting-heart-rate", [daily_resting_heart_rate(date(2026, 3, 2), 55)])
    fake.add("daily-heart-rate-variability",
             [daily_heart_rate_variability(date(2026, 3, 2), 40.0)])
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
            "distance",
            "calories",
            "floors",
            "resting_heart_rate",
            "hrv_rmssd_daily",
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


@pytest.mark.parametrize("watch_first", [True, False], ids=["watch first", "phone first"])
def test_two_data_sources_at_the_same_instant_keep_the_wearables_value(fake, watch_first):
    """The documented rule (transform.source_rank): the wearable's own point wins, in
    whichever order the API lists the pair; the other is counted."""
    watch = with_source(heart_rate(T0, 71), {"device": {"displayName": "Charge 6"},
                                             "platform": "FITBIT"})
    phone = with_source(heart_rate(T0, 70), {"platform": "HEALTH_CONNECT"})
    pair = [watch, phone] if watch_first else [phone, watch]
    fake.add("heart-rate", [*pair, heart_rate(T0 + timedelta(seconds=1), 72)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, report = read(source, "heart-rate", Window(T0, T0 + timedelta(minutes=1)))
    assert sorted((r.timestamp, r.value) for r in rows) == [
        (T0, 71.0), (T0 + timedelta(seconds=1), 72.0)]
    assert report.rejected == {"heart-rate: a second point at the same instant": 1}


@pytest.mark.parametrize("order", [(70, 71), (71, 70)], ids=str)
def test_two_points_alike_but_for_their_value_keep_the_same_one_in_any_order(fake, order):
    """No data source to tell them apart: the rule falls back on the values (the lower
    wins), so every run keeps the same one."""
    # One resource name and data source for both (the fake names each point otherwise).
    same = "users/me/dataTypes/heart-rate/dataPoints/twin"
    fake.add("heart-rate", [{**heart_rate(T0, bpm), "name": same} for bpm in order])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, report = read(source, "heart-rate", Window(T0, T0 + timedelta(minutes=1)))
    assert [(r.timestamp, r.value) for r in rows] == [(T0, 70.0)]
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


def test_google_settings_missing_is_a_config_error():
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_ID"):
        GoogleHealthSource(Settings(), MemoryStore("1//x"))


def test_a_page_that_is_not_the_documented_shape_is_a_payload_error(fake):
    fake.fail("api", raw_body=b'{"dataPoints": {"heartRate": {}}}')
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(PayloadError, match="array"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))


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


# --- activity by roll-up ----------------------------------------------------------------


def test_activity_is_the_wearables_per_minute_sums_and_the_phone_adds_nothing(fake):
    minute = T0 + timedelta(hours=9)
    for data_type, watch, phone in (("steps", 40, 300), ("distance", 31_000, 250_000),
                                    ("total-calories", 1.25, 9.0), ("floors", 1, 3)):
        fake.add(data_type, [activity(data_type, minute, watch),
                             activity(data_type, minute + timedelta(seconds=30), watch),
                             activity(data_type, minute + timedelta(minutes=1), watch),
                             activity(data_type, minute, phone, recorder=PHONE),
                             activity(data_type, minute + timedelta(minutes=2), phone,
                                      recorder=PHONE)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0, T0 + timedelta(days=1))
    got = {stream: [(r.timestamp, r.value) for r in read(source, stream, window)[0]]
           for stream in ("steps", "distance", "total-calories", "floors")}
    later = minute + timedelta(minutes=1)
    assert got == {  # the two points of the first minute add up; no phone minute at all
        "steps": [(later, 40.0), (minute, 80.0)],
        "distance": [(later, 31.0), (minute, 62.0)],
        "total-calories": [(later, 1.25), (minute, 2.5)],
        "floors": [(later, 1.0), (minute, 2.0)],
    }
    bodies = [s.body for s in fake.api_requests()]
    assert all(b["dataSourceFamily"] == WEARABLES and b["windowSize"] == "60s" for b in bodies)
    # `list` would have shown only the phone's steps (the live quirk the fake keeps):
    assert fake._list("steps", {}, fake.user)[1]["dataPoints"][0]["steps"]["count"] == "300"


def test_rollup_ranges_stay_under_the_caps(fake):
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0 + timedelta(seconds=30), T0 + timedelta(days=30, seconds=1))
    for stream in ("total-calories", "steps"):
        rows, report = read(source, stream, window)  # the fake refuses a range over its cap
        assert rows == [] and not report.rejected
    ranges = [s.body["range"] for s in fake.api_requests("total-calories")]
    assert ranges[0]["startTime"] == "2026-03-02T00:00:00Z"  # whole minutes, widened
    assert ranges[-1]["endTime"] == "2026-04-01T00:01:00Z"
    assert len(ranges) == 3 and len(fake.api_requests("steps")) == 1


def test_a_page_token_seen_before_at_any_distance_ends_the_read(fake, monkeypatch):
    """A server that cycles through 12 tokens (more than the 8 the client used to keep) is
    caught at the first repeat, not after 20,000 pages."""
    fake.add("heart-rate", heart_rate_every(1, T0, T0 + timedelta(seconds=13)))
    fake.max_page_size = 1
    original = fake._page

    def cycling(member, items, start, size, flip, binding):
        body = original(member, items, start, size, flip, binding)
        if start == 12:  # the 13th page points back to the 2nd
            body["nextPageToken"] = original(member, items, 0, size, flip, binding)[
                "nextPageToken"]
        return body

    monkeypatch.setattr(fake, "_page", cycling)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(PayloadError, match="repeated a page token"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(minutes=1)))
    assert len(fake.api_requests("heart-rate")) == 13


def test_an_empty_page_with_a_next_page_token_is_followed(fake):
    fake.empty_first_page = True
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.add("steps", [steps(T0, 12)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0, T0 + timedelta(hours=1))
    assert [r.value for r in read(source, "heart-rate", window)[0]] == [70.0]
    assert [r.value for r in read(source, "steps", window)[0]] == [12.0]
    assert len(fake.api_requests()) == 4


def test_a_page_token_is_bound_to_its_whole_request(fake):
    fake.max_page_size = 1
    fake.add("heart-rate", heart_rate_every(1, T0, T0 + timedelta(seconds=3)))
    query = {"filter": 'heart_rate.sample_time.physical_time >= "2026-03-02T00:00:00Z"',
             "pageSize": "1"}
    token = fake._list("heart-rate", query, fake.user)[1]["nextPageToken"]
    assert fake._list("heart-rate", {**query, "pageToken": token}, fake.user)[0] == 200
    for changed in ({**query, "pageSize": "2"}, {**query, "filter": ""}):
        status, body = fake._list("heart-rate", {**changed, "pageToken": token}, fake.user)
        assert status == 400
        assert body["error"]["details"][0]["reason"] == "INVALID_PAGE_TOKEN"
    assert fake._list("heart-rate", {**query, "pageToken": token}, "someone else")[0] == 400
