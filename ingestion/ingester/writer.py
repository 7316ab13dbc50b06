"""Streams rows into raw_data in bounded COPY batches while the caller keeps producing.

Two paths, chosen per row:
- A row later than anything stored for its participant and metric cannot collide with the
  unique key, so it goes straight into raw_data with COPY: the fastest write PostgreSQL has.
  A savepoint guards the batch; if it collides after all (the source repeated a point, or
  data arrived meanwhile), the batch is rolled back to the savepoint and upserted instead.
- Every other row (the overlap that a run re-reads) is batched per participant and metric.
  A batch whose instants and values hash the same as the stored rows of its time range (the
  server hashes them the same way) is identical and goes no further: the common re-read
  sends a hash, not rows, and never formats them. Any other batch is copied into a temporary
  staging table and compared there with what is stored; only the rows that are new or carry
  another value are upserted (INSERT … ON CONFLICT). An identical re-read writes nothing.

Why compare first: on a compressed chunk (the community edition's compression policy), an
INSERT … ON CONFLICT has to decompress every stored batch a row might conflict with, even
when it then changes nothing: a re-read of a week decompressed a week of chunks and doubled
the table until the next policy run. A plain read of compressed data decompresses in memory
only and leaves the chunks alone, so the comparison is a read, and the upsert sees only the
rows that really change.

The COPYs run on a background thread: psycopg2 releases the GIL while the server works, so
Python produces the next batch on one core while PostgreSQL stores the last on the other.
At most QUEUED_BATCHES wait between them, which keeps memory flat however long the stream.
"""

from __future__ import annotations

import hashlib
import io
import queue
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import attrgetter

import psycopg2.errors

from . import db
from .model import Row

COLUMNS = '("timestamp", participant_id, metric_type, value, origin_id)'
STAGING = "raw_data_staging"
PENDING = "raw_data_pending"  # the staged rows that differ from what is stored, numbered
QUEUED_BATCHES = 2
# psycopg2 reads a COPY source in calls of this size (8 KiB by default). Before each call the
# COPY thread must win the GIL back from the producing thread, which takes up to a switch
# interval (5 ms) while the server may sit idle; worst when another process competes for
# the CPU. One read per batch (~3 MB at the default BATCH_ROWS) instead of 1 MiB reads: see
# docs/performance.md. The cap bounds the send buffer libpq grows to hold one read.
COPY_READ_SIZE = 64 << 20

# Overlap rows are held as Row objects until their hash is checked: this many per batch.
OVERLAP_BATCH_ROWS = 100_000

# The stored rows of one participant and metric in a time range, hashed: SHA-256 of each
# row's instant (seconds since 1970 as a float8, big-endian) followed by its value, row by
# row in time order. Python's datetime.timestamp() and PostgreSQL's date_part('epoch') both
# divide the integer microseconds by 10^6 with one rounding, so they give the same float8
# for any instant the pipeline stores (within about 285 years of 1970, where microseconds
# are exact in a float8; the guard stores nothing after the run's now). Equal hashes
# therefore mean equal rows and the batch changes nothing. A batch that differs in any way
# (a value, a missing or repeated point, its order, -0.0 for 0.0) hashes differently and
# takes the exact comparison: a mismatch costs time, never a row.
# The aggregate reads the rows in the order of the sorted subquery instead of sorting them
# again itself (string_agg ... ORDER BY sorts its input whatever the plan delivers): the
# server's part of a re-read went from 0.11 to 0.05 s a participant-day, and the rerun from
# 0.42 to 0.19 s (docs/performance.md, "The rerun's hash"). PostgreSQL documents that a sorted
# subquery "will usually work" as an aggregate's order, not that it always does: where it
# would not, the hashes differ and the batch takes the exact comparison, which is correct.
STORED_DIGEST = """
SELECT sha256(string_agg(float8send(date_part('epoch', "timestamp")) || float8send(value),
                         ''::bytea))
FROM (
    SELECT "timestamp", value FROM raw_data
    WHERE participant_id = %s AND metric_type = %s AND "timestamp" BETWEEN %s AND %s
    ORDER BY "timestamp"
) AS stored
"""
BIG_ENDIAN = sys.byteorder == "big"  # float8send's byte order
Series = tuple[list[Row], bytes]  # an overlap batch of one participant's metric, and its hash


@lru_cache(maxsize=64)
def stored_digests(count: int) -> str:
    """STORED_DIGEST of `count` series in one statement, one column each: the short series a
    stream leaves at its end (one per metric) cost one round trip instead of one each. Each
    series' bounds stay constants, so each subquery opens only its own chunks."""
    return "SELECT " + ", ".join([f"({STORED_DIGEST})"] * count)


