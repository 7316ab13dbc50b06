"""One ingestion run: every participant's window, each committed all or nothing.

For each participant the run plans one window per stream, streams the rows of every stream
into one transaction together with the run-log row, commits, and only then moves the
participant's watermarks in the state file. A participant that fails is rolled back and
logged; the run goes on with the others.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from . import db, state
from .errors import DatabaseUnavailable, NeedsConsent
from .guard import guarded
from .model import Participant, ReadReport, Window
from .sources import Source
from .windows import advance, local_midnight, plan_window, trusted_watermark
from .writer import RowWriter

log = logging.getLogger(__name__)

Plan = dict[str, Window]  # stream -> window


@dataclass(frozen=True)
class RunOptions:
    now: datetime
    overlap: timedelta
    batch_rows: int
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False


@dataclass
class Outcome:
    participant_id: str
    status: str  # ok | failed | needs_consent | nothing_to_do | removed
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    error: str | None = None
    seconds: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)
    warning: str | None = None  # loaded, but something after the commit went wrong


def plan_participant(
    participant: Participant,
    streams: tuple[str, ...],
    watermarks: Mapping[str, datetime | None],
    late_sync: timedelta,
    options: RunOptions,
) -> Plan:
    """Pure: the window of every stream that has something to load.

    The overlap is OVERLAP_HOURS, or the source's late_sync where its data arrives later.
    """
    start = local_midnight(participant.start_date, participant.zone)
    overlap = max(options.overlap, late_sync)
    plan: Plan = {}
    for stream in streams:
        window = plan_window(
            watermark=watermarks.get(stream),
            participant_start=start,
            now=options.now,
            overlap=overlap,
            since=options.since,
            until=options.until,
        )
        if window is not None:
            plan[stream] = window
    return plan


def moved_watermarks(
    participant: Participant, plan: Plan, watermarks: Mapping[str, datetime | None]
) -> dict[str, datetime]:
    """Pure: every stream's watermark once the plan is committed (a window that leaves a gap
    keeps the one it had; a stream that still has none is left out)."""
    start = local_midnight(participant.start_date, participant.zone)
    moved = {}
    for stream, window in plan.items():
        mark = advance(watermarks.get(stream), start, window)
        if mark is not None:
            moved[stream] = mark
    return moved


def ingest_participant(
    connection: db.Connection,
    source: Source,
    participant: Participant,
    plan: Plan,
    options: RunOptions,
    run_id: uuid.UUID,
    moved: Mapping[str, datetime] | None = None,
) -> Outcome:
    """Load one participant's plan in one transaction, with its run-log row; commit or roll
    back all of it. `moved` are the watermarks the run log records if it commits."""
    began, started_at = time.monotonic(), datetime.now(UTC)
    report = ReadReport()
    outcome = Outcome(participant.participant_id, "ok")
    writer: RowWriter | None = None
    try:
        if not options.dry_run:
            if not db.hold_participant(connection, participant.participant_id):
                connection.rollback()  # removed from the cohort since the run started
                outcome.status = "removed"
                outcome.error = "removed from the cohort while the run was busy with others"
                return outcome
            earliest = min(window.start for window in plan.values())
            latest = db.stored_until(connection, participant.participant_id, earliest)
            writer = RowWriter(connection, options.batch_rows, latest)
        for stream, window in plan.items():
            label = f"{participant.participant_id} {stream}"
            rows = guarded(source.read(participant, stream, window, report), window, report, label)
            if writer is None:
                outcome.rows_read += sum(1 for _ in rows)
            else:
                writer.write(rows)
        if writer is not None:
            counts = writer.finish()
            outcome.rows_read, outcome.rows_written = counts.read, counts.written
            outcome.rows_rejected = report.rejected_total
            watermark = min(moved.values()) if moved else None
            db.record_run(
                connection, _record(run_id, participant, plan, started_at, outcome, watermark)
            )
            connection.commit()
    except Exception as error:
        if writer is not None:
            writer.abort()
        _fail(connection, error, outcome)
        if not options.dry_run:
            db.record_run(connection, _record(run_id, participant, plan, started_at, outcome))
            connection.commit()
    outcome.rows_rejected = report.rejected_total
    outcome.rejected = dict(report.rejected)
    outcome.seconds = time.monotonic() - began
    return outcome


def _fail(connection: db.Connection, error: Exception, outcome: Outcome) -> None:
    """Roll the participant back and classify why; a lost database ends the whole run."""
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
        connection.closed or isinstance(error, psycopg2.InterfaceError)
    ):
        raise DatabaseUnavailable(f"lost the database connection: {_one_line(error)}") from None
    try:
        connection.rollback()
    except psycopg2.Error as lost:
        raise DatabaseUnavailable(f"lost the database connection: {_one_line(lost)}") from None
    outcome.status = "needs_consent" if isinstance(error, NeedsConsent) else "failed"
    outcome.error = f"{type(error).__name__}: {_one_line(error)}"
    outcome.rows_written = 0


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _record(
    run_id: uuid.UUID,
    participant: Participant,
    plan: Plan,
    started_at: datetime,
    outcome: Outcome,
    watermark: datetime | None = None,
) -> db.RunRecord:
    return db.RunRecord(
        run_id=run_id,
        participant_id=participant.participant_id,
        window_start=min((w.start for w in plan.values()), default=None),
        window_end=max((w.end for w in plan.values()), default=None),
        started_at=started_at,
        status=outcome.status,
        rows_read=outcome.rows_read,
        rows_written=outcome.rows_written,
        rows_rejected=outcome.rows_rejected,
        error=outcome.error,
        watermark=watermark,
    )


def run_cohort(
    connection: db.Connection,
    participants: list[Participant],
    source_for: Callable[[str], Source],
    loaded: state.LoadedState,
    state_file: Path,
    options: RunOptions,
) -> list[Outcome]:
    run_id = uuid.uuid4()
    outcomes = []
    for participant in participants:
        pid = participant.participant_id
        in_database = db.recover_watermark(connection, pid)
        in_file = loaded.watermarks.get(pid, {})
        try:
            source = source_for(participant.source)
            marks = {s: trusted_watermark(in_file.get(s), in_database) for s in source.streams}
            plan = plan_participant(participant, source.streams, marks, source.late_sync, options)
        except Exception as error:  # a bad zone, Google settings missing: this one only
            outcomes.append(_failed_before_loading(connection, run_id, participant, error, options))
            continue
        if not plan:
            outcomes.append(Outcome(pid, "nothing_to_do"))
            log.info("%s: nothing to load before %s", pid, options.now.isoformat())
            continue
        moved = moved_watermarks(participant, plan, marks)
        outcome = ingest_participant(connection, source, participant, plan, options, run_id, moved)
        outcomes.append(outcome)
        _log_outcome(outcome, plan)
        if outcome.status == "ok" and moved and not options.dry_run:
            try:
                state.save(state_file, {pid: moved})
            except OSError as error:
                # The data and its watermark are committed (the run log holds it), so the
                # next run recovers; this run still exits non-zero to get the file fixed.
                outcome.warning = f"state file {state_file} not written: {error}"
                log.error("%s: %s", pid, outcome.warning)
    return outcomes


def _failed_before_loading(
    connection: db.Connection,
    run_id: uuid.UUID,
    participant: Participant,
    error: Exception,
    options: RunOptions,
) -> Outcome:
    outcome = Outcome(participant.participant_id, "failed")
    outcome.error = f"{type(error).__name__}: {_one_line(error)}"
    log.error("%s failed before loading: %s", participant.participant_id, outcome.error)
    if not options.dry_run:
        db.record_run(connection, _record(run_id, participant, {}, datetime.now(UTC), outcome))
        connection.commit()
    return outcome


def _log_outcome(outcome: Outcome, plan: Plan) -> None:
    start = min(w.start for w in plan.values()).astimezone(UTC).isoformat()
    end = max(w.end for w in plan.values()).astimezone(UTC).isoformat()
    rate = outcome.rows_read / outcome.seconds if outcome.seconds else 0.0
    if outcome.status == "ok":
        log.info(
            "%s ok [%s, %s): %d rows read, %d written, %d rejected%s in %.1f s (%.0f rows/s)",
            outcome.participant_id,
            start,
            end,
            outcome.rows_read,
            outcome.rows_written,
            outcome.rows_rejected,
            f" {outcome.rejected}" if outcome.rejected else "",
            outcome.seconds,
            rate,
        )
    else:
        log.error(
            "%s %s [%s, %s) after %.1f s: %s",
            outcome.participant_id,
            outcome.status,
            start,
            end,
            outcome.seconds,
            outcome.error,
        )
