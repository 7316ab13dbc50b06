"""One ingestion run: every participant's window, loaded and committed in slices.

A participant's window is cut into slices (whole local days, about 500,000 rows each;
windows.py), loaded oldest first. Each slice holds every stream of the
participant for that span in one transaction, together with its run-log row and the
watermark it reached, and commits or rolls back as a whole; after its commit the state file
mirrors the watermark. A slice that fails is rolled back and logged, the participant stops
there (later slices would leave a gap behind the watermark), and the run goes on with the
others: `load_participant` never raises for anything one participant's data, settings or
logging can cause. Only a lost database ends the run.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from . import db, rollups, state
from .errors import DatabaseUnavailable, NeedsConsent, ParticipantError, ScopeNotGranted
from .guard import guarded
from .model import DeliveryBound, Participant, ReadReport, Row, Window
from .sleep import SLEEP_STREAM, WindowSleep, hold_until, replaces_window, storable
from .sources import SleepSource, Source
from .windows import (
    FIRST_SLICE_DAYS,
    advance,
    local_midnight,
    new_stream_start,
    next_slice_days,
    plan_window,
    slice_end,
    trusted_watermark,
)
from .writer import RowWriter

log = logging.getLogger(__name__)

Plan = dict[str, Window]  # stream -> window
Marks = dict[str, datetime | None]  # stream -> watermark

# How often a long load says how far it has come (one line per slice would flood the log).
PROGRESS_EVERY_SECONDS = 10.0
# Rows of the next slice read ahead while a slice commits, in the writer's batches (ReadAhead):
# one batch covers the end of a slice of 1 Hz data (docs/performance.md, "Slices"); 0: none.
READ_AHEAD_BATCHES = 1


@dataclass(frozen=True)
class RunOptions:
    now: datetime
    overlap: timedelta
    batch_rows: int
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    max_backfill_days: int = 92


@dataclass
class Outcome:
    participant_id: str
    status: str  # ok | failed | needs_consent | held | nothing_to_do | removed
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    error: str | None = None
    seconds: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)
    warning: str | None = None  # loaded, but something after a commit went wrong
    slices: int = 0  # committed
    window: Window | None = None
    rule: str | None = None  # the DeliveryBound rule that bounded the watermark
    # Streams the grant has no scope for (not loaded, watermark held) -> the scope.
    missing_scopes: dict[str, str] = field(default_factory=dict)


class DatabaseLost(DatabaseUnavailable):
    """The database went away while a participant loaded; `outcome` counts the slices that
    had committed, so that the run's summary still tells what it stored."""

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class RunContext:
    """What every participant of one run shares."""

    connection: db.Connection
    source_for: Callable[[str], Source]
    state_file: Path
    options: RunOptions
    run_id: uuid.UUID


@dataclass
class SliceResult:
    status: str = "ok"  # ok | failed | needs_consent | removed
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    error: str | None = None
    rejected: Counter[str] = field(default_factory=Counter)
    missing_scopes: dict[str, str] = field(default_factory=dict)  # stream -> scope


class ReadAhead:
    """The first rows of the next slice's first stream, read on a thread of their own while
    the slice before ends: while its last COPY, its rollups and its commit keep the
    database busy, this process would otherwise wait, and the database wait in turn for the
    next slice's first batch (docs/performance.md, "Slices").

    The thread uses the source and nothing else: never the connection, which the slice
    before still holds. It stops after `limit` rows, so memory stays flat. The next slice's
    commit_slice takes it over: `rows()` yields what was read and then reads on, on the
    caller's thread; whatever the source raised is raised there, after the rows read
    before it, exactly where reading the stream directly would have raised it. Rejected
    points go to `report`, the next slice's. `cancel()` (idempotent) discards it: the slice
    before failed, or the next slice never reads the stream. Either way the thread has
    ended, so the source is never used by two threads at once.
    """

    def __init__(self, source: Source, participant: Participant, stream: str, window: Window,
                 limit: int) -> None:
        self.stream, self.window = stream, window
        self.report = ReadReport()
        self._source, self._participant, self._limit = source, participant, limit
        self._rows: Iterator[Row] | None = None
        self._buffer: list[Row] = []
        self._error: BaseException | None = None
        self._exhausted = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            self._rows = guarded(
                self._source.read(self._participant, self.stream, self.window, self.report),
                self.window, self.report, f"{self._participant.participant_id} {self.stream}")
            buffer, limit, stop = self._buffer, self._limit, self._stop
            for row in self._rows:  # leaving the loop early leaves the generator open
                buffer.append(row)
                if len(buffer) >= limit or stop.is_set():
                    return
            self._exhausted = True
        except BaseException as error:  # raised in rows(), on the thread that reads on
            self._error = error

    def rows(self) -> Iterator[Row]:
        self.cancel()  # stops reading ahead; what was read is kept
        buffer, self._buffer = self._buffer, []
        yield from buffer
        if self._error is not None:
            raise self._error
        if not self._exhausted and self._rows is not None:
            yield from self._rows

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


