"""Workers at scale: Google participants against the fake with latency, synthetic ones on
two cores, memory per worker, and a projection to 1,000 and 10,000 participants.

    python bench/scale.py [--participants 200] [--latency 0.15] [--workers 1,8,32] ...

`make bench-scale` runs it on the local TimescaleDB. Every run is the real command
(ingest.py) in a fresh database. It prints tables and writes bench/scale-results.json.

Google: each participant has 4 days to load (NIGHT_DAYS; a night with the device-sync
scope re-reads 2-3, one without it 8-9: docs/google-health-notes.md), from the fake server
(tests/fake_google_health.py) with `--latency` seconds a page plus size / `--mb-per-second`.
Heart rate is served at one point a minute in pages of 160 points, so a day is 9 pages of
heart rate, as a real 1 Hz day is, without the 1 Hz payloads, whose parsing would make this shared
2-core machine measure its CPU instead of the workers. That CPU is measured separately
(`client CPU per real page`) and enters the projection.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ingestion"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_google_health import (  # noqa: E402  (tests/ is on the path only from here)
    EVERYONE,
    FakeGoogleHealth,
    active_zone_minutes,
    daily_respiratory_rate,
    heart_rate,
    heart_rate_variability,
    most_in_any_window,
    oxygen_saturation,
    respiratory_rate_sleep_summary,
    steps,
)
from ingester import db  # noqa: E402
from ingester.model import GOOGLE_HEALTH, Participant, ReadReport  # noqa: E402
from ingester.sources.google_health import credentials  # noqa: E402
from ingester.sources.google_health.quota import Limit, Pacer  # noqa: E402
from ingester.sources.google_health.transform import DATA_TYPES, rows_from_page  # noqa: E402

from bench import report  # noqa: E402
from bench.databases import Scratch, Server, server_facts  # noqa: E402

PEAK_RSS = ROOT / "bench" / "peak_rss.py"
INGEST = ROOT / "ingestion" / "ingest.py"
DEFAULT_JSON = ROOT / "bench" / "scale-results.json"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
NIGHT_DAYS = 4  # days a participant loads per night here (docs/performance.md, "Workers at scale")
PAGE_POINTS = 160  # heart rate at 1/min: 1,440 points a day in 9 pages, as 1 Hz in pages of 10k
REAL_PAGE_POINTS = 10_000
# The writer's rate on the re-read path (rows already stored: upsert, 0 written), from
# `make bench` (docs/performance.md: 3b): what each real heart-rate row costs the database.
WRITER_RERUN_ROWS_PER_SECOND = 195_889
NIGHT_TARGET = 30 * 60  # seconds: the target for 1,000 verified participants
VERIFIED = (300, 120_000)
UNVERIFIED = (150, 15_000)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n\n")[0])
    main.add_argument("--participants", type=int, default=200)
    main.add_argument("--serial-sample", type=int, default=20,
                      help="participants of the WORKERS=1 run (serial: its time is linear in "
                      "the cohort, so it is scaled up; default 20)")
    main.add_argument("--workers", default="1,8,32")
    main.add_argument("--latency", type=float, default=0.15, help="seconds a page (0.15)")
    main.add_argument("--mb-per-second", type=float, default=10.0,
                      help="transfer rate of the fake's replies (10 MB/s)")
    main.add_argument("--unverified", action="store_true",
                      help="an unverified app's limits (150/min a user, 15,000/min in all)")
    main.add_argument("--synthetic-participants", type=int, default=4)
    main.add_argument("--synthetic-days", type=int, default=3)
    main.add_argument("--memory-participants", type=int, default=8,
                      help="synthetic participants of the WORKERS=8 process run (memory)")
    main.add_argument("--skip", default="", help="comma list of parts to skip: "
                      "google,synthetic,memory")
    main.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return main


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float
    worker_rss_mib: list[float]
    exit: int
    stderr: str
    parent_rss_mib: float  # the run's own process, without its worker processes
    run_seconds: float  # from the cohort to the summary: the command without its start-up
    db_seconds: float = 0.0


def run_ingest(env: dict[str, str], work: Path) -> Run:
    report_file = work / "rss.json"
    done = subprocess.run(
        [sys.executable, str(PEAK_RSS), str(report_file), sys.executable, str(INGEST),
         "--now", NOW.isoformat()],
        env=env, cwd=work, capture_output=True, text=True, timeout=7200,
    )
    facts = json.loads(report_file.read_text())
    workers = [float(m) for m in re.findall(r"participants, peak RSS (\d+) MiB", done.stderr)]
    parent = re.search(r"peak RSS (\d+) MiB \(this process\)", done.stderr)
    finished = re.search(r"run finished: .* in ([\d.]+) s", done.stderr)
    if facts["exit"] != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    return Run(facts["seconds"], facts["peak_rss_kib"] / 1024, workers, facts["exit"],
               done.stderr, float(parent.group(1)) if parent else 0.0,
               float(finished.group(1)) if finished else facts["seconds"])


def base_env(server: Server, dbname: str, work: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "STATE_FILE": str(work / "state" / "last_run.json"), "LOG_LEVEL": "INFO",
           "DEMO_COHORT": "false", **server.env(dbname)}
    env.update(extra)
    return env


# --- Google ------------------------------------------------------------------------------


def night(fake: FakeGoogleHealth) -> None:
    """The same night for every user (EVERYONE): a load measurement, where whose values
    they are does not matter and one copy keeps the fake's memory flat at any cohort size."""
    start = NOW - timedelta(days=NIGHT_DAYS)
    minutes = NIGHT_DAYS * 1440
    fake.max_page_size = PAGE_POINTS
    fake.add("heart-rate", [heart_rate(start + timedelta(minutes=m), 60 + m % 40)
                            for m in range(minutes)], user=EVERYONE)
    for day in range(NIGHT_DAYS):
        at = start + timedelta(days=day)
        for data_type, points in (
            ("steps", [steps(at + timedelta(hours=9, minutes=m), 20 + m) for m in range(30)]),
            ("oxygen-saturation", [oxygen_saturation(at + timedelta(hours=3), 96.0)]),
            ("heart-rate-variability", [heart_rate_variability(at + timedelta(hours=3), 40)]),
            ("active-zone-minutes", [active_zone_minutes(at + timedelta(hours=18), 2)]),
            ("respiratory-rate-sleep-summary",
             [respiratory_rate_sleep_summary(at + timedelta(hours=5), 15.0)]),
            ("daily-respiratory-rate", [daily_respiratory_rate(at.date(), 15.0)]),
        ):
            fake.add(data_type, points, user=EVERYONE)


