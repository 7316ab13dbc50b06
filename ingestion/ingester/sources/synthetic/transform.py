"""Wearipedia Fitbit Charge 6 payloads of one type → Rows. Pure: no wearipedia, no I/O.

Payloads are the plain dicts wearipedia 0.1.7's generator functions return, so tests build
them by hand. Their times are naive local clock times of the participant. Here they become
aware UTC instants, on a "local second" axis: seconds since 1970-01-01 00:00 read off the
local wall clock, which a zone maps to UTC one local day at a time.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache, partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from ...errors import PayloadError
from ...metrics import AZM_SCORE
from ...model import ReadReport, Row, Window
from ...sleep_log import NONEXISTENT_LOCAL_TIME, UNREADABLE_TIME

DAY = 86_400
# The device every synthetic row names (raw_data_sourced.device): wearipedia's generator
# simulates a Fitbit Charge 6. init.sql (migration 13) seeds its data_origins row.
DEVICE = "Charge 6"

# Reasons a point is counted in the ReadReport instead of stored. The run's log line reads
# "<count> <reason>", so each is a plural noun phrase that says why (docs/wearipedia-notes.md).
OVERLAPPING_SLEEP = "sleep minutes inside the night before's sleep, which is kept"
BAD_VALUE = "values missing, not numbers or not finite"
# The two time reasons are sleep_log's (one phrase for sleep and rows). The library never
# sends these two:
REPEATED_LOCAL_TIME = "local times not later than the point before them"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_SECOND = timedelta(seconds=1)
# Offsets are probed this often while looking for transitions: real zones keep an offset for
# months, so two transitions never fall between two probes.
_PROBE_SECONDS = 900


# --- local wall clock -> UTC -------------------------------------------------------------


class _Span(NamedTuple):
    """Local seconds [start, end) of one day that share one way of reaching UTC."""

    start: int
    end: int
    shift: int | None  # UTC second = local second + shift; None: the clock jumped over them
    transition: int  # UTC second at which the span's offset began (the jump, for a gap)


def local_dates(window: Window, zone: ZoneInfo) -> list[date]:
    """The local dates in `zone` that overlap the half-open window."""
    if window.end <= window.start:
        return []
    first = window.start.astimezone(zone).date()
    last = (window.end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _local_second(day: date, seconds_of_day: int = 0) -> int:
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY + seconds_of_day


def _offset(zone: ZoneInfo, utc_second: int) -> int:
    offset = datetime.fromtimestamp(utc_second, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset // _SECOND


def _offsets(zone: ZoneInfo, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(first, end, offset) for each stretch of UTC seconds [lo, hi) with a constant offset."""
    stretches = []
    first, offset = lo, _offset(zone, lo)
    probe = lo
    while probe < hi:
        after = min(probe + _PROBE_SECONDS, hi)
        if _offset(zone, after) != offset:
            before = probe  # bisect to the first second with the new offset
            while after - before > 1:
                middle = (before + after) // 2
                if _offset(zone, middle) == offset:
                    before = middle
                else:
                    after = middle
            stretches.append((first, after, offset))
            first, offset = after, _offset(zone, after)
        probe = after
    stretches.append((first, hi, offset))
    return stretches


@lru_cache(maxsize=4096)
def _day_spans(zone: ZoneInfo, day_index: int) -> tuple[_Span, ...]:
    """How each local second of one day reaches UTC: usually one span, more on DST days."""
    lo, hi = day_index * DAY, (day_index + 1) * DAY
    spans = []
    covered = lo
    # Offsets stay within a day of UTC, so no UTC second outside this range shows this day.
    for first, end, offset in _offsets(zone, lo - DAY, hi + DAY):
        local_start = min(max(first + offset, lo), hi)
        local_end = min(max(end + offset, lo), hi)
        if local_start > covered:  # spring forward: these wall-clock times never happen
            spans.append(_Span(covered, local_start, None, first))
            covered = local_start
        if local_end > covered:  # after a fall-back the first offset keeps the hour (fold=0)
            spans.append(_Span(covered, local_end, -offset, first))
            covered = local_end
    return tuple(spans)


def _day_start(zone: ZoneInfo, day: date) -> int:
    """The first local second of `day` that exists: midnight, unless a DST jump skips it."""
    for span in _day_spans(zone, day.toordinal() - _EPOCH_ORDINAL):
        if span.shift is not None:
            return span.start
    return _local_second(day)  # the whole day was skipped: counted as nonexistent


