"""The data files of `ingest.py export`: their columns, the query that selects them, and
how one query streams into one Parquet or CSV file.

A data file's query selects exactly the file's columns, in order, with instants as whole
microseconds since the epoch, so each fetched chunk becomes one Arrow record batch (one
Parquet row group) with no per-row code of ours. Only `ingest.py export` imports
this module: pyarrow costs every other command about 50 MB and most of a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from .metrics import METRICS

ROLLUP_TABLES = {"1m": "data_1m", "1h": "data_1h"}  # 1d is data_1d, by local date
# Rows per FETCH from the server-side cursor, and so per Parquet row group: the export holds
# one chunk as Python tuples (some tens of MB) and as Arrow arrays, whatever the span; the
# row groups stay small enough for readers to skip by their statistics.
CHUNK_ROWS = 100_000

UTC_TIME = pa.timestamp("us", tz="UTC")
# The participant's wall-clock time, without a zone in the type: DuckDB, Spark and psql read a
# zoned timestamp in the session's zone and would show another clock. The zone is the
# `timezone` column beside it (and the file's metadata).
LOCAL_TIME = pa.timestamp("us")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    select: str  # the SQL expression of the query that yields it


@dataclass(frozen=True)
class Layout:
    """One kind of data file: its columns, and the query that selects them in order."""

    columns: tuple[Column, ...]
    source: str  # FROM ... WHERE ..., with %(name)s parameters
    order: str

    def schema(self, metadata: dict[str, str] | None = None) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns], metadata=metadata)

    def query(self) -> str:
        selects = ",\n       ".join(c.select for c in self.columns)
        return f"SELECT {selects}\n{self.source}\nORDER BY {self.order}"


def micros(instant: str) -> str:
    """A timestamptz (or timestamp) expression as whole microseconds since the epoch."""
    # extract() is numeric, so exact; date_part() is a double, which has no microsecond
    # digit left for instants from 2038 on.
    return f"(extract(epoch FROM {instant}) * 1000000)::bigint"


def local(instant: str, zone: str = "%(zone)s") -> str:
    """The wall-clock time of a timestamptz in `zone`, as microseconds since the epoch."""
    return micros(f"({instant} AT TIME ZONE {zone})")


def unit_case(column: str) -> str:
    """SQL that maps a metric_type to its unit; the names come from metrics.py, not input."""
    branches = " ".join(
        f"WHEN {_literal(name)} THEN {_literal(metric.unit)}"
        for name, metric in sorted(METRICS.items())
    )
    return f"CASE {column} {branches} END"


def _literal(text: str) -> str:
    """A string literal in a query that also takes %(name)s parameters (units hold '%')."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _head(table: str) -> tuple[Column, ...]:
    return (
        Column("participant_id", pa.string(), "%(participant)s::text"),
        Column("metric_type", pa.string(), f"{table}.metric_type"),
        Column("unit", pa.string(), unit_case(f"{table}.metric_type")),
    )


def _times(instant: str) -> tuple[Column, ...]:
    return (
        Column("timestamp_utc", UTC_TIME, micros(instant)),
        Column("timestamp_local", LOCAL_TIME, local(instant)),
        Column("timezone", pa.string(), "%(zone)s::text"),
    )


AGGREGATES = tuple(
    Column(name, pa.int64() if name == "count" else pa.float64(), f"d.{name}")
    for name in ("count", "min", "max", "mean", "sum")
)
METRIC_FILTER = "AND (%(metrics)s::text[] IS NULL OR {table}.metric_type = ANY(%(metrics)s))"
IN_SPAN = "{instant} >= %(start)s::timestamptz AND {instant} < %(end)s::timestamptz"


def raw_layout(provenance: bool) -> Layout:
    """raw_data, one row per stored point; with provenance (the view raw_data_sourced) the
    source and device of each row, else the participant's source and no device."""
    table = "raw_data_sourced" if provenance else "raw_data"
    origin = (
        (Column("source", pa.string(), "r.source"), Column("device", pa.string(), "r.device"))
        if provenance
        else (Column("source", pa.string(), "%(source)s::text"),
              Column("device", pa.string(), "NULL::text"))
    )
    instant = 'r."timestamp"'
    return Layout(
        columns=(*_head("r"), *_times(instant), Column("value", pa.float64(), "r.value"), *origin),
        source=(f"FROM {table} r WHERE r.participant_id = %(participant)s\n"
                f"  AND {IN_SPAN.format(instant=instant)} {METRIC_FILTER.format(table='r')}"),
        order=f"r.metric_type, {instant}",
    )


