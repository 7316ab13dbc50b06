"""Throughput and memory of ingestion, measured side by side on one synthetic workload.

    python bench/run.py [--participants 3] [--days 7] [--long-days 28] [--repeat 2]
        [--command-repeat 4] [--only end-to-end|writer] [--dsn DSN]

`make bench` runs it on the local TimescaleDB (scripts/timescaledb.sh); without --dsn it
reaches the server through DB_HOST, DB_PORT, DB_USER and DB_PASSWORD, as the service does.
It creates a database per measurement on that server and drops them all before it exits.
It prints the machine, a table and the ratios against the targets, and writes the same as
JSON. Exit codes: 0 measured (whether or not every target passed); 1 a measurement failed;
2 bad arguments; 3 the database is unreachable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

# A script, like ingestion/ingest.py: the service's package and this one are found from here.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingestion"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2
from ingester.config import Settings

from bench import google_page, measure, report
from bench.databases import Scratch, Server, server_facts
from bench.measure import BenchError, Measurement
from bench.workload import Spool, Workload, cohort, generate

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench")

EXIT_OK, EXIT_FAILED, EXIT_ARGUMENTS, EXIT_DATABASE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C
DEFAULT_JSON = ROOT / "bench" / "results.json"
ONLY = ("end-to-end", "writer")
T = TypeVar("T")


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    main.add_argument("--participants", type=positive(int), default=3,
                      help="synthetic participants (default 3)")
    main.add_argument("--days", type=positive(float), default=7.0,
                      help="days loaded per participant; fractions allowed (default 7)")
    main.add_argument("--long-days", type=positive(float), default=28.0,
                      help="days of the second end-to-end run, for peak RSS (default 28)")
    main.add_argument("--long-participants", type=positive(int), default=None,
                      help="participants of that run (default: --participants)")
    main.add_argument("--batch-rows", type=positive(int), default=Settings().batch_rows,
                      help="the writer's BATCH_ROWS (default: the service's, %(default)s)")
    # Two: each side of a pair compared in turn (in_turn) goes first once. With one, the
    # sliced command always went first, and the run that goes first tends to be the slower.
    main.add_argument("--repeat", type=positive(int), default=2,
                      help="run every measurement this often and keep the fastest (default 2: "
                      "each side of a compared pair goes first once)")
    main.add_argument("--dsn", help="server to make the benchmark's databases on (libpq DSN "
                      "or URI; default: DB_HOST, DB_PORT, DB_USER, DB_PASSWORD)")
    main.add_argument("--json", type=Path, default=DEFAULT_JSON,
                      help="where to write the results (default bench/results.json)")
    # The command is the noisiest measurement: on this VM a run of it moves by a third from
    # one minute to the next (docs/performance.md, "Noise"), and its variants are judged
    # against it to 5 %.
    main.add_argument("--command-repeat", type=positive(int), default=4,
                      help="times the command, generation alone and the command's two "
                      "variants run, in turn, the fastest of each kept (default 4)")
    main.add_argument("--page-repeat", type=positive(int), default=25,
                      help="times the Google page is measured, the best kept (default 25)")
    main.add_argument("--work-dir", type=Path, default=None,
                      help="parent of the temporary spool of generated rows (default: TMPDIR)")
    main.add_argument("--only", choices=ONLY,
                      help="measure only this: end-to-end, the command in turn with "
                      "generation alone and its two variants (end_to_end_vs_generation, "
                      "slices_end_to_end, rollups_end_to_end); writer, the writer in turn "
                      "with plain COPY (writer_vs_copy, rerun_vs_first_load, slices_writer). "
                      "The other targets print n/a")
    return main


@dataclass(frozen=True)
class Plan:
    short: Workload
    long: Workload
    batch_rows: int
    repeat: int
    command_repeat: int = 4
    page_repeat: int = 25
    only: str | None = None  # one of ONLY: the rest is not measured


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    server = (Server.from_dsn(arguments.dsn) if arguments.dsn
              else Server.from_environment(os.environ))
    plan = Plan(
        short=cohort(arguments.participants, arguments.days),
        long=cohort(arguments.long_participants or arguments.participants, arguments.long_days),
        batch_rows=arguments.batch_rows,
        repeat=arguments.repeat,
        command_repeat=int(arguments.command_repeat),
        page_repeat=int(arguments.page_repeat),
        only=arguments.only,
    )
    if max(plan.short.end, plan.long.end) > datetime.now(UTC):
        parser().error(f"the workload starts on {plan.short.start.date()} and would end in the "
                       "future; ask for fewer days")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-", dir=arguments.work_dir) as work,
            Scratch(server) as scratch,
        ):
            facts, rows, measurements = run(server, scratch, plan, Path(work))
    except BenchError as error:
        log.error("%s", error)
        return EXIT_FAILED
    except KeyboardInterrupt:  # its databases are dropped by then
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except psycopg2.OperationalError as error:
        log.error("database at %s:%s: %s", server.host, server.port,
                  str(error).strip().splitlines()[0] if str(error).strip() else "no answer")
        return EXIT_DATABASE
    doc = report.document(report.machine(facts), workload_facts(plan, rows),
                          measurements, scratch.names)
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(report.table(doc))
    log.info("results written to %s", arguments.json)
    return EXIT_OK


def run(server: Server, scratch: Scratch, plan: Plan, work: Path
        ) -> tuple[dict[str, str], int, dict[str, Measurement]]:
    """Every measurement plan.only asks for, each on a database of its own: the server's
    facts, the workload's rows and the measurements, in the order the table prints them."""
    short, only = plan.short, plan.only
    spool = Spool(work / "spool")
    spool.directory.mkdir()
    page = google_page_measurements(plan.page_repeat) if only is None else {}

    log.info("workload: %d participants x %g days, from %s", len(short.participants),
             short.days, short.start.date())
    # In process, once: the spool the writer measurements read, and the row count every
    # measurement is checked against. Timed generation is a process of its own, in
    # command_measurements.
    rows = generate(short, spool).rows
    log.info("generated and spooled %d rows", rows)
    facts = _server_facts(server, scratch)

    measurements: dict[str, Measurement] = {}
    if only in (None, "writer"):
        measurements.update(writer_measurements(server, scratch, plan, spool, rows))
    if only is None:
        measurements["original"] = _original(server, scratch, plan, spool, rows)
    if only in (None, "end-to-end"):
        timed = command_measurements(server, scratch, plan, work, rows)
        # Generation first among the database-side measurements, as it always was.
        measurements = {"generation": timed.pop("generation"), **measurements, **timed}
    if only is None:
        measurements["end_to_end_long"] = _long_run(server, scratch, plan, work)
    return facts, rows, {**page, **measurements}