def read_ahead(source: Source, participant: Participant, part: Plan, limit: int
               ) -> ReadAhead | None:
    """Start reading the slice `part`'s first stream ahead, or None: nothing to read ahead
    (no limit, or sleep first: its sessions are read whole, not streamed)."""
    if limit <= 0 or not part:
        return None
    stream, window = next(iter(part.items()))
    if stream == SLEEP_STREAM:
        return None
    return ReadAhead(source, participant, stream, window, limit)


@dataclass(frozen=True)
class Preview:
    """What the next run does for one participant: pure, shared by the run and `status`."""

    marks: Marks  # the watermark the run starts from, per stream
    origins: dict[str, str]  # per stream: "state file", "run log", "stored data", "start date"
    bound: DeliveryBound
    plan: Plan
    held: str | None  # why the participant is not loaded, or None


def plan_participant(
    participant: Participant,
    streams: tuple[str, ...],
    watermarks: Mapping[str, datetime | None],
    options: RunOptions,
) -> Plan:
    """Pure: the window of every stream that has something to load.

    Every window re-reads OVERLAP_HOURS before its watermark; the watermark itself never
    passes what the source may still deliver (DeliveryBound), so late data is covered.
    """
    start = local_midnight(participant.start_date, participant.zone)
    plan: Plan = {}
    for stream in streams:
        window = plan_window(
            watermark=watermarks.get(stream),
            participant_start=start,
            now=options.now,
            overlap=options.overlap,
            since=options.since,
            until=options.until,
        )
        if window is not None:
            plan[stream] = window
    return plan


def preview(
    participant: Participant,
    streams: tuple[str, ...],
    in_file: Mapping[str, datetime],
    in_database: db.Recovered,
    bound: DeliveryBound,
    options: RunOptions,
) -> Preview:
    """Pure: the watermarks the next run uses and where they come from, its plan, and
    whether the plan is a first load too long to start without being asked (--since)."""
    marks: Marks = {}
    origins: dict[str, str] = {}
    start = local_midnight(participant.start_date, participant.zone)
    for stream in streams:
        logged = in_database.streams.get(stream)
        mark = trusted_watermark(in_file.get(stream), in_database.watermark, logged)
        # The run log keeps every stream's watermark, but never had this one's: the source
        # gained it after the participant was loaded. The participant's one watermark would
        # start it where the others are, and its history would never be loaded.
        new = logged is None and bool(in_database.streams) and mark is not None
        if new and mark is not None:
            earliest = new_stream_start(start, options.now, participant.zone,
                                        options.max_backfill_days)
            mark = None if earliest is None else min(mark, earliest)
        marks[stream] = mark
        if new:
            origins[stream] = "new stream"
        elif mark is None:
            origins[stream] = "start date"
        elif logged is not None:
            origins[stream] = "run log"
        elif in_file.get(stream) == mark and mark != in_database.watermark:
            origins[stream] = "state file"
        else:
            origins[stream] = in_database.origin or "run log"
    plan = plan_participant(participant, streams, marks, options)
    return Preview(marks, origins, bound, plan, _held(participant, marks, plan, options))


def _held(participant: Participant, marks: Marks, plan: Plan, options: RunOptions) -> str | None:
    """A first load (no watermark at all) longer than MAX_BACKFILL_DAYS waits for an explicit
    --since: a start date typed as 0026 or 2016 must not silently take the night, nor nights."""
    if not plan or options.since is not None or any(m is not None for m in marks.values()):
        return None
    days = (max(w.end for w in plan.values()) - min(w.start for w in plan.values())).days
    if days <= options.max_backfill_days:
        return None
    since = local_midnight(participant.start_date, participant.zone).isoformat()
    return (
        f"a first load of {days} days from {participant.start_date} is more than "
        f"MAX_BACKFILL_DAYS ({options.max_backfill_days}); held. To load it, run "
        f"`ingest.py --participant {participant.participant_id} --since {since}` once, "
        "or fix the start date"
    )


