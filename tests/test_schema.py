"""timescaledb/init.sql against the real TimescaleDB, on both editions: Debian's Apache build
and the community edition of the official image (compression and its policy)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2.errors
import pytest
from conftest import SCHEMA_FILE
from ingester import schema

FIXTURES = Path(__file__).resolve().parent / "fixtures"

pytestmark = pytest.mark.editions("apache", "community")

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
            ("origin_id", "smallint", "YES"),  # data_origins, migration 13
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


def test_licence_guard_takes_the_path_that_matches_the_server(db, db_conn, edition):
    with db_conn.cursor() as cur:
        cur.execute("SELECT current_setting('timescaledb.license')")
        (licence,) = cur.fetchone()
    with db_conn.cursor() as cur:  # the guard is in the baseline: make it run again
        cur.execute("DELETE FROM schema_migrations WHERE version = 1")
    db_conn.commit()
    notices = db.apply_schema()
    snapshot = catalog_snapshot(db_conn)
    policies = [job for job in snapshot["jobs"] if job[0] == "policy_compression"]
    if edition == "apache":
        assert licence == "apache"
        assert any("apache" in notice for notice in notices), notices
        assert snapshot["hypertables"] == [("data_1m", 1, False), ("raw_data", 1, False)]
        assert not policies
    else:
        assert licence == "timescale"
        assert not any("skipping compression" in notice for notice in notices), notices
        assert snapshot["hypertables"] == [("data_1m", 1, False), ("raw_data", 1, True)]
        assert policies == [("policy_compression", "raw_data")]


@pytest.mark.editions("community")
def test_compression_waits_for_the_late_sync_horizon_and_the_overlap(db_conn):
    """Migration 5: chunks are compressed after LATE_SYNC_HORIZON_DAYS (7) + OVERLAP_HOURS (24),
    so neither a late sync nor the nightly re-read reaches a compressed chunk."""
    with db_conn.cursor() as cur:
        cur.execute("SELECT config->>'compress_after' FROM timescaledb_information.jobs "
                    "WHERE proc_name = 'policy_compression'")
        assert cur.fetchall() == [("8 days",)]
        cur.execute("SELECT segmentby_column_index, orderby_column_index, attname "
                    "FROM timescaledb_information.compression_settings ORDER BY attname")
        assert cur.fetchall() == [(2, None, "metric_type"), (1, None, "participant_id"),
                                  (None, 1, "timestamp")]
        cur.execute("SELECT version, name FROM schema_migrations WHERE version = 5")
        assert cur.fetchall() == [(5, "compression")]


# --- migrations -------------------------------------------------------------------------

CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default,
               is_generated, generation_expression
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY 1, 2""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1""",
    "migrations": "SELECT version, name FROM schema_migrations ORDER BY 1",
}


def full_catalog(conn) -> dict[str, list]:
    """Tables, columns, constraints, indexes, views, hypertables, jobs and migrations."""
    snapshot = catalog_snapshot(conn)
    with conn.cursor() as cur:
        for name, query in CATALOG.items():
            cur.execute(query)
            snapshot[name] = cur.fetchall()
    conn.rollback()
    return snapshot


def declared_versions() -> dict[int, str]:
    return schema.migrations(SCHEMA_FILE.read_text())


def test_migration_headers_are_parsed_in_order():
    text = "-- migration 1: baseline\nDO $m$ $m$;\n-- migration 3: devices\n"
    assert schema.migrations(text) == {1: "baseline", 3: "devices"}
    assert schema.pending({1: "a", 3: "b"}, None) == [1, 3]
    assert schema.pending({1: "a", 3: "b"}, {1}) == [3]
    assert schema.pending({1: "a"}, {1, 2}) == []
    with pytest.raises(ValueError):
        schema.migrations("-- migration 2: b\n-- migration 1: a\n")


def test_init_sql_declares_the_baseline_and_every_block_records_its_version():
    text = SCHEMA_FILE.read_text()
    declared = declared_versions()
    assert declared[1] == "baseline"
    for version, name in declared.items():
        assert f"WHERE version = {version}) THEN RETURN; END IF;" in text
        assert f"VALUES ({version}, '{name}')" in text


def test_a_database_created_from_init_sql_is_already_current(db, db_conn):
    assert full_catalog(db_conn)["migrations"] == sorted(declared_versions().items())
    assert schema.migrate(db_conn, SCHEMA_FILE) == []


@pytest.mark.parametrize("old", ["init-bf9d7be.sql", "init-6484521.sql"])
def test_a_database_of_an_older_init_sql_upgrades_in_place(db, db_conn, db_server, template_db,
                                                           old):
    """A database created by an earlier init.sql ends with the catalog of a new one."""
    current = full_catalog(db_conn)
    legacy = _database_from(db_server, template_db, (FIXTURES / old).read_text())
    try:
        conn = psycopg2.connect(**db_server.params(legacy))
        try:
            with conn, conn.cursor() as cur:  # it holds data, which must survive
                cur.execute("INSERT INTO participants VALUES ('p1', 'UTC', 'synthetic', "
                            "'2026-11-01', 1)")
                cur.execute(INSERT, (T0, "p1", "heart_rate", 60.0))
            assert schema.migrate(conn, SCHEMA_FILE) == list(declared_versions())
            assert full_catalog(conn) == current
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM raw_data")
                assert cur.fetchone() == (1,)
            conn.rollback()
            assert schema.migrate(conn, SCHEMA_FILE) == []  # and then it is current
        finally:
            conn.close()
    finally:
        with db_server.admin() as cur:
            cur.execute(f'DROP DATABASE "{legacy}" WITH (FORCE)')


def _database_from(db_server, template_db: str, sql_text: str) -> str:
    import uuid

    name = f"test_legacy_{uuid.uuid4().hex[:12]}"
    with db_server.admin() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    conn = psycopg2.connect(**db_server.params(name))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql_text)
    finally:
        conn.close()
    return name
