"""Speed and memory of `participant import-takeout` (docs/takeout.md, docs/performance.md):

    python bench/takeout.py [--days 30] [--long-days 365] [--rounds 3] [--dsn DSN]
                            [--json bench/results-takeout.json]

Archives are generated in the documented layout: heart rate every 10 s in daily CSVs, steps,
distance and calories every minute in monthly CSVs, each with the wearable as recorder.

- Rate: the short archive imported in this process (takeout_import.load: parse and write,
  slice by slice) against the writer alone storing the same rows in the same slices
  (commit_slice over rows parsed beforehand, outside the clock); each into a fresh database,
  in pairs, --rounds times: the median of the pairs' ratios. Target: import rate / writer
  rate >= 0.7.
- Memory: the command itself, under peak_rss.py, for the long archive against the short one,
  each into a fresh database. Target: peak RSS ratio <= 1.3 (the import streams the zip).

Exit codes: 0 measured (whether or not a target passed); 1 a measurement failed; 3 the
database is unreachable. Keys: measurements.import, measurements.writer,
measurements.rss_short, measurements.rss_long; targets.takeout_rate_vs_writer,
targets.takeout_rss_long_vs_short (ratio, target, pass).
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingestion"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingester import db, takeout_import
from ingester.config import Settings
from ingester.model import TAKEOUT, Participant, ReadReport, Window
from ingester.sources.takeout.archive import TakeoutArchive
from ingester.sources.takeout.source import TakeoutSource

from bench.databases import (
    EXIT_OK,
    BenchError,
    Scratch,
    Server,
    measured,
    write_results,
)
from bench.measure import INGEST, PEAK_RSS
from bench.run import positive

log = logging.getLogger("bench.takeout")
DEFAULT_JSON = Path(__file__).resolve().parent / "results-takeout.json"
RATE_TARGET = 0.7  # parsing a zip may cost 30 % on top of storing what it holds
RSS_TARGET = 1.3  # a year in the memory of a month: a few files at a time, never the whole
FIRST_DAY = date(2025, 1, 1)
ZONE = "Europe/Berlin"
ROOT = "Takeout/Google Health/Physical Activity_GoogleData/"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def write_archive(path: Path, days: int) -> int:
    """A `days`-day archive at `path`, written entry by entry; returns its rows."""
    rows = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(days):
            day = FIRST_DAY + timedelta(days=n)
            start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
            lines = [f"{_iso(start + s)},{60 + (s // 10) % 50},Charge 6\n"
                     for s in range(0, 86_400, 10)]
            archive.writestr(f"{ROOT}heart_rate_{day}.csv",
                             "timestamp,beats per minute,data source\n" + "".join(lines))
            rows += len(lines)
        month = FIRST_DAY
        while month < FIRST_DAY + timedelta(days=days):
            following = (month + timedelta(days=32)).replace(day=1)
            end = min(following, FIRST_DAY + timedelta(days=days))
            for stream, header in (("steps", "steps"), ("distance", "distance"),
                                   ("calories", "calories")):
                rows += _minutes(archive, stream, header, month, end)
            month = following
    return rows


def _minutes(archive: zipfile.ZipFile, stream: str, header: str, month: date, end: date) -> int:
    first = int(datetime(month.year, month.month, month.day, tzinfo=UTC).timestamp())
    last = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp())
    with archive.open(f"{ROOT}{stream}_{month}.csv", "w") as entry:
        entry.write(f"timestamp,{header},data source\n".encode())
        for at in range(first, last, 86_400):
            entry.write("".join(f"{_iso(t)},{(t // 60) % 9},Charge 6\n"
                                for t in range(at, at + 86_400, 60)).encode())
    return (last - first) // 60


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Parsed:
    """The archive's rows, parsed beforehand, served by window as TakeoutSource serves them."""

    unsafe = None

    def __init__(self, source: TakeoutSource, participant: Participant) -> None:
        self.streams = source.streams
        self._span = source.span(participant, ReadReport())
        assert self._span is not None
        self._rows = {s: sorted(source.read(participant, s, self._span, ReadReport()))
                      for s in self.streams}
        self._times = {s: [r.timestamp for r in rows] for s, rows in self._rows.items()}

    def span(self, participant: Participant, report: ReadReport) -> Window | None:
        return self._span

    def delivered_until(self, participant, now):
        raise NotImplementedError

    def read(self, participant, stream, window, report):
        times = self._times[stream]
        low = bisect.bisect_left(times, window.start)
        return iter(self._rows[stream][low:bisect.bisect_left(times, window.end)])


def enrol(server: Server, name: str) -> tuple[db.Connection, Participant]:
    connection = server.connect(name)
    db.add_participants(connection, [Participant("bench-01", ZONE, TAKEOUT, FIRST_DAY)])
    return connection, db.load_participants(connection, ["bench-01"])[0]


def timed_load(server: Server, scratch: Scratch, what: str, path: Path, parsed: bool
               ) -> tuple[int, float]:
    """Rows written and seconds of one load into a fresh database: the archive parsed on the
    way (the import) or beforehand, outside the clock (the writer alone)."""
    connection, participant = enrol(server, scratch.fresh(what))
    try:
        with TakeoutArchive(path) as archive:
            source = TakeoutSource(archive, NOW)
            if parsed:
                source = Parsed(source, participant)  # type: ignore[assignment]
            server.checkpoint()
            began = time.perf_counter()
            totals = takeout_import.load(connection, Settings(), participant, source, NOW)
            seconds = time.perf_counter() - began
    finally:
        connection.close()
    return totals.rows_written, seconds


