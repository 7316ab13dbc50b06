"""The bulk writer and the per-participant transaction, in-process, on the real database."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.extensions
import pytest
from ingester.db import Recovered, add_participants, recover_watermark, stored_until
from ingester.errors import PayloadError
from ingester.model import Participant, Row, Window
from ingester.pipeline import RunOptions, commit_slice
from ingester.schema import migrate
from ingester.writer import RowWriter

pytestmark = pytest.mark.editions("apache", "community")

T0 = datetime(2026, 5, 1, tzinfo=UTC)
SCHEMA = Path(__file__).resolve().parent.parent / "timescaledb" / "init.sql"


def rows(n: int, value: float = 60.0, pid: str = "p1", metric: str = "heart_rate", start=T0):
    return [Row(start + timedelta(seconds=i), pid, metric, value + i % 7) for i in range(n)]


def table(connection) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute('SELECT "timestamp", participant_id, metric_type, value FROM raw_data '
                       'ORDER BY 2, 3, 1')
        return [r[:4] for r in cursor.fetchall()]


def write(connection, batch, latest=None, batch_rows=1_000):
    writer = RowWriter(connection, batch_rows, latest or {})
    writer.write(batch)
    counts = writer.finish()
    connection.commit()
    return counts


def test_new_rows_go_straight_in_over_many_batches(db_conn):
    counts = write(db_conn, rows(10_500))
    assert (counts.read, counts.written) == (10_500, 10_500)
    assert table(db_conn) == [r[:4] for r in rows(10_500)]


def test_rereading_identical_rows_writes_nothing(db_conn):
    write(db_conn, rows(3_000))
    counts = write(db_conn, rows(3_000), latest={"heart_rate": T0 + timedelta(seconds=2_999)})
    assert (counts.read, counts.written) == (3_000, 0)
    assert len(table(db_conn)) == 3_000


def test_a_corrected_value_wins(db_conn):
    write(db_conn, rows(100))
    corrected = rows(100, value=70.0)
    counts = write(db_conn, corrected, latest={"heart_rate": T0 + timedelta(seconds=99)})
    assert counts.written == 100
    assert table(db_conn) == [r[:4] for r in corrected]


def test_a_collision_on_the_fast_path_falls_back_to_the_upsert(db_conn):
    write(db_conn, rows(2_000))
    # The writer is told nothing is stored, so it tries COPY straight into raw_data.
    counts = write(db_conn, rows(2_500), latest={})
    assert counts.written == 500
    assert len(table(db_conn)) == 2_500


@pytest.fixture
def hash_matches(monkeypatch) -> list[bool]:
    """For every overlap batch a writer stores: whether its hash matched the stored rows."""
    seen: list[bool] = []
    original = RowWriter._stored_identically

    def spy(cursor, batch):
        matched = original(cursor, batch)
        seen.extend(matched)
        return matched

    monkeypatch.setattr(RowWriter, "_stored_identically", staticmethod(spy))
    return seen


# Values and instants of every kind: each must hash alike on both sides.
VALUES = [60.0, 61.5, 1e-05, 1 / 3, 1e16, 123456.789, -0.0, 1e300, 5e-324, float("nan"), 0.0]
BERLIN = ZoneInfo("Europe/Berlin")


def test_an_identical_reread_is_recognised_without_staging_its_rows(db_conn, hash_matches):
    batch = [Row((T0 + timedelta(seconds=i, microseconds=(i % 3) * 250_001)).astimezone(
                 BERLIN if i % 2 else UTC), "p1", "heart_rate", VALUES[i % len(VALUES)])
             for i in range(5_000)]
    write(db_conn, batch)
    writer = RowWriter(db_conn, 1_000, {"heart_rate": batch[-1].timestamp})
    writer.write(batch)
    assert writer.finish().written == 0
    db_conn.commit()
    assert hash_matches == [True] * 5  # five batches, none formatted or sent


def test_an_identical_reread_newest_first_is_recognised_too(db_conn, hash_matches):
    # Google Health lists points newest first, page after page.
    batch = rows(3_000)
    write(db_conn, batch)
    writer = RowWriter(db_conn, 1_000, {"heart_rate": batch[-1].timestamp})
    writer.write(reversed(batch))
    assert writer.finish().written == 0
    db_conn.commit()
    assert hash_matches == [True] * 3
    assert table(db_conn) == [r[:4] for r in batch]


@pytest.mark.parametrize("change", ["a corrected value", "a missing point", "a repeated point",
                                    "0.0 for -0.0"])
def test_a_reread_that_differs_is_compared_row_by_row(db_conn, change, hash_matches):
    batch = rows(1_000)
    if change == "0.0 for -0.0":
        batch[500] = batch[500]._replace(value=-0.0)
    stored = batch[:400] + batch[401:] if change == "a missing point" else batch
    write(db_conn, stored)
    again = list(batch)
    if change == "a corrected value":
        again[400] = again[400]._replace(value=-1.0)
    if change == "a repeated point":
        again.insert(401, again[400])
    if change == "0.0 for -0.0":
        again[500] = again[500]._replace(value=0.0)
    writer = RowWriter(db_conn, 10_000, {"heart_rate": T0 + timedelta(seconds=999)})
    writer.write(again)
    written = writer.finish().written
    db_conn.commit()
    assert hash_matches == [False]
    # -0.0 equals 0.0 as a float8: not a change worth a write
    assert written == (1 if change in ("a corrected value", "a missing point") else 0)
    assert len(table(db_conn)) == 1_000


class Explained(psycopg2.extensions.cursor):
    """A cursor that keeps the plan of every comparison of staged rows it runs."""

    plans: list[str] = []

    def execute(self, query, vars=None):
        if isinstance(query, str) and "INSERT INTO raw_data_pending" in query:
            super().execute("EXPLAIN " + query, vars)
            Explained.plans.append("\n".join(line for (line,) in self.fetchall()))
        return super().execute(query, vars)


def test_a_staged_batch_is_compared_by_a_plan_that_knows_its_size(db_conn):
    """20,000 re-read rows that are not stored: each must be found missing once. The planner
    took the freshly emptied staging table for one row and joined the batch back to itself
    in a nested loop, quadratic in the rows (a 100,000-row batch ran for minutes)."""
    Explained.plans = []
    db_conn.cursor_factory = Explained
    batch = rows(20_000)
    counts = write(db_conn, batch, latest={"heart_rate": batch[-1].timestamp},
                   batch_rows=50_000)
    assert (counts.read, counts.written) == (20_000, 20_000)
    assert len(Explained.plans) == 1
    assert "Nested Loop" not in Explained.plans[0], Explained.plans[0]
    assert table(db_conn) == [r[:4] for r in batch]


def test_the_series_a_stream_ends_with_are_hashed_together_and_judged_one_by_one(
        db_conn, hash_matches):
    """Three metrics, each shorter than a batch, in one statement: the one that changed is
    written, the two stored alike are not, whichever order the stream interleaves them in.
    Each metric's values differ, so a hash judged against another metric's stored rows
    would not match."""
    metrics = ("azm", "cardio", "peak")
    stored = [Row(T0 + timedelta(minutes=i), "p1", metric, float(i + 1_000 * k))
              for i in range(300) for k, metric in enumerate(metrics)]
    write(db_conn, stored)
    again = list(reversed(stored))  # newest first: peak, cardio, azm
    changed = next(i for i, row in enumerate(again) if row.metric_type == "cardio")
    again[changed] = again[changed]._replace(value=-1.0)
    counts = write(db_conn, again, latest={m: T0 + timedelta(minutes=299) for m in metrics})
    assert hash_matches == [True, False, True]  # peak, cardio, azm: as they first came
    assert counts.written == 1
    assert table(db_conn) == sorted((r[:4] for r in again), key=lambda r: (r[1], r[2], r[0]))


# Every COPY into the writer's staging table, counted by the server: a writer creates the
# table only if the session has none, so this one, with its statement trigger, is used.
COUNT_STAGED_COPIES = """
CREATE TEMP TABLE raw_data_staging (LIKE raw_data) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE staged_copies (seq serial, rows bigint);
CREATE FUNCTION pg_temp.count_staged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO staged_copies (rows) SELECT count(*) FROM staged; RETURN NULL; END $$;
CREATE TRIGGER counted AFTER INSERT ON raw_data_staging REFERENCING NEW TABLE AS staged
FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.count_staged();
"""


def test_the_series_that_differ_at_a_streams_end_are_staged_a_batch_at_a_time(db_conn):
    """Three metrics of 900 rows, every one changed, batch_rows 1,000: staged together they
    would be one COPY of 2,700 rows; the batch bounds every statement, at the end too."""
    metrics = ("azm", "cardio", "peak")
    stored = [row for k, metric in enumerate(metrics)
              for row in rows(900, value=10.0 * k, metric=metric)]
    with db_conn.cursor() as cursor:
        cursor.execute(COUNT_STAGED_COPIES)
    write(db_conn, stored)  # new rows: straight into raw_data, nothing staged
    again = [row._replace(value=-1.0) if row.timestamp == T0 + timedelta(seconds=450) else row
             for row in stored]
    counts = write(db_conn, again, latest={m: T0 + timedelta(seconds=899) for m in metrics})
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT rows FROM staged_copies ORDER BY seq")
        staged = [n for (n,) in cursor.fetchall()]
    assert staged == [900, 900, 900]
    assert counts.written == 3
    assert table(db_conn) == [r[:4] for r in again]


def test_two_participants_in_one_write_are_two_series(db_conn, hash_matches):
    """Rows of p1 and p2 of one metric, alternating: p2's rows are hashed against p2's
    stored rows, never folded into p1's series."""
    p1 = rows(200, pid="p1")
    write(db_conn, p1)
    p2 = rows(200, pid="p2", value=90.0)
    mixed = [row for pair in zip(p1, p2, strict=True) for row in pair]
    counts = write(db_conn, mixed, latest={"heart_rate": T0 + timedelta(seconds=199)})
    assert hash_matches == [True, False]
    assert counts.written == 200
    assert table(db_conn) == [r[:4] for r in p1 + p2]


