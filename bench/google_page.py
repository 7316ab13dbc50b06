"""The client's CPU for one real Google Health page: 10,000 heart-rate points at 1 Hz, as the
API's largest page holds, from its bytes to the writer's COPY text, over the standard
library's json.loads of the same bytes (issue 29: `google_page_vs_json_loads`, target <= 2.0).

    python bench/google_page.py [--repeat 15] [--profile]

`make bench` (bench/run.py) takes it as two measurements, `google_page` and `json_loads`. No
database and no network: the page is built once in memory, then parsed by the source's own
parser (http.json_body), read into candidates (transform), kept one per instant and inside
the window (source.kept_rows), and formatted as the writer's COPY text (writer.copy_text). CPU time
(time.process_time), best of 25 repeats, the two sides taken in turn: a shared machine slows
both alike. scale.py uses the same page for its projection.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "tests", ROOT, ROOT / "ingestion"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from fake_google_health import WEARABLE, heart_rate  # noqa: E402  (tests/ is on the path here)
from ingester.model import GOOGLE_HEALTH, Participant, ReadReport, Window  # noqa: E402
from ingester.sources.google_health import http  # noqa: E402
from ingester.sources.google_health.source import kept_rows  # noqa: E402
from ingester.sources.google_health.transform import (  # noqa: E402
    DATA_TYPES,
    candidates_from_page,
)
from ingester.workers import collector_for_pages  # noqa: E402
from ingester.writer import copy_text  # noqa: E402

PAGE_POINTS = 10_000  # the documented maximum pageSize
PAGE_START = datetime(2026, 11, 19, tzinfo=UTC)
PARTICIPANT = Participant("p0001", "UTC", GOOGLE_HEALTH, date(2026, 1, 1))
HEART_RATE = DATA_TYPES["heart-rate"]


def real_page(points: int = PAGE_POINTS, start: datetime = PAGE_START) -> bytes:
    """A heart-rate page as the API lists it: newest first, each point with its resource name
    and data source (as the fake serves them), and a next page token."""
    listed = [{"name": f"users/me/dataTypes/heart-rate/dataPoints/{7_000_000_000 + s}",
               "dataSource": WEARABLE, **heart_rate(start + timedelta(seconds=s), 55 + s % 50)}
              for s in reversed(range(points))]
    return json.dumps({"dataPoints": listed, "nextPageToken": "CiAKGjBpNDdnZTk0a2Z3"}).encode()


def client(content: bytes, window: Window) -> bytes:
    """What the client does with one page: bytes to the writer's COPY text."""
    report = ReadReport()
    page = http.json_body(content)
    candidates, _token = candidates_from_page(page, HEART_RATE, PARTICIPANT, report)
    rows = list(kept_rows([candidates], HEART_RATE, window, report))
    # The writer's origin_id column: one origin a device, as RowWriter finds them.
    origins = {device: f"\t{number}" for number, device in
               enumerate({row.device for row in rows}, start=1)}
    return copy_text([rows], origins)


@dataclass(frozen=True)
class PageCost:
    points: int
    page_bytes: int
    client_seconds: float  # CPU, best of the repeats
    json_loads_seconds: float
    client_samples: list[float]
    json_loads_samples: list[float]

    @property
    def ratio(self) -> float:
        return self.client_seconds / self.json_loads_seconds

    @property
    def us_per_point(self) -> float:
        return self.client_seconds / self.points * 1e6


def cpu_seconds(work: Callable[[], object]) -> float:
    began = time.process_time()
    work()
    return time.process_time() - began


def measure(repeat: int = 25, points: int = PAGE_POINTS, workers_gc: bool = False) -> PageCost:
    """Both sides at Python's default collector, as the issue measured json.loads; with
    workers_gc, both with the collector as a worker sets it (workers.GC_THRESHOLDS), which
    spares json.loads more than the client: its ratio was 2.06-2.32 so, against 1.47-1.82
    (docs/performance.md, "The command's cost a page")."""
    if workers_gc:
        with collector_for_pages():
            return measure(repeat, points, workers_gc=False)
    content = real_page(points)
    window = Window(PAGE_START, PAGE_START + timedelta(days=1))
    rows = client(content, window).count(b"\n")
    if rows != points:
        raise RuntimeError(f"the client made {rows} rows of a {points}-point page")
    clients, loads = [], []
    for _ in range(repeat):
        loads.append(cpu_seconds(lambda: json.loads(content)))
        clients.append(cpu_seconds(lambda: client(content, window)))
    return PageCost(points, len(content), min(clients), min(loads), clients, loads)


def profile(content: bytes) -> str:
    window = Window(PAGE_START, PAGE_START + timedelta(days=1))
    profiler = cProfile.Profile()
    profiler.runcall(client, content, window)
    out = pstats.Stats(profiler).sort_stats("tottime")
    lines: list[str] = []
    out.stream = _Lines(lines)  # type: ignore[attr-defined]
    out.print_stats(12)
    return "".join(lines)


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def write(self, text: str) -> None:
        self._lines.append(text)


def main(argv: list[str] | None = None) -> int:
    main_parser = argparse.ArgumentParser(prog="bench/google_page.py",
                                          description=__doc__.split("\n\n")[0])
    main_parser.add_argument("--repeat", type=int, default=25)
    main_parser.add_argument("--profile", action="store_true", help="also print a profile")
    main_parser.add_argument("--workers-gc", action="store_true",
                             help="both sides with the collector as workers set it")
    arguments = main_parser.parse_args(argv)
    cost = measure(arguments.repeat, workers_gc=arguments.workers_gc)
    print(f"page: {cost.points:,} points, {cost.page_bytes / 1e6:.1f} MB")
    print(f"json.loads: {cost.json_loads_seconds * 1000:.1f} ms; client (parse, transform, "
          f"one per instant, COPY text): {cost.client_seconds * 1000:.1f} ms")
    print(f"google_page_vs_json_loads: {cost.ratio:.2f} (target <= 2.0); "
          f"{cost.us_per_point:.2f} us a point")
    if arguments.profile:
        print(profile(real_page()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
