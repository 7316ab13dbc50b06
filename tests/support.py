"""Helpers shared by the end-to-end tests: run the real command, fingerprint the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
INGEST = ROOT / "ingestion" / "ingest.py"


def ingest_env(db_env: dict[str, str], workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a run: only what a user would set, nothing inherited by accident.

    The run's working directory and HOME are workdir; its state file is workdir/state/.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    env.update(db_env)
    env.update({"STATE_FILE": str(workdir / "state" / "last_run.json"), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def run_ingest(env: dict[str, str], *args: str, timeout: float = 300, stdin: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INGEST), *args],
        env=env, capture_output=True, text=True, timeout=timeout, input=stdin,
        cwd=env.get("HOME"),
    )


def start_ingest(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(INGEST), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=env.get("HOME"),
    )


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
