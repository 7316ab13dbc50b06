"""Helpers shared by the end-to-end tests: run the real command, fingerprint the table."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from ingester import pipeline
from ingester.model import DeliveryBound, Participant, Row, Window

ROOT = Path(__file__).resolve().parent.parent
INGEST = ROOT / "ingestion" / "ingest.py"
# What tests leave for a person to look at (screenshots, images); git-ignored.
ARTEFACTS = ROOT / "test-artifacts"


def unused_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (a database that is not there)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ingest_env(db_env: dict[str, str], workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a run: only what a user would set, nothing inherited by accident.

    The run's working directory and HOME are workdir; its state file is workdir/state/.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    env.update(db_env)
    env.update({"STATE_FILE": str(workdir / "state" / "last_run.json"), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


# A bound for a hung run, not a speed the test asserts: parallel workers share two cores.
def run_ingest(env: dict[str, str], *args: str, timeout: float = 900, stdin: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INGEST), *args],
        env=env, capture_output=True, text=True, timeout=timeout, input=stdin,
        cwd=env.get("HOME"),
        # Never the terminal pytest may run on: a command that asks (remove --purge) must
        # see a script, as under cron.
        **({} if stdin is not None else {"stdin": subprocess.DEVNULL}),
    )


def start_ingest(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(INGEST), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=env.get("HOME"),
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr
    return done


def utc(text: str) -> datetime:
    """An ISO date-time without offset, as aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def query(db_env: dict[str, str], sql: str, params: tuple = ()) -> list[tuple]:
    connection = psycopg2.connect(
        host=db_env["DB_HOST"], port=db_env["DB_PORT"], dbname=db_env["DB_NAME"],
        user=db_env["DB_USER"], password=db_env.get("DB_PASSWORD", ""),
    )
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


FINGERPRINT = """
SELECT count(*), coalesce(md5(string_agg(
    participant_id || '|' || metric_type || '|' || extract(epoch FROM "timestamp")::text
    || '|' || value::text, ',' ORDER BY participant_id, metric_type, "timestamp")), '')
FROM raw_data
"""


def fingerprint(db_env: dict[str, str]) -> tuple[int, str]:
    """Row count and a hash of every (participant, metric, instant, value) in key order."""
    return query(db_env, FINGERPRINT)[0]


def compression_state(db_env: dict[str, str]) -> tuple[list[tuple], int]:
    """Per chunk of raw_data: name, TimescaleDB's status bits (1 compressed, 8 partially: rows
    were decompressed or added since) and the rows in its uncompressed part; and the
    hypertable's total size in bytes, compressed parts and indexes included."""
    chunks = query(db_env, """
        SELECT format('%%I.%%I', c.schema_name, c.table_name), c.status
        FROM _timescaledb_catalog.chunk c
        JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
        WHERE h.table_name = 'raw_data' AND NOT c.dropped ORDER BY c.id""")
    state = [(name, status, query(db_env, f"SELECT count(*) FROM ONLY {name}")[0][0])
             for name, status in chunks]
    return state, query(db_env, "SELECT hypertable_size('raw_data')")[0][0]


def compress_chunks(db_env: dict[str, str], older_than: str | None = None) -> int:
    """compress_chunk() every chunk of raw_data (ending before older_than); how many."""
    if older_than is None:
        chunks = query(db_env, "SELECT compress_chunk(c) FROM show_chunks('raw_data') c")
    else:
        chunks = query(db_env, "SELECT compress_chunk(c) FROM show_chunks('raw_data', "
                               "older_than => %s::timestamptz) c", (older_than,))
    return len(chunks)