def rollup_layout(resolution: str) -> Layout:
    """data_1m or data_1h (UTC buckets), or data_1d (the participant's local days)."""
    if resolution == "1d":
        # A local day starts at its local midnight (or the first instant after a DST jump).
        start = "(d.day::timestamp AT TIME ZONE %(zone)s)"
        dated: tuple[Column, ...] = (
            Column("date_local", pa.date32(), "d.day"),
            Column("timestamp_utc", UTC_TIME, micros(start)),
            Column("timestamp_local", LOCAL_TIME, micros("d.day::timestamp")),
            Column("timezone", pa.string(), "%(zone)s::text"),
        )
        table, key = "data_1d", "d.day"
    else:
        start = key = "d.bucket"
        dated, table = _times(start), ROLLUP_TABLES[resolution]
    return Layout(
        columns=(*_head("d"), *dated, *AGGREGATES),
        source=(f"FROM {table} d WHERE d.participant_id = %(participant)s\n"
                f"  AND {IN_SPAN.format(instant=start)} {METRIC_FILTER.format(table='d')}"),
        order=f"d.metric_type, {key}",
    )


def data_layout(resolution: str, provenance: bool) -> Layout:
    return raw_layout(provenance) if resolution == "raw" else rollup_layout(resolution)


def _span_times(prefix: str, table: str) -> tuple[Column, ...]:
    instants = []
    for edge in ("start", "end"):
        instant = f"{table}.{prefix}_{edge}"
        instants += [Column(f"{prefix}_{edge}_utc", UTC_TIME, micros(instant)),
                     Column(f"{prefix}_{edge}_local", LOCAL_TIME, local(instant, "p.timezone"))]
    return (*instants, Column("timezone", pa.string(), "p.timezone"))


# One file for all participants: a date bound is each one's local midnight, found in SQL
# (the parameters: export.sleep_span).
SLEEP_BOUND = ("CASE WHEN %({edge}_day)s::date IS NULL THEN %({edge})s::timestamptz "
               "ELSE %({edge}_day)s::date::timestamp AT TIME ZONE p.timezone END")


def _sleep_source(table: str, alias: str, prefix: str) -> str:
    instant = f"{alias}.{prefix}_start"
    return (f"FROM {table} {alias} JOIN participants p USING (participant_id)\n"
            f"WHERE {alias}.participant_id = ANY(%(participants)s)\n"
            f"  AND {instant} >= {SLEEP_BOUND.format(edge='start')}\n"
            f"  AND {instant} < {SLEEP_BOUND.format(edge='end')}")


# The columns CONTRACTS.md names for the sleep tables (migration 12).
SLEEP_SESSIONS = Layout(
    columns=(
        Column("participant_id", pa.string(), "s.participant_id"),
        *_span_times("session", "s"),
        Column("is_main_sleep", pa.bool_(), "s.is_main_sleep"),
        Column("minutes_asleep", pa.int64(), "s.minutes_asleep"),
        Column("minutes_awake", pa.int64(), "s.minutes_awake"),
        Column("source", pa.string(), "s.source"),
    ),
    source=_sleep_source("sleep_sessions", "s", "session"),
    order="s.participant_id, s.session_start",
)
SLEEP_STAGES = Layout(
    columns=(
        Column("participant_id", pa.string(), "s.participant_id"),
        *_span_times("stage", "s"),
        Column("stage", pa.string(), "s.stage"),
        Column("source", pa.string(), "s.source"),
    ),
    source=_sleep_source("sleep_stages", "s", "stage"),
    order="s.participant_id, s.stage_start",
)
SLEEP_FILES = {"sleep_sessions": SLEEP_SESSIONS, "sleep_stages": SLEEP_STAGES}


def batch(schema: pa.Schema, rows: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    """One fetched chunk, in the layout's column order, as an Arrow record batch."""
    columns = zip(*rows, strict=True)
    return pa.record_batch(
        [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...


class ParquetSink:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)  # a row group per batch

    def close(self) -> None:
        self._writer.close()


class CsvSink:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = arrow_csv.CSVWriter(path, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


SINKS: dict[str, Callable[[Path, pa.Schema], Sink]] = {"parquet": ParquetSink, "csv": CsvSink}


def write(
    connection: psycopg2.extensions.connection, layout: Layout, params: dict[str, Any],
    metadata: dict[str, str], path: Path, fmt: str, shown: Callable[[int], None],
) -> int:
    """Stream one query into one file, a chunk at a time; the rows written."""
    schema = layout.schema(metadata or None)
    rows = 0
    sink = SINKS[fmt](path, schema)
    try:
        # A server-side cursor: the server keeps the result, we hold one chunk of it.
        with connection.cursor(name="export") as cursor:
            cursor.itersize = CHUNK_ROWS
            cursor.execute(layout.query(), params)
            while chunk := cursor.fetchmany(CHUNK_ROWS):
                sink.write(batch(schema, chunk))
                rows += len(chunk)
                shown(rows)
    finally:
        sink.close()
    return rows
