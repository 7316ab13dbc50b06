"""Everything the service says to PostgreSQL, apart from the bulk writer and the tokens."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from .config import Settings
from .errors import DatabaseUnavailable
from .model import Participant

log = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection

# One run at a time per database: a session advisory lock, released by the server if the
# process dies, so a killed run never leaves a stale lock behind. The number is arbitrary
# but fixed; it must not collide with the per-participant token locks (two-key form).
RUN_LOCK_KEY = 7_201_311_026
SCHEMA_LOCK_KEY = RUN_LOCK_KEY + 1

psycopg2.extras.register_uuid()


def connect(settings: Settings) -> Connection:
    try:
        connection = psycopg2.connect(**settings.db_params())
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {settings.db_host}:{settings.db_port} "
            f"database {settings.db_name!r} as {settings.db_user!r}: {reason}"
        ) from None
    with connection.cursor() as cursor:
        # Every instant is computed in UTC; the session zone only affects how psql-like
        # clients print them, never what is stored.
        cursor.execute("SET TIME ZONE 'UTC'")
    connection.commit()
    return connection


def apply_schema(connection: Connection, schema_file: Path) -> None:
    """Apply the idempotent schema; runs that start together take turns, as DDL may not race."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        cursor.execute(schema_file.read_text(encoding="utf-8"))
    connection.commit()


@contextmanager
def run_lock(connection: Connection) -> Iterator[None]:
    """Hold the database's run lock; a second run waits here until the first is done."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,))
        if not cursor.fetchone()[0]:
            log.warning("another ingestion run holds the lock; waiting for it to finish")
            cursor.execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_KEY,))
    connection.commit()
    try:
        yield
    finally:
        if not connection.closed:
            connection.rollback()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK_KEY,))
            connection.commit()


# --- the cohort -------------------------------------------------------------------------

PARTICIPANT_COLUMNS = "participant_id, timezone, source, start_date, seed"


def load_participants(connection: Connection, ids: Iterable[str] = ()) -> list[Participant]:
    wanted = list(ids)
    with connection.cursor() as cursor:
        if wanted:
            cursor.execute(
                f"SELECT {PARTICIPANT_COLUMNS} FROM participants "
                "WHERE participant_id = ANY(%s) ORDER BY participant_id",
                (wanted,),
            )
        else:
            cursor.execute(f"SELECT {PARTICIPANT_COLUMNS} FROM participants ORDER BY 1")
        participants = [Participant(*row) for row in cursor.fetchall()]
    connection.commit()
    return participants


def add_participants(connection: Connection, participants: Iterable[Participant]) -> None:
    """Insert participants; an id that exists already raises IntegrityError."""
    with connection.cursor() as cursor:
        for participant in participants:
            cursor.execute(
                f"INSERT INTO participants ({PARTICIPANT_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                (
                    participant.participant_id,
                    participant.timezone,
                    participant.source,
                    participant.start_date,
                    participant.seed,
                ),
            )
    connection.commit()


def cohort_is_empty(connection: Connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT NOT EXISTS (SELECT 1 FROM participants)")
        (empty,) = cursor.fetchone()
    connection.commit()
    return empty


def remove_participant(connection: Connection, participant_id: str, purge: bool) -> int:
    """Remove from the cohort; with purge, delete its stored data too. Returns rows deleted."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM participants WHERE participant_id = %s", (participant_id,))
        found = cursor.rowcount
        deleted = 0
        if purge:
            cursor.execute("DELETE FROM raw_data WHERE participant_id = %s", (participant_id,))
            deleted = cursor.rowcount
    connection.commit()
    if not found:
        raise LookupError(f"no participant {participant_id!r}")
    return deleted


# --- what is stored ---------------------------------------------------------------------


def stored_until(
    connection: Connection, participant_id: str, since: datetime
) -> dict[str, datetime]:
    """Latest stored instant per metric of a participant, looking no further back than since."""
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT metric_type, max("timestamp") FROM raw_data '
            'WHERE participant_id = %s AND "timestamp" >= %s GROUP BY metric_type',
            (participant_id, since),
        )
        return dict(cursor.fetchall())


def recover_watermark(connection: Connection, participant_id: str) -> datetime | None:
    """What the database proves was loaded for a participant, for a lost state file.

    The end of its last committed run is exact (the run log commits with the data); the
    last stored point is a safe lower bound for data loaded before the run log existed.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(window_end) FROM ingest_runs WHERE participant_id = %s AND status = 'ok'",
            (participant_id,),
        )
        (last_run_end,) = cursor.fetchone()
        if last_run_end is None:
            cursor.execute(
                'SELECT max("timestamp") FROM raw_data WHERE participant_id = %s',
                (participant_id,),
            )
            (last_run_end,) = cursor.fetchone()
    connection.commit()
    return last_run_end


# --- the run log ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    run_id: uuid.UUID
    participant_id: str
    window_start: datetime | None  # None when the run failed before planning a window
    window_end: datetime | None
    started_at: datetime
    status: str  # ok | failed | needs_consent
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    error: str | None = None


def record_run(connection: Connection, record: RunRecord) -> None:
    """Add to the run log inside the caller's transaction (the caller commits)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_runs (run_id, participant_id, window_start, window_end, "
            "rows_read, rows_written, rows_rejected, status, error, started_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record.run_id,
                record.participant_id,
                record.window_start,
                record.window_end,
                record.rows_read,
                record.rows_written,
                record.rows_rejected,
                record.status,
                record.error,
                record.started_at,
            ),
        )


def participant_report(connection: Connection) -> list[tuple]:
    """Per participant: source, last run's status, end, error, and consent state."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.participant_id, p.source, p.timezone, s.status, s.window_end, "
            "s.finished_at, s.error, c.needs_consent_since "
            "FROM participants p "
            "LEFT JOIN participant_status s USING (participant_id) "
            "LEFT JOIN google_credentials c USING (participant_id) "
            "ORDER BY p.participant_id"
        )
        rows = cursor.fetchall()
    connection.commit()
    return rows


def stored_counts(connection: Connection) -> dict[tuple[str, str], tuple[int, datetime]]:
    """Rows and latest instant per (participant, metric). Scans raw_data: minutes on years."""
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT participant_id, metric_type, count(*), max("timestamp") '
            "FROM raw_data GROUP BY 1, 2"
        )
        counts = {(p, m): (n, latest) for p, m, n, latest in cursor.fetchall()}
    connection.commit()
    return counts