def test_a_reread_writes_exactly_the_new_and_the_changed_rows(db_conn):
    write(db_conn, rows(3_000)[::2])  # every other second stored
    again = rows(3_000)
    again[10] = again[10]._replace(value=-1.0)  # a stored point, corrected
    again[11] = again[11]._replace(value=-2.0)  # a missing point
    counts = write(db_conn, again + again[:50],  # and the source repeats some
                   latest={"heart_rate": T0 + timedelta(seconds=2_999)})
    assert (counts.read, counts.written) == (3_050, 1_500 + 1)
    assert table(db_conn) == [r[:4] for r in again]


def test_a_source_repeating_a_point_stores_it_once(db_conn):
    batch = rows(10) + rows(10)
    counts = write(db_conn, batch)
    assert counts.read == 20
    assert len(table(db_conn)) == 10


def test_abort_leaves_nothing_once_rolled_back(db_conn):
    writer = RowWriter(db_conn, 1_000, {})
    writer.write(rows(5_000))
    writer.abort()
    db_conn.rollback()
    assert table(db_conn) == []


def test_an_error_inside_the_copy_thread_reaches_the_caller(db_conn):
    bad = [Row(T0, "p1", "heart_rate", 1.0), Row(T0, "bad\tid", "heart_rate", 2.0)]
    writer = RowWriter(db_conn, 1_000, {})
    with pytest.raises(psycopg2.Error):
        writer.write(bad)
        writer.finish()
    db_conn.rollback()


