"""Everything the service says to PostgreSQL, apart from the bulk writer and the tokens."""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from . import rollups
from .config import Settings
from .errors import DatabaseUnavailable
from .metrics import DAILY_METRICS
from .model import Participant, Window
from .sleep import SleepSession
from .windows import local_midnight


def one_row(cursor: psycopg2.extensions.cursor) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, an EXISTS, a RETURNING)."""
    row = cursor.fetchone()
    if row is None:
        raise psycopg2.ProgrammingError("a single-row query returned no row")
    return row

log = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection

psycopg2.extras.register_uuid()


# What a server says while it is not up yet, or going down for a restart: worth waiting
# for. Anything else (a wrong password, an unknown database or user, a host name that does
# not exist) will not change by waiting, and fails at once.
NOT_READY = (
    "connection refused",
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "temporary failure in name resolution",
)
# Between tries: a server that is starting is up within seconds.
CONNECT_RETRY_PAUSE = 1.0


def connect(settings: Settings) -> Connection:
    """Connect, waiting up to settings.db_wait (DB_WAIT_SECONDS) for a server that is not up."""
    deadline = time.monotonic() + settings.db_wait.total_seconds()
    waiting = False
    while True:
        try:
            connection = psycopg2.connect(**settings.db_params())
            break
        except psycopg2.OperationalError as error:
            text = str(error).strip()
            reason = text.splitlines()[0] if text else "no answer"
            left = deadline - time.monotonic()
            if left <= 0 or not any(phrase in text.lower() for phrase in NOT_READY):
                waited = f" (waited {settings.db_wait.total_seconds():.0f} s)" if waiting else ""
                raise DatabaseUnavailable(
                    f"cannot connect to PostgreSQL at {settings.db_host}:{settings.db_port} "
                    f"database {settings.db_name!r} as {settings.db_user!r}: {reason}{waited}"
                ) from None
            if not waiting:
                log.warning("PostgreSQL at %s:%s is not ready (%s); waiting up to %.0f s for it "
                            "(DB_WAIT_SECONDS)", settings.db_host, settings.db_port,
                            _ready_phrase(text), settings.db_wait.total_seconds())
                waiting = True
            time.sleep(min(CONNECT_RETRY_PAUSE, left))
    if waiting:
        log.info("PostgreSQL at %s:%s is ready", settings.db_host, settings.db_port)
    with connection.cursor() as cursor:
        # Every instant is computed in UTC; the session zone only affects how psql-like
        # clients print them, never what is stored.
        cursor.execute("SET TIME ZONE 'UTC'")
    connection.commit()
    return connection


def _ready_phrase(text: str) -> str:
    return next(phrase for phrase in NOT_READY if phrase in text.lower())


# --- the cohort -------------------------------------------------------------------------

PARTICIPANT_COLUMNS = "participant_id, timezone, source, start_date, seed"
# What is read of a participant: the columns an enrolment sets, and which enrolment it is.
PARTICIPANT_READ = f"{PARTICIPANT_COLUMNS}, enrolment"


def load_participants(connection: Connection, ids: Iterable[str] = ()) -> list[Participant]:
    wanted = list(ids)
    with connection.cursor() as cursor:
        if wanted:
            cursor.execute(
                f"SELECT {PARTICIPANT_READ} FROM participants "
                "WHERE participant_id = ANY(%s) ORDER BY participant_id",
                (wanted,),
            )
        else:
            cursor.execute(f"SELECT {PARTICIPANT_READ} FROM participants ORDER BY 1")
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
        (empty,) = one_row(cursor)
    connection.commit()
    return empty


def enrol_if_empty(connection: Connection, participants: list[Participant]) -> bool:
    """Enrol the participants only into an empty cohort; True if it did.

    The table lock makes the check and the insert one step: an enrolment that commits in
    between waits, and then the demo participants are not added beside a real one.
    """
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE participants IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute("SELECT EXISTS (SELECT 1 FROM participants)")
        if one_row(cursor)[0]:
            connection.commit()
            return False
    add_participants(connection, participants)
    return True


def remove_participant(connection: Connection, participant_id: str, purge: bool) -> int:
    """Remove from the cohort; with purge, delete its stored data too. Returns rows deleted."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM participants WHERE participant_id = %s", (participant_id,))
        found = cursor.rowcount
        deleted = 0
        if purge:
            # The run log goes too: its watermarks would make a participant enrolled again
            # under the same id skip everything before them.
            # Counted first: on compressed chunks DELETE drops whole compressed batches
            # without decompressing them, and its row count leaves those out. Nothing adds
            # rows meanwhile: a run holds the participant row (hold_participant) that the
            # DELETE above has locked.
            cursor.execute("SELECT count(*) FROM raw_data WHERE participant_id = %s",
                           (participant_id,))
            (deleted,) = one_row(cursor)
            cursor.execute("DELETE FROM raw_data WHERE participant_id = %s", (participant_id,))
            rollups.forget(connection, participant_id)
            cursor.execute("DELETE FROM ingest_runs WHERE participant_id = %s", (participant_id,))
            # Its stages go with each session (ON DELETE CASCADE).
            cursor.execute("DELETE FROM sleep_sessions WHERE participant_id = %s",
                           (participant_id,))
    connection.commit()
    if not found and not deleted:  # a purge of an id removed before still deletes its data
        raise LookupError(f"no participant {participant_id!r}")
    return deleted