def _server_facts(server: Server, scratch: Scratch) -> dict[str, str]:
    name = scratch.fresh("facts", schema=False)
    connection = server.connect(name)
    try:
        return server_facts(connection)
    finally:
        connection.close()
        scratch.drop(name)


def command_measurements(server: Server, scratch: Scratch, plan: Plan, work: Path,
                         rows: int) -> dict[str, Measurement]:
    """The command and, in turn with it so that they share the machine's state: generation
    alone, the command without slices and without rollups (variant.py). What the database
    side, slices and rollups each cost. Generation sits next to the command, so that every
    repeat's two runs follow each other, whichever order in_turn gives them."""
    short = plan.short
    runs = [("generation", short, None, ""),
            ("end_to_end", short, None, ""),
            ("end_to_end_one_transaction", short, "one-transaction",
             ", one transaction a participant"),
            ("end_to_end_no_rollups", short, "no-rollups", ", no rollups")]
    timed: dict[str, list[Measurement]] = {key: [] for key, *_ in runs}
    for attempt in range(plan.command_repeat):
        for key, workload, variant, what in in_turn(runs, attempt):
            if key == "generation":
                timed[key].append(_generation(workload, work / f"{key}-{attempt}", rows))
                continue
            label = (f"end to end, {len(workload.participants)} x {workload.days:g} days "
                     f"(ingest.py{what})")
            name = scratch.fresh(key)
            server.checkpoint()
            measured = measure.end_to_end(server, name, workload, plan.batch_rows,
                                          work / f"{key}-{attempt}", label, variant)
            if measured.rows != rows:
                raise BenchError(f"ingest.py stored {measured.rows} rows; generation made {rows}")
            measure.check_variant(server, name, variant, len(workload.participants))
            timed[key].append(measured)
            scratch.drop(name)
    return {key: _done(fastest(samples)) for key, samples in timed.items()}


def _long_run(server: Server, scratch: Scratch, plan: Plan, work: Path) -> Measurement:
    """The command on the long workload, for its peak RSS against the short one's."""
    label = f"end to end, {len(plan.long.participants)} x {plan.long.days:g} days (ingest.py)"
    samples = []
    for attempt in range(plan.repeat):
        name = scratch.fresh("end_to_end_long")
        server.checkpoint()
        samples.append(measure.end_to_end(server, name, plan.long, plan.batch_rows,
                                          work / f"end_to_end_long-{attempt}", label))
        scratch.drop(name)
    return _done(fastest(samples))


def _generation(workload: Workload, workdir: Path, rows: int) -> Measurement:
    measured = measure.generation_alone(
        workload, workdir, "generation only (wearipedia + transform, a process of its own)")
    if measured.rows != rows:
        raise BenchError(f"generation.py made {measured.rows} rows; the spool holds {rows}")
    return measured


def _original(server: Server, scratch: Scratch, plan: Plan, spool: Spool,
              rows: int) -> Measurement:
    """The design the writer replaced (measure.original_design)."""
    samples = []
    for _ in range(plan.repeat):
        name = scratch.fresh("original")
        server.checkpoint()
        samples.append(_checked(measure.original_design(server, name, plan.short, spool),
                                server, name, rows))
        scratch.drop(name)
    return _done(fastest(samples))