class FailingSource:
    """Yields good rows of one stream, then fails on the next: the window must vanish whole."""

    streams = ("heart_rate", "spo2")

    def read(self, participant, stream, window, report):
        if stream == "spo2":
            raise PayloadError("malformed payload")
        yield from rows(20_000, pid=participant.participant_id, start=window.start)


def test_a_failure_after_the_copy_leaves_no_rows_and_a_failed_log_row(db_conn):
    participant = Participant("p1", "UTC", "synthetic", date(2026, 5, 1), 1)
    add_participants(db_conn, [participant])
    window = Window(T0, T0 + timedelta(days=1))
    options = RunOptions(now=window.end, overlap=timedelta(days=1), batch_rows=1_000)
    outcome = commit_slice(db_conn, FailingSource(), participant,
                           {"heart_rate": window, "spo2": window}, options, uuid.uuid4(), None)
    assert outcome.status == "failed" and "malformed payload" in outcome.error
    assert table(db_conn) == []
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT status, rows_read, rows_written, error FROM ingest_runs")
        # rows_read stays true although nothing of it was kept
        assert cursor.fetchall() == [("failed", 20_000, 0, "PayloadError: malformed payload")]


def test_runs_applying_the_schema_at_once_take_turns(db):
    """Runs that find the schema missing apply init.sql at start; concurrent DDL must not race."""
    with db.connect() as connection, connection.cursor() as cursor:
        # Everything the migrations create, so that every block of init.sql runs again.
        cursor.execute("DROP VIEW participant_status, raw_data_sourced; DROP TABLE raw_data; "
                       "DROP TABLE data_origins; "
                       "DROP TABLE ingest_runs, google_devices, google_credentials, participants, "
                       "schema_migrations, data_1h, data_1d, adherence_daily, "
                       "adherence_settings CASCADE; DROP TABLE data_1m; "
                       "DROP FUNCTION rollups_refresh_days, rollups_refresh, rollups_rezone, "
                       "participant_tracker, adherence_at, participant_flags_at CASCADE")
    connections = [db.connect() for _ in range(6)]
    barrier = threading.Barrier(len(connections))

    def apply(connection):
        barrier.wait()
        migrate(connection, SCHEMA)

    with ThreadPoolExecutor(len(connections)) as pool:
        results = [pool.submit(apply, c) for c in connections]
        errors = [r.exception() for r in results]
    for connection in connections:
        connection.close()
    assert errors == [None] * len(connections)
    with db.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM schema_migrations WHERE version = 1")
        assert cursor.fetchone() == (1,)