def restamp_daily_values(
    cursor: psycopg2.extensions.cursor, participant_id: str, old: ZoneInfo, new: ZoneInfo
) -> int:
    """Move a participant's daily values (metrics.DAILY_METRICS) from old-zone midnight to
    new-zone midnight of the same local date, in the caller's transaction, with the rollups
    of both instants; returns how many moved. A change of zone does this whatever the
    source: a date keeps one value of a daily metric whatever the zone did.

    Delete and insert, not UPDATE: the new instant may lie in another chunk of the
    hypertable. A value already stored at the new instant is kept (it is the newer one).
    """
    cursor.execute(
        'DELETE FROM raw_data WHERE participant_id = %s AND metric_type = ANY(%s) '
        'RETURNING "timestamp", metric_type, value',
        (participant_id, DAILY_METRICS),
    )
    old_rows = cursor.fetchall()
    moved = [
        (local_midnight(stamp.astimezone(old).date(), new), participant_id, metric, value)
        for stamp, metric, value in old_rows
    ]
    psycopg2.extras.execute_values(
        cursor,
        'INSERT INTO raw_data ("timestamp", participant_id, metric_type, value) VALUES %s '
        "ON CONFLICT ON CONSTRAINT raw_data_key DO NOTHING",
        moved,
    )
    # The zone's UPDATE rebuilt the local days from data_1m, whose minutes still hold the
    # values at their old instants: recompute the minute (and so hour and day) of each.
    instants = sorted({stamp for stamp, *_ in old_rows} | {stamp for stamp, *_ in moved})
    cursor.execute(
        "SELECT rollups_refresh(%s, instant, instant + INTERVAL '1 minute') "
        "FROM unnest(%s::timestamptz[]) AS instant",
        (participant_id, instants),
    )
    return len(moved)


@dataclass(frozen=True)
class Edited:
    before: Participant
    after: Participant
    daily_values_moved: int


