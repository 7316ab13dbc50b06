"""The timed measurements. Each DB measurement gets a database of its own (databases.py).

Only the work being measured is inside the clock: loading spooled rows, creating databases
and checking row counts are outside it.
"""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.extras
from ingester import db
from ingester.windows import FIRST_SLICE_DAYS, next_slice_days, slice_end
from ingester.writer import COLUMNS, COPY_READ_SIZE, RowWriter

from .databases import Server
from .workload import Spool, Workload, spooled

INGEST = Path(__file__).resolve().parent.parent / "ingestion" / "ingest.py"
PEAK_RSS = Path(__file__).resolve().parent / "peak_rss.py"
VARIANT = Path(__file__).resolve().parent / "variant.py"
GENERATION = Path(__file__).resolve().parent / "generation.py"

# The design the writer replaced: parameterised multi-row INSERTs of 1,000 rows each.
# It stored no origin: each row's first four fields.
ORIGINAL_INSERT = ('INSERT INTO raw_data ("timestamp", participant_id, metric_type, value) '
                   "VALUES %s ON CONFLICT DO NOTHING")
ORIGINAL_PAGE_SIZE = 1_000


class BenchError(Exception):
    """A measurement did not do what it should (a failed run, a wrong row count)."""


@dataclass
class Measurement:
    label: str
    rows: int  # rows handled: read by the writer, stored by a load
    seconds: float
    written: int | None = None  # rows inserted or changed, where the path reports it
    peak_rss_kib: int | None = None  # of the ingest.py process, end-to-end runs only
    details: dict[str, object] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def plain_copy(server: Server, dbname: str, spool: Spool) -> Measurement:
    """The limit: one COPY of the prepared text of every row into an empty raw_data."""
    connection = server.connect(dbname)
    try:
        began = time.perf_counter()
        with connection.cursor() as cursor, spool.copy_text.open("rb") as text:
            cursor.copy_expert(f"COPY raw_data {COLUMNS} FROM STDIN", text, COPY_READ_SIZE)
            copied = cursor.rowcount
        connection.commit()
        seconds = time.perf_counter() - began
    finally:
        connection.close()
    return Measurement("plain COPY of prepared text", copied, seconds, written=copied)


def project_writer(
    server: Server, dbname: str, workload: Workload, spool: Spool, batch_rows: int, label: str,
    one_transaction: bool = False,
) -> Measurement:
    """RowWriter as pipeline.commit_slice drives it: per participant and slice one
    transaction, the slice's stored_until look-up, one write() per stream, finish(), commit.
    Cutting the spooled rows into slices happens outside the clock. one_transaction: each
    participant's window is one slice, as before windows were sliced."""
    connection = server.connect(dbname)
    read = written = 0
    seconds = 0.0
    try:
        for participant, plan, streams in spooled(workload, spool):
            for span, parts in _slices(participant, plan, streams, one_transaction):
                began = time.perf_counter()
                latest = db.stored_until(connection, participant.participant_id, *span)
                writer = RowWriter(connection, batch_rows, latest, participant.source)
                try:
                    for rows in parts:
                        writer.write(rows)
                    counts = writer.finish()
                except BaseException:
                    writer.abort()
                    raise
                connection.commit()
                seconds += time.perf_counter() - began
                read, written = read + counts.read, written + counts.written
            del streams
    finally:
        connection.close()
    return Measurement(label, read, seconds, written=written)


def _slices(participant, plan, streams, one_transaction=False):
    """(slice start, end) and each stream's rows in it, cut as the pipeline cuts a window."""
    start = min(window.start for window in plan.values())
    end = max(window.end for window in plan.values())
    instants = sorted(row.timestamp for _stream, rows in streams for row in rows)
    bounds, days, cursor = [], FIRST_SLICE_DAYS, start
    while cursor < end:
        stop = end if one_transaction else slice_end(cursor, end, participant.zone, days)
        bounds.append((cursor, stop))
        rows = bisect.bisect_left(instants, stop) - bisect.bisect_left(instants, cursor)
        days, cursor = next_slice_days(days, rows), stop
    edges = [stop for _, stop in bounds]
    cut: list[list[list]] = [[[] for _ in streams] for _ in bounds]
    for index, (_stream, rows) in enumerate(streams):
        for row in rows:
            cut[bisect.bisect_right(edges, row.timestamp)][index].append(row)
    return list(zip(bounds, cut, strict=True))


