"""The rows of one donated archive, window by window (the import's slices).

A file is parsed whole before any of its rows is yielded, so a file that turns out damaged
halfway contributes nothing and is reported; the other files load. A parsed file is kept
until a window starts after its dates, because one file (a day, or a month of per-minute
steps) feeds the slice or two around it: memory holds the files of about one slice,
however long the history. Sleep files (about 30 nights each) are held the same way, as
sessions: the pipeline asks for them with read_sleep, like any SleepSource.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import TypeVar

from ...model import DeliveryBound, Participant, ReadReport, Row, Window
from ...sleep import SLEEP_STREAM, SleepSession
from ...windows import local_midnight
from .archive import DamagedEntry, TakeoutArchive, UnsafeArchive
from .catalog import Entry, Skipped, classify
from .transform import (
    EARLIEST,
    FileRows,
    MalformedFile,
    azm_rows,
    csv_rows,
    json_rows,
    load_json,
    sleep_sessions,
)

# A file's rows lie within its date and the next file's (a month file is followed by the
# next month's), give or take a zone's offset (the margin on each side).
MARGIN = timedelta(days=1)
LAST_FILE_SPAN = timedelta(days=32)  # from the 1st into the next month; a sleep file's nights

LOADED, NO_DATA = "loaded", "skipped: no data in the file"
# A JSON file is parsed whole, and a file's rows are held until its slices have passed, so
# one file's size bounds the import's memory. Real files are a day or a month of one stream
# (a few MB; a day of 1 Hz heart rate is under 4 MB); an entry may inflate to gigabytes
# within the zip limits. A file larger than this is rejected, named, and the rest loads.
MAX_FILE_BYTES = 64 << 20
INSTANT = attrgetter("timestamp")
T = TypeVar("T")
Tally = Callable[[ReadReport], None]  # counts a file read the first time
LOCAL_FORMS = ("azm_csv", "sleep_json")  # files that stamp naive local times
EVER = datetime.min.replace(tzinfo=UTC)


# What a damaged file can raise in the standard library's readers and in our parsing of
# what it holds (a field past csv's limit, JSON nested past the recursion limit, an integer
# past Python's digit limit, a list where a string belongs, a duration past datetime's
# range): each rejects its file, never the import (docs/takeout.md).
FILE_FAULTS = (ValueError, csv.Error, TypeError, KeyError, AttributeError, RecursionError,
               OverflowError)


class TakeoutSource:
    """A Source over one archive (sources.Source); without an archive it has no streams, so
    a nightly run finds nothing to do for a Takeout participant. Each stream's windows must
    come in time order, as the import's slices do: what a window has passed is let go."""

    def __init__(self, archive: TakeoutArchive | None = None, now: datetime | None = None,
                 file_limit: int = MAX_FILE_BYTES) -> None:
        self._archive = archive
        self._file_limit = file_limit
        self._sizes = {m.name: m.size for m in archive.members} if archive else {}
        self._now = now or datetime.now(UTC)
        entries, self.skipped = classify([m.name for m in archive.members] if archive else [])
        self._covers = _covers(entries, self._now)
        self.streams: tuple[str, ...] = tuple(self._covers)
        self.files: dict[str, str] = {}  # entry name -> loaded / skipped / rejected: why
        self.rows: Counter[str] = Counter()  # per metric, each file's rows counted once
        self.dropped: Counter[str] = Counter()  # rows left out by rule (recorders)
        self.unsafe: UnsafeArchive | None = None
        self.first: datetime | None = None  # the earliest instant of a loaded row
        # Per stream, the parsed files the current window needs (and the next may).
        self._kept: dict[str, dict[str, tuple[Window, list[Row]]]] = {s: {}
                                                                      for s in self.streams}
        self._first_file: set[str] = set()  # streams whose first file with rows was counted
        self.sessions = 0  # sleep sessions, each file's counted once
        self._nights: dict[str, tuple[Window, list[SleepSession]]] = {}  # as _kept, for sleep

    def delivered_until(self, participant: Participant, now: datetime) -> DeliveryBound:
        return DeliveryBound(now, "archive")

    def span(self, participant: Participant, report: ReadReport) -> Window | None:
        """The instants the archive can hold rows for. A file of the whole history (the
        daily CSVs) has no date in its name, so it is read to find its days."""
        starts, ends = [], []
        for stream, covers in self._covers.items():
            for entry, cover in covers:
                if entry.day is None:
                    found = self._rows(stream, entry, cover, participant, report)  # sorted
                    if found:
                        starts.append(found[0].timestamp)
                        ends.append(found[-1].timestamp + timedelta(seconds=1))
                else:
                    starts.append(cover.start)
                    ends.append(cover.end)
        if not starts:
            return None
        return Window(min(starts), min(max(ends), self._now))

    def local_span(self) -> Window | None:
        """The instants the archive's files of naive local times (Active Zone Minutes, sleep)
        can hold rows for, whatever the zone: their dates with a day on each side."""
        covers = [cover for stream in self._covers.values() for entry, cover in stream
                  if entry.form in LOCAL_FORMS]
        if not covers:
            return None
        return Window(min(c.start for c in covers), max(c.end for c in covers))

    def read(self, participant: Participant, stream: str, window: Window, report: ReadReport
             ) -> Iterator[Row]:
        if stream == SLEEP_STREAM:  # sessions, not rows: the pipeline calls read_sleep
            return
        start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
        kept = self._kept[stream]
        for name in [n for n, (cover, _) in kept.items() if cover.end <= start]:
            del kept[name]  # windows only move forward: no later one needs it
        for entry, cover in self._covers.get(stream, ()):
            if cover.start < end and cover.end > start:
                rows = self._rows(stream, entry, cover, participant, report)
                done = bisect_left(rows, end, key=INSTANT)
                yield from rows[bisect_left(rows, start, key=INSTANT):done]
                if done and entry.name in kept:
                    # Only what lies after this window is needed again: a month of minutes
                    # shrinks as its slices pass, so a month boundary holds about one month.
                    kept[entry.name] = (cover, rows[done:])

    def read_sleep(self, participant: Participant, window: Window, report: ReadReport
                   ) -> list[SleepSession]:
        """The sessions that end in the window (sources.SleepSource)."""
        start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
        for name in [n for n, (cover, _) in self._nights.items() if cover.end <= start]:
            del self._nights[name]
        return [session for entry, cover in self._covers.get(SLEEP_STREAM, ())
                if cover.start < end and cover.end > start
                for session in self._sessions(entry, cover, participant, report)
                if start <= session.end < end]

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()

    def _rows(self, stream: str, entry: Entry, cover: Window, participant: Participant,
              report: ReadReport) -> list[Row]:
        def parse(counted: ReadReport) -> tuple[list[Row], Tally]:
            parsed = self._parse(entry, cover, participant, counted)
            # Only rows within the cover were kept while it was read; in time order already,
            # as a rule: a pass, then bisected.
            parsed.rows.sort(key=INSTANT)
            return parsed.rows, lambda report: self._count(entry, parsed, report)

        return self._file(self._kept[stream], entry, report, cover, parse)

    def _sessions(self, entry: Entry, cover: Window, participant: Participant,
                  report: ReadReport) -> list[SleepSession]:
        def parse(counted: ReadReport) -> tuple[list[SleepSession], Tally]:
            data = self._json(entry)
            parsed = sleep_sessions(data, participant.zone, counted)
            sessions = [s for s in parsed if cover.start <= s.end < cover.end]
            return sessions, lambda report: self._count_nights(
                entry, bool(data), len(parsed), sessions, report)

        return self._file(self._nights, entry, report, cover, parse)

    def _file(self, kept: dict[str, tuple[Window, list[T]]], entry: Entry, report: ReadReport,
              cover: Window, parse: Callable[[ReadReport], tuple[list[T], Tally]]) -> list[T]:
        """A file's rows or sessions, parsed once and kept while windows need them; counted,
        and its outcome noted, the first time. A file that cannot be read is rejected with
        its reason and yields nothing; an unsafe one stops the import."""
        if entry.name in kept:
            return kept[entry.name][1]
        first = entry.name not in self.files
        # A file parsed again (a window went back) has been counted already.
        counted = report if first else ReadReport()
        found: list[T] = []
        tally: Tally | None = None
        try:
            found, tally = parse(counted)
        except UnsafeArchive as error:
            self.unsafe = error
            raise
        except FILE_FAULTS as error:
            self.files.setdefault(entry.name, f"rejected: {unreadable(error)}")
        if first and tally is not None and entry.name not in self.files:
            tally(counted)
        kept[entry.name] = (cover, found)
        return found

    def _json(self, entry: Entry) -> object:
        assert self._archive is not None  # no entries without an archive
        self._check_size(entry)
        with self._archive.open(entry.name) as raw:
            # The declared size was checked; the entry cannot inflate past it (archive.py).
            text = raw.read(self._file_limit + 1)
            if len(text) > self._file_limit:
                raise self._too_large(len(text))
            try:
                return load_json(text.decode("utf-8-sig"))
            except UnicodeDecodeError:
                raise MalformedFile("not UTF-8 text") from None

    def _check_size(self, entry: Entry) -> None:
        """Reject a file larger than one may be, before a byte of it is read."""
        size = self._sizes.get(entry.name, 0)
        if size > self._file_limit:
            raise self._too_large(size)

    def _too_large(self, size: int) -> MalformedFile:
        return MalformedFile(f"{size} bytes: expected at most {self._file_limit} for one file "
                             "(a day or a month of one stream)")

    def _count(self, entry: Entry, parsed: FileRows, report: ReadReport) -> None:
        rows = parsed.rows
        self.files[entry.name] = NO_DATA if parsed.empty else LOADED
        self.dropped.update(parsed.dropped)
        if entry.form == "azm_csv":  # a score and a zone metric per minute
            self.rows.update(r.metric_type for r in rows)
        elif rows:
            self.rows[rows[0].metric_type] += len(rows)
        if rows and entry.stream not in self._first_file:  # files come in date order
            self._first_file.add(entry.stream)
            self._seen(rows[0].timestamp)  # sorted
        for _ in range(parsed.outside):
            report.reject("points outside their file's dates or in the future")

    def _count_nights(self, entry: Entry, logs: bool, parsed: int,
                      sessions: list[SleepSession], report: ReadReport) -> None:
        self.files[entry.name] = LOADED if logs else NO_DATA  # logs, read or not
        self.sessions += len(sessions)
        if sessions:
            self._seen(min(s.start for s in sessions))
        for _ in range(parsed - len(sessions)):
            report.reject("sleep sessions outside their file's dates or in the future")

    def _seen(self, earliest: datetime) -> None:
        self.first = earliest if self.first is None else min(self.first, earliest)

    def _parse(self, entry: Entry, cover: Window, participant: Participant,
               report: ReadReport) -> FileRows:
        pid, zone = participant.participant_id, participant.zone
        reach = (cover.start, cover.end)
        if entry.form == "json":
            return json_rows(self._json(entry), entry.stream, pid, report, reach)
        assert self._archive is not None  # no entries without an archive
        self._check_size(entry)
        with self._archive.open(entry.name) as raw:
            try:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                if entry.form == "azm_csv":
                    return azm_rows(text, pid, zone, report, reach)
                return csv_rows(text, entry.stream, pid, zone, report,
                                daily=entry.form == "daily_csv", reach=reach)
            except UnicodeDecodeError:
                raise MalformedFile("not UTF-8 text") from None