def edit_participant(
    connection: Connection, participant_id: str, timezone: str | None, start_date: date | None,
    rezoned: Callable[[psycopg2.extensions.cursor, ZoneInfo, ZoneInfo], None] | None = None,
) -> Edited:
    """Change a participant's zone and/or start date in one transaction; a new zone moves
    the stored daily values (restamp_daily_values) and calls `rezoned(cursor, old, new)`, in
    the same transaction. Waits for a run loading them, as remove does. LookupError if
    there is no such participant."""
    with connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {PARTICIPANT_COLUMNS} FROM participants "
                       "WHERE participant_id = %s FOR UPDATE", (participant_id,))
        row = cursor.fetchone()
        if row is None:
            raise LookupError(f"no participant {participant_id!r}")
        before = Participant(*row)
        after = replace(before, timezone=timezone or before.timezone,
                        start_date=start_date or before.start_date)
        cursor.execute("UPDATE participants SET timezone = %s, start_date = %s "
                       "WHERE participant_id = %s",
                       (after.timezone, after.start_date, participant_id))
        moved = 0
        if after.timezone != before.timezone:
            moved = restamp_daily_values(cursor, participant_id, ZoneInfo(before.timezone),
                                         ZoneInfo(after.timezone))
            if rezoned is not None:
                rezoned(cursor, ZoneInfo(before.timezone), ZoneInfo(after.timezone))
    return Edited(before, after, moved)


def stored_rows(connection: Connection, participant_id: str, before: datetime | None = None
                ) -> int:
    """A participant's rows in raw_data (before an instant, if given)."""
    with connection.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM raw_data WHERE participant_id = %s '
                       """AND "timestamp" < coalesce(%s::timestamptz, 'infinity')""",
                       (participant_id, before))
        (count,) = one_row(cursor)
    connection.commit()
    return count


# --- what is stored ---------------------------------------------------------------------


# Per metric of a participant, the latest instant in [since, until): a skip scan down the
# key's index (participant_id, metric_type, "timestamp"). Each step finds the next metric
# that has a row in the span, and then its latest instant, by a short walk of the index,
# instead of reading and grouping every row of the span: 1-7 ms for a slice of 1 Hz data,
# where GROUP BY took 40-255 ms (a quarter of a rerun; docs/performance.md, "What is stored
# already"). The walk for the next metric reads past that metric's rows outside the span
# in the chunks at the span's edges, at most a chunk's worth. ORDER BY ... LIMIT 1, not
# min(): on chunks without statistics yet (just loaded) the planner read every row of the
# span for each min(). The bounds are constants in every subquery, so each opens only the
# span's chunks.
STORED_UNTIL = """
WITH RECURSIVE metric AS (
    (SELECT metric_type FROM raw_data
     WHERE participant_id = %(participant)s AND "timestamp" >= %(since)s AND "timestamp" < %(until)s
     ORDER BY metric_type LIMIT 1)
  UNION ALL
    SELECT (SELECT next.metric_type FROM raw_data AS next
            WHERE next.participant_id = %(participant)s AND next.metric_type > metric.metric_type
              AND next."timestamp" >= %(since)s AND next."timestamp" < %(until)s
            ORDER BY next.metric_type LIMIT 1)
    FROM metric WHERE metric.metric_type IS NOT NULL
)
SELECT metric_type, (SELECT latest."timestamp" FROM raw_data AS latest
                     WHERE latest.participant_id = %(participant)s
                       AND latest.metric_type = metric.metric_type
                       AND latest."timestamp" >= %(since)s AND latest."timestamp" < %(until)s
                     ORDER BY latest."timestamp" DESC LIMIT 1)
FROM metric WHERE metric_type IS NOT NULL
"""


def stored_until(
    connection: Connection, participant_id: str, since: datetime, until: datetime
) -> dict[str, datetime]:
    """Latest stored instant per metric of a participant in [since, until).

    Bounded on both sides, so the query touches only the chunks of that span (a slice's
    few), however long the history: an open end would lock every later chunk.
    """
    with connection.cursor() as cursor:
        cursor.execute(STORED_UNTIL, {"participant": participant_id, "since": since,
                                      "until": until})
        return dict(cursor.fetchall())


