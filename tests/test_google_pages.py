"""The whole-page path of the Google transform (transform.sample_candidates) against the
point-by-point one: the same rows, instants and rejects for any page, and one value per
instant across pages whichever path a page took (issue 29)."""

from __future__ import annotations

import math
from datetime import UTC, timedelta

import pytest
from fake_google_health import PHONE, WEARABLE, heart_rate, oxygen_saturation
from google_support import P1, T0
from ingester.model import ReadReport
from ingester.sources.google_health.http import json_body
from ingester.sources.google_health.source import one_per_instant
from ingester.sources.google_health.transform import (
    DATA_TYPES,
    PageCandidates,
    candidates_from_page,
    sample_candidates,
)

HEART_RATE = DATA_TYPES["heart-rate"]


def points(count: int, first_bpm: int = 60) -> list[dict]:
    """A page of 1 Hz heart rate as the API lists it: newest first, named, with a source."""
    return [{"name": f"users/me/dataTypes/heart-rate/dataPoints/{i}", "dataSource": WEARABLE,
             **heart_rate(T0 + timedelta(seconds=i), first_bpm + i % 40)}
            for i in reversed(range(count))]


def read(page_points: list) -> tuple[PageCandidates, ReadReport]:
    report = ReadReport()
    candidates, _ = candidates_from_page({"dataPoints": page_points}, HEART_RATE, P1, report)
    return candidates, report


def test_a_plain_page_is_read_whole_into_one_row_a_point():
    page = points(50)
    whole = sample_candidates(page, HEART_RATE, P1)
    assert whole is not None and whole.widths is None
    assert [row.timestamp for row in whole.rows] == [
        T0 + timedelta(seconds=i) for i in reversed(range(50))]
    assert all(row.timestamp.tzinfo is UTC for row in whole.rows)
    assert [row.value for row in whole.rows[:3]] == [69.0, 68.0, 67.0]


@pytest.mark.parametrize(
    ("odd", "rejected"),
    [
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00.5Z"},
                        "beatsPerMinute": "70"}}, {}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T11:00:00+01:00"},
                        "beatsPerMinute": "70"}}, {}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00Z"},
                        "beatsPerMinute": 70}}, {}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00Z"},
                        "beatsPerMinute": True}},
         {"heart-rate: beatsPerMinute not a number": 1}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-02-30T10:00:00Z"},
                        "beatsPerMinute": "70"}},
         {"heart-rate: sampleTime.physicalTime not an RFC 3339 time": 1}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00Z\n"
                                       "2026-03-02T10:00:01Z"}, "beatsPerMinute": "70"}},
         {"heart-rate: sampleTime.physicalTime not an RFC 3339 time": 1}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00Z"},
                        "beatsPerMinute": "1_000"}},
         {"heart-rate: beatsPerMinute not a number": 1}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00Z"},
                        "beatsPerMinute": "301"}},
         {"heart-rate: beatsPerMinute out of range": 1}),
        ({"heartRate": {"sampleTime": {"physicalTime": "2026-03-02T10:00:00Z"}}},
         {"heart-rate: beatsPerMinute missing": 1}),
        ({"heartRate": ["not", "an", "object"]}, {"heart-rate: heartRate object missing": 1}),
        (["not", "a", "point"], {"heart-rate: point not an object": 1}),
    ],
    ids=["fraction", "offset", "JSON number", "bool", "30 February", "two times in one",
         "underscore", "out of range", "no value", "body a list", "point a list"],
)
def test_a_page_with_one_odd_point_gives_the_plain_points_the_same_rows(odd, rejected):
    """The odd point sends the page point by point; the others come out as the whole-page
    path makes them, and the odd one is read or counted as before."""
    plain = points(30)
    whole = sample_candidates(plain, HEART_RATE, P1)
    assert whole is not None
    mixed, report = read([*plain, odd])
    assert mixed.widths is not None  # point by point
    assert mixed.rows[:30] == whole.rows
    assert [type(row.timestamp.tzinfo) for row in mixed.rows] == [UTC.__class__] * len(mixed)
    assert dict(report.rejected) == rejected
    assert len(mixed) == 30 + (not rejected)


