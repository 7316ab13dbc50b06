"""`ingest.py export`: the analyst's copy, as Parquet or CSV files with a data dictionary.

    ingest.py export --out DIR [--participant ID ...] [--since T] [--until T]
                     [--metric M ...] [--resolution raw|1m|1h|1d] [--format parquet|csv]

One file per participant (DIR/<participant_id>.parquet or .csv), the sleep tables when the
database has them, then participants.csv, data_dictionary.csv and manifest.json (row count
and SHA-256 of every file). Everything is read in one read-only snapshot, so the files agree
with each other even while a nightly run writes. The files are written into
DIR/.export.partial and moved into DIR only when all are complete, the manifest last: a
killed export leaves nothing under a final name, and the same command again starts over.
The columns and the streaming into files are in export_files.py; the user's guide is
docs/export.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as clock_time
from functools import partial
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from . import db
from .metrics import METRICS
from .model import Participant

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_ARGUMENTS = 0, 1, 2  # cli.py's codes
RESOLUTIONS = ("raw", "1m", "1h", "1d")
FORMATS = ("parquet", "csv")
STAGING = ".export.partial"
MANIFEST = "manifest.json"
PARTICIPANTS = "participants.csv"
DICTIONARY = "data_dictionary.csv"
DICTIONARY_COLUMNS = ("metric_type", "unit", "meaning", "native_resolution", "sources")
PARTICIPANT_COLUMNS = ("participant_id", "timezone", "source", "start_date")
SLEEP_TABLES = ("sleep_sessions", "sleep_stages")  # issue 24's; exported once they exist
PACKAGE = Path(__file__).resolve().parent

Bound = date | datetime | None  # a date is the participant's local day; None: unbounded


# --- the command line -------------------------------------------------------------------------


def add_parser(
    commands: Any, participant_id: Callable[[str], str], instant: Callable[[str], datetime]
) -> None:
    """The `export` subcommand; cli.py passes its own checks of an id and an instant."""
    command = commands.add_parser("export", help="write the data as Parquet or CSV files")
    command.add_argument("--out", required=True, type=Path, metavar="DIR",
                         help="directory of the files (created if missing)")
    command.add_argument("--participant", action="append", default=[], type=participant_id,
                         metavar="ID", help="only this participant (repeatable; default all)")
    bound = _bound(instant)
    # Not `since`/`until`: those of the ingestion run are instants only (cli.check_arguments).
    command.add_argument("--since", dest="export_since", type=bound, metavar="T",
                         help="from this local date of each participant, or this instant (ISO)")
    command.add_argument("--until", dest="export_until", type=bound, metavar="T",
                         help="up to this local date or instant, exclusive")
    command.add_argument("--metric", action="append", default=[], type=metric_type,
                         metavar="M", help="only this metric_type (repeatable; default all)")
    command.add_argument("--resolution", choices=RESOLUTIONS, default="raw",
                         help="raw rows, or the 1m/1h/1d rollups (default raw)")
    command.add_argument("--format", choices=FORMATS, default="parquet", dest="export_format",
                         help="default parquet")


def arguments(out: Path, participants: Sequence[str], since: Bound = None,
              until: Bound = None, metrics: Sequence[str] = (), resolution: str = "raw",
              fmt: str = "parquet") -> argparse.Namespace:
    """The namespace add_parser's options give run(), for a caller without a command line
    (the dashboard's download): the same export, never a second one."""
    return argparse.Namespace(out=out, participant=list(participants), export_since=since,
                              export_until=until, metric=list(metrics),
                              resolution=resolution, export_format=fmt)


def _bound(instant: Callable[[str], datetime]) -> Callable[[str], Bound]:
    def parse(text: str) -> Bound:
        if len(text) == len("YYYY-MM-DD"):  # a local day; instant() checks it is a date
            return instant(text).date()
        return instant(text)

    return parse


def metric_type(text: str) -> str:
    if text not in METRICS:
        raise argparse.ArgumentTypeError(
            f"expected a metric_type of the vocabulary (ingester/metrics.py), got {text!r}"
        )
    return text


def check(since: Bound, until: Bound) -> str | None:
    """The line that says what is wrong with --since and --until together; None if nothing."""
    if since is None or until is None:
        return None
    if isinstance(since, datetime) != isinstance(until, datetime):
        return (f"--since and --until must both be dates or both date-times, got "
                f"{since.isoformat()} and {until.isoformat()}")
    if since >= until:
        return (f"--since must be earlier than --until, got {since.isoformat()} and "
                f"{until.isoformat()}")
    return None


# --- pure parts -------------------------------------------------------------------------------


def span(since: Bound, until: Bound, zone: str) -> tuple[datetime | str, datetime | str]:
    """The instants [start, end) of --since and --until for a participant in `zone`."""
    return _instant(since, zone, "-infinity"), _instant(until, zone, "infinity")


def _instant(bound: Bound, zone: str, unbounded: str) -> datetime | str:
    if bound is None:
        return unbounded
    if isinstance(bound, datetime):
        return bound
    # A midnight a DST jump skips becomes the first instant after it, as in PostgreSQL.
    return datetime.combine(bound, clock_time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def sleep_span(since: Bound, until: Bound) -> dict[str, object]:
    """The parameters of export_files.SLEEP_BOUND: a date goes to SQL, which finds each
    participant's local midnight; an instant is the bound itself."""
    params: dict[str, object] = {}
    for edge, bound, unbounded in (("start", since, "-infinity"), ("end", until, "infinity")):
        day = None if isinstance(bound, datetime) else bound
        params[edge + "_day"] = day
        params[edge] = unbounded if bound is None or day is not None else bound
    return params


def dictionary_rows() -> list[tuple[str, ...]]:
    """data_dictionary.csv: one row per metric of the vocabulary, whether exported or not."""
    return [
        (name, metric.unit, metric.description, metric.resolution, ", ".join(metric.sources))
        for name, metric in METRICS.items()
    ]


def participant_rows(participants: Iterable[Participant]) -> list[tuple[str, ...]]:
    """participants.csv: who, in which zone, from which source and day; never a seed, token
    or anything else of the participant's credentials."""
    return [(p.participant_id, p.timezone, p.source, p.start_date.isoformat())
            for p in participants]


@dataclass(frozen=True)
class FileEntry:
    name: str
    rows: int
    bytes: int
    sha256: str


def manifest(arguments: dict[str, Any], service: dict[str, Any], exported_at: datetime,
             files: Sequence[FileEntry]) -> dict[str, Any]:
    """manifest.json: what this copy is, and enough to verify later that it is intact."""
    return {
        "manifest_version": 1,
        "exported_at": exported_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "arguments": arguments,
        "service": service,
        "files": [{"name": f.name, "rows": f.rows, "bytes": f.bytes, "sha256": f.sha256}
                  for f in files],
    }


def arguments_record(arguments: argparse.Namespace) -> dict[str, Any]:
    def text(bound: Bound) -> str | None:
        return None if bound is None else bound.isoformat()

    return {
        "out": str(arguments.out),
        "participants": list(arguments.participant),
        "since": text(arguments.export_since),
        "until": text(arguments.export_until),
        "metrics": list(arguments.metric),
        "resolution": arguments.resolution,
        "format": arguments.export_format,
    }


# --- the shell --------------------------------------------------------------------------------


def run(connection: db.Connection, arguments: argparse.Namespace, progress: bool = True) -> int:
    """The export; its arguments passed check() (cli.check_arguments) before it connected.
    Without `progress` nothing is drawn, terminal or not (a server's log is no place for it)."""
    out: Path = arguments.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"export: cannot create --out {out}: {error.strerror}", file=sys.stderr)
        return EXIT_ARGUMENTS
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # what a killed export left
    began = time.monotonic()
    try:
        staging.mkdir()
        connection.rollback()  # a snapshot of its own, from its first statement on
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        participants = _participants(connection, arguments.participant)
        unknown = sorted(set(arguments.participant) - {p.participant_id for p in participants})
        if unknown:
            print(f"export: unknown participant(s): {', '.join(unknown)}", file=sys.stderr)
            return EXIT_ARGUMENTS
        files = _write_all(connection, arguments, participants, staging, progress)
        _publish(staging, out, [f.name for f in files] + [MANIFEST])
    except OSError as error:
        print(f"export: cannot write {error.filename or out}: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        connection.rollback()  # read only: nothing to keep
        shutil.rmtree(staging, ignore_errors=True)
    rows = sum(f.rows for f in files)
    seconds = time.monotonic() - began
    log.info("export: %d files, %d rows in %.1f s (%.0f rows/s) into %s", len(files) + 1,
             rows, seconds, rows / seconds if seconds else 0.0, out)
    return EXIT_OK


def _participants(connection: db.Connection, wanted: Sequence[str]) -> list[Participant]:
    """In the export's snapshot (db.load_participants commits, which would end it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT participant_id, timezone, source, start_date FROM participants "
            "WHERE cardinality(%(wanted)s::text[]) = 0 OR participant_id = ANY(%(wanted)s) "
            "ORDER BY participant_id", {"wanted": list(wanted)})
        return [Participant(*row) for row in cursor.fetchall()]


def _exists(connection: db.Connection, relation: str) -> bool:
    """Whether the database has a table or view (those of issue 24 may not be there yet)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,))
        return bool(db.one_row(cursor)[0])