# Device names come from payloads and archives, so any text can arrive. A name is stored
# cleaned (device_name) and at most this many characters long: a 10 KB name would break
# the unique index (a btree entry holds about 2.7 KB) and fail every slice that meets it.
DEVICE_NAME_CHARS = 100
# origin_id is a smallint (32,767 values for every source together). A source may register
# this many devices; a new name past that is stored as OTHER_DEVICES, so that a source that
# names a new device on every point cannot use them up (docs/metrics.md).
MAX_DEVICES_PER_SOURCE = 1_000
OTHER_DEVICES = "(other devices)"
# Registrations take turns (one-key advisory lock, like schema.SCHEMA_LOCK_KEY, never equal
# to another key of ours): the cap is then counted exactly and no insert ever conflicts.
ORIGIN_LOCK_KEY = 7_201_311_031
# A registration waits at most this long for a lock: an older ingester's slice holding an
# uncommitted insert of the same name fails this slice with a message, never hangs it.
ORIGIN_LOCK_TIMEOUT = "10s"

FIND_ORIGIN = """
SELECT origin_id FROM data_origins WHERE source = %s AND coalesce(device, '') = coalesce(%s, '')
"""
COUNT_DEVICES = """
SELECT count(*) FROM data_origins WHERE source = %s AND device IS DISTINCT FROM %s
"""
# INSERT ... SELECT ... WHERE NOT EXISTS, not ON CONFLICT DO NOTHING: the identity's next
# value is taken only for a row that is inserted, where ON CONFLICT burns one per conflict.
ADD_ORIGIN = """
INSERT INTO data_origins (source, device)
SELECT %(source)s, %(device)s
WHERE NOT EXISTS (SELECT FROM data_origins WHERE source = %(source)s
                  AND coalesce(device, '') = coalesce(%(device)s, ''))
RETURNING origin_id
"""


def device_name(raw: str | None) -> str | None:
    """Pure: a device name as data_origins stores it: white space (tabs, line breaks, ...)
    made one space, control and other non-printing characters removed, trimmed, cut to
    DEVICE_NAME_CHARS; None when nothing is left."""
    if raw is None:
        return None
    text = "".join(" " if c.isspace() else c for c in str(raw)
                   if c.isspace() or not unicodedata.category(c).startswith("C"))
    text = " ".join(text.split())[:DEVICE_NAME_CHARS].rstrip()
    return text or None


def origin_id(connection: Connection, source: str, device: str | None) -> int:
    """data_origins.origin_id of (source, device), the device's name cleaned (device_name).

    Found in the caller's transaction; a new one is registered in a short transaction of
    its own, on a connection of its own, and committed at once: inserted inside a slice's
    transaction it would make every other slice meeting that name wait for the slice to
    commit, and two slices meeting two new names in opposite orders deadlock.
    """
    name = device_name(device)
    with connection.cursor() as cursor:
        found = _find_origin(cursor, source, name)
        if found is not None:
            return found
        cursor.execute(COUNT_DEVICES, (source, OTHER_DEVICES))
        if one_row(cursor)[0] >= MAX_DEVICES_PER_SOURCE:  # full: no connection needed
            name = OTHER_DEVICES
            found = _find_origin(cursor, source, name)
            if found is not None:
                return found
    own = psycopg2.connect(**_same_database(connection))
    try:
        return register_origin(own, source, name)
    finally:
        own.close()


def register_origin(connection: Connection, source: str, device: str | None) -> int:
    """Register (source, device) and commit: the caller's connection must have no open
    transaction of its own. A source that has MAX_DEVICES_PER_SOURCE devices gets
    OTHER_DEVICES instead of a new one. `device` is already clean (device_name)."""
    with connection, connection.cursor() as cursor:  # commits, or rolls back on error
        cursor.execute("SET LOCAL lock_timeout = %s", (ORIGIN_LOCK_TIMEOUT,))
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ORIGIN_LOCK_KEY,))
        found = _find_origin(cursor, source, device)
        if found is not None:
            return found
        cursor.execute(COUNT_DEVICES, (source, OTHER_DEVICES))
        if one_row(cursor)[0] >= MAX_DEVICES_PER_SOURCE and device != OTHER_DEVICES:
            log.warning("%s has named %d devices, the most data_origins keeps for a source: "
                        "values of a new device are stored as %r", source,
                        MAX_DEVICES_PER_SOURCE, OTHER_DEVICES)
            device = OTHER_DEVICES
            found = _find_origin(cursor, source, device)
            if found is not None:
                return found
        cursor.execute(ADD_ORIGIN, {"source": source, "device": device})
        added = cursor.fetchone()
        if added is None:  # only an older ingester inserts without the lock
            found = _find_origin(cursor, source, device)
            if found is None:
                raise psycopg2.ProgrammingError(f"no data_origins row for {source!r}")
            return found
        return int(added[0])