def google_run(server: Server, scratch: Scratch, fake: FakeGoogleHealth, participants: int,
               workers: int, limits: tuple[int, int], work: Path, kind: str = "process"
               ) -> dict:
    tag = f"w{workers}{kind[0]}"
    dbname = scratch.fresh(f"google_{tag}")
    connection = server.connect(dbname)
    try:
        for i in range(participants):
            pid = f"{tag}-p{i:05d}"
            credentials.enrol(connection, pid, "UTC", (NOW - timedelta(days=NIGHT_DAYS)).date(),
                              fake.add_user(pid))
    finally:
        connection.close()
    began = time.time()
    run_dir = work / f"google_{tag}"
    run_dir.mkdir()
    result = run_ingest(base_env(
        server, dbname, run_dir, WORKERS=str(workers), GOOGLE_HEALTH_URL=fake.url,
        GOOGLE_TOKEN_URL=fake.token_url, GOOGLE_CLIENT_ID=fake.client_id,
        GOOGLE_CLIENT_SECRET=fake.client_secret,
        GOOGLE_USER_REQUESTS_PER_MINUTE=str(limits[0]),
        GOOGLE_PROJECT_REQUESTS_PER_MINUTE=str(limits[1]), WORKER_KIND=kind,
    ), run_dir)
    api = [s for s in fake.api_requests() if s.at >= began and s.user
           and s.user.startswith(f"{tag}-")]
    by_user: dict[str, list[float]] = defaultdict(list)
    for seen in api:
        by_user[seen.user].append(seen.at)
    scratch.drop(dbname)
    return {
        "workers": workers, "kind": kind, "participants": participants, "exit": result.exit,
        "seconds": round(result.seconds, 2), "run_seconds": round(result.run_seconds, 2),
        "requests": len(api),
        "requests_per_participant": round(len(api) / participants, 1),
        "max_user_requests_in_60s": max((most_in_any_window(t) for t in by_user.values()),
                                        default=0),
        "max_project_requests_in_60s": most_in_any_window([s.at for s in api]),
        "peak_rss_mib": round(result.parent_rss_mib + sum(result.worker_rss_mib)
                              if kind == "process" and workers > 1 else result.peak_rss_mib, 1),
        "worker_rss_mib": result.worker_rss_mib,
    }


def ideal_seconds(participants: int, requests_each: float, page_seconds: float, workers: int,
                  limits: tuple[int, int]) -> float:
    """requests x latency / workers, but never faster than the quotas allow."""
    user, project = Limit(limits[0]), Limit(limits[1])
    per_participant = max(requests_each * page_seconds,
                          max(0.0, requests_each - user.burst - 1) * user.spacing)
    by_workers = participants * per_participant / workers
    by_project = max(0.0, participants * requests_each - project.burst - 1) * project.spacing
    return max(by_workers, by_project)