def _write_all(connection: db.Connection, arguments: argparse.Namespace,
               participants: list[Participant], staging: Path,
               drawn: bool) -> list[FileEntry]:
    """Every file but the manifest into staging, then the manifest; their entries."""
    # pyarrow only here: it costs every other command ~50 MB and most of a second.
    from . import export_files

    fmt, since, until = arguments.export_format, arguments.export_since, arguments.export_until
    metrics = arguments.metric or None
    layout = export_files.data_layout(arguments.resolution,
                                      _exists(connection, "raw_data_sourced"))
    progress = Progress(sys.stderr if drawn and sys.stderr.isatty() else None,
                        len(participants))
    files = []
    for participant in participants:
        start, end = span(since, until, participant.timezone)
        params = {"participant": participant.participant_id, "zone": participant.timezone,
                  "source": participant.source, "start": start, "end": end, "metrics": metrics}
        metadata = {"participant_id": participant.participant_id,
                    "timezone": participant.timezone, "resolution": arguments.resolution}
        path = staging / f"{participant.participant_id}.{fmt}"
        rows = export_files.write(connection, layout, params, metadata, path, fmt,
                                  partial(progress.show, path.name))
        progress.finished()
        files.append(_entry(path, rows))
    if metrics is None:  # sleep is not a metric: an export of some metrics leaves it out
        for table in SLEEP_TABLES:
            if _exists(connection, table):
                params = {"participants": [p.participant_id for p in participants],
                          **sleep_span(since, until)}
                path = staging / f"{table}.{fmt}"
                rows = export_files.write(connection, export_files.SLEEP_FILES[table], params,
                                          {}, path, fmt, progress.quiet)
                files.append(_entry(path, rows))
    files.append(_write_csv(staging / PARTICIPANTS, PARTICIPANT_COLUMNS,
                            participant_rows(participants)))
    files.append(_write_csv(staging / DICTIONARY, DICTIONARY_COLUMNS, dictionary_rows()))
    document = manifest(arguments_record(arguments), _service(connection), datetime.now(UTC),
                        files)
    (staging / MANIFEST).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    _sync(staging / MANIFEST)
    return files


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> FileEntry:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return _entry(path, len(rows))