def google_page_measurements(repeat: int) -> dict[str, Measurement]:
    """The client's CPU for a real Google page against json.loads of its bytes (google_page.py);
    no database. Both sides are taken in turn in every repeat, so their paired median is
    printed too."""
    cost = google_page.measure(repeat)
    both = {
        "google_page": Measurement(
            f"Google page, {cost.points:,} heart-rate points: parse, transform, COPY text (CPU)",
            cost.points, cost.client_seconds,
            details={"us_per_point": round(cost.us_per_point, 3), "page_bytes": cost.page_bytes,
                     "samples_seconds": [round(s, 5) for s in cost.client_samples]}),
        "json_loads": Measurement(
            "the same page's bytes through json.loads (CPU)", cost.points,
            cost.json_loads_seconds,
            details={"us_per_point": round(cost.json_loads_seconds / cost.points * 1e6, 3),
                     "samples_seconds": [round(s, 5) for s in cost.json_loads_samples]}),
    }
    log.info("Google page: %.1f ms (%.2f us a point), json.loads %.1f ms: %.2f",
             cost.client_seconds * 1000, cost.us_per_point, cost.json_loads_seconds * 1000,
             cost.ratio)
    return both


def writer_measurements(server: Server, scratch: Scratch, plan: Plan, spool: Spool,
                        rows: int) -> dict[str, Measurement]:
    """The writer alone on the spooled rows, in turn with plain COPY of the same rows: a
    first load in slices and its rerun, and a first load in one transaction a participant.
    COPY sits next to the sliced load, so that each repeat's pair follows each other."""
    copies: list[Measurement] = []
    loads: list[Measurement] = []
    reruns: list[Measurement] = []
    whole: list[Measurement] = []

    def plain_copy() -> None:
        name = scratch.fresh("copy")
        server.checkpoint()
        copies.append(_checked(measure.plain_copy(server, name, spool), server, name, rows))
        scratch.drop(name)

    def sliced() -> None:
        name = scratch.fresh("writer")
        server.checkpoint()
        loads.append(_checked(
            measure.project_writer(server, name, plan.short, spool, plan.batch_rows,
                                   "writer, empty table"),
            server, name, rows,
        ))
        server.checkpoint()
        rerun = measure.project_writer(server, name, plan.short, spool, plan.batch_rows,
                                       "writer, full table (rerun)")
        if rerun.written:
            raise BenchError(f"the rerun wrote {rerun.written} rows; it must write none")
        reruns.append(_checked(rerun, server, name, rows))
        scratch.drop(name)

    def whole_window() -> None:
        name = scratch.fresh("writer_whole")
        server.checkpoint()
        whole.append(_checked(
            measure.project_writer(server, name, plan.short, spool, plan.batch_rows,
                                   "writer, empty table, one transaction a participant",
                                   one_transaction=True),
            server, name, rows,
        ))
        scratch.drop(name)

    for attempt in range(plan.repeat):
        for take in in_turn([plain_copy, sliced, whole_window], attempt):
            take()
    return {"copy": _done(fastest(copies)), "writer": _done(fastest(loads)),
            "writer_rerun": _done(fastest(reruns)),
            "writer_one_transaction": _done(fastest(whole))}


def in_turn(items: Sequence[T], attempt: int) -> list[T]:
    """The measurements compared in pairs, forwards in even repeats and backwards in odd
    ones: the run that goes first in a pair tends to be the slower one (docs/performance.md,
    "Slices"), and a fixed order would give that to the same side every time. An even
    --repeat gives each side first place equally often."""
    return list(items) if attempt % 2 == 0 else list(reversed(items))


def fastest(samples: list[Measurement]) -> Measurement:
    """The fastest of the repeats: the others lost time to something else on the machine."""
    best = min(samples, key=lambda m: m.seconds)
    if len(samples) > 1:
        best.details["samples_seconds"] = [round(m.seconds, 3) for m in samples]
    return best


def workload_facts(plan: Plan, rows: int) -> dict[str, object]:
    short, long = plan.short, plan.long
    return {
        "participants": len(short.participants),
        "days": short.days,
        "start": short.start.isoformat(),
        "end": short.end.isoformat(),
        "timezone": short.participants[0].timezone,
        "rows": rows,
        "long_participants": len(long.participants),
        "long_days": long.days,
        "batch_rows": plan.batch_rows,
        "repeat": plan.repeat,
        "command_repeat": plan.command_repeat,
    }


def _checked(measured: Measurement, server: Server, dbname: str, expected: int) -> Measurement:
    stored = measure.count_rows(server, dbname)
    if stored != expected:
        raise BenchError(f"{measured.label}: raw_data holds {stored} rows, expected {expected}")
    return measured


def _done(measured: Measurement) -> Measurement:
    log.info("%s: %d rows in %.1f s, %.0f rows/s%s", measured.label, measured.rows,
             measured.seconds, measured.rows_per_second,
             "" if measured.peak_rss_kib is None
             else f", peak RSS {measured.peak_rss_kib / 1024:.0f} MiB")
    return measured


if __name__ == "__main__":
    sys.exit(main())
