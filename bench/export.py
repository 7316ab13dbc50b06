"""Throughput and memory of `ingest.py export`: rows per second, and peak RSS of a long span
against a short one (the export streams, so a longer span must not need more memory).

    python bench/export.py [--days 7] [--long-days 28] [--format parquet] [--dsn DSN]
                           [--json bench/results-export.json]

One participant with 1 Hz heart rate (86,400 rows a day, stored straight into raw_data by
generate_series: the export, not ingestion, is measured) in a database of its own per span;
the command runs under peak_rss.py, which reports its own peak RSS and wall time. Prints a
table and the ratio against its target, and writes the same as JSON. Exit codes: 0 measured
(whether or not the target passed); 1 a measurement failed; 2 bad arguments; 3 the database
is unreachable. Keys: measurements.export_short, measurements.export_long (rows, seconds,
rows_per_second, peak_rss_mib), targets.export_rss_long_vs_short (ratio, target, pass).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingestion"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.databases import EXIT_OK, BenchError, Scratch, Server, measured, write_results
from bench.measure import INGEST, PEAK_RSS
from bench.run import positive

log = logging.getLogger("bench.export")
DEFAULT_JSON = Path(__file__).resolve().parent / "results-export.json"
# A year of 1 Hz data must export in the memory of a week: some growth for the longer
# file's footer (its row groups' metadata), none per row.
RSS_TARGET = 1.3

FILL = """
INSERT INTO participants (participant_id, timezone, source, start_date, seed)
VALUES ('bench-01', 'Europe/Berlin', 'synthetic', DATE '2024-01-01', 1);
INSERT INTO raw_data ("timestamp", participant_id, metric_type, value)
SELECT t, 'bench-01', 'heart_rate', 60 + (extract(epoch FROM t)::bigint %% 60)
FROM generate_series(TIMESTAMPTZ '2024-01-01 00:00Z',
                     TIMESTAMPTZ '2024-01-01 00:00Z' + %(days)s * INTERVAL '1 day'
                         - INTERVAL '1 second', INTERVAL '1 second') t;
"""


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="bench/export.py", description=__doc__.split("\n\n")[0])
    main.add_argument("--days", type=positive(float), default=7.0,
                      help="the short span (default 7)")
    main.add_argument("--long-days", type=positive(float), default=28.0,
                      help="the long span (default 28)")
    main.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    main.add_argument("--dsn", help="server for the benchmark's databases (default: DB_HOST, "
                      "DB_PORT, DB_USER, DB_PASSWORD)")
    main.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return main


def measure(server: Server, scratch: Scratch, days: float, fmt: str, work: Path
            ) -> dict[str, float]:
    """Fill a database with `days` of 1 Hz data and export it, under peak_rss.py."""
    name = scratch.fresh(f"export_{str(days).replace('.', '_')}")
    connection = server.connect(name)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(FILL, {"days": days})
            rows = cursor.rowcount
    finally:
        connection.close()
    out, report_file = work / name, work / f"{name}.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "STATE_FILE": str(work / "state.json"), "LOG_LEVEL": "WARNING", **server.env(name)}
    done = subprocess.run([sys.executable, str(PEAK_RSS), str(report_file), sys.executable,
                           str(INGEST), "export", "--out", str(out), "--format", fmt],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"export of {days} days failed: {done.stderr.strip()[-500:]}")
    exported = sum(f["rows"] for f in json.loads((out / "manifest.json").read_text())["files"]
                   if f["name"] == f"bench-01.{fmt}")
    if exported != rows:
        raise BenchError(f"export of {days} days wrote {exported} rows, not {rows}")
    report = json.loads(report_file.read_text())
    seconds = report["seconds"]
    return {"days": days, "rows": rows, "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds), "peak_rss_mib":
            round(report["peak_rss_kib"] / 1024, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    server = Server.from_arguments(arguments.dsn, os.environ)

    def measure_both(scratch: Scratch, work: Path) -> tuple[dict, dict]:
        return (measure(server, scratch, arguments.days, arguments.format, work),
                measure(server, scratch, arguments.long_days, arguments.format, work))

    result, code = measured(server, "bench-export-", log, measure_both)
    if result is None:
        return code
    short, long = result
    ratio = long["peak_rss_mib"] / short["peak_rss_mib"]
    doc = {
        "format": arguments.format,
        "measurements": {"export_short": short, "export_long": long},
        "targets": {"export_rss_long_vs_short": {
            "label": f"peak RSS, {long['days']:g} days against {short['days']:g}",
            "ratio": round(ratio, 3), "target": RSS_TARGET, "pass": ratio <= RSS_TARGET}},
    }
    write_results(arguments.json, doc)
    print(f"{'span':>10} {'rows':>12} {'seconds':>9} {'rows/s':>10} {'peak RSS MiB':>13}")
    for m in (short, long):
        print(f"{m['days']:>8g} d {m['rows']:>12,} {m['seconds']:>9.1f} "
              f"{m['rows_per_second']:>10,} {m['peak_rss_mib']:>13.1f}")
    target = doc["targets"]["export_rss_long_vs_short"]
    print(f"{target['label']}: {ratio:.2f} (target <= {RSS_TARGET}: "
          f"{'pass' if target['pass'] else 'FAIL'})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
