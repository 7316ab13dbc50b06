"""The synthetic source: its pure transform on hand-made payloads, then a few reads that run
wearipedia's real generator (marked slow: a heart-rate day takes about half a second)."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from ingester.errors import PayloadError
from ingester.metrics import METRICS
from ingester.model import Participant, ReadReport, Row, Window
from ingester.sources.synthetic import transform
from ingester.sources.synthetic.source import SyntheticSource, day_seed, load_wearipedia

ALWAYS = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
UTC_ZONE = ZoneInfo("UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def clock(second: int) -> str:
    return f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


# --- payloads shaped like wearipedia 0.1.7's, built by hand ---------------------------------


def heart_payload(day: date, points: list[tuple[str, object]]) -> dict:
    return {
        "heart_rate_day": [
            {
                "activities-heart": [{"dateTime": day.isoformat(), "value": {}}],
                "activities-heart-intraday": {
                    "dataset": [{"time": t, "value": v} for t, v in points],
                    "datasetInterval": 1,
                    "datasetType": "second",
                },
            }
        ]
    }


def azm_payload(day: date, minutes: list[tuple[str, dict]]) -> dict:
    return {
        "activities-active-zone-minutes-intraday": [
            {
                "dateTime": day.isoformat(),
                "minutes": [{"minute": m, "value": v} for m, v in minutes],
            }
        ]
    }


def hrv_payload(day: date, stamps: list[str], rmssd: float = 30.0) -> dict:
    value = {"rmssd": rmssd, "coverage": 0.95, "hf": 400.0, "lf": 120.0}
    return {
        "hrv": [
            {
                "dateTime": day.isoformat(),
                "minutes": [{"minute": s, "value": value} for s in stamps],
            }
        ]
    }


def spo2_payload(day: date, points: list[tuple[str, object]]) -> dict:
    return {"dateTime": day.isoformat(), "minutes": [{"value": v, "minute": m} for m, v in points]}


def minutes_from(start: datetime, count: int, fmt: str = "%Y-%m-%dT%H:%M:%S") -> list[str]:
    return [(start + timedelta(minutes=i)).strftime(fmt) for i in range(count)]


def rows_of(rows) -> list[tuple[datetime, str, float]]:
    return [(r.timestamp, r.metric_type, r.value) for r in rows]


# --- local wall clock -> UTC -----------------------------------------------------------------


def zoneinfo_utc(day: date, second: int, zone: ZoneInfo) -> datetime | None:
    """The reference: one ZoneInfo conversion per point, fold=0; None if the time never happens."""
    naive = datetime.combine(day, time()) + timedelta(seconds=second)
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    return instant if instant.astimezone(zone).replace(tzinfo=None) == naive else None


TRANSITION_DAYS = [
    ("America/New_York", date(2026, 3, 8)),  # 02:00 -> 03:00
    ("America/New_York", date(2026, 11, 1)),  # 02:00 -> 01:00
    ("Europe/Berlin", date(2026, 3, 29)),
    ("Europe/Berlin", date(2026, 10, 25)),
    ("Australia/Lord_Howe", date(2026, 4, 5)),  # 02:00 -> 01:30: a 30-minute shift
    ("Australia/Lord_Howe", date(2026, 10, 4)),  # 02:00 -> 02:30
    ("Pacific/Auckland", date(2026, 9, 27)),
    ("America/Santiago", date(2026, 9, 6)),  # the day starts at 01:00: midnight is skipped
    ("Europe/Berlin", date(2026, 7, 1)),  # no transition
    ("UTC", date(2026, 1, 1)),
]


def _sample_seconds() -> list[int]:
    # Every 5 s hits every transition (they fall on whole minutes), plus the seconds either side.
    edges = {s + d for s in range(0, 86_400, 1800) for d in (-1, 1)}
    return sorted({*range(0, 86_400, 5), *edges} & set(range(86_400)))


@pytest.mark.parametrize("zone_name, day", TRANSITION_DAYS)
def test_clock_times_land_where_zoneinfo_puts_them(zone_name: str, day: date) -> None:
    zone = ZoneInfo(zone_name)
    seconds = _sample_seconds()
    report = ReadReport()
    payload = heart_payload(day, [(clock(s), s) for s in seconds])
    got = {
        int(r.value): r.timestamp
        for r in transform.heart_rate_rows(payload, "p", zone, ALWAYS, report)
    }
    expected = {s: zoneinfo_utc(day, s, zone) for s in seconds}
    assert got == {s: when for s, when in expected.items() if when is not None}
    assert report.rejected[transform.NONEXISTENT_LOCAL_TIME] == sum(
        when is None for when in expected.values()
    )
    assert all(when.tzinfo is UTC for when in got.values())


@pytest.mark.parametrize(
    "day, stored, skipped",
    [(date(2026, 3, 8), 82_800, 3_600), (date(2026, 11, 1), 86_400, 0)],
)
def test_a_whole_transition_day_never_repeats_an_instant(
    day: date, stored: int, skipped: int
) -> None:
    report = ReadReport()
    payload = heart_payload(day, [(clock(s), 70.0) for s in range(86_400)])
    rows = list(
        transform.heart_rate_rows(payload, "p", ZoneInfo("America/New_York"), ALWAYS, report)
    )
    stamps = [r.timestamp for r in rows]
    assert len(rows) == len(set(stamps)) == stored
    assert stamps == sorted(stamps)
    assert report.rejected_total == skipped


def test_the_repeated_hour_keeps_its_first_occurrence() -> None:
    day = date(2026, 11, 1)  # New York: 01:00-01:59 happens twice, EDT then EST
    payload = heart_payload(day, [("01:30:00", 1), ("01:59:59", 2), ("02:00:00", 3)])
    rows = transform.heart_rate_rows(
        payload, "p", ZoneInfo("America/New_York"), ALWAYS, ReadReport()
    )
    assert [r.timestamp for r in rows] == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 5, 59, 59),
        utc(2026, 11, 1, 7),
    ]


def test_skipped_times_are_counted_only_by_the_window_holding_the_jump() -> None:
    zone, day = ZoneInfo("America/New_York"), date(2026, 3, 8)  # jump at 07:00 UTC
    payload = heart_payload(day, [("01:59:59", 1), ("02:30:00", 2), ("03:00:00", 3)])
    before, after = ReadReport(), ReadReport()
    early = list(
        transform.heart_rate_rows(
            payload, "p", zone, Window(utc(2026, 3, 8), utc(2026, 3, 8, 7)), before
        )
    )
    late = list(
        transform.heart_rate_rows(
            payload, "p", zone, Window(utc(2026, 3, 8, 7), utc(2026, 3, 9)), after
        )
    )
    assert [r.value for r in early] == [1.0] and [r.value for r in late] == [3.0]
    assert before.rejected_total == 0
    assert after.rejected == {transform.NONEXISTENT_LOCAL_TIME: 1}


def test_the_window_is_half_open() -> None:
    payload = heart_payload(date(2026, 1, 10), [(clock(s), s) for s in range(10)])
    window = Window(utc(2026, 1, 10, 0, 0, 2), utc(2026, 1, 10, 0, 0, 5))
    rows = transform.heart_rate_rows(payload, "p", UTC_ZONE, window, ReadReport())
    assert [r.value for r in rows] == [2.0, 3.0, 4.0]


def test_a_window_with_microseconds_keeps_the_next_whole_second() -> None:
    payload = heart_payload(date(2026, 1, 10), [(clock(s), s) for s in range(4)])
    window = Window(utc(2026, 1, 10, 0, 0, 1).replace(microsecond=1), utc(2026, 1, 10, 0, 0, 3))
    rows = transform.heart_rate_rows(payload, "p", UTC_ZONE, window, ReadReport())
    assert [r.value for r in rows] == [2.0]


@pytest.mark.parametrize(
    "zone_name, start, end, expected",
    [
        ("UTC", utc(2026, 1, 10), utc(2026, 1, 11), [date(2026, 1, 10)]),
        (
            "Europe/Berlin",
            utc(2026, 1, 10),
            utc(2026, 1, 11),
            [date(2026, 1, 10), date(2026, 1, 11)],
        ),
        ("America/New_York", utc(2026, 1, 10), utc(2026, 1, 10, 5), [date(2026, 1, 9)]),
        ("Pacific/Auckland", utc(2026, 1, 10, 11), utc(2026, 1, 10, 11, 0, 1), [date(2026, 1, 11)]),
        ("UTC", utc(2026, 1, 10), utc(2026, 1, 10), []),
    ],
)
def test_local_dates_of_a_window(
    zone_name: str, start: datetime, end: datetime, expected: list[date]
) -> None:
    assert transform.local_dates(Window(start, end), ZoneInfo(zone_name)) == expected


# --- values and unreadable points --------------------------------------------------------------


def test_numpy_values_become_python_floats() -> None:
    payload = heart_payload(
        date(2026, 1, 10),
        [("00:00:00", np.float64(71.5)), ("00:00:01", np.int64(72)), ("00:00:02", 73)],
    )
    rows = list(transform.heart_rate_rows(payload, "p", UTC_ZONE, ALWAYS, ReadReport()))
    assert [(type(r.value), r.value) for r in rows] == [(float, 71.5), (float, 72.0), (float, 73.0)]
    assert all(type(r) is Row for r in rows)


def test_unreadable_points_are_counted_and_skipped() -> None:
    points = [
        ("00:00:00", 70),
        ("00:00:01", None),
        ("00:00:02", "fast"),
        ("00:00:03", float("nan")),
        ("00:00:04", float("inf")),
        ("24:00:05", 70),
        ("00:00:06", 71),
        ("00:00:06", 72),  # the same clock time again
        ("00:00:05", 73),  # and one that goes back
    ]
    report = ReadReport()
    rows = transform.heart_rate_rows(
        heart_payload(date(2026, 1, 10), points), "p", UTC_ZONE, ALWAYS, report
    )
    assert [r.value for r in rows] == [70.0, 71.0]
    assert report.rejected == {
        transform.BAD_VALUE: 4,
        transform.UNREADABLE_TIME: 1,
        transform.REPEATED_LOCAL_TIME: 2,
    }


@pytest.mark.parametrize(
    "read",
    [
        lambda p, *a: transform.heart_rate_rows(p, *a),
        lambda p, *a: transform.active_zone_minutes_rows(p, *a),
        lambda p, *a: transform.hrv_rows([p], *a),
        lambda p, *a: transform.spo2_rows([p], *a),
        lambda p, *a: transform.breathing_rate_rows(p, *a),
        lambda p, *a: transform.activity_rows(p, *a),
    ],
)
@pytest.mark.parametrize("payload", [{}, {"hrv": None, "br": [], "heart_rate_day": [{}]}])
def test_a_payload_of_another_shape_is_a_payload_error(read, payload) -> None:
    with pytest.raises(PayloadError):
        list(read(payload, "p", UTC_ZONE, ALWAYS, ReadReport()))


# --- each type ----------------------------------------------------------------------------------


def test_zone_minutes_list_every_zone_each_minute() -> None:
    """The one rule (metrics.py): the score counts a cardio or peak minute 2, though the
    library writes 1; the zone metrics hold minutes in the zone."""
    minutes = [
        ("00:00:00", {"activeZoneMinutes": 0}),
        ("00:01:00", {"cardioActiveZoneMinutes": 1, "activeZoneMinutes": 1}),
        ("00:02:00", {"fatBurnActiveZoneMinutes": 1, "activeZoneMinutes": 1}),
        ("00:03:00", {"peakActiveZoneMinutes": 1, "activeZoneMinutes": 1}),
    ]
    rows = transform.active_zone_minutes_rows(
        azm_payload(date(2026, 1, 10), minutes), "p", UTC_ZONE, ALWAYS, ReadReport()
    )
    assert rows_of(rows) == [
        (utc(2026, 1, 10, 0, 0), "active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 0), "fat_burn_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 0), "cardio_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 0), "peak_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 1), "active_zone_minutes", 2.0),
        (utc(2026, 1, 10, 0, 1), "fat_burn_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 1), "cardio_active_zone_minutes", 1.0),
        (utc(2026, 1, 10, 0, 1), "peak_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 2), "active_zone_minutes", 1.0),
        (utc(2026, 1, 10, 0, 2), "fat_burn_active_zone_minutes", 1.0),
        (utc(2026, 1, 10, 0, 2), "cardio_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 2), "peak_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 3), "active_zone_minutes", 2.0),
        (utc(2026, 1, 10, 0, 3), "fat_burn_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 3), "cardio_active_zone_minutes", 0.0),
        (utc(2026, 1, 10, 0, 3), "peak_active_zone_minutes", 1.0),
    ]


def test_hrv_minutes_after_midnight_move_to_the_next_day() -> None:
    # wearipedia 0.1.7 writes the evening's date on every minute of a night
    stamps = [f"2026-01-10T{t}.000" for t in ("23:58:30", "23:59:30", "00:00:30", "00:01:30")]
    rows = transform.hrv_rows(
        [hrv_payload(date(2026, 1, 10), stamps)], "p", UTC_ZONE, ALWAYS, ReadReport()
    )
    rmssd = [r.timestamp for r in rows if r.metric_type == "hrv_rmssd"]
    assert rmssd == [
        utc(2026, 1, 10, 23, 58, 30),
        utc(2026, 1, 10, 23, 59, 30),
        utc(2026, 1, 11, 0, 0, 30),
        utc(2026, 1, 11, 0, 1, 30),
    ]


def test_hrv_minutes_become_four_metrics() -> None:
    payload = hrv_payload(date(2026, 1, 10), ["2026-01-10T01:00:00.000"], rmssd=np.float64(41.2))
    rows = transform.hrv_rows([payload], "p", UTC_ZONE, ALWAYS, ReadReport())
    assert {r.metric_type: r.value for r in rows} == {
        "hrv_rmssd": 41.2,
        "hrv_coverage": 0.95,
        "hrv_hf": 400.0,
        "hrv_lf": 120.0,
    }


def _two_overlapping_nights() -> list[dict]:
    # The first runs 23:00-01:59; the second starts inside it, at 01:00:30.
    first = spo2_payload(
        date(2026, 1, 10), [(m, 97.0) for m in minutes_from(datetime(2026, 1, 10, 23), 180)]
    )
    second = spo2_payload(
        date(2026, 1, 11), [(m, 99.0) for m in minutes_from(datetime(2026, 1, 11, 1, 0, 30), 120)]
    )
    return [first, second]


def test_a_night_starts_only_after_the_previous_one_ended() -> None:
    report = ReadReport()
    rows = list(transform.spo2_rows(_two_overlapping_nights(), "p", UTC_ZONE, ALWAYS, report))
    assert len(rows) == len({r.timestamp for r in rows}) == 180 + 61
    assert max(r.timestamp for r in rows if r.value == 97.0) == utc(2026, 1, 11, 1, 59)
    assert min(r.timestamp for r in rows if r.value == 99.0) == utc(2026, 1, 11, 1, 59, 30)
    assert report.rejected == {transform.OVERLAPPING_SLEEP: 59}


def test_nights_split_across_windows_give_the_same_rows() -> None:
    whole_report = ReadReport()
    whole = list(
        transform.spo2_rows(_two_overlapping_nights(), "p", UTC_ZONE, ALWAYS, whole_report)
    )
    cuts = [ALWAYS.start, utc(2026, 1, 11, 0, 17, 3), utc(2026, 1, 11, 1, 30), ALWAYS.end]
    parts, parts_report = [], ReadReport()
    for start, end in pairwise(cuts):
        parts += transform.spo2_rows(
            _two_overlapping_nights(), "p", UTC_ZONE, Window(start, end), parts_report
        )
    assert parts == whole
    assert parts_report.rejected == whole_report.rejected


@pytest.mark.parametrize(
    "zone_name, day, start",
    [
        ("UTC", date(2026, 1, 10), utc(2026, 1, 10)),
        ("Europe/Berlin", date(2026, 1, 10), utc(2026, 1, 9, 23)),
        ("America/Santiago", date(2026, 9, 6), utc(2026, 9, 6, 4)),  # the day begins at 01:00
    ],
)
def test_daily_values_are_stamped_at_the_start_of_the_local_day(
    zone_name: str, day: date, start: datetime
) -> None:
    zone = ZoneInfo(zone_name)
    breathing = {
        "br": [
            {
                "dateTime": day.isoformat(),
                "value": {
                    "deepSleepSummary": {"breathingRate": 12.5},
                    "remSleepSummary": {"breathingRate": 15.0},
                    "lightSleepSummary": {"breathingRate": 17.0},
                    "fullSleepSummary": {"breathingRate": np.float64(14.8)},
                },
            }
        ]
    }
    activity = {
        kind: {"dateTime": day.isoformat(), "value": n}
        for n, kind in enumerate(transform.ACTIVITY_TYPES)
    }
    report = ReadReport()
    rows = [
        *transform.breathing_rate_rows(breathing, "p", zone, ALWAYS, report),
        *transform.activity_rows(activity, "p", zone, ALWAYS, report),
    ]
    assert {r.timestamp for r in rows} == {start}
    assert {r.metric_type: r.value for r in rows} == {
        "breathing_rate": 14.8,
        "breathing_rate_deep": 12.5,
        "breathing_rate_light": 17.0,
        "breathing_rate_rem": 15.0,
        "steps_daily": 0.0,
        "distance_daily": 1.0,
        "very_active_minutes_daily": 2.0,
        "fairly_active_minutes_daily": 3.0,
        "lightly_active_minutes_daily": 4.0,
        "sedentary_minutes_daily": 5.0,
    }
    assert report.rejected_total == 0


@pytest.mark.parametrize(
    "zone_name, start",
    [
        ("UTC", utc(2026, 3, 2)),
        ("Asia/Tokyo", utc(2026, 3, 1, 15)),  # east of UTC: the day begins the evening before
        ("America/Los_Angeles", utc(2026, 3, 2, 8)),  # west of UTC
    ],
)
def test_resting_heart_rate_and_daily_hrv_are_stamped_at_local_midnight(
    zone_name: str, start: datetime
) -> None:
    zone, day = ZoneInfo(zone_name), date(2026, 3, 2)
    heart = heart_payload(day, [("00:00:00", 70)])
    heart["heart_rate_day"][0]["activities-heart"][0]["value"]["restingHeartRate"] = 58
    daily_hrv = {"hrv": [{"hrv": [{"value": {"dailyRmssd": 41, "deepRmssd": 17},
                                   "dateTime": day.isoformat()}]}]}
    report = ReadReport()
    rows = [
        *transform.resting_heart_rate_rows(heart, "p", zone, ALWAYS, report),
        *transform.daily_hrv_rows(daily_hrv, "p", zone, ALWAYS, report),
    ]
    assert rows == [Row(start, "p", "resting_heart_rate", 58.0, transform.DEVICE),
                    Row(start, "p", "hrv_rmssd_daily", 41.0, transform.DEVICE)]
    assert all(type(r.value) is float for r in rows) and report.rejected_total == 0
    # A window that ends before the local midnight holds neither.
    before = Window(start - timedelta(days=1), start)
    assert list(transform.resting_heart_rate_rows(heart, "p", zone, before, report)) == []
    assert list(transform.daily_hrv_rows(daily_hrv, "p", zone, before, report)) == []


def test_a_daily_value_that_is_missing_is_counted_not_stored() -> None:
    day = date(2026, 3, 2)
    report = ReadReport()
    heart = heart_payload(day, [])  # its value has no restingHeartRate
    daily_hrv = {"hrv": [{"hrv": [{"value": {}, "dateTime": day.isoformat()}]}]}
    assert list(transform.resting_heart_rate_rows(heart, "p", UTC_ZONE, ALWAYS, report)) == []
    assert list(transform.daily_hrv_rows(daily_hrv, "p", UTC_ZONE, ALWAYS, report)) == []
    assert report.rejected == {transform.BAD_VALUE: 2}
    with pytest.raises(PayloadError):
        list(transform.daily_hrv_rows({"hrv": []}, "p", UTC_ZONE, ALWAYS, report))


def test_every_metric_the_transform_can_emit_is_in_the_vocabulary() -> None:
    emitted = {
        "heart_rate",
        "spo2",
        "resting_heart_rate",
        "hrv_rmssd_daily",
        *(metric for metric, _ in transform._ZONE_MINUTES),
        *(metric for metric, _ in transform._HRV),
        *(metric for metric, _ in transform._BREATHING),
        *transform.ACTIVITY_TYPES.values(),
    }
    assert emitted <= METRICS.keys()
    assert all(m.unit and m.description for m in METRICS.values())


# --- the shell ----------------------------------------------------------------------------------


LOAD_AND_LIST_IMPORTS = """
import sys
from ingester.sources.synthetic.source import load_wearipedia
generator = load_wearipedia()._generator
print(generator.__file__)
print(" ".join(sorted(name.split(".")[0] for name in sys.modules)))
"""


def test_the_generator_loads_without_the_rest_of_wearipedia() -> None:
    """wearipedia's package __init__ imports every device (scipy, sympy, pandas, ...) and
    creates a directory in /tmp: a run needs none of that, only the generator module."""
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_LIST_IMPORTS],
        capture_output=True, text=True, check=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent / "ingestion",
    )
    generator_file, imported = loaded.stdout.splitlines()
    assert generator_file.endswith("wearipedia/devices/fitbit/fitbit_sense_gen.py")
    assert "numpy" in imported.split()
    assert not {"wearipedia", "scipy", "sympy", "pandas", "myfitnesspal"} & set(imported.split())


def test_an_empty_window_or_unknown_stream_needs_no_wearipedia() -> None:
    source = SyntheticSource()
    who = Participant("p", "UTC", "synthetic", date(2026, 1, 1), 1)
    moment = utc(2026, 1, 10)
    assert list(source.read(who, "spo2", Window(moment, moment), ReadReport())) == []
    with pytest.raises(ValueError, match="unknown synthetic stream"):
        source.read(who, "steps", Window(moment, moment), ReadReport())
    assert source._library is None


# --- against wearipedia 0.1.7's generator ------------------------------------------------------

BERLIN = Participant("p7", "Europe/Berlin", "synthetic", date(2026, 1, 1), 7)
LIGHT_STREAMS = ("hrv", "spo2", "breathing", "activity")  # all but heart: milliseconds a day


def read_all(
    source: SyntheticSource, who: Participant, streams, windows
) -> tuple[list[Row], Counter]:
    rows, report = [], ReadReport()
    for stream in streams:
        for window in windows:
            rows += source.read(who, stream, window, report)
    return rows, report.rejected


@pytest.mark.slow
def test_a_day_is_the_same_whatever_window_or_rng_state_it_is_read_in() -> None:
    whole = [Window(utc(2026, 1, 9, 23), utc(2026, 1, 13, 23))]  # four Berlin days
    cuts = [
        utc(2026, 1, 9, 23),
        utc(2026, 1, 10, 6, 17, 41),
        utc(2026, 1, 12, 1),
        utc(2026, 1, 13, 23),
    ]
    pieces = [Window(a, b) for a, b in pairwise(cuts)]
    first, first_rejected = read_all(SyntheticSource(), BERLIN, LIGHT_STREAMS, whole)
    random.seed(1)
    np.random.seed(1)
    again, again_rejected = read_all(SyntheticSource(), BERLIN, LIGHT_STREAMS, pieces)
    assert sorted(first) == sorted(again)
    assert first_rejected == again_rejected
    keys = Counter((r.metric_type, r.timestamp) for r in first)
    assert max(keys.values()) == 1
    assert {r.metric_type for r in first} <= METRICS.keys()
    assert all(
        type(r.value) is float and whole[0].start <= r.timestamp < whole[0].end for r in first
    )
    other, _ = read_all(
        SyntheticSource(),
        Participant("p8", "Europe/Berlin", "synthetic", date(2026, 1, 1), 8),
        LIGHT_STREAMS,
        whole,
    )
    assert sorted(rows_of(other)) != sorted(rows_of(first))


@pytest.mark.slow
def test_reading_leaves_the_global_random_generators_alone() -> None:
    random.seed(3)
    np.random.seed(3)
    expected = random.random(), np.random.random()
    random.seed(3)
    np.random.seed(3)
    list(
        SyntheticSource().read(
            BERLIN, "spo2", Window(utc(2026, 1, 10), utc(2026, 1, 11)), ReadReport()
        )
    )
    assert (random.random(), np.random.random()) == expected


@pytest.mark.slow
def test_heart_stream_on_a_spring_forward_day() -> None:
    who = Participant("ny", "America/New_York", "synthetic", date(2026, 3, 1), 11)
    day = Window(utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))  # the whole 23-hour local day
    report = ReadReport()
    rows = list(SyntheticSource().read(who, "heart", day, report))
    per_metric = Counter(r.metric_type for r in rows)
    assert per_metric == {"heart_rate": 82_800, **{m: 1_380 for m, _ in transform._ZONE_MINUTES},
                          "resting_heart_rate": 1}
    assert report.rejected == {transform.NONEXISTENT_LOCAL_TIME: 3_600 + 4 * 60}
    assert len({(r.metric_type, r.timestamp) for r in rows}) == len(rows)
    assert all(type(r.value) is float and day.start <= r.timestamp < day.end for r in rows)
    # A later run re-reading two hours of that day writes the very same values.
    part = Window(utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 8, 30))
    again = list(SyntheticSource().read(who, "heart", part, ReadReport()))
    assert again == [r for r in rows if r.timestamp in part]


# First value of some metrics of participant seed 7 on 2026-01-10 (UTC), from wearipedia 0.1.7
# with numpy 2.4.6 on Python 3.11; numpy's legacy seeding promises the same stream forever.
GOLDEN = {
    "heart_rate": (utc(2026, 1, 10), 68.10960963932939),
    "hrv_rmssd": (utc(2026, 1, 10, 23, 2, 29), 51.03),
    "spo2": (utc(2026, 1, 10, 23, 2, 29), 97.5),
    "breathing_rate": (utc(2026, 1, 10), 15.24053728214298),
    "steps_daily": (utc(2026, 1, 10), 13505.0),
    "distance_daily": (utc(2026, 1, 10), 10.184766214177978),
    "resting_heart_rate": (utc(2026, 1, 10), 58.0),
    "hrv_rmssd_daily": (utc(2026, 1, 10), 24.0),
}


@pytest.mark.slow
def test_values_are_pinned_for_a_seed_and_date() -> None:
    # If this fails, an upgrade (numpy, Python's random, wearipedia) changed the data that a
    # rerun would write over the rows already stored.
    who = Participant("g", "UTC", "synthetic", date(2026, 1, 1), 7)
    window = Window(utc(2026, 1, 10), utc(2026, 1, 11))
    rows, _ = read_all(SyntheticSource(), who, ("heart", *LIGHT_STREAMS), [window])
    first: dict[str, tuple[datetime, float]] = {}
    for r in rows:
        first.setdefault(r.metric_type, (r.timestamp, r.value))
    for metric, (when, value) in GOLDEN.items():
        assert first[metric] == (when, pytest.approx(value, rel=1e-12)), metric


@pytest.mark.slow
@pytest.mark.parametrize("zone_name", ["UTC", "Asia/Tokyo", "America/Los_Angeles"])
def test_daily_resting_heart_rate_and_hrv_equal_wearipedias_at_local_midnight(
    zone_name: str,
) -> None:
    """Exactly the values wearipedia's own generator gives for the day (run here with the
    seeds the source documents), one each, stamped at the local midnight: issue 24's
    done-when, for the synthetic source, in a zone east and one west of UTC."""
    who = Participant("z", zone_name, "synthetic", date(2026, 3, 1), 5)
    days = [date(2026, 3, 2), date(2026, 3, 3)]
    midnights = [datetime.combine(d, time(), who.zone).astimezone(UTC) for d in days]
    window = Window(midnights[0], datetime.combine(date(2026, 3, 4), time(), who.zone))
    rows, rejected = read_all(SyntheticSource(), who, ("heart", "hrv"), [window])
    daily = [r for r in rows if r.metric_type in ("resting_heart_rate", "hrv_rmssd_daily")]
    library = load_wearipedia()
    expected = []
    for day, midnight in zip(days, midnights, strict=True):
        with library.seeded(day_seed(who, day, "heart")) as gen:
            heart = gen.get_heart_rate(day.isoformat(), intraday=True)
        with library.seeded(day_seed(who, day, "hrv daily")) as gen:
            hrv = gen.get_hrv(day.isoformat())
        rhr = heart["heart_rate_day"][0]["activities-heart"][0]["value"]["restingHeartRate"]
        rmssd = hrv["hrv"][0]["hrv"][0]["value"]["dailyRmssd"]
        expected += [Row(midnight, "z", "resting_heart_rate", float(rhr), transform.DEVICE),
                     Row(midnight, "z", "hrv_rmssd_daily", float(rmssd), transform.DEVICE)]
    assert sorted(daily) == sorted(expected)
    assert {r.value for r in daily if r.metric_type == "resting_heart_rate"} == {58.0}