def original_design(server: Server, dbname: str, workload: Workload, spool: Spool) -> Measurement:
    """execute_values(page_size=1000) with ON CONFLICT DO NOTHING, a transaction per participant."""
    connection = server.connect(dbname)
    rows = 0
    seconds = 0.0
    try:
        for _participant, _plan, streams in spooled(workload, spool):
            began = time.perf_counter()
            with connection.cursor() as cursor:
                for _stream, batch in streams:
                    psycopg2.extras.execute_values(
                        cursor, ORIGINAL_INSERT, [row[:4] for row in batch],
                        page_size=ORIGINAL_PAGE_SIZE
                    )
            connection.commit()
            seconds += time.perf_counter() - began
            rows += sum(len(batch) for _, batch in streams)
            del streams
    finally:
        connection.close()
    return Measurement(f"original design (execute_values, {ORIGINAL_PAGE_SIZE})", rows, seconds)


def end_to_end(
    server: Server, dbname: str, workload: Workload, batch_rows: int, workdir: Path, label: str,
    variant: str | None = None,
) -> Measurement:
    """`ingest.py --now END` as cron runs it, on a database holding only the cohort; or
    with a part of the pipeline taken out (variant.py) to tell what that part costs.

    Timed from spawn to exit: interpreter start, schema, wearipedia import and every
    participant. Peak RSS is that process's own, taken by peak_rss.py (see there why).
    """
    connection = server.connect(dbname)
    try:
        db.add_participants(connection, workload.participants)
    finally:
        connection.close()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        **server.env(dbname),
        "STATE_FILE": str(workdir / "state" / "last_run.json"),
        "BATCH_ROWS": str(batch_rows),
        "LOG_LEVEL": "INFO",
    }
    report_path, log_path = workdir / "peak_rss.json", workdir / "ingest.log"
    program = [str(VARIANT), variant] if variant else [str(INGEST)]
    command = [sys.executable, str(PEAK_RSS), str(report_path),
               sys.executable, *program, "--now", workload.end.isoformat()]
    with log_path.open("wb") as log:
        # cwd is workdir, so no developer's .env is read.
        subprocess.run(command, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                       stderr=log, check=False)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BenchError(f"{PEAK_RSS.name} reported nothing ({error}); see {log_path}") from None
    if report["exit"] != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-5:]
        raise BenchError(f"ingest.py exited {report['exit']}:\n  " + "\n  ".join(tail))
    stored = count_rows(server, dbname)
    connection = server.connect(dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE status <> 'ok'), "
                "coalesce(sum(extract(epoch FROM duration)), 0) FROM ingest_runs"
            )
            failed, participant_seconds = cursor.fetchone()
        connection.commit()
    finally:
        connection.close()
    if failed:
        raise BenchError(f"ingest.py logged {failed} failed participant(s); see {log_path}")
    return Measurement(
        label,
        stored,
        report["seconds"],
        written=stored,
        peak_rss_kib=report["peak_rss_kib"],
        details={"participant_seconds": round(float(participant_seconds), 3)},
    )


def generation_alone(workload: Workload, workdir: Path, label: str) -> Measurement:
    """generation.py, timed from spawn to exit as end_to_end times ingest.py: the same
    interpreter start and wearipedia import, none of the database."""
    workdir.mkdir(parents=True, exist_ok=True)
    report_path, generated_path = workdir / "peak_rss.json", workdir / "generated.json"
    command = [sys.executable, str(PEAK_RSS), str(report_path), sys.executable,
               str(GENERATION), str(len(workload.participants)), repr(workload.days),
               str(generated_path)]
    log_path = workdir / "generation.log"
    with log_path.open("wb") as log:
        subprocess.run(command, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                     "HOME": str(workdir)},
                       cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                       check=False)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        generated = json.loads(generated_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        tail = log_path.read_text(errors="replace").splitlines()[-5:]
        raise BenchError(f"{GENERATION.name} reported nothing ({error}):\n  "
                         + "\n  ".join(tail)) from None
    after_import = generated["read_seconds"] - generated["import_seconds"]
    return Measurement(label, generated["rows"], report["seconds"],
                       peak_rss_kib=report["peak_rss_kib"],
                       details={"import_seconds": round(generated["import_seconds"], 2),
                                "rows_per_second_after_import":
                                    round(generated["rows"] / after_import)
                                    if after_import > 0 else 0})


def count_rows(server: Server, dbname: str, table: str = "raw_data") -> int:
    connection = server.connect(dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")  # our own table names only
            (count,) = cursor.fetchone()
        connection.commit()
        return count
    finally:
        connection.close()


def check_variant(server: Server, dbname: str, variant: str | None, participants: int) -> None:
    """That a variant left out what it says it leaves out, and the command did not."""
    slices, minutes = count_rows(server, dbname, "ingest_runs"), count_rows(server, dbname,
                                                                          "data_1m")
    if variant == "one-transaction" and slices != participants:
        raise BenchError(f"one-transaction: {slices} run-log rows for {participants} windows")
    if (variant == "no-rollups") != (minutes == 0):
        raise BenchError(f"{variant or 'ingest.py'}: data_1m holds {minutes} rows")
