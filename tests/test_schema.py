"""timescaledb/init.sql against the real TimescaleDB (Apache edition, as on Debian)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import psycopg2.errors
import pytest

T0 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
INSERT = (
    'INSERT INTO raw_data ("timestamp", participant_id, metric_type, value) VALUES (%s, %s, %s, %s)'
)


def catalog_snapshot(conn) -> dict[str, list]:
    """What the schema created: relations, hypertables, dimensions and jobs."""
    queries = {
        "relations": """
            SELECT c.relname, c.relkind FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' ORDER BY 1""",
        "hypertables": """
            SELECT hypertable_name, num_dimensions, compression_enabled
            FROM timescaledb_information.hypertables ORDER BY 1""",
        "dimensions": """
            SELECT hypertable_name, column_name, time_interval
            FROM timescaledb_information.dimensions ORDER BY 1, 2""",
        "jobs": "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs ORDER BY 1, 2",
    }
    with conn.cursor() as cur:
        snapshot = {}
        for name, query in queries.items():
            cur.execute(query)
            snapshot[name] = cur.fetchall()
    conn.rollback()
    return snapshot


def test_schema_applies_twice_without_changing_anything(db, db_conn):
    before = catalog_snapshot(db_conn)
    db.apply_schema()  # the fixture applied it once already
    assert catalog_snapshot(db_conn) == before
    assert ("raw_data", "r") in before["relations"]


def test_raw_data_columns(db_conn):
    with db_conn.cursor() as cur:
        cur.execute(
            """SELECT column_name, data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = 'raw_data' ORDER BY column_name"""
        )
        assert cur.fetchall() == [
            ("metric_type", "text", "NO"),
            ("participant_id", "text", "NO"),
            ("timestamp", "timestamp with time zone", "NO"),
            ("value", "double precision", "NO"),
        ]


def test_raw_data_is_a_hypertable_with_daily_chunks(db_conn):
    with db_conn.cursor() as cur:
        cur.execute(
            """SELECT column_name, dimension_type, time_interval
               FROM timescaledb_information.dimensions WHERE hypertable_name = 'raw_data'"""
        )
        assert cur.fetchall() == [("timestamp", "Time", timedelta(days=1))]


def test_unique_key_is_participant_metric_timestamp(db_conn):
    with db_conn.cursor() as cur:
        cur.execute(INSERT, (T0, "p1", "heart_rate", 60.0))
        # Differing in any one key column is a different point.
        cur.execute(INSERT, (T0, "p2", "heart_rate", 60.0))
        cur.execute(INSERT, (T0, "p1", "steps", 60.0))
        cur.execute(INSERT, (T0 + timedelta(seconds=1), "p1", "heart_rate", 60.0))
        db_conn.commit()
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute(INSERT, (T0, "p1", "heart_rate", 61.0))
    db_conn.rollback()
    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(value) FROM raw_data")
        assert cur.fetchone() == (4, 240.0)


def test_copy_then_upsert_across_chunks(db_conn):
    # Hourly points over three days straddle chunk boundaries: the upsert has to find
    # its conflicts in every chunk, not just the newest.
    points = [T0 + timedelta(hours=h) for h in range(72)]
    text = "".join(f"{t.isoformat()}\tp1\theart_rate\t{i}\n" for i, t in enumerate(points))
    with db_conn.cursor() as cur:
        cur.copy_expert(
            'COPY raw_data ("timestamp", participant_id, metric_type, value) FROM STDIN',
            io.StringIO(text),
        )
        cur.execute("SELECT count(*) FROM show_chunks('raw_data')")
        assert cur.fetchone()[0] == 4  # 23:30 on day 0 to 22:30 on day 3

        # The service's form: re-read overlap overwrites, new points are added.
        cur.executemany(
            INSERT + " ON CONFLICT ON CONSTRAINT raw_data_key DO UPDATE SET value = EXCLUDED.value",
            [(t, "p1", "heart_rate", -1.0) for t in (points[0], points[40], points[-1])]
            + [(points[-1] + timedelta(hours=1), "p1", "heart_rate", -1.0)],
        )
        cur.execute(
            INSERT + ' ON CONFLICT (participant_id, metric_type, "timestamp") DO NOTHING',
            (points[10], "p1", "heart_rate", 999.0),
        )
        assert cur.rowcount == 0
    db_conn.commit()

    with db_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE value = -1) FROM raw_data")
        assert cur.fetchone() == (73, 4)
        cur.execute('SELECT value FROM raw_data WHERE "timestamp" = %s', (points[10],))
        assert cur.fetchone() == (10.0,)


def test_licence_guard_takes_the_apache_path(db, db_conn):
    with db_conn.cursor() as cur:
        cur.execute("SELECT current_setting('timescaledb.license')")
        assert cur.fetchone() == ("apache",)

    notices = db.apply_schema()
    assert any("apache" in notice for notice in notices), notices

    snapshot = catalog_snapshot(db_conn)
    assert snapshot["hypertables"] == [("raw_data", 1, False)]
    assert not [job for job in snapshot["jobs"] if job[0] == "policy_compression"]