def rates(server: Server, scratch: Scratch, path: Path, rounds: int) -> tuple[dict, dict]:
    """Import and writer in pairs, `rounds` times, each side first in every other pair (the
    first of a pair tends to be slower). The ratio is the median of the pairs' own ratios: on
    a shared machine one lucky run of either side would decide the ratio of the fastest."""
    pairs: list[dict[bool, tuple[int, float]]] = []
    for n in range(rounds):
        pair = {}
        for parsed in ((False, True) if n % 2 == 0 else (True, False)):
            what = f"{'writer' if parsed else 'import'}_{n}"
            pair[parsed] = timed_load(server, scratch, what, path, parsed)
        if pair[True][0] != pair[False][0]:
            raise BenchError(f"the writer stored {pair[True][0]} rows, the import "
                             f"{pair[False][0]}")
        pairs.append(pair)
    in_order = [round(pair[True][1] / pair[False][1], 3) for pair in pairs]
    ratios = sorted(in_order)
    middle = ratios[len(ratios) // 2] if len(ratios) % 2 else \
        (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2

    def side(parsed: bool) -> dict:
        rows = pairs[0][parsed][0]
        seconds = sorted(pair[parsed][1] for pair in pairs)
        median = seconds[len(seconds) // 2]
        return {"rows": rows, "seconds": round(median, 3),
                "rows_per_second": round(rows / median),
                "samples_seconds": [round(s, 3) for s in seconds]}

    imported, written = side(False), side(True)
    imported["paired_ratio"] = round(middle, 3)
    imported["pair_ratios"] = in_order
    return imported, written


def peak_rss(server: Server, scratch: Scratch, path: Path, rows: int, work: Path) -> dict:
    name = scratch.fresh(f"rss_{path.stem}")
    report_file = work / f"{name}.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "STATE_FILE": str(work / "state.json"), "LOG_LEVEL": "WARNING", **server.env(name)}
    done = subprocess.run([sys.executable, str(PEAK_RSS), str(report_file), sys.executable,
                           str(INGEST), "participant", "import-takeout", "bench-01", str(path),
                           "--timezone", ZONE], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"import of {path.name} failed: {done.stderr.strip()[-500:]}")
    report = json.loads(report_file.read_text())
    return {"rows": rows, "seconds": round(report["seconds"], 3),
            "peak_rss_mib": round(report["peak_rss_kib"] / 1024, 1)}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="bench/takeout.py", description=__doc__.split("\n\n")[0])
    main.add_argument("--days", type=positive(int), default=30, help="the short archive (30)")
    main.add_argument("--long-days", type=positive(int), default=365,
                      help="the long archive (365)")
    main.add_argument("--rounds", type=positive(int), default=3,
                      help="pairs of import and writer runs (3)")
    main.add_argument("--dsn", help="server for the benchmark's databases (default: DB_HOST, "
                      "DB_PORT, DB_USER, DB_PASSWORD)")
    main.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    server = Server.from_arguments(arguments.dsn, os.environ)

    def measure(scratch: Scratch, work: Path) -> tuple[dict, dict, dict, dict]:
        short_zip, long_zip = work / "short.zip", work / "long.zip"
        short_rows = write_archive(short_zip, arguments.days)
        long_rows = write_archive(long_zip, arguments.long_days)
        imported, written = rates(server, scratch, short_zip, arguments.rounds)
        return (imported, written, peak_rss(server, scratch, short_zip, short_rows, work),
                peak_rss(server, scratch, long_zip, long_rows, work))

    result, code = measured(server, "bench-takeout-", log, measure)
    if result is None:
        return code
    imported, written, short, long = result
    rate = imported["paired_ratio"]
    rss = long["peak_rss_mib"] / short["peak_rss_mib"]
    doc = {
        "measurements": {"import": imported, "writer": written, "rss_short": short,
                         "rss_long": long},
        "targets": {
            "takeout_rate_vs_writer": {
                "label": f"import rate against the writer's, {arguments.days} days",
                "ratio": round(rate, 3), "target": RATE_TARGET, "pass": rate >= RATE_TARGET},
            "takeout_rss_long_vs_short": {
                "label": f"peak RSS, {arguments.long_days} days against {arguments.days}",
                "ratio": round(rss, 3), "target": RSS_TARGET, "pass": rss <= RSS_TARGET},
        },
    }
    write_results(arguments.json, doc)
    print(f"{'':>22} {'rows':>11} {'seconds':>9} {'rows/s':>9} {'peak RSS MiB':>13}")
    for label, m in (("import (in process)", imported), ("writer, same rows", written),
                     (f"command, {arguments.days} days", short),
                     (f"command, {arguments.long_days} days", long)):
        print(f"{label:>22} {m['rows']:>11,} {m['seconds']:>9.1f} "
              f"{m.get('rows_per_second', round(m['rows'] / m['seconds'])):>9,} "
              f"{m.get('peak_rss_mib', ''):>13}")
    for target in doc["targets"].values():
        sign = ">=" if target is doc["targets"]["takeout_rate_vs_writer"] else "<="
        print(f"{target['label']}: {target['ratio']:.2f} (target {sign} {target['target']}: "
              f"{'pass' if target['pass'] else 'FAIL'})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
