"""`participant import-takeout ID ARCHIVE.zip`: a donated Google Takeout archive into
raw_data and the rollups (docs/takeout.md).

It loads through the run's own slice commit (pipeline.commit_slice): local days oldest
first, each slice one transaction with its run-log row, through the same writer. A kill
keeps the committed slices; the same command again reads the archive again, and the
writer stores only what is missing (a re-import writes 0 rows). The archive's values win
over stored ones at the same instant (the writer's upsert): the import is the later load.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import psycopg2.errors
import psycopg2.extensions

from . import db
from .config import Settings
from .model import EARLIEST_START_DATE, SYNTHETIC, TAKEOUT, Participant, ReadReport, Window
from .pipeline import RunOptions, SliceResult, commit_slice, rejected_text
from .sources.takeout.archive import TakeoutArchive, UnsafeArchive
from .sources.takeout.source import LOADED, MAX_FILE_BYTES, TakeoutSource
from .sources.takeout.transform import LOCAL_METRICS
from .windows import FIRST_SLICE_DAYS, local_midnight, next_slice_days, slice_end

EXIT_OK, EXIT_FILES, EXIT_BAD = 0, 1, 2
# The start date a participant this command enrols holds until the archive's first day is
# known (the import sets it): a Takeout participant has no nightly run to read it.
ENROLLING = EARLIEST_START_DATE


@dataclass
class Totals:
    slices: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    failed: str | None = None

    def add(self, result: SliceResult) -> None:
        self.rows_read += result.rows_read
        self.rows_written += result.rows_written
        self.rejected.update(result.rejected)
        if result.status == "ok":
            self.slices += 1
        else:
            self.failed = result.error or result.status


def command(connection: db.Connection, settings: Settings, participant_id: str, path: str,
            timezone: str | None, now: datetime | None = None,
            file_limit: int = MAX_FILE_BYTES) -> int:
    now = now or datetime.now(UTC)
    try:
        archive = TakeoutArchive(Path(path))
    except UnsafeArchive as error:
        return _refuse(f"import-takeout {participant_id}: {error}")
    with archive:
        source = TakeoutSource(archive, now, file_limit)
        participant = _participant(connection, participant_id, timezone, source.local_span())
        if isinstance(participant, str):
            return _refuse(participant)
        totals = load(connection, settings, participant, source, now)
        if participant.start_date == ENROLLING and source.first is not None:
            first = source.first.astimezone(participant.zone).date()
            db.edit_participant(connection, participant_id, None, first)
            print(f"{participant_id}: start date {first}, its first day in the archive")
        if source.unsafe is not None:
            return _refuse(f"import-takeout {participant_id}: {source.unsafe}; the slices "
                           f"committed before it stay ({totals.slices})")
        summarise(participant_id, path, source, totals, sys.stdout)
    rejected_files = any(not o.startswith((LOADED, "skipped")) for o in source.files.values())
    return EXIT_FILES if totals.failed or rejected_files else EXIT_OK


def load(connection: db.Connection, settings: Settings, participant: Participant,
         source: TakeoutSource, now: datetime) -> Totals:
    """Every slice of the archive's span, committed one by one; stops at a failed one."""
    totals = Totals()
    first = ReadReport()
    span = source.span(participant, first)
    totals.rejected.update(first.rejected)
    if span is None:
        return totals
    options = RunOptions(now=now, overlap=settings.overlap, batch_rows=settings.batch_rows)
    run_id, zone = uuid.uuid4(), participant.zone
    # Stored as the archive's, whatever source pulls the participant nightly: as
    # google_health, each slice's sleep would replace the API's nights in its window, and
    # raw_data_sourced would credit the API with the archive's rows.
    as_archive = replace(participant, source=TAKEOUT)
    cursor = local_midnight(span.start.astimezone(zone).date(), zone)
    days = FIRST_SLICE_DAYS
    while cursor < span.end:
        stop = slice_end(cursor, span.end, zone, days)
        part = {stream: Window(cursor, stop) for stream in source.streams}
        result = commit_slice(connection, source, as_archive, part, options, run_id, None)
        totals.add(result)
        if totals.failed or source.unsafe:
            break
        _progress(participant.participant_id, stop, span, totals)
        days, cursor = next_slice_days(days, result.rows_read), stop
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return totals