def _ceil_seconds(instant: datetime) -> int:
    return -((_EPOCH - instant) // _SECOND)


class _Drop(NamedTuple):
    """Stands for a point's value when the point is known to be dropped, for `reason`."""

    reason: str


def _rows(
    points: Iterable[tuple[int, str, Any]],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """Place (local second, metric_type, value) points on UTC and keep those in the window.

    A point dropped here (DST gap, sleep overlap, bad value) is counted only when its instant
    is in the window, so windows that partition time count it once; points without a readable
    time are counted by the parsers whenever the payload is read. Within a metric, strictly
    increasing local seconds map to strictly increasing instants: gaps are dropped and a
    repeated hour keeps its first occurrence (fold=0).
    """
    lo, hi = _ceil_seconds(window.start), _ceil_seconds(window.end)
    day_index = None
    spans: tuple[_Span, ...] = ()
    starts: list[int] = []
    for local, metric, raw in points:
        if local // DAY != day_index:
            day_index = local // DAY
            spans = _day_spans(zone, day_index)
            starts = [span.start for span in spans]
        span = spans[0] if len(spans) == 1 else spans[bisect_right(starts, local) - 1]
        if span.shift is None:
            if lo <= span.transition < hi:
                report.reject(NONEXISTENT_LOCAL_TIME)
            continue
        instant = local + span.shift
        if not lo <= instant < hi:
            continue
        if isinstance(raw, _Drop):
            report.reject(raw.reason)
            continue
        value = _number(raw)
        if value is None:
            report.reject(BAD_VALUE)
            continue
        yield Row(datetime.fromtimestamp(instant, UTC), participant_id, metric, value, DEVICE)


def _number(raw: Any) -> float | None:
    # Cast here: numpy scalars reach psycopg2 as text like "np.float64(97.5)".
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --- reading payloads ---------------------------------------------------------------------


@contextmanager
def _readable(kind: str) -> Iterator[None]:
    """Turn a payload whose shape is not the expected one into a PayloadError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise PayloadError(f"unreadable {kind} payload: {error!r}") from error


def _get(entry: Any, *keys: str) -> Any:
    """entry[k1][k2]..., or None when the point lacks it (then counted as a bad value)."""
    try:
        for key in keys:
            entry = entry[key]
    except (KeyError, IndexError, TypeError):
        return None
    return entry


def _clock_points(
    day: date, entries: Iterable[Any], key: str, report: ReadReport
) -> Iterator[tuple[int, Any]]:
    """(local second, entry) for entries whose entry[key] is a clock time "HH:MM:SS" on `day`."""
    midnight = _local_second(day)
    last = -1
    for entry in entries:
        try:
            clock = time.fromisoformat(entry[key])
        except (KeyError, TypeError, ValueError):
            report.reject(UNREADABLE_TIME)
            continue
        second = clock.hour * 3600 + clock.minute * 60 + clock.second
        if second <= last:
            report.reject(REPEATED_LOCAL_TIME)
            continue
        last = second
        yield midnight + second, entry


# --- the types the Charge 6 generator offers ----------------------------------------------


def heart_rate_rows(
    payload: Mapping[str, Any],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """One day of `intraday_heart_rate`: a value per second, as "HH:MM:SS" under the date."""
    with _readable("intraday_heart_rate"):
        heart = payload["heart_rate_day"][0]
        day = date.fromisoformat(heart["activities-heart"][0]["dateTime"])
        dataset = heart["activities-heart-intraday"]["dataset"]
    points = (
        (local, "heart_rate", _get(entry, "value"))
        for local, entry in _clock_points(day, dataset, "time", report)
    )
    return _rows(points, participant_id, zone, window, report)


def resting_heart_rate_rows(
    payload: Mapping[str, Any],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """The day's `restingHeartRate` of an `intraday_heart_rate` payload, at the day's start
    (local midnight, like every daily value). wearipedia 0.1.7 always says 58."""
    return _day_value("intraday_heart_rate",
                      lambda: payload["heart_rate_day"][0]["activities-heart"][0],
                      "resting_heart_rate", "restingHeartRate",
                      participant_id, zone, window, report)


def daily_hrv_rows(
    payload: Mapping[str, Any],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """One day of wearipedia's `hrv` (get_hrv): its `dailyRmssd` as `hrv_rmssd_daily`, at the
    day's start. Its `deepRmssd` has no metric (Google's daily HRV has none either)."""
    return _day_value("hrv", lambda: payload["hrv"][0]["hrv"][0], "hrv_rmssd_daily",
                      "dailyRmssd", participant_id, zone, window, report)


def _day_value(
    payload_name: str,
    entry_of: Callable[[], Mapping[str, Any]],
    metric: str,
    key: str,
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """A payload's one daily value (`entry_of()["value"][key]`) at its day's start."""
    with _readable(payload_name):
        entry = entry_of()
        start = _day_start(zone, date.fromisoformat(entry["dateTime"]))
    return _rows([(start, metric, _get(entry, "value", key))], participant_id, zone, window,
                 report)


_ZONE_MINUTES = (
    ("active_zone_minutes", "activeZoneMinutes"),
    ("fat_burn_active_zone_minutes", "fatBurnActiveZoneMinutes"),
    ("cardio_active_zone_minutes", "cardioActiveZoneMinutes"),
    ("peak_active_zone_minutes", "peakActiveZoneMinutes"),
)
# The score a minute in each zone earns (metrics.AZM_SCORE), by the library's key.
_ZONE_SCORE = {
    "fatBurnActiveZoneMinutes": AZM_SCORE["fat_burn"],
    "cardioActiveZoneMinutes": AZM_SCORE["cardio"],
    "peakActiveZoneMinutes": AZM_SCORE["peak"],
}


def active_zone_minutes_rows(
    payload: Mapping[str, Any],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """One day of `intraday_active_zone_minute`: per minute, the minutes earned by zone.

    A minute lists only the zones it earned in (like Fitbit's API), so a missing zone is 0;
    every minute yields all four metrics, to keep each series dense. The library counts a
    minute in any zone as 1 in `activeZoneMinutes` too; the score follows the one rule of
    metrics.py instead (a cardio or peak minute counts 2), from the zone minutes.
    """
    with _readable("intraday_active_zone_minute"):
        azm = payload["activities-active-zone-minutes-intraday"][0]
        day = date.fromisoformat(azm["dateTime"])
        minutes = azm["minutes"]

    def points() -> Iterator[tuple[int, str, Any]]:
        for local, entry in _clock_points(day, minutes, "minute", report):
            earned = _get(entry, "value")
            if not isinstance(earned, Mapping):
                for metric, _ in _ZONE_MINUTES:
                    yield local, metric, None
                continue
            try:
                score: Any = sum(float(earned.get(key, 0)) * weight
                                 for key, weight in _ZONE_SCORE.items())
            except (TypeError, ValueError):
                score = None  # counted as a bad value
            for metric, key in _ZONE_MINUTES:
                yield local, metric, score if key == "activeZoneMinutes" else earned.get(key, 0)

    return _rows(points(), participant_id, zone, window, report)


def _night(entries: Iterable[Any], report: ReadReport, *, date_lags: bool) -> list[tuple[int, Any]]:
    """(local second, value) of one night's minutes, whose "minute" is a full local datetime.

    With date_lags, minutes after midnight still carry the evening's date (wearipedia 0.1.7's
    intraday_hrv, on every night that starts before midnight): a clock that goes backwards has
    crossed midnight, so the date moves on by a day.
    """
    night: list[tuple[int, Any]] = []
    lag = 0
    for entry in entries:
        try:
            stamp = datetime.fromisoformat(entry["minute"])
        except (KeyError, TypeError, ValueError):
            report.reject(UNREADABLE_TIME)
            continue
        local = _local_second(stamp.date(), stamp.hour * 3600 + stamp.minute * 60 + stamp.second)
        if date_lags and night and local + lag <= night[-1][0]:
            lag += DAY
        local += lag
        if night and local <= night[-1][0]:
            report.reject(REPEATED_LOCAL_TIME)
            continue
        night.append((local, _get(entry, "value")))
    return night


def _without_overlaps(
    nights: Iterable[list[tuple[int, Any]]],
) -> Iterator[tuple[list[tuple[int, Any]], list[tuple[int, Any]]]]:
    """(kept, dropped) per night: a night keeps only the minutes after all earlier nights.

    The generator draws each night's start (21:00-02:59) and length (6-9 h) on its own, so a
    night can begin before the previous one ends. The earlier night wins, so that no instant
    gets two values, and a night's rows depend only on the nights before it, not on the window
    they were read in. A night ends by noon of the next day, so one earlier night is enough.
    """
    last_end: int | None = None
    for night in nights:
        cut = 0 if last_end is None else bisect_right(night, last_end, key=lambda p: p[0])
        yield night[cut:], night[:cut]
        if night:
            last_end = night[-1][0] if last_end is None else max(last_end, night[-1][0])


def _night_points(
    nights: Iterable[list[tuple[int, Any]]], fields: tuple[tuple[str, str | None], ...]
) -> Iterator[tuple[int, str, Any]]:
    dropped = _Drop(OVERLAPPING_SLEEP)
    for kept, overlapping in _without_overlaps(nights):
        for local, _ in overlapping:
            for metric, _ in fields:
                yield local, metric, dropped
        for local, value in kept:
            for metric, key in fields:
                yield local, metric, value if key is None else _get(value, key)


_HRV = (
    ("hrv_rmssd", "rmssd"),
    ("hrv_hf", "hf"),
    ("hrv_lf", "lf"),
    ("hrv_coverage", "coverage"),
)


@dataclass(frozen=True)
class _SleepSeries:
    """How one per-minute sleep series of the library reads."""

    payload: str  # the library's type name, for error messages
    minutes: Callable[[Mapping[str, Any]], Any]  # where a payload keeps its minutes
    date_lags: bool  # minutes after midnight keep the previous day's date (intraday_hrv)
    metrics: tuple[tuple[str, str | None], ...]  # metric_type, value key (None: the value)


SLEEP_SERIES = {
    "hrv": _SleepSeries("intraday_hrv", lambda p: p["hrv"][0]["minutes"], True, _HRV),
    "spo2": _SleepSeries("intraday_spo2", lambda p: p["minutes"], False, (("spo2", None),)),
}


def sleep_rows(
    kind: str,
    nights: Iterable[Mapping[str, Any]],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """Consecutive days of a sleep series ("hrv" or "spo2"), in date order, starting one day
    before the first night whose rows are wanted (it decides where that night may begin)."""
    series = SLEEP_SERIES[kind]

    def parsed() -> Iterator[list[tuple[int, Any]]]:
        for payload in nights:
            with _readable(series.payload):
                minutes = series.minutes(payload)
            yield _night(minutes, report, date_lags=series.date_lags)

    return _rows(_night_points(parsed(), series.metrics), participant_id, zone, window, report)


hrv_rows = partial(sleep_rows, "hrv")
spo2_rows = partial(sleep_rows, "spo2")


_BREATHING = (
    ("breathing_rate", "fullSleepSummary"),
    ("breathing_rate_deep", "deepSleepSummary"),
    ("breathing_rate_light", "lightSleepSummary"),
    ("breathing_rate_rem", "remSleepSummary"),
)


def breathing_rate_rows(
    payload: Mapping[str, Any],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """One day of `intraday_breath_rate`: one value per sleep stage, stamped at day start."""
    with _readable("intraday_breath_rate"):
        entry = payload["br"][0]
        start = _day_start(zone, date.fromisoformat(entry["dateTime"]))
        stages = entry["value"]
    points = [(start, metric, _get(stages, key, "breathingRate")) for metric, key in _BREATHING]
    return _rows(points, participant_id, zone, window, report)


# wearipedia's daily activity types; `intraday_activity` is the very same dict as `steps`.
ACTIVITY_TYPES = {
    "steps": "steps_daily",
    "distance": "distance_daily",
    "minutesVeryActive": "very_active_minutes_daily",
    "minutesFairlyActive": "fairly_active_minutes_daily",
    "minutesLightlyActive": "lightly_active_minutes_daily",
    "minutesSedentary": "sedentary_minutes_daily",
}


def activity_rows(
    payload: Mapping[str, Mapping[str, Any]],
    participant_id: str,
    zone: ZoneInfo,
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    """One day of daily activity: ACTIVITY_TYPES name -> {"dateTime", "value"}, at day start."""
    points = []
    with _readable("activity"):
        for kind, metric in ACTIVITY_TYPES.items():
            entry = payload[kind]
            start = _day_start(zone, date.fromisoformat(entry["dateTime"]))
            points.append((start, metric, entry.get("value")))
    return _rows(points, participant_id, zone, window, report)
