"""Streams rows into raw_data in bounded COPY batches while the caller keeps producing.

Two paths, chosen per row:
- A row later than anything stored for its participant and metric cannot collide with the
  unique key, so it goes straight into raw_data with COPY: the fastest write PostgreSQL has.
  A savepoint guards the batch; if it collides after all (the source repeated a point, or
  data arrived meanwhile), the batch is rolled back to the savepoint and upserted instead.
- Every other row (the overlap that a run re-reads) is copied into a temporary staging
  table and upserted from there with INSERT … ON CONFLICT.

The COPYs run on a background thread: psycopg2 releases the GIL while the server works, so
Python produces the next batch on one core while PostgreSQL stores the last on the other.
At most QUEUED_BATCHES wait between them, which keeps memory flat however long the stream.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import psycopg2.errors

from .model import Row

COLUMNS = '("timestamp", participant_id, metric_type, value)'
STAGING = "raw_data_staging"
QUEUED_BATCHES = 2
# psycopg2 reads a COPY source in calls of this size (8 KiB by default). Before each call the
# COPY thread must win the GIL back from the producing thread, which takes up to a switch
# interval (5 ms) while the server may sit idle; worst when another process competes for
# the CPU. One read per batch (~3 MB at the default BATCH_ROWS) instead of 1 MiB reads: see
# docs/performance.md. The cap bounds the send buffer libpq grows to hold one read.
COPY_READ_SIZE = 64 << 20

# DO UPDATE rather than DO NOTHING: a source that re-sends a point with a corrected value
# (a late device sync, a recomputed API value) must win over what an earlier run stored.
# The WHERE keeps identical re-reads from rewriting rows, so a rerun writes nothing.
UPSERT = f"""
INSERT INTO raw_data {COLUMNS}
SELECT DISTINCT ON (participant_id, metric_type, "timestamp") {COLUMNS[1:-1]}
FROM {STAGING}
ORDER BY participant_id, metric_type, "timestamp"
ON CONFLICT ON CONSTRAINT raw_data_key DO UPDATE SET value = EXCLUDED.value
WHERE raw_data.value IS DISTINCT FROM EXCLUDED.value
"""


@dataclass
class WriteCounts:
    read: int = 0
    written: int = 0  # inserted, or updated to a new value


# "MM:SS+00" of every second of an hour: the clock of a UTC instant in COPY text is looked up,
# not formatted, because isoformat() was two thirds of the cost of a line (1.35 us; now 0.7).
_MINUTE_SECOND = tuple(f"{s // 60:02d}:{s % 60:02d}+00" for s in range(3600))
_HOUR = tuple(f" {h:02d}:" for h in range(24))


@lru_cache(maxsize=1024)
def _day_text(day: date) -> str:
    return day.isoformat()


def format_row(row: Row) -> str:
    """One line of COPY text; ids and metric names never hold tabs (the schema checks ids).

    The common case, a whole second in UTC, is written as "YYYY-MM-DD HH:MM:SS+00" from
    lookups; any other timestamp by isoformat(). PostgreSQL reads both as the same instant.
    """
    timestamp, participant_id, metric_type, value = row
    if timestamp.tzinfo is UTC and not timestamp.microsecond:
        stamp = (
            f"{_day_text(timestamp.date())}{_HOUR[timestamp.hour]}"
            f"{_MINUTE_SECOND[timestamp.minute * 60 + timestamp.second]}"
        )
    else:
        stamp = timestamp.isoformat()
    return f"{stamp}\t{participant_id}\t{metric_type}\t{value!r}\n"


class RowWriter:
    """Writes into the caller's open transaction; the caller commits or rolls back."""

    def __init__(self, connection, batch_rows: int, stored_until: dict[str, datetime]) -> None:
        self._connection = connection
        self._batch_rows = batch_rows
        self._stored_until = stored_until  # metric_type -> latest stored timestamp
        self.counts = WriteCounts()
        self._queue: queue.Queue[tuple[bool, bytes] | None] = queue.Queue(QUEUED_BATCHES)
        self._error: BaseException | None = None
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (LIKE raw_data) ON COMMIT DELETE ROWS"
            )
        self._thread = threading.Thread(target=self._drain, name="copy-writer", daemon=True)
        self._thread.start()

    def write(self, rows: Iterable[Row]) -> None:
        direct: list[str] = []
        overlap: list[str] = []
        # Locals, and the count kept aside: this loop runs once per row.
        stored_until, batch_rows = self._stored_until, self._batch_rows
        read = 0
        try:
            for row in rows:
                latest = stored_until.get(row.metric_type)
                if latest is None or row.timestamp > latest:
                    direct.append(format_row(row))
                    if len(direct) >= batch_rows:
                        self._send(True, direct)
                        direct = []
                else:
                    overlap.append(format_row(row))
                    if len(overlap) >= batch_rows:
                        self._send(False, overlap)
                        overlap = []
                read += 1
        finally:
            self.counts.read += read
        self._send(False, overlap)
        self._send(True, direct)

    def finish(self) -> WriteCounts:
        """Wait until every batch is stored; re-raise what the COPY thread hit."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self.counts

    def abort(self) -> None:
        """Stop without storing what is queued; the caller rolls the transaction back."""
        self._error = self._error or RuntimeError("aborted")
        self._stop()

    def _send(self, direct: bool, lines: list[str]) -> None:
        if not lines:
            return
        payload = "".join(lines).encode()
        while self._error is None:
            try:
                self._queue.put((direct, payload), timeout=0.5)
                return
            except queue.Full:
                continue
        raise self._error

    def _stop(self) -> None:
        if self._thread.is_alive():
            while True:
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # failed or aborted: drop the rest, the transaction is doomed
            try:
                self.counts.written += self._store(*item)
            except BaseException as error:  # handed to the producing thread
                self._error = error

    def _store(self, direct: bool, payload: bytes) -> int:
        with self._connection.cursor() as cursor:
            if direct:
                cursor.execute("SAVEPOINT direct_copy")
                try:
                    cursor.copy_expert(
                        f"COPY raw_data {COLUMNS} FROM STDIN", io.BytesIO(payload), COPY_READ_SIZE
                    )
                except psycopg2.errors.UniqueViolation:
                    cursor.execute("ROLLBACK TO SAVEPOINT direct_copy")
                else:
                    copied = cursor.rowcount
                    cursor.execute("RELEASE SAVEPOINT direct_copy")
                    return copied
            cursor.copy_expert(
                f"COPY {STAGING} {COLUMNS} FROM STDIN", io.BytesIO(payload), COPY_READ_SIZE
            )
            cursor.execute(UPSERT)
            written = cursor.rowcount
            cursor.execute(f"TRUNCATE {STAGING}")
            return written