def _participant(connection: db.Connection, pid: str, timezone: str | None,
                 local_span: Window | None) -> Participant | str:
    """The participant to load into, enrolled first if unknown; or why not (one line).
    A new zone for a known one moves its daily values, and forgets what archives stored
    from naive local times in this archive's span (`local_span`), in the same transaction:
    the import stores them again in the new zone, instead of beside the old instants."""
    found = db.load_participants(connection, [pid])
    if not found:
        if timezone is None:
            return (f"import-takeout {pid}: --timezone ZONE is required to enrol a new "
                    "participant (the archive holds local times without their zone)")
        return _enrol(connection, pid, timezone)
    known = found[0]
    if known.source == SYNTHETIC:
        return (f"import-takeout {pid}: {pid} is a synthetic participant: expected the id "
                "of a real one (or a new id)")
    if timezone is not None and timezone != known.timezone:
        forgotten: list[int] = []

        def forget(cursor: psycopg2.extensions.cursor, old: ZoneInfo, new: ZoneInfo) -> None:
            if local_span is not None:
                forgotten.extend(forget_local_times(cursor, pid, local_span))

        edited = db.edit_participant(connection, pid, timezone, None, forget)
        rows, nights = forgotten or (0, 0)
        print(f"{pid}: timezone {known.timezone} -> {timezone}; {edited.daily_values_moved} "
              f"daily values moved to its midnight; {rows} rows and {nights} sleep sessions "
              "an archive stored from local times replaced by this archive's in the new zone")
        known = db.load_participants(connection, [pid])[0]
    return known


# What archives stored from naive local times (source takeout) in the span: read with the
# old zone, they would stay at its instants beside the new zone's (a double count).
LOCAL_ROWS_FORGOTTEN = """
DELETE FROM raw_data r USING data_origins o
WHERE r.participant_id = %(participant)s AND r.origin_id = o.origin_id
  AND o.source = %(source)s AND r.metric_type = ANY(%(metrics)s)
  AND r."timestamp" >= %(start)s AND r."timestamp" < %(end)s
RETURNING r."timestamp"
"""
LOCAL_NIGHTS_FORGOTTEN = """
DELETE FROM sleep_sessions WHERE participant_id = %(participant)s AND source = %(source)s
  AND session_end > %(start)s AND session_start < %(end)s
"""


def forget_local_times(cursor: psycopg2.extensions.cursor, pid: str, span: Window
                       ) -> tuple[int, int]:
    """Delete the rows and sleep sessions archives stored from local times in the span, in
    the caller's transaction, with the rollups of the instants; returns (rows, sessions)."""
    reach = {"participant": pid, "source": TAKEOUT, "metrics": list(LOCAL_METRICS),
             "start": span.start, "end": span.end}
    cursor.execute(LOCAL_ROWS_FORGOTTEN, reach)
    stamps = [stamp for (stamp,) in cursor.fetchall()]
    cursor.execute("SELECT rollups_refresh(%s, instant, instant + INTERVAL '1 minute') "
                   "FROM unnest(%s::timestamptz[]) AS instant", (pid, sorted(set(stamps))))
    cursor.execute(LOCAL_NIGHTS_FORGOTTEN, reach)
    return len(stamps), cursor.rowcount


def _enrol(connection: db.Connection, pid: str, timezone: str) -> Participant | str:
    try:
        db.add_participants(connection, [Participant(pid, timezone, TAKEOUT, ENROLLING)])
    except psycopg2.IntegrityError as error:
        connection.rollback()
        return f"import-takeout {pid}: cannot enrol: {str(error).splitlines()[0]}"
    print(f"enrolled {pid} (takeout, {timezone}); no nightly pull")
    return db.load_participants(connection, [pid])[0]


def _progress(pid: str, stop: datetime, span: Window, totals: Totals) -> None:
    if not sys.stderr.isatty():
        return
    done = (stop - span.start) / (span.end - span.start)
    print(f"\r{pid}: {done:4.0%} up to {stop.date()}: {totals.rows_read} rows read, "
          f"{totals.rows_written} written", end="", file=sys.stderr, flush=True)


def summarise(pid: str, path: str, source: TakeoutSource, totals: Totals, out: TextIO) -> None:
    status = f"stopped: {totals.failed}" if totals.failed else "done"
    print(f"import-takeout {pid} {path}: {status}; {totals.slices} slices, {totals.rows_read} "
          f"rows read, {totals.rows_written} written, {sum(totals.rejected.values())} "
          f"rejected{rejected_text(dict(totals.rejected))}", file=out)
    for metric, count in sorted(source.rows.items()):
        print(f"  rows\t{metric}\t{count}", file=out)
    if source.sessions:
        print(f"  sleep\t{source.sessions} sessions", file=out)
    for rule, count in sorted(source.dropped.items()):
        print(f"  not loaded\t{count} {rule}", file=out)
    outcomes = Counter(o.split(":")[0] for o in source.files.values())
    outcomes["skipped"] += len(source.skipped)
    print(f"  files\t{outcomes['loaded']} loaded, {outcomes['skipped']} skipped, "
          f"{outcomes['rejected']} rejected", file=out)
    reasons = Counter(s.reason for s in source.skipped)
    reasons.update(o.split(": ", 1)[1] for o in source.files.values()
                   if o.startswith("skipped"))
    for reason, count in sorted(reasons.items()):
        print(f"  skipped\t{count} files: {reason}", file=out)
    for name, outcome in sorted(source.files.items()):
        if outcome.startswith("rejected"):
            print(f"  rejected\t{name}: {outcome.split(': ', 1)[1]}", file=out)


def _refuse(line: str) -> int:
    print(line, file=sys.stderr)
    return EXIT_BAD


__all__ = ["command", "load"]
