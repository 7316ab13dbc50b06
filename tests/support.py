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