def _find_origin(cursor: psycopg2.extensions.cursor, source: str, device: str | None
                 ) -> int | None:
    cursor.execute(FIND_ORIGIN, (source, device))
    found = cursor.fetchone()
    return None if found is None else int(found[0])


def _same_database(connection: Connection) -> dict[str, Any]:
    """psycopg2.connect's arguments for another session like `connection`'s (same server,
    database, user and options)."""
    params: dict[str, Any] = dict(connection.info.dsn_parameters)
    if connection.info.password:
        params["password"] = connection.info.password
    return params


@dataclass(frozen=True)
class Recovered:
    watermark: datetime | None  # the participant's: the earliest of its streams
    origin: str | None  # "run log", "stored data", or None when the database knows nothing
    # Each stream's own, where the run log has it (runs since migration 11 record them).
    streams: dict[str, datetime] = field(default_factory=dict)


def recover_watermark(connection: Connection, participant_id: str) -> Recovered:
    """What the database proves was loaded for a participant, without any gap before it.

    The run log records each committed slice's watermark in the same transaction as its
    data, so it is exact. A participant loaded before the run log existed falls back to the
    earliest of its metrics' last stored points: a metric that lagged behind the others may
    still have a gap after its last point, and a later bound would skip it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) > 0, max(watermark) FILTER (WHERE status = 'ok') "
            "FROM ingest_runs WHERE participant_id = %s",
            (participant_id,),
        )
        logged, watermark = one_row(cursor)
        origin = "run log" if watermark is not None else None
        cursor.execute(
            "SELECT stream.key, max(stream.value::timestamptz) FROM ingest_runs, "
            "jsonb_each_text(stream_watermarks) AS stream "
            "WHERE participant_id = %s AND status = 'ok' GROUP BY stream.key",
            (participant_id,),
        )
        streams = dict(cursor.fetchall())
        if not logged:
            cursor.execute(
                'SELECT min(latest) FROM (SELECT max("timestamp") AS latest FROM raw_data '
                "WHERE participant_id = %s GROUP BY metric_type) AS last_points",
                (participant_id,),
            )
            (watermark,) = one_row(cursor)
            origin = "stored data" if watermark is not None else None
    connection.commit()
    return Recovered(watermark, origin, streams)


@dataclass(frozen=True)
class Enrolled:
    """A participant as a slice's transaction finds it."""

    timezone: str
    enrolment: int


def hold_participant(connection: Connection, participant_id: str) -> Enrolled | None:
    """Keep the participant enrolled until this transaction ends; its zone and enrolment
    now, or None if it is gone.

    `participant remove` waits for a participant being loaded, and a participant removed
    while the run was busy with others is not loaded (and its data not restored) after it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT timezone, enrolment FROM participants WHERE participant_id = %s "
            "FOR KEY SHARE",
            (participant_id,),
        )
        found = cursor.fetchone()
        return None if found is None else Enrolled(*found)


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
    watermark: datetime | None = None
    # Each stream's watermark once the slice committed (a stream held where the grant lacks
    # its scope keeps its own, which `watermark` leaves out).
    stream_watermarks: Mapping[str, datetime] = field(default_factory=dict)


def record_run(connection: Connection, record: RunRecord) -> None:
    """Add to the run log inside the caller's transaction (the caller commits)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_runs (run_id, participant_id, window_start, window_end, "
            "rows_read, rows_written, rows_rejected, status, error, started_at, watermark, "
            "stream_watermarks, finished_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
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
                record.watermark,
                psycopg2.extras.Json({s: m.isoformat()
                                      for s, m in record.stream_watermarks.items()})
                if record.stream_watermarks else None,
            ),
        )