def slices_of(plan: Plan, first: datetime, stop: datetime) -> Plan:
    """Pure: each stream's part of the slice [first, stop); streams that have none are left out."""
    part: Plan = {}
    for stream, window in plan.items():
        start, end = max(window.start, first), min(window.end, stop)
        if start < end:
            part[stream] = Window(start, end)
    return part


def run_log_watermark(marks: Marks) -> datetime | None:
    """The one watermark a run-log row holds: the participant's earliest stream, or None
    while any stream has none (recovery must never skip a stream's data)."""
    values = list(marks.values())
    if not values or any(mark is None for mark in values):
        return None
    return min(mark for mark in values if mark is not None)


def load_participant(
    run: RunContext, participant: Participant, in_file: Mapping[str, datetime]
) -> Outcome:
    """Load one participant's window, slice by slice; never raises for a participant-level
    problem (containment). Raises DatabaseLost when the database itself is gone.
    `in_file` are the participant's watermarks in the state file."""
    began = time.monotonic()
    outcome = Outcome(participant.participant_id, "ok")
    try:
        _load(run, participant, in_file, outcome)
    except DatabaseUnavailable as lost:
        outcome.status, outcome.error = "failed", str(lost)
        outcome.seconds = time.monotonic() - began
        _log_outcome(outcome)
        raise DatabaseLost(str(lost), outcome) from None
    except Exception as error:  # whatever one participant raises stays its own
        _contain(run, participant, outcome, error)
    outcome.seconds = time.monotonic() - began
    _log_outcome(outcome)
    return outcome


def _load(
    run: RunContext, participant: Participant, in_file: Mapping[str, datetime], outcome: Outcome
) -> None:
    connection, options, run_id = run.connection, run.options, run.run_id
    pid = participant.participant_id
    source = run.source_for(participant.source)
    in_database = db.recover_watermark(connection, pid)
    bound = source.delivered_until(participant, options.now)
    outcome.rule = bound.rule
    planned = preview(participant, source.streams, in_file, in_database, bound, options)
    plan = planned.plan
    if not plan:
        outcome.status = "nothing_to_do"
        return
    outcome.window = Window(min(w.start for w in plan.values()), max(w.end for w in plan.values()))
    if planned.held is not None:
        outcome.status, outcome.error = "held", planned.held
        if not options.dry_run:
            record = _record(run_id, pid, outcome.window, datetime.now(UTC), "failed",
                             SliceResult(error=planned.held))
            db.record_run(connection, record)
            connection.commit()
        return
    days_planned = (outcome.window.end - outcome.window.start).days
    if days_planned > options.max_backfill_days:  # asked for with --since: said, then done
        log.warning("%s: loading %d days (more than MAX_BACKFILL_DAYS, %d), as --since asks",
                    pid, days_planned, options.max_backfill_days)
    participant_start = local_midnight(participant.start_date, participant.zone)
    marks = dict(planned.marks)
    filed = dict(in_file)  # what the state file holds: refreshed wherever it lags
    save_state = not options.dry_run
    days, cursor, last_report = FIRST_SLICE_DAYS, outcome.window.start, time.monotonic()
    limit, end = READ_AHEAD_BATCHES * options.batch_rows, outcome.window.end
    ahead: ReadAhead | None = None  # the next slice's first rows, read while a slice ends
    following: list[ReadAhead] = []
    try:
        while cursor < end:
            stop = slice_end(cursor, end, participant.zone, days)
            part = slices_of(plan, cursor, stop)
            if ahead is not None and part.get(ahead.stream) != ahead.window:
                ahead.cancel()  # not this slice's (cannot happen: read_next plans as here)
                ahead = None
            reached = {
                stream: advance(marks[stream], participant_start, part[stream], bound.until)
                if stream in part else marks[stream]
                for stream in marks
            }
            # A stream whose scope the grant lacks keeps what it had (or the start, so that
            # a later grant loads its whole history): commit_slice puts that into `reached`.
            held = {s: marks[s] or participant_start for s in marks}

            def read_next(rows_read: int, stop: datetime = stop, days: int = days) -> None:
                """The next slice as the loop below plans it, its first rows read ahead."""
                if stop < end:
                    after = slice_end(stop, end, participant.zone,
                                      next_slice_days(days, rows_read))
                    started = read_ahead(source, participant, slices_of(plan, stop, after),
                                         limit)
                    following.extend([started] if started is not None else [])

            result = commit_slice(connection, source, participant, part, options, run_id,
                                  run_log_watermark(reached), reached, held, ahead=ahead,
                                  read_next=read_next)
            ahead = following.pop() if following else None  # commit_slice ended the last
            _add(outcome, result)
            if result.status != "ok":
                outcome.status, outcome.error = result.status, result.error
                return
            outcome.slices += 1
            moved = {s: m for s, m in reached.items() if m is not None and m != filed.get(s)}
            marks = reached
            if moved and save_state:
                try:
                    state.save(run.state_file, {pid: moved})
                    filed.update(moved)
                except OSError as error:
                    # The data and its watermark are committed (the run log holds it), so
                    # the next run recovers; this run still exits non-zero to get the file
                    # fixed.
                    outcome.warning = f"state file {run.state_file} not written: {error}"
                    log.error("%s: %s", pid, outcome.warning)
                    save_state = False
            if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                last_report = time.monotonic()
                log.info("%s: committed up to %s: %d slices, %d rows read", pid,
                         _text(stop), outcome.slices, outcome.rows_read)
            days, cursor = next_slice_days(days, result.rows_read), stop
    finally:  # a failed slice, a lost database: the rows read ahead are not stored
        for unused in [*following, *([ahead] if ahead is not None else [])]:
            unused.cancel()