def _covers(entries: list[Entry], now: datetime) -> dict[str, list[tuple[Entry, Window]]]:
    """Per stream, its files with the instants each can hold rows for."""
    by_stream: dict[str, list[Entry]] = {}
    for entry in entries:  # sorted by stream, then date
        by_stream.setdefault(entry.stream, []).append(entry)
    covers: dict[str, list[tuple[Entry, Window]]] = {}
    for stream, files in by_stream.items():
        covers[stream] = []
        for index, entry in enumerate(files):
            if entry.day is None:
                covers[stream].append((entry, Window(EVER, now)))
                continue
            start = max(local_midnight(entry.day, UTC) - MARGIN, EARLIEST)
            following = next((f.day for f in files[index + 1:] if f.day and f.day > entry.day),
                             None)
            last = entry.day + LAST_FILE_SPAN if stream == SLEEP_STREAM else _after_last(
                files, entry.day)
            end = local_midnight(following or last, UTC)
            covers[stream].append((entry, Window(start, max(start, min(end + MARGIN, now)))))
    return covers


def _after_last(files: list[Entry], day: date) -> date:
    """The day after a stream's last file: the next month for a monthly file (dated the 1st,
    a month after the one before), else the next day. A guess too short would lose rows
    (counted as outside their file's dates); one too long costs empty slices."""
    before = [f.day for f in files if f.day and f.day < day]
    if day.day == 1 and (not before or (day - before[-1]).days >= 28):
        return (day + LAST_FILE_SPAN).replace(day=1)
    return day + timedelta(days=1)


def unreadable(error: Exception) -> str:
    """Why a file was rejected, in one line: our own reasons as they are, anything else
    with its kind (a damaged file's error from a library)."""
    if isinstance(error, MalformedFile | DamagedEntry):
        return str(error)
    return f"unreadable ({type(error).__name__}: {str(error)[:80]})"


__all__ = ["Skipped", "TakeoutSource"]