# Every rollup row against a fresh aggregation of raw_data, in both directions (a stale or a
# missing bucket is a mismatch). count, min and max must be equal; sum and mean within a
# relative 1e-9: data_1h and data_1d add up minute sums, a different order of float
# additions than one pass over the raw rows (exact for integral values such as heart rate).
_FRESH = {
    "data_1m": ("bucket", "time_bucket(INTERVAL '1 minute', r.\"timestamp\")", ""),
    "data_1h": ("bucket", "time_bucket(INTERVAL '1 hour', r.\"timestamp\")", ""),
    "data_1d": ("day", "(r.\"timestamp\" AT TIME ZONE p.timezone)::date",
                "JOIN participants p USING (participant_id)"),
}
_CLOSE = "abs(f.{c} - d.{c}) <= 1e-9 * greatest(abs(f.{c}), 1)"


def rollup_mismatches(db_env: dict[str, str], limit: int = 5) -> dict[str, list[tuple]]:
    """Per rollup table, up to `limit` buckets that differ from raw_data (empty: identical)."""
    found = {}
    for table, (key, bucket, join) in _FRESH.items():
        close = " AND ".join(_CLOSE.format(c=c) for c in ("sum", "mean"))
        rows = query(db_env, f"""
            WITH fresh AS (
                SELECT {bucket} AS {key}, r.participant_id, r.metric_type, count(*) AS count,
                       min(r.value) AS min, max(r.value) AS max, avg(r.value) AS mean,
                       sum(r.value) AS sum
                FROM raw_data r {join} GROUP BY 1, 2, 3)
            SELECT {key}, participant_id, metric_type, f.count, d.count, f.sum, d.sum
            FROM fresh f FULL JOIN {table} d USING ({key}, participant_id, metric_type)
            WHERE f.count IS NULL OR d.count IS NULL OR f.count <> d.count
               OR f.min <> d.min OR f.max <> d.max OR NOT ({close})
            ORDER BY 1, 2, 3 LIMIT {limit}""")
        if rows:
            found[table] = rows
    rows = query(db_env, f"""
        WITH fresh AS (
            SELECT r.participant_id, (r."timestamp" AT TIME ZONE p.timezone)::date AS day,
                   count(DISTINCT time_bucket(INTERVAL '1 minute', r."timestamp")) AS wear,
                   min(r."timestamp") AS first_sample, max(r."timestamp") AS last_sample
            FROM raw_data r JOIN participants p USING (participant_id)
            WHERE r.metric_type = 'heart_rate' GROUP BY 1, 2)
        SELECT participant_id, day, f.wear, d.wear_minutes
        FROM fresh f FULL JOIN adherence_daily d USING (participant_id, day)
        WHERE f.wear IS DISTINCT FROM d.wear_minutes
           OR f.first_sample IS DISTINCT FROM d.first_sample
           OR f.last_sample IS DISTINCT FROM d.last_sample
        ORDER BY 1, 2 LIMIT {limit}""")
    if rows:
        found["adherence_daily"] = rows
    return found


def rollup_rows(db_env: dict[str, str]) -> tuple[int, int, int, int]:
    """Rows of data_1m, data_1h, data_1d and adherence_daily."""
    counts = ", ".join(f"(SELECT count(*) FROM {t})"
                       for t in ("data_1m", "data_1h", "data_1d", "adherence_daily"))
    return query(db_env, f"SELECT {counts}")[0]


class Batch:
    """A test source: one stream that yields exactly the rows it is given."""

    streams = ("batch",)

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def delivered_until(self, participant, now) -> DeliveryBound:
        return DeliveryBound(now, "generated")

    def read(self, participant, stream, window, report) -> Iterator[Row]:
        yield from (row for row in self.rows if row.timestamp in window)


def load_batch(db, participant: Participant, window: Window, rows: list[Row], source=None):
    """The pipeline's own slice transaction (commit_slice), fed by a test source (default:
    the rows given, as one stream)."""
    source = source or Batch(rows)
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        connection.commit()
        options = pipeline.RunOptions(now=window.end, overlap=timedelta(0), batch_rows=10_000)
        plan = {stream: window for stream in source.streams}
        return pipeline.commit_slice(connection, source, participant, plan, options,
                                     uuid.uuid4(), None)
    finally:
        connection.close()
