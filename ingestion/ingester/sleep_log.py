"""Fitbit's sleep log -> a SleepSession. Pure: tested with plain dicts. One shape, two
sources: wearipedia's `sleep` (synthetic) and the Takeout archive's sleep-YYYY-MM-DD.json
(a list of logs, as the Fitbit Web API returns them).

A log is `startTime`/`endTime` (naive local clock times), `isMainSleep`, `type` ("stages" or
"classic") and `levels.data`: segments `{dateTime, level, seconds}` with level deep, light,
rem or wake (stages) or asleep, restless or awake (classic). `levels.shortData` holds short
wakes laid over the stages; like Google's shortAwakenings they are not stages of the
hypnogram and are not stored.

Real logs' segments follow one another. wearipedia 0.1.7 cuts its segments badly
(docs/wearipedia-notes.md, "Sleep"): the second wake starts where the first sleep stage
does, and the stages run on past `endTime` to about twice the night's length. The session
is the log's own span (from `startTime`, `duration` long); a segment that starts before the
one kept before it ends, or at or after the session's end, is counted and dropped; one that
runs past the end is cut there. The guard is harmless for real logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .model import ReadReport
from .sleep import CLASSIC, STAGED, SleepSession, SleepStage

# Reasons, counted in the run's line as "<count> <reason>".
OVERLAPPING_STAGE = "sleep stages overlapping the stage before them, which is kept"
STAGE_PAST_END = "sleep stages after their session's end"
NONEXISTENT_LOCAL_TIME = "local times that a DST jump skipped"
UNREADABLE_TIME = "times that cannot be read"
UNREADABLE_SEGMENT = "sleep stages of an unknown level or length"
KINDS = {"stages": STAGED, "classic": CLASSIC}
ONE_MINUTE = timedelta(minutes=1)  # endTime and duration agree to the second, or within it
LEVELS = {
    STAGED: {"wake": "awake", "light": "light", "deep": "deep", "rem": "rem"},
    CLASSIC: {"awake": "awake", "wake": "awake", "asleep": "asleep", "restless": "restless"},
}


class Unreadable(ValueError):
    """The log cannot be read: the reason it is counted under."""


def local_instant(raw: Any, zone: ZoneInfo, after: datetime | None = None) -> datetime:
    """A naive local clock time (ISO) in `zone`, as aware UTC; Unreadable if the clock
    never showed it (a DST gap). In a repeated hour the first occurrence is taken, unless it
    lies before `after` and the second does not: a night's segments follow one another, so
    one that would start before the segment before it is on the clock's second pass."""
    try:
        naive = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        raise Unreadable(UNREADABLE_TIME) from None
    if naive.tzinfo is not None:
        raise Unreadable(UNREADABLE_TIME)
    if naive.year < 2:  # year 1: in a zone east of UTC the instant is before datetime's range
        raise Unreadable(UNREADABLE_TIME)
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        raise Unreadable(NONEXISTENT_LOCAL_TIME)
    if after is not None and instant < after:
        second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return second if second >= after else instant
    return instant


def session_from_log(log: Any, zone: ZoneInfo, report: ReadReport, end_clock: bool = False
                     ) -> SleepSession | None:
    """The log as a session in `zone`; None (counted) if it cannot be read. With
    `end_clock` (Fitbit's own logs: endTime is the clock at the end), a start in a repeated
    hour is on whichever pass ends, `duration` later, at endTime (_start_pass)."""
    try:
        if not isinstance(log, Mapping):
            raise Unreadable("sleep logs that are not objects")
        kind = KINDS.get(log.get("type"))  # type: ignore[arg-type]
        if kind is None:
            raise Unreadable("sleep logs of an unknown type")
        start = local_instant(log.get("startTime"), zone)
        if end_clock:
            start = _start_pass(log, start, zone)
        end = _end(log, start, zone)
        if not start < end:
            raise Unreadable("sleep logs that end before they start")
        levels = log.get("levels")
        data = levels.get("data", []) if isinstance(levels, Mapping) else None
        if not isinstance(data, list):
            raise Unreadable("sleep logs without levels")
        stages = _stages(data, kind, zone, start, end, report)
    except Unreadable as error:
        report.reject(str(error))
        return None
    return SleepSession(start, end, log.get("isMainSleep") is True, kind, tuple(stages))


def _start_pass(log: Mapping, start: datetime, zone: ZoneInfo) -> datetime:
    """The start on the clock's second pass if the log's startTime lies in a repeated hour
    and only that reading ends at its endTime, `duration` later; else `start` (the first).
    Without this, a night that began after the clock went back landed an hour early."""
    duration = log.get("duration")
    if not (isinstance(duration, int) and duration > 0):
        return start
    second = datetime.fromisoformat(log["startTime"]).replace(tzinfo=zone, fold=1)
    second = second.astimezone(UTC)
    if second == start:  # not a repeated hour
        return start
    try:
        at_end = datetime.fromisoformat(log.get("endTime"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return start

    def ends_at_end(begin: datetime) -> bool:
        clock = (begin + timedelta(milliseconds=duration)).astimezone(zone)
        return abs(clock.replace(tzinfo=None) - at_end.replace(tzinfo=None)) < ONE_MINUTE

    return second if ends_at_end(second) and not ends_at_end(start) else start


def _end(log: Mapping, start: datetime, zone: ZoneInfo) -> datetime:
    """`duration` (ms) after the start: Fitbit's duration is time elapsed, while wearipedia's
    endTime adds it to the wall clock, an hour off across a DST change (or in its gap)."""
    duration = log.get("duration")
    if isinstance(duration, int) and duration > 0:
        return start + timedelta(milliseconds=duration)
    return local_instant(log.get("endTime"), zone)


def _stages(data: list, kind: str, zone: ZoneInfo, start: datetime, end: datetime,
            report: ReadReport) -> list[SleepStage]:
    """The segments as stages, in levels.data's order: the earlier segment wins. A segment
    that cannot be read is counted and left out; the rest of the night is kept. The first
    starts no earlier than the session (on the repeated hour's pass the session is on)."""
    stages: list[SleepStage] = []
    for segment in data:
        try:
            stage = _segment(segment, kind, zone, stages[-1].end if stages else start)
        except Unreadable as error:
            report.reject(str(error))
            continue
        if stage is None:
            continue
        if stage.start >= end:
            report.reject(STAGE_PAST_END)
        elif stages and stage.start < stages[-1].end:
            report.reject(OVERLAPPING_STAGE)
        else:
            stages.append(SleepStage(stage.start, min(stage.end, end), stage.stage))
    return stages


def _segment(segment: Any, kind: str, zone: ZoneInfo, after: datetime | None
             ) -> SleepStage | None:
    """The segment as a stage; None for one of no length (a night that fell asleep at once
    gets a first wake of 0 s)."""
    if not isinstance(segment, Mapping):
        raise Unreadable(UNREADABLE_SEGMENT)
    level = LEVELS[kind].get(segment.get("level"))  # type: ignore[arg-type]
    seconds = segment.get("seconds")
    if level is None or not isinstance(seconds, int) or seconds < 0:
        raise Unreadable(UNREADABLE_SEGMENT)
    if seconds == 0:
        return None
    start = local_instant(segment.get("dateTime"), zone, after)
    return SleepStage(start, start + timedelta(seconds=seconds), level)