def participant_report(connection: Connection) -> list[tuple]:
    """Per participant: source, last run's status, when it ended, error, consent state,
    and the scopes their Google grant lacks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.participant_id, p.source, s.status, "
            "s.finished_at, s.error, c.needs_consent_since, c.missing_scopes "
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


# What a source read for a window replaces what it stored before: its sessions that end in
# the window, and any of its sessions that overlap one read now (a pending session that
# Google re-cut once it was processed starts elsewhere). Nothing stale stays.
# A source that holds only some nights (an archive: sleep.replaces_window), or a read that
# rejected a session, reaches only the sessions that overlap one it read: what it lacks or
# now rejects stays as stored.
SLEEP_IN_REACH = """
FROM sleep_sessions s
WHERE s.participant_id = %(participant)s AND s.source = %(source)s
  AND ((%(whole_window)s AND s.session_end >= %(start)s AND s.session_end < %(end)s)
       OR EXISTS (SELECT 1 FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[])
                      AS r(session_start, session_end)
                  WHERE s.session_start < r.session_end AND r.session_start < s.session_end))
"""
SLEEP_REPLACED = "DELETE" + SLEEP_IN_REACH
SLEEP_STORED = ("SELECT s.session_start, s.session_end, s.is_main_sleep, s.minutes_asleep, "
                "s.minutes_awake, s.kind, s.processed, s.device" + SLEEP_IN_REACH
                + "ORDER BY s.session_start")
SLEEP_STORED_STAGES = """
SELECT session_start, stage_start, stage_end, stage FROM sleep_stages
WHERE participant_id = %(participant)s AND source = %(source)s
  AND session_start = ANY(%(stored)s::timestamptz[])
ORDER BY session_start, stage_start
"""


def store_sleep(cursor: psycopg2.extensions.cursor, participant_id: str, source: str,
                window: Window, sessions: list[SleepSession], whole_window: bool = True) -> int:
    """Replace the source's sleep in the window with `sessions` (their ends lie in it), in
    the caller's transaction, unless it is stored already as read: a re-read of the same
    nights writes nothing. Not `whole_window`: replace only the stored sessions that overlap
    one read, and delete none other. Returns the stages stored."""
    reach = {"participant": participant_id, "source": source, "whole_window": whole_window,
             "start": window.start, "end": window.end, "starts": [s.start for s in sessions],
             "ends": [s.end for s in sessions]}
    read = sorted((s.start, s.end, s.is_main_sleep, s.minutes_asleep, s.minutes_awake,
                   s.kind, s.processed, s.device) for s in sessions)
    stages = sorted((participant_id, source, s.start, st.start, st.end, st.stage)
                    for s in sessions for st in s.stages)
    cursor.execute(SLEEP_STORED, reach)
    stored = cursor.fetchall()
    if stored == read:
        cursor.execute(SLEEP_STORED_STAGES, {**reach, "stored": [row[0] for row in stored]})
        if cursor.fetchall() == [stage[2:] for stage in stages]:
            return 0
    cursor.execute(SLEEP_REPLACED, reach)
    if not sessions:
        return 0
    psycopg2.extras.execute_values(
        cursor,
        "INSERT INTO sleep_sessions (participant_id, source, session_start, session_end, "
        "is_main_sleep, minutes_asleep, minutes_awake, kind, processed, device) VALUES %s",
        [(participant_id, source, *session) for session in read])
    psycopg2.extras.execute_values(
        cursor,
        "INSERT INTO sleep_stages (participant_id, source, session_start, stage_start, "
        "stage_end, stage) VALUES %s", stages, page_size=1000)
    return len(stages)