def commit_slice(
    connection: db.Connection,
    source: Source,
    participant: Participant,
    part: Plan,
    options: RunOptions,
    run_id: uuid.UUID,
    watermark: datetime | None,
    reached: Marks | None = None,
    held: Mapping[str, datetime] | None = None,
    *,
    ahead: ReadAhead | None = None,
    read_next: Callable[[int], None] | None = None,
) -> SliceResult:
    """Load one slice, every stream of it, and commit it with its run-log row and the
    watermark it reached; or roll all of it back and log the failure with its true counts.

    A stream the source refuses with ScopeNotGranted (before its first row: sources promise
    it) is skipped and the others load; given `reached` and `held`, its entry in `reached`
    becomes its `held` watermark, and the run log records the watermark of the other
    streams of `reached`.

    The one place a slice commits: whatever must be in the same transaction as its data
    goes just before `db.record_run` below.

    `ahead`: this slice's first rows, read while the slice before ended (ReadAhead); this
    call ends it, whatever happens. `read_next(rows read)` is called once every stream has
    been handed to the writer, before the writer's last COPY, the rollups and the commit:
    the caller starts reading the next slice ahead there. It must not use the connection.
    """
    started_at = datetime.now(UTC)
    span = Window(min(w.start for w in part.values()), max(w.end for w in part.values()))
    pid = participant.participant_id
    report = ahead.report if ahead is not None else ReadReport()
    result = SliceResult()
    writer: RowWriter | None = None
    try:
        if not options.dry_run:
            enrolled = db.hold_participant(connection, pid)
            if enrolled is None:
                connection.rollback()  # removed from the cohort since the run started
                result.status = "removed"
                result.error = "removed from the cohort while the run was busy with others"
                return result
            _check_enrolment(participant, enrolled)
            # Bounded to the slice: the query opens only the slice's chunks.
            latest = db.stored_until(connection, pid, span.start, span.end)
            writer = RowWriter(connection, options.batch_rows, latest, participant.source)
        nights: dict[Window, WindowSleep] = {}
        for stream, window in part.items():
            try:
                if stream == SLEEP_STREAM:
                    nights[window] = read_sleep(source, participant, window, report)
                    continue
                if ahead is not None and ahead.stream == stream and ahead.window == window:
                    rows = ahead.rows()
                else:
                    rows = guarded(source.read(participant, stream, window, report), window,
                                   report, f"{pid} {stream}")
                if writer is None:
                    result.rows_read += sum(1 for _ in rows)
                else:
                    writer.write(rows)
            except ScopeNotGranted as refused:
                result.missing_scopes[stream] = refused.scope or "unknown"
                log.warning("%s %s: not loaded: %s", pid, stream, refused)
                if reached is not None and held is not None:
                    reached[stream] = held[stream]
                    # Left out of the run log's one watermark: held at its start, it would
                    # pin the participant's, and every stream would re-read from there
                    # every night. The state file keeps the stream's own.
                    watermark = run_log_watermark(
                        {s: m for s, m in reached.items() if s not in result.missing_scopes})
        result.rows_rejected = report.rejected_total
        if writer is not None:
            if read_next is not None:
                read_next(writer.counts.read)  # the rows read, as finish() will count them
            counts = writer.finish()
            result.rows_read, result.rows_written = counts.read, counts.written
            if counts.written:  # nothing written, nothing to summarise again
                rollups.refresh(connection, pid, span)
            # After the writer's last COPY: its savepoints must not roll the sleep back.
            watermark = _store_sleep(connection, participant, nights, options.now, watermark,
                                     reached, held, result)
            db.record_run(connection, _record(run_id, pid, span, started_at, "ok", result,
                                              watermark, reached))
            connection.commit()
    except Exception as error:
        if writer is not None:
            writer.abort()
            result.rows_read = writer.counts.read  # what was read is true even when rolled back
        _fail(connection, error, result)
        result.rows_rejected = report.rejected_total
        if not options.dry_run:
            db.record_run(connection, _record(run_id, pid, span, started_at, result.status,
                                              result))
            connection.commit()
    finally:
        if ahead is not None:
            ahead.cancel()  # read by now, or never to be: its thread has ended either way
    result.rejected = report.rejected
    return result