def batch_digest(rows: list[Row]) -> bytes:
    """What STORED_DIGEST gives for exactly these rows, in this order."""
    pairs = [0.0] * (2 * len(rows))
    pairs[0::2] = [row.timestamp.timestamp() for row in rows]
    pairs[1::2] = [row.value for row in rows]
    packed = array("d", pairs)
    if not BIG_ENDIAN:
        packed.byteswap()
    return hashlib.sha256(packed.tobytes()).digest()


# Per participant and metric of a staged batch: the time range it covers. The comparison
# below gets them as constants, so that only the chunks (and, in compressed chunks, only the
# batches of that participant and metric) inside the range are read.
STAGED_GROUPS = f"""
SELECT participant_id, metric_type, min("timestamp"), max("timestamp")
FROM {STAGING} GROUP BY 1, 2
"""

# The staged rows of one participant and metric that are not stored with the same value (a
# point the source repeated within the batch counts once). EXCEPT, not a join: it reads the
# stored side once, by hash or sort; a nested loop would decompress a compressed batch again
# for every staged row.
# The origin is not compared: it comes along with a value that changes (joined back by
# instant, unique in `staged`).
CHANGED = f"""
WITH staged AS (
    SELECT DISTINCT ON ("timestamp") "timestamp", value, origin_id FROM {STAGING}
    WHERE participant_id = %(participant)s AND metric_type = %(metric)s
    ORDER BY "timestamp"
)
INSERT INTO {PENDING} (seq, "timestamp", participant_id, metric_type, value, origin_id)
SELECT %(offset)s + row_number() OVER (), d."timestamp", %(participant)s, %(metric)s, d.value,
       s.origin_id
FROM (
    SELECT "timestamp", value FROM staged
    EXCEPT
    SELECT "timestamp", value FROM raw_data
    WHERE participant_id = %(participant)s AND metric_type = %(metric)s
      AND "timestamp" BETWEEN %(low)s AND %(high)s
) d
JOIN staged s USING ("timestamp")
"""

# DO UPDATE rather than DO NOTHING: a source that re-sends a point with a corrected value
# (a late device sync, a recomputed API value) must win over what an earlier run stored.
# The WHERE keeps a row that another writer stored meanwhile from being rewritten.
UPSERT = f"""
INSERT INTO raw_data {COLUMNS}
SELECT {COLUMNS[1:-1]} FROM {PENDING} WHERE seq > %s AND seq <= %s
ON CONFLICT ON CONSTRAINT raw_data_key DO UPDATE
SET value = EXCLUDED.value, origin_id = EXCLUDED.origin_id
WHERE raw_data.value IS DISTINCT FROM EXCLUDED.value
"""

# TimescaleDB stops any INSERT, UPDATE or DELETE that decompresses more than this many
# tuples (counted per statement, despite the name: 2.19's chunk dispatch keeps the count).
DECOMPRESSION_LIMIT = "timescaledb.max_tuples_decompressed_per_dml_transaction"
# The most rows a compressed batch holds (TimescaleDB's TARGET_COMPRESSED_BATCH_SIZE; its
# setting compression_batch_size_limit can only lower it). A row written into a compressed
# chunk decompresses at most the one batch of its participant and metric whose time range
# holds it, so a statement of limit // 1000 such rows stays within the limit.
COMPRESSED_BATCH_ROWS = 1_000
# Asked once per writer, and only when it has something to write (the view takes ~0.1 s).
COMPRESSED_CHUNKS = """
SELECT range_start, range_end FROM timescaledb_information.chunks
WHERE hypertable_name = 'raw_data' AND is_compressed
"""


