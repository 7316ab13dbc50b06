"""Workers at scale: Google participants against the fake with latency, synthetic ones on
two cores, memory per worker, and a projection to 1,000 and 10,000 participants.

    python bench/scale.py [--participants 200] [--latency 0.15] [--workers 1,8,32] ...

`make bench-scale` runs it on the local TimescaleDB. Every run is the real command
(ingest.py) in a fresh database. It prints tables and writes bench/scale-results.json.

Google: each participant has 3 days to load (NIGHT_DAYS: a night with the device-sync
scope re-reads 2-3 days in one slice, one without it 8-9 in 2-3: docs/google-health-notes.md), from
the fake server (tests/fake_google_health.py) with `--latency` seconds a page plus size /
`--mb-per-second`, every data type a slice, the activity by roll-up, plus the device list.
Heart rate is served at one point a minute in pages of 160 points, so a day is 9 pages of
heart rate, as a real 1 Hz day is, without the 1 Hz payloads, whose parsing would make this
shared 2-core machine measure its CPU instead of the workers. The projection (NightModel)
takes a worker's time per participant from those runs (the real request count), the real
pages' transfer time, and the CPU of each real 1 Hz page as `make bench` measures it
(bench/google_page.py) plus the database's share of its rows and the pacer's per request.
Then the anchor: `--slice-participants` (20) at 1 Hz, real 10,000-point pages through the
fake with its latency, at `--slice-workers` (8), measured beside what the model projects
for that slice.
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ingestion"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_google_health import (  # noqa: E402  (tests/ is on the path only from here)
    EVERYONE,
    MAX_PAGE_SIZE,
    WEARABLE,
    FakeGoogleHealth,
    active_zone_minutes,
    daily_respiratory_rate,
    heart_rate,
    heart_rate_variability,
    most_in_any_window,
    oxygen_saturation,
    parse_filter,
    respiratory_rate_sleep_summary,
    steps,
)
from ingester import db  # noqa: E402
from ingester.model import Participant  # noqa: E402
from ingester.sources.google_health import credentials  # noqa: E402
from ingester.sources.google_health.quota import Limit, Pacer  # noqa: E402

from bench import google_page, report  # noqa: E402
from bench.databases import Scratch, Server, server_facts  # noqa: E402

PEAK_RSS = ROOT / "bench" / "peak_rss.py"
INGEST = ROOT / "ingestion" / "ingest.py"
DEFAULT_JSON = ROOT / "bench" / "scale-results.json"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
# Days a participant loads per night here: a night with the device-sync scope re-reads 2-3
# days in one slice (docs/google-health-notes.md); 3 is its longer end, and a fresh
# participant's first load of 3 days takes the same one slice (windows.FIRST_SLICE_DAYS).
NIGHT_DAYS = 3
PAGE_POINTS = 160  # heart rate at 1/min: 1,440 points a day in 9 pages, as 1 Hz in pages of 10k
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
    main.add_argument("--slice-participants", type=int, default=20,
                      help="participants of the measured 1 Hz slice that anchors the "
                      "projection (default 20)")
    main.add_argument("--slice-workers", type=int, default=8)
    main.add_argument("--skip", default="", help="comma list of parts to skip: "
                      "google,slice,synthetic,memory")
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
    cpu_seconds: float = 0.0  # the command's and its worker processes' (not the server's)


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
               float(finished.group(1)) if finished else facts["seconds"],
               cpu_seconds=facts.get("cpu_seconds", 0.0))


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
    other_streams(fake)


def other_streams(fake: FakeGoogleHealth) -> None:
    """The night's points of every type but heart rate (a few a day, as a tracker's)."""
    start = NOW - timedelta(days=NIGHT_DAYS)
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
               workers: int, limits: tuple[int, int], work: Path, kind: str = "process",
               tag: str = "") -> dict:
    tag = f"{tag}w{workers}{kind[0]}"
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
    bench_cpu = time.process_time()  # this process: the fake serving the run
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
    heart_pages = sum("/dataTypes/heart-rate/" in seen.path for seen in api)
    fake_cpu = time.process_time() - bench_cpu
    scratch.drop(dbname)
    return {
        "workers": workers, "kind": kind, "participants": participants, "exit": result.exit,
        "seconds": round(result.seconds, 2), "run_seconds": round(result.run_seconds, 2),
        "requests": len(api),
        "requests_per_participant": round(len(api) / participants, 1),
        "heart_rate_pages_per_participant": round(heart_pages / participants, 1),
        "cpu_seconds": round(result.cpu_seconds, 1), "fake_cpu_seconds": round(fake_cpu, 1),
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


def client_cpu_per_real_page() -> google_page.PageCost:
    """The client's CPU for one real 10,000-point heart-rate page, bytes to COPY text
    (bench/google_page.py, as `make bench` measures it)."""
    return google_page.measure(repeat=9)


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
            if "slice" not in skip:
                doc["google"]["slice"] = slice_part(arguments, server, scratch, limits, work,
                                                    doc["google"])
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
    page = client_cpu_per_real_page()
    overhead = pacer_overhead(server, scratch)
    best = min(processes or runs, key=lambda r: r["seconds_for_cohort"])
    models = {run["workers"]: night_model(run, n, page, page_bytes_here, overhead, arguments)
              for run in reversed(runs) if run["kind"] == "process"}
    model = models[best["workers"]]
    cores = os.cpu_count() or 1
    projections = []
    for cohort in (1_000, 10_000):
        for name, lim in (("verified", VERIFIED), ("unverified", UNVERIFIED)):
            if name == "unverified" and cohort > 100:
                projections.append({"participants": cohort, "app": name,
                                    "minutes": None, "why": "an unverified app has at most "
                                    "100 users"})
                continue
            night_cost = model.night(cohort, best["workers"], cores, lim)
            projections.append({
                "participants": cohort, "app": name, "workers": best["workers"],
                "seconds_per_participant": round(model.io_seconds, 2),
                "io_minutes": round(night_cost["io"] / 60, 1),
                "project_quota_minutes": round(night_cost["quota"] / 60, 1),
                "client_cpu_minutes_one_core": round(night_cost["cpu"] * cores / 60, 1),
                "workers_for_30_min": -(-int(cohort * model.io_seconds) // NIGHT_TARGET),
                "cores_for_30_min": -(-int(cohort * model.cpu_seconds) // NIGHT_TARGET),
                "cores_here": cores,
                "minutes": round(night_cost["night"] / 60, 1),
            })
    return {"runs": runs, "page_seconds": round(page_seconds, 4),
            "client_cpu_per_real_page_seconds": round(page.client_seconds, 4),
            "google_page_vs_json_loads": round(page.ratio, 3),
            "client_us_per_point": round(page.us_per_point, 3),
            "real_page_bytes": page.page_bytes,
            "pacer_seconds_per_request": round(overhead, 6),
            "models": {str(w): m.as_dict() for w, m in models.items()},
            "projections": projections}


@dataclass(frozen=True)
class NightModel:
    """What one participant's night costs, from the measurements, for any cohort.

    io_seconds: a worker's wall time per participant, measured against the fake (its latency,
    the night's real request count, small heart-rate pages), plus the transfer of real 1 Hz
    pages in their place. cpu_seconds: the machine's CPU per participant: every heart-rate
    page at the client's measured cost (bytes to COPY text) plus the database's share of its
    rows (the writer's rate), and the pacer's statement for every request. The other
    requests' pages are a few points each."""

    io_seconds: float
    cpu_seconds: float
    requests: float
    heart_rate_pages: float
    startup_seconds: float

    def night(self, cohort: int, workers: int, cores: int, limits: tuple[int, int]
              ) -> dict[str, float]:
        """Seconds of a cohort's night: the slowest of I/O over the workers, CPU over the
        cores and the project's quota (worker processes spread the CPU over the cores)."""
        io = cohort * self.io_seconds / workers
        cpu = cohort * self.cpu_seconds / cores
        quota = cohort * self.requests * Limit(limits[1]).spacing
        return {"io": io, "cpu": cpu, "quota": quota,
                "night": self.startup_seconds + max(io, cpu, quota)}

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in self.__dict__.items()}


