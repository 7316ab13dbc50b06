"""Which instants a run loads: pure planning of half-open windows, tested with plain data."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .model import Window


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local day, as an aware datetime in the zone."""
    return datetime.combine(day, time(0), tzinfo=zone)


def plan_window(
    *,
    watermark: datetime | None,
    participant_start: datetime,
    now: datetime,
    overlap: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Window | None:
    """The window one stream of one participant loads in this run, or None if empty.

    The end is the run's "now" (or an earlier --until), never the last point seen: a
    stream that had no data yet is still covered up to now. The start re-reads `overlap`
    before the watermark because devices sync late; the unique key absorbs the re-read.
    Nothing before the participant's own start date is ever read.
    """
    end = min(until, now) if until is not None else now
    if since is not None:
        start = since
    elif watermark is not None:
        start = watermark - overlap
    else:
        start = participant_start
    start = max(start, participant_start)
    if start >= end:
        return None
    return Window(start, end)


def advance(
    watermark: datetime | None, participant_start: datetime, window: Window
) -> datetime | None:
    """The watermark after committing a window: forward only, and never across a gap.

    A window that starts after everything loaded so far (a `--since` backfill of recent
    days) leaves a hole behind it; moving the watermark past it would skip the hole for
    good, so such a window leaves the watermark where it was.
    """
    loaded_until = watermark if watermark is not None else participant_start
    if window.start > loaded_until:
        return watermark
    return window.end if watermark is None else max(watermark, window.end)


def trusted_watermark(in_file: datetime | None, in_database: datetime | None) -> datetime | None:
    """The state file may lag the database, never lead it: a restored or purged database
    must be reloaded, whatever the file remembers."""
    if in_database is None or in_file is None:
        return in_database
    return min(in_file, in_database)