def rows_per_statement(decompression_limit: int) -> int | None:
    """Rows an upsert into compressed chunks may carry; None: no limit (the setting's 0)."""
    if decompression_limit <= 0:
        return None
    return max(1, decompression_limit // COMPRESSED_BATCH_ROWS)


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


def format_row(row: Row, origin: str) -> str:
    """One line of COPY text; ids and metric names never hold tabs (the schema checks ids).
    `origin` is the origin_id column, tab first (RowWriter._origin).

    The common case, a whole second in UTC, is written as "YYYY-MM-DD HH:MM:SS+00" from
    lookups; any other timestamp by isoformat(). PostgreSQL reads both as the same instant.
    """
    timestamp, participant_id, metric_type, value, _device = row
    if timestamp.tzinfo is UTC and not timestamp.microsecond:
        stamp = (
            f"{_day_text(timestamp.date())}{_HOUR[timestamp.hour]}"
            f"{_MINUTE_SECOND[timestamp.minute * 60 + timestamp.second]}"
        )
    else:
        stamp = timestamp.isoformat()
    return f"{stamp}\t{participant_id}\t{metric_type}\t{value!r}{origin}\n"


def copy_text(batches: list[list[Row]], origins: dict[str | None, str]) -> bytes:
    """The rows of these series as COPY text; every row's device is in `origins`."""
    return "".join([format_row(row, origins[row.device])
                    for rows in batches for row in rows]).encode()


def bounded(batches: list[list[Row]], batch_rows: int) -> Iterator[list[list[Row]]]:
    """The series in groups of at most `batch_rows` rows, each staged by one COPY (a longer
    series stands alone): a stream's end leaves one short series per metric, and the ones
    that differ can together hold several batches' worth."""
    group: list[list[Row]] = []
    size = 0
    for rows in batches:
        if group and size + len(rows) > batch_rows:
            yield group
            group, size = [], 0
        group.append(rows)
        size += len(rows)
    if group:
        yield group


NO_ORIGIN = "\t\\N"  # origin_id NULL: the view names the participant's source
_UNSEEN = object()  # no device is this one


class RowWriter:
    """Writes into the caller's open transaction; the caller commits or rolls back.

    `kind` is the source that loaded the rows (participants.source): with it each row's
    origin_id names it and the row's device (data_origins); without it, origin_id is NULL."""

    def __init__(self, connection, batch_rows: int, stored_until: dict[str, datetime],
                 kind: str | None = None) -> None:
        self._connection = connection
        self._kind = kind
        # device -> its origin_id as COPY text (tab first), found once per writer; read by
        # the COPY thread for the overlap rows, whose devices the producer has looked up.
        self._origins: dict[str | None, str] = {}
        # Held while a batch is stored: a look-up must not fall between the COPY thread's
        # SAVEPOINT and its ROLLBACK TO, where a failed COPY has left the transaction
        # aborted. (A new origin is registered on a connection of its own: db.origin_id.)
        self._storing = threading.Lock()
        self._batch_rows = batch_rows
        self._stored_until = stored_until  # metric_type -> latest stored timestamp
        self.counts = WriteCounts()
        # (True, COPY text) of new rows, or (False, [(rows, hash), ...]) of overlap series.
        self._queue: queue.Queue[tuple[bool, bytes | list[Series]] | None] = queue.Queue(
            QUEUED_BATCHES
        )
        self._error: BaseException | None = None
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (LIKE raw_data) ON COMMIT DELETE ROWS"
            )
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {PENDING} (seq bigint NOT NULL, LIKE raw_data) "
                f"ON COMMIT DELETE ROWS; "
                f"CREATE INDEX IF NOT EXISTS {PENDING}_seq ON {PENDING} (seq)"
            )
            # The server's limit is respected, never raised: the upserts are cut to fit it.
            cursor.execute("SELECT current_setting(%s, true)", (DECOMPRESSION_LIMIT,))
            (limit,) = cursor.fetchone()
        self._statement_rows = rows_per_statement(int(limit) if limit else 0)
        self._compressed: list[tuple[datetime, datetime]] | None = None  # chunk ranges
        self._thread = threading.Thread(target=self._drain, name="copy-writer", daemon=True)
        self._thread.start()

    def write(self, rows: Iterable[Row]) -> None:
        direct: list[str] = []
        # Per (participant, metric): a batch of one series, so that it can be hashed whole;
        # its rows are formatted only if the hash shows they differ from what is stored.
        overlap: dict[tuple[str, str], list[Row]] = {}
        # Locals, and the count kept aside: this loop runs once per row. A stream's rows come
        # series by series, so the series of the row before (its latest stored instant and
        # its overlap batch) is kept at hand, and most rows skip the look-ups: a re-read's
        # loop went from 0.22 to 0.12 us a row. Interleaved series only lose the shortcut.
        stored_until, batch_rows, origins = self._stored_until, self._batch_rows, self._origins
        overlap_rows = min(batch_rows, OVERLAP_BATCH_ROWS)
        key: tuple[str, str] = ("", "")
        latest: datetime | None = None
        series: list[Row] = []
        last_device: object = _UNSEEN
        origin = NO_ORIGIN
        read = 0
        try:
            for row in rows:
                timestamp, participant_id, metric_type, _value, device = row
                # Rows of one recorder come in runs (one object for a source's constant):
                # an identity check spares most rows the look-up.
                if device is not last_device:
                    origin = origins.get(device) or self._origin(device)
                    last_device = device
                if metric_type != key[1] or participant_id != key[0]:
                    key = (participant_id, metric_type)
                    latest = stored_until.get(metric_type)
                    found = overlap.get(key)  # not setdefault: no throwaway list per change
                    series = found if found is not None else overlap.setdefault(key, [])
                if latest is None or timestamp > latest:
                    direct.append(format_row(row, origin))
                    if len(direct) >= batch_rows:
                        self._send(True, direct)
                        direct = []
                else:
                    series.append(row)
                    if len(series) >= overlap_rows:
                        self._put_series([series])
                        series = overlap[key] = []
                read += 1
        finally:
            self.counts.read += read
        if left := [batch for batch in overlap.values() if batch]:
            self._put_series(left)
        self._send(True, direct)

    def _origin(self, device: str | None) -> str:
        if self._kind is None:
            text = NO_ORIGIN
        else:
            with self._storing:
                text = f"\t{db.origin_id(self._connection, self._kind, device)}"
        self._origins[device] = text
        return text

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
        if lines:
            self._put((direct, "".join(lines).encode()))

    def _put_series(self, batches: list[list[Row]]) -> None:
        # In time order, as the stored rows are hashed: Google's pages come newest first.
        # Hashed here, so that the COPY thread's hash query for the previous batch and this
        # hashing run at the same time.
        for rows in batches:
            rows.sort(key=attrgetter("timestamp"))
        self._put((False, [(rows, batch_digest(rows)) for rows in batches]))

    def _put(self, item: tuple[bool, bytes | list[Series]]) -> None:
        while self._error is None:
            try:
                self._queue.put(item, timeout=0.5)
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
                with self._storing:
                    self.counts.written += self._store(*item)
            except BaseException as error:  # handed to the producing thread
                self._error = error

    def _store(self, direct: bool, batch: bytes | list[Series]) -> int:
        with self._connection.cursor() as cursor:
            if isinstance(batch, list):  # the overlap: compare before anything is sent
                same = self._stored_identically(cursor, batch)
                changed = [rows for (rows, _), equal in zip(batch, same, strict=True)
                           if not equal]
                return sum(self._stage(cursor, copy_text(group, self._origins))
                           for group in bounded(changed, self._batch_rows))
            if direct:
                cursor.execute("SAVEPOINT direct_copy")
                try:
                    cursor.copy_expert(
                        f"COPY raw_data {COLUMNS} FROM STDIN", io.BytesIO(batch), COPY_READ_SIZE
                    )
                except psycopg2.errors.UniqueViolation:
                    cursor.execute("ROLLBACK TO SAVEPOINT direct_copy")
                else:
                    copied = cursor.rowcount
                    cursor.execute("RELEASE SAVEPOINT direct_copy")
                    return copied
            return self._stage(cursor, batch)

    def _stage(self, cursor, payload: bytes) -> int:
        """Stage COPY text and upsert what differs from what is stored; rows written."""
        cursor.copy_expert(
            f"COPY {STAGING} {COLUMNS} FROM STDIN", io.BytesIO(payload), COPY_READ_SIZE
        )
        # Autovacuum never analyzes a temporary table, and one emptied in this transaction
        # looks empty to the planner: CHANGED then joined its staged rows back to themselves
        # in a nested loop, quadratic in the batch (100,000 differing rows: minutes). A
        # sample of the batch (~20 ms) gets it a hash or merge join.
        cursor.execute(f"ANALYZE {STAGING}")
        written = self._upsert_changed(cursor)
        cursor.execute(f"TRUNCATE {STAGING}")
        return written

    @staticmethod
    def _stored_identically(cursor, batch: list[Series]) -> list[bool]:
        """Per series: whether exactly its rows, in this order, are what is stored in its time
        range (from the first row's instant to the last's; rows out of order never match)."""
        bounds = [value for rows, _ in batch for value in
                  (rows[0].participant_id, rows[0].metric_type, rows[0].timestamp,
                   rows[-1].timestamp)]
        cursor.execute(stored_digests(len(batch)), bounds)
        stored = cursor.fetchone()
        return [found is not None and bytes(found) == digest
                for found, (_, digest) in zip(stored, batch, strict=True)]

    def _upsert_changed(self, cursor) -> int:
        """Upsert the staged rows that differ from what is stored; rows written."""
        cursor.execute(STAGED_GROUPS)
        groups = cursor.fetchall()
        changed = 0
        for participant, metric, low, high in groups:
            cursor.execute(CHANGED, {"offset": changed, "participant": participant,
                                     "metric": metric, "low": low, "high": high})
            changed += cursor.rowcount
        if not changed:
            return 0
        step = changed
        low, high = min(g[2] for g in groups), max(g[3] for g in groups)
        if self._statement_rows is not None and self._reaches_compressed(cursor, low, high):
            step = self._statement_rows
        written = 0
        for done in range(0, changed, step):
            cursor.execute(UPSERT, (done, done + step))
            written += cursor.rowcount
        cursor.execute(f"TRUNCATE {PENDING}")
        return written

    def _reaches_compressed(self, cursor, low: datetime, high: datetime) -> bool:
        if self._compressed is None:
            cursor.execute(COMPRESSED_CHUNKS)
            self._compressed = cursor.fetchall()
        return any(start <= high and end > low for start, end in self._compressed)