def night_model(run: dict, cohort: int, page: google_page.PageCost, small_page_bytes: int,
                pacer_seconds: float, arguments) -> NightModel:
    pages = run["heart_rate_pages_per_participant"]
    extra_transfer = pages * (page.page_bytes - small_page_bytes) / (arguments.mb_per_second
                                                                      * 1e6)
    database = google_page.PAGE_POINTS / WRITER_RERUN_ROWS_PER_SECOND
    return NightModel(
        io_seconds=run["seconds_for_cohort"] * run["workers"] / cohort + extra_transfer,
        cpu_seconds=pages * (page.client_seconds + database)
        + run["requests_per_participant"] * pacer_seconds,
        requests=run["requests_per_participant"],
        heart_rate_pages=pages,
        startup_seconds=run["seconds"] - run["run_seconds"],
    )


# --- the 1 Hz slice that anchors the projection -----------------------------------------


class OneHertz(Sequence):
    """The night's 1 Hz heart rate in [first, stop), newest first, as the fake's list of
    points: made a page at a time on request (the fake's own store would hold 260,000
    points and scan them all for every page)."""

    def __init__(self, first: datetime, stop: datetime) -> None:
        self._first, self._stop = first, stop
        self._count = max(0, int((stop - first).total_seconds()))

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # the fake takes slices only
        assert isinstance(index, slice) and index.step is None
        start, stop, _ = index.indices(self._count)
        return list(one_hertz_points(self._stop, start, stop))


