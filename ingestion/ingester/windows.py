"""Which instants a run loads: pure planning of half-open windows, tested with plain data."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from .model import Window


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The first instant of a local day, as an aware datetime in the zone (UTC's too)."""
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
    watermark: datetime | None, participant_start: datetime, window: Window, until: datetime
) -> datetime | None:
    """The watermark after committing a window: `max(old, min(window.end, until))`, forward
    only, never across a gap, never past what the source may still deliver.

    A window that starts after everything loaded so far (a `--since` backfill of recent
    days) leaves a hole behind it; moving the watermark past it would skip the hole for
    good, so such a window leaves the watermark where it was. `until` is the source's
    DeliveryBound: data before it can no longer arrive, data after it still can.
    """
    loaded_until = watermark if watermark is not None else participant_start
    if window.start > loaded_until:
        return watermark
    reached = min(window.end, until)
    if reached <= loaded_until:
        return watermark
    return reached


def new_stream_start(
    participant_start: datetime, now: datetime, zone: ZoneInfo, max_backfill_days: int
) -> datetime | None:
    """Where a stream new to a participant already loaded begins (the source gained it, as
    synthetic and Google gained `sleep`): None, the participant's start date, like any first
    load; unless that lies more than max_backfill_days back, then the local midnight that
    many days before now, so that a new stream never makes one night load years. Earlier
    days are a `--since` backfill (docs/participants.md)."""
    bound = local_midnight(now.astimezone(zone).date() - timedelta(days=max_backfill_days), zone)
    return None if participant_start >= bound else bound


def slice_end(start: datetime, end: datetime, zone: ZoneInfo, days: int) -> datetime:
    """The end of the slice that begins at `start`: the local midnight `days` local days on
    (a DST day is 23 or 25 hours), or `end` if that comes first."""
    first = start.astimezone(zone).date()
    return min(local_midnight(first + timedelta(days=days), zone), end)


# Slices aim at about this many rows: a slice that read fewer than half covers twice the
# days next (up to MAX_SLICE_DAYS), one that read more than twice covers half. Each slice
# ends by waiting for its last COPY and committing, time in which nothing else runs: one-day
# slices of 1 Hz heart rate (~94,000 rows) cost the end-to-end run 25-29 %; with these
# (4-day slices, ~380,000 rows) the run's rate was 1.02 and 0.89 of one transaction a
# participant in two benchmark runs (docs/performance.md). A sparse history grows to the cap,
# so it costs a request per type per two weeks, not per day.
SLICE_ROWS = 500_000
# A window's first slice: the days a slice of 1 Hz heart rate, the densest data we load,
# settles at; sparser data grows from there, denser shrinks. Starting at one day cost every
# window two more slice ends on the way up (1, 2, 4): a night's 2-3 days took 2 slices and a
# week 3, each end a wait in which the server has nothing to store until the next slice's
# first batch is generated (docs/performance.md, "Slices": 0.81 of one transaction a
# participant, now 1.00, paired medians of 3 x 7 days).
FIRST_SLICE_DAYS = 4
# The cap bounds the locks of one transaction: a slice of N days touches at most N + 1 daily
# chunks of raw_data, each with its two indexes (docs/performance.md, "Slices").
MAX_SLICE_DAYS = 14


def next_slice_days(days: int, rows: int) -> int:
    """Pure: how many local days the next slice covers, after one of `days` read `rows`."""
    if rows < SLICE_ROWS // 2:
        return min(days * 2, MAX_SLICE_DAYS)
    if rows > 2 * SLICE_ROWS:
        return max(days // 2, 1)
    return days


def trusted_watermark(
    in_file: datetime | None, in_database: datetime | None, in_run_log: datetime | None = None
) -> datetime | None:
    """One stream's watermark: the run log's own for the stream where it has one
    (`in_run_log`), committed with the data, so exact whatever the state file says: a file
    that could not be written lags it, and would make every night re-read one more day.

    Else (a run log written before it kept each stream's) the participant's one watermark
    of the database, `in_database`, the earliest of its streams: the file may lag it (a
    stream held where the grant lacks its scope), never lead it: a restored or purged
    database must be reloaded, whatever the file remembers."""
    if in_run_log is not None:
        return in_run_log
    if in_database is None or in_file is None:
        return in_database
    return min(in_file, in_database)