def read_sleep(source: Source, participant: Participant, window: Window, report: ReadReport
               ) -> WindowSleep:
    """The sessions of a source with sleep that end in the window, storable ones only. Its
    rejects are counted apart first: the slice's report may be counting a read-ahead's."""
    if not isinstance(source, SleepSource):
        raise ValueError(f"{participant.source}: a {SLEEP_STREAM} stream but no read_sleep")
    own = ReadReport()
    try:
        sessions = storable(source.read_sleep(participant, window, own), own)
    finally:  # a read that fails still reports what it rejected before
        report.rejected.update(own.rejected)
    return WindowSleep(sessions, replaces_window(participant.source, own.rejected_total))


def _store_sleep(connection: db.Connection, participant: Participant,
                 nights: Mapping[Window, WindowSleep], now: datetime,
                 watermark: datetime | None,
                 reached: Marks | None, held: Mapping[str, datetime] | None,
                 result: SliceResult) -> datetime | None:
    """Store the slice's sleep; a session still being processed holds the sleep watermark
    at its end (never behind where it was), so the next run reads it again. Returns the run
    log's watermark, lowered with it."""
    with connection.cursor() as cursor:
        for window, (sessions, whole) in nights.items():
            db.store_sleep(cursor, participant.participant_id, participant.source, window,
                           sessions, whole)
    pending = hold_until((s for night in nights.values() for s in night.sessions), now)
    mark = reached.get(SLEEP_STREAM) if reached is not None else None
    if pending is None or reached is None or held is None or mark is None or mark <= pending:
        return watermark
    reached[SLEEP_STREAM] = max(pending, held[SLEEP_STREAM])
    return run_log_watermark({s: m for s, m in reached.items()
                              if s not in result.missing_scopes})


def _check_enrolment(participant: Participant, enrolled: db.Enrolled) -> None:
    """Fail the slice if the participant is not the one this run planned for."""
    if participant.enrolment is not None and enrolled.enrolment != participant.enrolment:
        # Removed and enrolled again: the watermarks this run read, and planned from, were
        # the old enrolment's; committed, they would skip the new one's earlier days.
        raise ParticipantError("removed and enrolled again while this run was busy: the "
                               "next run loads the new enrolment")
    if enrolled.timezone != participant.timezone:
        # Slices planned in the old zone would stamp daily values at its midnights, beside
        # the ones re-enrolment just moved to the new zone's.
        raise ParticipantError(f"re-enrolled in {enrolled.timezone} (was "
                               f"{participant.timezone}) while this run was busy: the next "
                               "run loads it")


def _add(outcome: Outcome, result: SliceResult) -> None:
    outcome.missing_scopes.update(result.missing_scopes)
    outcome.rows_read += result.rows_read
    outcome.rows_written += result.rows_written
    outcome.rows_rejected += result.rows_rejected
    for reason, count in result.rejected.items():
        outcome.rejected[reason] = outcome.rejected.get(reason, 0) + count