@lru_cache(maxsize=32)  # a night's 27 pages, made once (~10 MB each) for every participant
def one_hertz_points(stop: datetime, start: int, end: int) -> tuple[dict, ...]:
    """Points start..end (newest first) of the 1 Hz heart rate that ends at `stop`."""
    points = []
    for i in range(start, end):
        at = stop - timedelta(seconds=i + 1)
        second = int(at.timestamp())
        points.append({"name": f"users/me/dataTypes/heart-rate/dataPoints/{second}",
                       "dataSource": WEARABLE, **heart_rate(at, 55 + second % 50)})
    return tuple(points)


class OneHertzFake(FakeGoogleHealth):
    """The fake, its latency and transfer time, with every user's heart rate at 1 Hz over
    the night, in pages of up to 10,000 points."""

    def _list(self, data_type: str, query: dict[str, str], user: str | None
              ) -> tuple[int, dict]:
        if data_type != "heart-rate":
            return super()._list(data_type, query, user)
        try:
            bounds = parse_filter(query.get("filter", ""), "heart_rate", "sample")
            size = min(int(query.get("pageSize", 1440)), MAX_PAGE_SIZE)
        except ValueError:
            return super()._list(data_type, query, user)  # the fake's own error
        binding = [user, data_type, query.get("filter", ""), query.get("pageSize", "")]
        cursor = self._cursor(query.get("pageToken"), binding)
        if cursor is None or size <= 0:
            return super()._list(data_type, query, user)
        first, stop = NOW - timedelta(days=NIGHT_DAYS), NOW
        for op, literal in bounds:
            instant = datetime.fromisoformat(literal)
            first, stop = (max(first, instant), stop) if op == ">=" else (first, min(stop, instant))
        start, flip = cursor
        return 200, self._page("dataPoints", OneHertz(first, stop), start,  # type: ignore[arg-type]
                               size, flip, binding)


def slice_part(arguments, server, scratch, limits, work, google: dict) -> dict:
    """The real thing for a few participants: 1 Hz heart rate through the fake, with its
    latency, at --slice-workers, beside what the projection's model says of it."""
    n, workers = arguments.slice_participants, arguments.slice_workers
    print(f"google: 1 Hz slice, WORKERS={workers}, {n} participants ...", file=sys.stderr)
    with OneHertzFake(latency=arguments.latency,
                      bytes_per_second=arguments.mb_per_second * 1e6) as fake:
        other_streams(fake)
        run = google_run(server, scratch, fake, n, workers, limits, work, tag="hz")
    models = google["models"]
    model = NightModel(**models.get(str(workers), next(iter(models.values()))))
    cores = os.cpu_count() or 1
    projected = model.night(n, workers, cores, limits)
    run["projected_seconds"] = round(projected["night"], 1)
    run["projected"] = {key: round(value, 1) for key, value in projected.items()}
    # The client's CPU the model counts for the slice, against what the command and its
    # workers spent: the anchor that the machine's load does not move (its wall time it does).
    run["projected_client_cpu_seconds"] = round(
        n * model.heart_rate_pages * google["client_cpu_per_real_page_seconds"], 1)
    # The fake serialises every page in this process, on the same cores: CPU a real night
    # does not spend here (Google's servers do), which the slice pays.
    with_fake = model.startup_seconds + max(
        projected["io"], projected["cpu"] + run["fake_cpu_seconds"] / cores, projected["quota"])
    run["projected_with_fake_seconds"] = round(with_fake, 1)
    run["calibrated"] = calibrated(google, run, limits, cores)
    return run