def client_cpu_per_real_page() -> tuple[float, int]:
    """Seconds of client CPU to parse and flatten one full 10,000-point heart-rate page."""
    start = NOW - timedelta(days=1)
    page = json.dumps({"dataPoints": [heart_rate(start + timedelta(seconds=s), 60 + s % 40)
                                      for s in range(REAL_PAGE_POINTS)]}).encode()
    participant = Participant("p", "UTC", GOOGLE_HEALTH, date(2026, 1, 1))
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        rows, _ = rows_from_page(json.loads(page), DATA_TYPES["heart-rate"], participant,
                                 ReadReport())
        for _row in rows:
            pass
        best = min(best, time.process_time() - began)
    return best + REAL_PAGE_POINTS / WRITER_RERUN_ROWS_PER_SECOND, len(page)


def pacer_overhead(server: Server, scratch: Scratch) -> float:
    """Seconds per request the pacer adds (the project's reservation in the database), no
    waiting."""
    dbname = scratch.fresh("pacer")
    pacer = Pacer(lambda: server.connect(dbname), Limit(10**9), Limit(10**9),
                  sleep=lambda _s: None)
    pacer.acquire("warm-up")
    count = 1000
    began = time.perf_counter()
    for i in range(count):
        pacer.acquire(f"p{i % 50}")
    seconds = (time.perf_counter() - began) / count
    pacer.close()
    scratch.drop(dbname)
    return seconds


# --- synthetic ---------------------------------------------------------------------------