def _fail(connection: db.Connection, error: Exception, result: SliceResult | Outcome) -> None:
    """Roll the slice back and classify why; a lost database ends the whole run."""
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
        connection.closed or isinstance(error, psycopg2.InterfaceError)
    ):
        raise DatabaseUnavailable(f"lost the database connection: {_one_line(error)}") from None
    try:
        connection.rollback()
    except psycopg2.Error as lost:
        raise DatabaseUnavailable(f"lost the database connection: {_one_line(lost)}") from None
    result.status = "needs_consent" if isinstance(error, NeedsConsent) else "failed"
    result.error = f"{type(error).__name__}: {_one_line(error)}"
    if isinstance(result, SliceResult):
        result.rows_written = 0  # rolled back


def _contain(run: RunContext, participant: Participant, outcome: Outcome, error: Exception
             ) -> None:
    """A participant-level failure outside a slice (its source, watermarks, plan, or the
    failure record of a slice): roll back, mark the participant, and try to log it."""
    _fail(run.connection, error, outcome)
    if run.options.dry_run:
        return
    try:
        failure = SliceResult(outcome.status, error=outcome.error)
        db.record_run(run.connection, _record(run.run_id, participant.participant_id,
                                              outcome.window, datetime.now(UTC), outcome.status,
                                              failure))
        run.connection.commit()
    except Exception as unrecorded:  # the run log is best effort here
        _fail(run.connection, unrecorded, SliceResult())
        log.error("%s: could not record the failure in the run log: %s",
                  participant.participant_id, _one_line(unrecorded))


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _record(
    run_id: uuid.UUID,
    participant_id: str,
    span: Window | None,
    started_at: datetime,
    status: str,
    result: SliceResult,
    watermark: datetime | None = None,
    reached: Marks | None = None,
) -> db.RunRecord:
    return db.RunRecord(
        run_id=run_id,
        participant_id=participant_id,
        window_start=span.start if span else None,
        window_end=span.end if span else None,
        started_at=started_at,
        status=status,
        rows_read=result.rows_read,
        rows_written=result.rows_written,
        rows_rejected=result.rows_rejected,
        error=result.error,
        watermark=watermark,
        stream_watermarks={s: m for s, m in (reached or {}).items() if m is not None},
    )


def run_cohort(
    connection: db.Connection,
    participants: list[Participant],
    source_for: Callable[[str], Source],
    loaded: state.LoadedState,
    state_file: Path,
    options: RunOptions,
) -> list[Outcome]:
    run = RunContext(connection, source_for, state_file, options, uuid.uuid4())
    return [
        load_participant(run, participant, loaded.watermarks.get(participant.participant_id, {}))
        for participant in participants
    ]


def _text(instant: datetime) -> str:
    """An instant in UTC for the log, or as it is where UTC cannot hold it (year 1)."""
    try:
        return instant.astimezone(UTC).isoformat()
    except (OverflowError, ValueError):
        return instant.isoformat()


def rejected_text(rejected: dict[str, int]) -> str:
    """' (990 sleep minutes inside the night before's sleep, which is kept; 3 …)': each
    reason is a phrase of its source's, counted; '' when nothing was rejected."""
    if not rejected:
        return ""
    return " (" + "; ".join(f"{n} {reason}" for reason, n in sorted(
        rejected.items(), key=lambda item: (-item[1], item[0]))) + ")"


def _log_outcome(outcome: Outcome) -> None:
    """One line per participant; a line that cannot be made says so, and the run goes on."""
    try:
        window = (f" [{_text(outcome.window.start)}, {_text(outcome.window.end)})"
                  if outcome.window else "")
        rate = outcome.rows_read / outcome.seconds if outcome.seconds else 0.0
        if outcome.status == "ok":
            log.info(
                "%s ok%s: %d slices, %d rows read, %d written, %d rejected%s in %.1f s "
                "(%.0f rows/s)",
                outcome.participant_id, window, outcome.slices, outcome.rows_read,
                outcome.rows_written, outcome.rows_rejected,
                rejected_text(outcome.rejected), outcome.seconds, rate,
            )
        elif outcome.status == "nothing_to_do":
            log.info("%s: nothing to load", outcome.participant_id)
        else:
            log.error(
                "%s %s%s after %.1f s, %d slices committed (%d rows written): %s",
                outcome.participant_id, outcome.status, window, outcome.seconds,
                outcome.slices, outcome.rows_written, outcome.error,
            )
    except Exception as error:  # a log line must not end the run
        log.error("%s %s (its log line failed: %s)", outcome.participant_id, outcome.status,
                  type(error).__name__)