def calibrated(google: dict, hz: dict, limits: tuple[int, int], cores: int) -> list[dict]:
    """The night of 1,000 and 10,000 again, with the client's CPU a heart-rate page taken
    from the slice: all the command and its workers spent, over its heart-rate pages (the
    HTTP reads, the guard, the writer's loop, the other requests and the workers' start-up
    on top of what `make bench` times)."""
    best = min((r for r in google["runs"] if r["kind"] == "process"),
               key=lambda r: r["seconds_for_cohort"])
    model = NightModel(**google["models"][str(best["workers"])])
    measured = hz["cpu_seconds"] / (hz["participants"] * hz["heart_rate_pages_per_participant"])
    extra = model.heart_rate_pages * (measured - google["client_cpu_per_real_page_seconds"])
    model = NightModel(**{**model.__dict__, "cpu_seconds": model.cpu_seconds + extra})
    out = []
    for cohort in (1_000, 10_000):
        cost = model.night(cohort, best["workers"], cores, limits)
        out.append({"participants": cohort, "workers": best["workers"],
                    "client_cpu_per_page_seconds": round(measured, 4),
                    "cpu_minutes": round(cost["cpu"] / 60, 1),
                    "io_minutes": round(cost["io"] / 60, 1),
                    "minutes": round(cost["night"] / 60, 1)})
    return out


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
        model = g["models"].get(str(g["projections"][0].get("workers")), {})
        lines += ["", f"Client CPU per real 10,000-point heart-rate page (bytes to COPY text): "
                  f"{g['client_cpu_per_real_page_seconds'] * 1000:.0f} ms "
                  f"({g['client_us_per_point']:.2f} us a point, "
                  f"{g['google_page_vs_json_loads']:.2f} x json.loads; "
                  f"{g['real_page_bytes'] / 1e6:.1f} MB). A night of a participant: "
                  f"{model.get('requests', 0):g} requests, {model.get('heart_rate_pages', 0):g} "
                  f"of them heart-rate pages; {model.get('cpu_seconds', 0):.2f} s of CPU "
                  f"(client, the database's share, the pacer), "
                  f"{model.get('io_seconds', 0):.2f} s of a worker's time.", "",
                  "| n | app | I/O min at WORKERS=W | project quota min | CPU min "
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
        hz = g.get("slice")
        if hz:
            lines += ["", "| the 1 Hz slice that anchors it | participants | WORKERS | requests "
                      "| projected s | projected s with the fake's CPU | measured s | client "
                      "CPU s: projected | measured | exit |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                      f"| real 10,000-point pages through the fake, {doc['latency_seconds']} s "
                      f"a page | {hz['participants']} | {hz['workers']} | {hz['requests']:,} | "
                      f"{hz['projected_seconds']} | {hz['projected_with_fake_seconds']} | "
                      f"{hz['seconds']} | {hz['projected_client_cpu_seconds']} | "
                      f"{hz['cpu_seconds']} | {hz['exit']} |"]
            for c in hz.get("calibrated", []):
                lines.append(
                    f"\nWith the slice's CPU a heart-rate page "
                    f"({c['client_cpu_per_page_seconds'] * 1000:.0f} ms, the whole command), "
                    f"{c['participants']:,} participants: CPU {c['cpu_minutes']} min on "
                    f"{doc['machine'].get('cores')} cores, I/O {c['io_minutes']} min at "
                    f"WORKERS={c['workers']}: night {c['minutes']} min.")
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