def _entry(path: Path, rows: int) -> FileEntry:
    """The file's manifest entry, once it is on disk."""
    _sync(path)
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    log.info("export: %s, %d rows", path.name, rows)
    return FileEntry(path.name, rows, path.stat().st_size, digest.hexdigest())


def _sync(path: Path) -> None:
    """On disk before it is renamed: a crash must not leave an empty file under its name."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _publish(staging: Path, out: Path, names: Sequence[str]) -> None:
    """Move the finished files into DIR, the manifest last: DIR holds a manifest only when
    every file it names is the one it describes (a previous export's goes first)."""
    (out / MANIFEST).unlink(missing_ok=True)
    for name in names:
        os.replace(staging / name, out / name)
    _sync(out)


def _service(connection: db.Connection) -> dict[str, Any]:
    """What produced the copy: the code (a hash of the package, and git's description where
    there is a checkout), the schema's migration level, and the Parquet library."""
    import pyarrow

    with connection.cursor() as cursor:
        cursor.execute("SELECT max(version) FROM schema_migrations")
        (schema_version,) = db.one_row(cursor)
    code = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        code.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return {"name": "wearable-ingester", "version": _git_version(),
            "code_sha256": code.hexdigest(), "schema_version": schema_version,
            "pyarrow": pyarrow.__version__}


def _git_version() -> str | None:
    """`git describe` of a checkout; None in the image, which has neither git nor history."""
    try:
        done = subprocess.run(["git", "-C", str(PACKAGE), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


class Progress:
    """One line on a terminal, redrawn per chunk; nothing when stderr is not a terminal."""

    def __init__(self, stream: IO[str] | None, total: int) -> None:
        self.stream, self.total, self.done = stream, total, 0

    def show(self, name: str, rows: int) -> None:
        if self.stream is not None:
            self.stream.write(f"\r\033[Kexport {self.done + 1}/{self.total}: {name}, "
                              f"{rows:,} rows")
            self.stream.flush()

    def quiet(self, rows: int) -> None:
        """For files too small to show (the sleep tables)."""

    def finished(self) -> None:
        self.done += 1
        if self.stream is not None:
            self.stream.write("\r\033[K")
            self.stream.flush()