def synthetic_run(server: Server, scratch: Scratch, participants: int, days: int, workers: int,
                  work: Path, kind: str = "process") -> tuple[Run, int]:
    dbname = scratch.fresh(f"synthetic_w{workers}_{kind}_{participants}")
    connection = server.connect(dbname)
    try:
        db.add_participants(connection, [
            Participant(f"s{i}", "Europe/Berlin", "synthetic", (NOW - timedelta(days=days)).date(),
                        i + 1)
            for i in range(participants)
        ])
    finally:
        connection.close()
    run_dir = work / dbname
    run_dir.mkdir()
    result = run_ingest(base_env(server, dbname, run_dir, WORKERS=str(workers),
                                 WORKER_KIND=kind), run_dir)
    connection = server.connect(dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM raw_data")
            (rows,) = cursor.fetchone()
            # The database's own share: the same rows inserted server-side into an empty
            # copy of raw_data (unique key, hypertable), no client, no generation.
            cursor.execute("CREATE TABLE ceiling (LIKE raw_data INCLUDING ALL)")
            cursor.execute("SELECT create_hypertable('ceiling', by_range('timestamp', "
                           "INTERVAL '1 day'))")
            connection.commit()
            began = time.perf_counter()
            cursor.execute("INSERT INTO ceiling SELECT * FROM raw_data")
            connection.commit()
            db_seconds = time.perf_counter() - began
    finally:
        connection.close()
    scratch.drop(dbname)
    result.db_seconds = db_seconds
    return result, rows


# --- the whole -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    skip = set(filter(None, arguments.skip.split(",")))
    limits = UNVERIFIED if arguments.unverified else VERIFIED
    counts = [int(w) for w in arguments.workers.split(",")]
    server = Server.from_environment(os.environ)
    doc: dict = {"limits_per_minute": {"user": limits[0], "project": limits[1]},
                 "latency_seconds": arguments.latency, "mb_per_second": arguments.mb_per_second}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, Scratch(server) as scratch:
        work = Path(tmp)
        connection = server.connect(scratch.fresh("facts", schema=False))
        doc["machine"] = report.machine(server_facts(connection))
        connection.close()
        if "google" not in skip:
            doc["google"] = google_part(arguments, server, scratch, counts, limits, work)
        if "synthetic" not in skip:
            doc["synthetic"] = synthetic_part(arguments, server, scratch, work)
        if "memory" not in skip:
            doc["memory"] = memory_part(arguments, server, scratch, work)
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(tables(doc))
    print(f"\nresults written to {arguments.json}", file=sys.stderr)
    return 0


def google_part(arguments, server, scratch, counts, limits, work) -> dict:
    runs = []
    with FakeGoogleHealth(latency=arguments.latency,
                          bytes_per_second=arguments.mb_per_second * 1e6) as fake:
        night(fake)
        for workers in counts:
            n = arguments.serial_sample if workers == 1 else arguments.participants
            print(f"google: WORKERS={workers}, {n} participants ...", file=sys.stderr)
            runs.append(google_run(server, scratch, fake, n, workers, limits, work))
            if workers == 8:
                print("google: WORKERS=8 as threads ...", file=sys.stderr)
                runs.append(google_run(server, scratch, fake, n, 8, limits, work, "thread"))
    first_page = fake.data[EVERYONE]["heart-rate"][:PAGE_POINTS]
    page_bytes_here = len(json.dumps({"dataPoints": first_page}))
    page_seconds = arguments.latency + page_bytes_here / (arguments.mb_per_second * 1e6)
    n = arguments.participants
    for run in runs:
        # the serial run's time per participant, for the whole cohort (without the
        # command's start-up, which does not grow with the cohort)
        startup = run["seconds"] - run["run_seconds"]
        run["seconds_for_cohort"] = round(startup + run["run_seconds"] * n / run["participants"],
                                          1)
        run["ideal_seconds"] = round(ideal_seconds(
            n, run["requests_per_participant"], page_seconds, run["workers"], limits), 1)
    serial = next((r for r in runs if r["workers"] == 1), None)
    processes = [r for r in runs if r["kind"] == "process"]
    if serial:
        for run in runs:
            measured = serial["seconds_for_cohort"] / run["seconds_for_cohort"]
            ideal = serial["ideal_seconds"] / run["ideal_seconds"]
            run["speedup"] = round(measured, 2)
            run["ideal_speedup"] = round(ideal, 2)
            run["of_ideal"] = round(measured / ideal, 2)
    cpu_page, page_bytes = client_cpu_per_real_page()
    overhead = pacer_overhead(server, scratch)
    best = min(processes or runs, key=lambda r: r["seconds_for_cohort"])
    projections = []
    for cohort in (1_000, 10_000):
        for name, lim in (("verified", VERIFIED), ("unverified", UNVERIFIED)):
            if name == "unverified" and cohort > 100:
                projections.append({"participants": cohort, "app": name,
                                    "minutes": None, "why": "an unverified app has at most "
                                    "100 users"})
                continue
            per_worker = best["seconds_for_cohort"] * best["workers"] / n  # s per participant
            requests = cohort * best["requests_per_participant"]
            project = Limit(lim[1])
            io = cohort * per_worker / best["workers"]
            quota = requests * project.spacing
            # real 1 Hz pages: 36 heart-rate pages a night of client CPU; worker processes
            # spread it over the cores (threads would keep it on one)
            cpu = cohort * 36 * cpu_page
            cores = os.cpu_count() or 1
            projections.append({
                "participants": cohort, "app": name, "workers": best["workers"],
                "seconds_per_participant": round(per_worker, 2),
                "io_minutes": round(io / 60, 1), "project_quota_minutes": round(quota / 60, 1),
                "client_cpu_minutes_one_core": round(cpu / 60, 1),
                "workers_for_30_min": -(-int(cohort * per_worker) // NIGHT_TARGET),
                "cores_for_30_min": -(-int(cpu) // NIGHT_TARGET),
                "cores_here": cores,
                "minutes": round(max(io, quota, cpu / cores) / 60, 1),
            })
    return {"runs": runs, "page_seconds": round(page_seconds, 4),
            "client_cpu_per_real_page_seconds": round(cpu_page, 4),
            "real_page_bytes": page_bytes,
            "pacer_seconds_per_request": round(overhead, 6), "projections": projections}


def synthetic_part(arguments, server, scratch, work) -> dict:
    out = {}
    for workers in (1, 2):
        print(f"synthetic: WORKERS={workers} ...", file=sys.stderr)
        run, rows = synthetic_run(server, scratch, arguments.synthetic_participants,
                                  arguments.synthetic_days, workers, work)
        out[f"w{workers}"] = {"seconds": round(run.seconds, 1),
                              "run_seconds": round(run.run_seconds, 1), "rows": rows,
                              "exit": run.exit,
                              "db_seconds": round(run.db_seconds, 1),
                              "peak_rss_mib": round(run.peak_rss_mib, 1)}
    print("synthetic: WORKERS=2 as threads ...", file=sys.stderr)
    run, rows = synthetic_run(server, scratch, arguments.synthetic_participants,
                              arguments.synthetic_days, 2, work, kind="thread")
    out["w2_threads"] = {"seconds": round(run.seconds, 1), "rows": rows, "exit": run.exit}
    w1, w2 = out["w1"]["seconds"], out["w2"]["seconds"]
    out["speedup"] = round(w1 / w2, 2)
    out["speedup_threads"] = round(w1 / out["w2_threads"]["seconds"], 2)
    # With the database free, two cores give 2x; the database's share does not shrink with
    # more generators on the same two cores, so the ceiling is w1 / max(w1 / 2, db).
    out["ceiling"] = round(w1 / max(w1 / 2, out["w1"]["db_seconds"]), 2)
    return out


def memory_part(arguments, server, scratch, work) -> dict:
    print("memory: WORKERS=8 processes ...", file=sys.stderr)
    run, rows = synthetic_run(server, scratch, arguments.memory_participants, 1, 8, work)
    return {"kind": "process", "workers": 8, "participants": arguments.memory_participants,
            "worker_peak_rss_mib": run.worker_rss_mib,
            "parent_peak_rss_mib": round(run.parent_rss_mib, 1),
            "whole_run_mib": round(run.parent_rss_mib + sum(run.worker_rss_mib), 1),
            "seconds": round(run.seconds, 1), "exit": run.exit}


def tables(doc: dict) -> str:
    lines = ["| machine | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in doc["machine"].items()]
    g = doc.get("google")
    if g:
        lim = doc["limits_per_minute"]
        lines += ["", f"Google: {g['runs'][-1]['participants']} participants x 1 night, "
                  f"{doc['latency_seconds']} s a page + size at {doc['mb_per_second']} MB/s, "
                  f"limits {lim['user']}/min a user, {lim['project']:,}/min in all; pacer "
                  f"{g['pacer_seconds_per_request'] * 1000:.2f} ms a request.", "",
                  "| WORKERS | kind | measured on | s | s for the cohort | ideal s | speedup | "
                  "ideal speedup | of ideal | requests | max/user/60 s | max/project/60 s | "
                  "peak RSS MiB |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                  "| ---: | ---: |"]
        for r in g["runs"]:
            lines.append(
                f"| {r['workers']} | {r['kind']} | {r['participants']} | {r['seconds']:.1f} | "
                f"{r['seconds_for_cohort']:.1f} | {r['ideal_seconds']:.1f} | "
                f"{r.get('speedup', '')} | {r.get('ideal_speedup', '')} | "
                f"{r.get('of_ideal', '')} | {r['requests']:,} | {r['max_user_requests_in_60s']} "
                f"| {r['max_project_requests_in_60s']:,} | {r['peak_rss_mib']:.0f} |")
        lines += ["", f"Client CPU per real 10,000-point page (parse, flatten, write): "
                  f"{g['client_cpu_per_real_page_seconds'] * 1000:.0f} ms "
                  f"({g['real_page_bytes'] / 1e6:.1f} MB).", "",
                  "| n | app | I/O min at WORKERS=W | project quota min | client CPU min "
                  "(one core) | night min here (W, all cores) | workers for < 30 min | cores "
                  "for < 30 min |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for p in g["projections"]:
            if p["minutes"] is None:
                lines.append(f"| {p['participants']:,} | {p['app']} | | | | {p['why']} | | |")
                continue
            lines.append(f"| {p['participants']:,} | {p['app']} | {p['io_minutes']} "
                         f"(W={p['workers']}) | {p['project_quota_minutes']} | "
                         f"{p['client_cpu_minutes_one_core']} | {p['minutes']} "
                         f"({p['cores_here']} cores) | {p['workers_for_30_min']} | "
                         f"{p['cores_for_30_min']} |")
    s = doc.get("synthetic")
    if s:
        lines += ["", "| synthetic | seconds | rows | database alone s |",
                  "| --- | ---: | ---: | ---: |",
                  f"| WORKERS=1 | {s['w1']['seconds']} | {s['w1']['rows']:,} | "
                  f"{s['w1']['db_seconds']} |",
                  f"| WORKERS=2 (processes) | {s['w2']['seconds']} | {s['w2']['rows']:,} | |",
                  f"| WORKERS=2 (threads) | {s['w2_threads']['seconds']} | "
                  f"{s['w2_threads']['rows']:,} | |",
                  "", f"Speedup {s['speedup']} with processes ({s['speedup_threads']} with "
                  f"threads); ceiling {s['ceiling']} (target >= 1.5)."]
    m = doc.get("memory")
    if m:
        each = ", ".join(f"{x:.0f}" for x in m["worker_peak_rss_mib"])
        lines += ["", f"Memory, WORKERS=8 {m['kind']}es, {m['participants']} synthetic "
                  f"participants: per worker {each} MiB; parent {m['parent_peak_rss_mib']:.0f} "
                  f"MiB; whole run {m['whole_run_mib']:.0f} MiB."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