def test_values_read_before_are_read_again_the_same_and_bad_ones_never_stick():
    first, _ = read(points(10))
    bad, report = read([*points(3, first_bpm=400)])
    assert bad.rows == [] and report.rejected_total == 3
    again, _ = read(points(10))
    assert again.rows == first.rows and again.widths is None


def test_other_types_keep_their_rules():
    """SpO2 arrives as a JSON number (not an int64 string): point by point, as before."""
    report = ReadReport()
    candidates, _ = candidates_from_page(
        {"dataPoints": [oxygen_saturation(T0, 96.5), oxygen_saturation(T0, 101.0)]},
        DATA_TYPES["oxygen-saturation"], P1, report)
    assert [row.value for row in candidates.rows] == [96.5]
    assert report.rejected_total == 1


@pytest.mark.parametrize("split", [1, 5, 9, 10, 11])
def test_one_value_per_instant_across_whole_pages_at_any_split(split):
    """Twenty points a second apart and a phone's point at the instant of the tenth, at any
    page split: every instant once, the wearable's value kept, one point counted."""
    page = points(20)
    phone = {**heart_rate(T0 + timedelta(seconds=10), 150),
             "dataSource": {"platform": "HEALTH_CONNECT"}}
    listed = page[:10] + [phone] + page[10:]  # newest first: the phone beside its twin
    report = ReadReport()
    pages = [candidates_from_page({"dataPoints": chunk}, HEART_RATE, P1, report)[0]
             for chunk in (listed[:split], listed[split:])]
    rows = list(one_per_instant(pages, report, "duplicate"))
    assert sorted(row.timestamp for row in rows) == [
        T0 + timedelta(seconds=i) for i in range(20)]
    assert next(r.value for r in rows if r.timestamp == T0 + timedelta(seconds=10)) == 70.0
    assert report.rejected == {"duplicate": 1}


def test_the_oldest_instant_is_held_until_the_next_page():
    """Two whole pages with no shared instant: every row once, in the order the pages hold
    them, the first page's oldest after the second page's rows that are newer."""
    page = points(6)
    pages = [read(page[:3])[0], read(page[3:])[0]]
    assert all(p.widths is None for p in pages)
    rows = list(one_per_instant(pages, ReadReport(), "duplicate"))
    seconds = [int((row.timestamp - T0).total_seconds()) for row in rows]
    assert seconds == [5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"dataPoints": [], "nextPageToken": "t"}', {"dataPoints": [], "nextPageToken": "t"}),
        (b'{"v": NaN}', "nan"),  # orjson refuses it; json reads it; the point is then counted
        # Past 64 bits: the float that parse_number makes of it (orjson); past a float
        # (10**400) the integer (json), which parse_number counts as not finite.
        (b'{"v": 1' + b"0" * 30 + b"}", float(10**30)),
        (b'{"v": 1' + b"0" * 400 + b"}", 10**400),
        ('{"v": "\u00e9"}'.encode("utf-16"), "\u00e9"),  # json reads UTF-16 with its BOM
    ],
    ids=["plain", "NaN", "past 64 bits", "past a float", "UTF-16"],
)
def test_a_reply_reads_as_the_standard_library_reads_it(content, expected):
    body = json_body(content)
    if expected == "nan":
        assert math.isnan(body["v"])
    elif isinstance(expected, dict):
        assert body == expected
    else:
        assert body["v"] == expected


def test_a_reply_that_is_not_json_is_a_value_error():
    with pytest.raises(ValueError):
        json_body(b'{"dataPoints": [')


def test_each_point_of_a_page_keeps_its_own_recorder():
    # A page usually repeats one data source, which the whole-page path reads once; where
    # two recorders share a page, each row must still name its own (raw_data_sourced).
    page = points(6)
    page[2] = {**page[2], "dataSource": PHONE}
    page[5] = {**page[5], "dataSource": {"platform": "FITBIT"}}  # a recorder with no device
    whole = sample_candidates(page, HEART_RATE, P1)
    assert whole is not None
    assert [row.device for row in whole.rows] == [
        "Charge 6", "Charge 6", "Pixel 8", "Charge 6", "Charge 6", None]
    alone = sample_candidates(points(3), HEART_RATE, P1)
    assert alone is not None and {row.device for row in alone.rows} == {"Charge 6"}
