"""Schema migrations: apply timescaledb/init.sql only when it names a version the database lacks.

init.sql is a sequence of `-- migration N: name` blocks, each guarded by its version in the
table schema_migrations. A run whose database has every version does one cheap SELECT and
takes no lock stronger than its normal reads. Only a missing version makes it run the file,
and DDL then waits for its locks at most LOCK_TIMEOUT per try, LOCK_ATTEMPTS tries: an
analyst's idle transaction must cost one night's run a clear message, not hang every run
and everyone queued behind its ACCESS EXCLUSIVE request.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path

import psycopg2.errors
import psycopg2.extensions

from .db import one_row
from .errors import IngestError

log = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection

MIGRATION_HEADER = re.compile(r"^-- migration (\d+): *(\S.*?)\s*$", re.MULTILINE)

# Runs that start together on a new database take turns applying the file (DDL must not
# race). One-key, like claims.BATCH_OPEN_KEY, and never equal to it.
SCHEMA_LOCK_KEY = 7_201_311_027
# A try waits this long for each lock. Applying the whole file to an empty database takes
# well under a second, so a concurrent run that is applying it never costs a try; a
# session that sits on a table is another matter, and waiting on it would queue every
# later reader of that table behind our ACCESS EXCLUSIVE request.
LOCK_TIMEOUT = timedelta(seconds=3)
# Tries, with RETRY_PAUSE between them: about 20 s in all before giving up with exit 5.
# A reader that is merely slow finishes within that; one that is idle in a transaction
# does not, and then waiting longer only delays the message.
LOCK_ATTEMPTS = 5
RETRY_PAUSE = timedelta(seconds=1)

BLOCKERS = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '(none)'), coalesce(a.state, '?'),
       coalesce(a.usename, '?'), date_trunc('second', clock_timestamp() - a.state_change)
FROM pg_stat_activity a
WHERE a.pid = ANY(pg_blocking_pids(%s))
ORDER BY a.pid
"""


class SchemaLockTimeout(IngestError):
    """A pending migration could not get its locks within the bounded wait (exit 5)."""


def migrations(text: str) -> dict[int, str]:
    """Version -> name of every `-- migration N: name` header, in file order (increasing)."""
    found: dict[int, str] = {}
    for match in MIGRATION_HEADER.finditer(text):
        version, name = int(match.group(1)), match.group(2)
        if version in found or (found and version < max(found)):
            raise ValueError(f"migration {version} is out of order or repeated")
        found[version] = name
    return found


def pending(declared: Mapping[int, str], applied: Iterable[int] | None) -> list[int]:
    """The declared versions the database lacks; all of them when it has no record at all."""
    done = set(applied or ())
    return [version for version in declared if version not in done]


def applied_versions(connection: Connection) -> set[int] | None:
    """The versions the database records; None without schema_migrations (old or empty)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        (exists,) = one_row(cursor)
        versions = None
        if exists:
            cursor.execute("SELECT version FROM schema_migrations")
            versions = {version for (version,) in cursor.fetchall()}
    connection.commit()  # hold nothing, not even the read's ACCESS SHARE
    return versions


def migrate(
    connection: Connection,
    schema_file: Path,
    monitor: Callable[[], Connection] | None = None,
) -> list[int]:
    """Bring the database to the schema of schema_file; returns the versions it applied.

    monitor opens a second connection, used only while a try waits, to see which session
    blocks it; without it the message cannot name the blocker.
    """
    text = schema_file.read_text(encoding="utf-8")
    declared = migrations(text)
    applied = applied_versions(connection)
    unknown = sorted(set(applied or ()) - set(declared))
    if unknown:
        log.warning("the database has schema migrations %s that %s does not list: a newer "
                    "ingester applied them", ", ".join(map(str, unknown)), schema_file)
    todo = pending(declared, applied)
    if not todo:
        return []
    names = ", ".join(f"{v} ({declared[v]})" for v in todo)
    log.info("applying schema migrations %s", names)
    blockers: list[tuple] = []
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        with _BlockerWatch(monitor, connection.get_backend_pid()) as watch:
            try:
                return _apply(connection, text, declared)
            except psycopg2.errors.LockNotAvailable:
                connection.rollback()
        blockers = watch.seen or blockers
        if attempt < LOCK_ATTEMPTS:
            log.debug("schema migration lock not available (try %d of %d)", attempt,
                      LOCK_ATTEMPTS)
            time.sleep(RETRY_PAUSE.total_seconds())
    raise SchemaLockTimeout(
        f"schema migration {names} could not get its lock in {LOCK_ATTEMPTS} tries of "
        f"{LOCK_TIMEOUT.total_seconds():g} s: it waits for {describe(blockers)}; "
        "end that transaction (or pg_terminate_backend(pid)) and run again"
    )


def _apply(connection: Connection, text: str, declared: Mapping[int, str]) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = %s",
                       (f"{int(LOCK_TIMEOUT.total_seconds() * 1000)}ms",))
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        # Another run may have applied it while this one waited for the advisory lock.
        todo = pending(declared, _versions_in_transaction(cursor))
        if todo:
            cursor.execute(text)
    connection.commit()
    return todo


def _versions_in_transaction(cursor: psycopg2.extensions.cursor) -> set[int] | None:
    cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not one_row(cursor)[0]:
        return None
    cursor.execute("SELECT version FROM schema_migrations")
    return {version for (version,) in cursor.fetchall()}


def describe(blockers: list[tuple]) -> str:
    """One phrase per blocking backend: pid, application, state and for how long."""
    if not blockers:
        return "a session it could not identify (see pg_stat_activity and pg_locks)"
    return "; ".join(
        f"pid {pid} (application {application!r}, user {user}, {state} for {since})"
        for pid, application, state, user, since in blockers
    )


class _BlockerWatch:
    """While a try waits, polls pg_blocking_pids of its backend from a second connection.

    After a lock timeout the wait is over and pg_blocking_pids shows nothing any more, so
    the blocker has to be seen while the try is still waiting.
    """

    POLL = 0.25  # seconds; several looks within one LOCK_TIMEOUT

    def __init__(self, monitor: Callable[[], Connection] | None, pid: int) -> None:
        self._monitor, self._pid = monitor, pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="schema-lock-watch",
                                        daemon=True)
        self.seen: list[tuple] = []

    def __enter__(self) -> _BlockerWatch:
        if self._monitor is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        try:
            connection = self._monitor()  # type: ignore[misc]
        except (psycopg2.Error, IngestError):  # the watch only improves the message
            return
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                while not self._stop.wait(self.POLL):
                    cursor.execute(BLOCKERS, (self._pid,))
                    rows = cursor.fetchall()
                    if rows:
                        self.seen = rows
        except psycopg2.Error:
            pass
        finally:
            connection.close()
