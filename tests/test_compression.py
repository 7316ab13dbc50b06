"""Compressed chunks (community edition only): re-reads leave them alone, limits hold.

The writer and the purge on chunks really compressed with compress_chunk(). The whole
command on compressed chunks is in test_compressed_runs.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import SCHEMA_FILE
from ingester import db as service_db
from ingester import schema
from ingester.model import Participant, Row
from ingester.writer import RowWriter
from support import compress_chunks, compression_state, query

pytestmark = pytest.mark.editions("community")

T0 = datetime(2026, 5, 1, tzinfo=UTC)
STEP = timedelta(seconds=10)
DAYS3 = 3 * 86_400 // 10  # three daily chunks of points 10 s apart


def points(n: int, pid: str = "p1", value=lambda i: 60.0 + i % 7) -> list[Row]:
    return [Row(T0 + i * STEP, pid, "heart_rate", value(i)) for i in range(n)]


def write(connection, rows, batch_rows=1_000, stored=True):
    """One writer in one transaction; `stored`: the rows' range is known to be stored."""
    latest = {"heart_rate": rows[-1].timestamp} if stored else {}
    writer = RowWriter(connection, batch_rows, latest)
    writer.write(rows)
    counts = writer.finish()
    connection.commit()
    return counts


def table(connection) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute('SELECT "timestamp", participant_id, metric_type, value FROM raw_data '
                       'ORDER BY 2, 3, 1')
        rows = [r[:4] for r in cursor.fetchall()]
    connection.commit()
    return rows


@pytest.fixture
def compressed(db, db_conn):
    """Three days of p1 stored and compressed; the compression state before anything else."""
    write(db_conn, points(DAYS3), stored=False)
    assert compress_chunks(db.env) == 3
    before = compression_state(db.env)
    assert [status for _, status, heap in before[0]] == [1, 1, 1]
    assert [heap for _, status, heap in before[0]] == [0, 0, 0]
    return before


@pytest.mark.parametrize("batch_rows", [1_000, 200_000])
def test_an_identical_reread_writes_nothing_and_decompresses_nothing(db, db_conn, compressed,
                                                                      batch_rows):
    counts = write(db_conn, points(DAYS3), batch_rows=batch_rows)
    assert (counts.read, counts.written) == (DAYS3, 0)
    chunks, size = compression_state(db.env)
    assert chunks == compressed[0]  # every chunk still wholly compressed, nothing moved out
    assert size == compressed[1]


def test_only_changed_rows_are_written_into_compressed_chunks(db, db_conn, compressed):
    corrected = points(DAYS3, value=lambda i: 60.0 + i % 7 + (0.5 if i % 1_000 == 3 else 0))
    counts = write(db_conn, corrected)
    assert counts.written == len(range(3, DAYS3, 1_000))
    assert table(db_conn) == [r[:4] for r in corrected]
    chunks, _ = compression_state(db.env)
    # Each changed row decompressed its own batch (at most 1,000 rows) and nothing else.
    assert 0 < sum(heap for _, _, heap in chunks) <= 1_000 * counts.written


def test_no_upsert_exceeds_the_servers_decompression_limit(db, db_conn, compressed):
    """Corrections spread over many compressed batches, in one big writer batch: each row
    decompresses its own batch, so one statement would decompress 26,000 tuples."""
    with db_conn.cursor() as cursor:
        cursor.execute("SET timescaledb.max_tuples_decompressed_per_dml_transaction = 10000")
    db_conn.commit()
    corrected = points(DAYS3, value=lambda i: 60.0 + i % 7 + (0.5 if i % 1_000 == 500 else 0))
    counts = write(db_conn, corrected, batch_rows=200_000)
    assert counts.written == len(range(500, DAYS3, 1_000))
    assert table(db_conn) == [r[:4] for r in corrected]
    with db_conn.cursor() as cursor:  # the writer sized its statements, it did not raise it
        cursor.execute("SHOW timescaledb.max_tuples_decompressed_per_dml_transaction")
        assert cursor.fetchone() == ("10000",)


def test_a_new_participant_is_backfilled_into_compressed_chunks(db, db_conn, compressed):
    newcomer = points(DAYS3, pid="p2", value=lambda i: 70.0 + i % 5)
    # Told p2's range is stored (as a re-read would be), so every row takes the compare path.
    counts = write(db_conn, newcomer, batch_rows=50_000)
    assert counts.written == DAYS3
    assert table(db_conn) == sorted([r[:4] for r in points(DAYS3) + newcomer],
                                    key=lambda r: (r[1], r[2], r[0]))
    chunks, _ = compression_state(db.env)
    # p1's batches were not touched: only p2's rows sit uncompressed beside them.
    assert sum(heap for _, _, heap in chunks) == DAYS3


def test_purge_reports_every_row_it_deleted_from_compressed_chunks(db, db_conn, compressed):
    write(db_conn, points(500, pid="p2"), stored=False)
    service_db.add_participants(db_conn, [Participant("p1", "UTC", "synthetic", T0.date(), 1)])
    deleted = service_db.remove_participant(db_conn, "p1", purge=True)
    assert deleted == DAYS3
    assert query(db.env, "SELECT participant_id, count(*) FROM raw_data GROUP BY 1") == [
        ("p2", 500)]


def test_migration_13_takes_compressed_chunks_and_their_rows_gain_an_origin(db, db_conn,
                                                                             compressed):
    # A database of before provenance, its chunks compressed: the block runs on it.
    query(db.env, "DROP VIEW raw_data_sourced; ALTER TABLE raw_data DROP COLUMN origin_id; "
                  "DELETE FROM schema_migrations WHERE version = 13")
    query(db.env, "INSERT INTO participants (participant_id, timezone, source, start_date, "
                  "seed) VALUES ('p1', 'UTC', 'synthetic', '2026-05-01', 1)")
    assert schema.migrate(db_conn, SCHEMA_FILE) == [13]
    assert compression_state(db.env)[0] == compressed[0]  # nothing decompressed, nothing moved
    assert query(db.env, SOURCED) == [("synthetic", None, DAYS3)]  # the participant's source
    # A corrected value in a compressed chunk is stored with its load's origin.
    last = points(DAYS3)[-1].timestamp
    writer = RowWriter(db_conn, 1_000, {"heart_rate": last}, "synthetic")
    writer.write([Row(T0, "p1", "heart_rate", 99.0, "Charge 6")])
    assert writer.finish().written == 1
    db_conn.commit()
    assert query(db.env, SOURCED) == [("synthetic", "Charge 6", 1),
                                      ("synthetic", None, DAYS3 - 1)]


SOURCED = "SELECT source, device, count(*) FROM raw_data_sourced GROUP BY 1, 2 ORDER BY 2"