def test_a_participant_removed_during_the_run_is_not_loaded(db_conn):
    participant = Participant("p1", "UTC", "synthetic", date(2026, 5, 1), 1)
    window = Window(T0, T0 + timedelta(hours=1))
    options = RunOptions(now=window.end, overlap=timedelta(days=1), batch_rows=1_000)
    outcome = commit_slice(db_conn, FailingSource(), participant, {"heart_rate": window},
                           options, uuid.uuid4(), None)
    assert outcome.status == "removed" and "removed from the cohort" in outcome.error
    assert table(db_conn) == []


@pytest.mark.parametrize("timestamp", [
    datetime(2026, 5, 1, 12, 30, 15, tzinfo=UTC),  # the fast path
    datetime(2026, 5, 1, 12, 30, 15, 250_000, tzinfo=UTC),  # microseconds
    datetime(2026, 3, 29, 3, 0, 1, tzinfo=ZoneInfo("Europe/Berlin")),  # another zone, DST day
    datetime(2026, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("UTC")),  # UTC, but not datetime.UTC
])
def test_every_kind_of_aware_timestamp_is_stored_as_the_same_instant(db_conn, timestamp):
    write(db_conn, [Row(timestamp, "p1", "heart_rate", 61.5)])
    (stored,) = table(db_conn)
    assert stored[0] == timestamp and stored[3] == 61.5


def test_a_database_without_a_run_log_recovers_from_the_metric_that_lags(db_conn):
    """Stored before the run log existed: the steps stop an hour before the heart rate, so
    the heart rate's last point would skip steps that may still be missing."""
    add_participants(db_conn, [Participant("p1", "UTC", "synthetic", date(2026, 5, 1), 1)])
    write(db_conn, rows(7200) + rows(3600, metric="steps"))
    db_conn.commit()
    assert recover_watermark(db_conn, "p1") == Recovered(T0 + timedelta(seconds=3599),
                                                         "stored data")
    assert recover_watermark(db_conn, "nobody") == Recovered(None, None)


GROUPED = ('SELECT metric_type, max("timestamp") FROM raw_data WHERE participant_id = %s '
           'AND "timestamp" >= %s AND "timestamp" < %s GROUP BY metric_type')


def test_what_is_stored_already_is_each_metrics_latest_instant_inside_the_span(db_conn, edition):
    """The skip scan of stored_until against a plain GROUP BY, on spans that cut metrics
    off at either end, leave some out altogether and hold none; on compressed chunks too."""
    write(db_conn, rows(3 * 86_400, metric="heart_rate", start=T0 - timedelta(hours=5))
          + rows(200, metric="steps", start=T0 + timedelta(days=1, hours=3))
          + rows(50, metric="active_zone_minutes", start=T0 + timedelta(days=2, hours=23))
          + rows(3_600, pid="p2", metric="heart_rate", start=T0 + timedelta(days=1)),
          batch_rows=100_000)
    spans = [(T0, T0 + timedelta(days=1)), (T0 + timedelta(days=1), T0 + timedelta(days=2)),
             (T0 + timedelta(days=1, hours=3, minutes=5), T0 + timedelta(days=1, hours=4)),
             (T0 + timedelta(days=2, hours=12), T0 + timedelta(days=3)),
             (T0 - timedelta(days=9), T0 - timedelta(days=8)),
             (T0 - timedelta(days=1), T0 + timedelta(days=9))]

    def both(since, until):
        with db_conn.cursor() as cursor:
            cursor.execute(GROUPED, ("p1", since, until))
            expected = dict(cursor.fetchall())
        return stored_until(db_conn, "p1", since, until), expected

    for compressed in (False, True):
        if compressed:
            if edition != "community":
                break
            with db_conn.cursor() as cursor:
                cursor.execute("SELECT count(compress_chunk(c)) FROM show_chunks('raw_data') c")
                assert cursor.fetchone()[0] >= 4
            db_conn.commit()
        found = [both(since, until) for since, until in spans]
        assert [len(got) for got, _ in found] == [1, 2, 1, 2, 0, 3]
        for got, expected in found:
            assert got == expected
