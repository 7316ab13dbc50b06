"""Targets, the printed table and the JSON document of one benchmark run. Pure."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .measure import Measurement


@dataclass(frozen=True)
class Target:
    label: str
    numerator: str  # measurement keys
    denominator: str
    at_least: float | None = None  # a throughput ratio must reach this
    at_most: float | None = None  # a memory ratio must stay under this
    memory: bool = False  # compare peak RSS instead of rows/s
    # Both measured in turn in every repeat (run.py): the ratio of each repeat's pair can be
    # taken, and their median printed beside the ratio of the fastest of each.
    paired: bool = False

    def ratio(self, measurements: Mapping[str, Measurement]) -> float | None:
        top, bottom = measurements.get(self.numerator), measurements.get(self.denominator)
        if top is None or bottom is None:
            return None
        if self.memory:
            if not top.peak_rss_kib or not bottom.peak_rss_kib:
                return None
            return top.peak_rss_kib / bottom.peak_rss_kib
        return top.rows_per_second / bottom.rows_per_second if bottom.rows_per_second else None

    def paired_median(self, measurements: Mapping[str, Measurement]) -> float | None:
        """The median over the repeats of each repeat's own ratio. The fastest of each side
        can come from different minutes of a drifting machine; a repeat's two runs were made
        one after the other. None without two or more repeats."""
        top, bottom = measurements.get(self.numerator), measurements.get(self.denominator)
        if not self.paired or top is None or bottom is None:
            return None
        tops, bottoms = top.details.get("samples_seconds"), bottom.details.get("samples_seconds")
        if not isinstance(tops, list) or not isinstance(bottoms, list) or len(tops) < 2:
            return None
        if len(tops) != len(bottoms) or min(tops + bottoms) <= 0:  # rounded to 0 in a tiny run
            return None
        return statistics.median((top.rows / a) / (bottom.rows / b)
                                 for a, b in zip(tops, bottoms, strict=True))

    def passes(self, ratio: float) -> bool:
        if self.at_least is not None:
            return ratio >= self.at_least
        assert self.at_most is not None
        return ratio <= self.at_most

    @property
    def needed(self) -> str:
        return f">= {self.at_least:g}" if self.at_least is not None else f"<= {self.at_most:g}"


# From the issue "Throughput and memory, measured side by side".
TARGETS = {
    "writer_vs_original": Target("writer (empty table) / original design", "writer", "original",
                                 at_least=3.0),
    "writer_vs_copy": Target("writer (empty table) / plain COPY", "writer", "copy", at_least=0.6,
                             paired=True),
    # Both are processes of their own (generation.py), run in turn in every repeat.
    "end_to_end_vs_generation": Target("end to end / generation only", "end_to_end",
                                       "generation", at_least=0.6, paired=True),
    # A ratio of costs: seconds of the rerun over seconds of the first load (the same rows).
    "rerun_vs_first_load": Target("rerun writing nothing / first load (cost, same window)",
                                  "writer", "writer_rerun", at_most=0.3, paired=True),
    "rss_long_vs_short": Target("peak RSS, long run / short run", "end_to_end_long",
                                "end_to_end", at_most=1.3, memory=True),
    # From the issues on losing nothing (slices may cost at most 10 %; issue 29: 5 % end to
    # end) and on the morning report (rollups at most 15 %): the rate with the part over the
    # rate without it.
    "slices_writer": Target("writer in slices / in one transaction a participant", "writer",
                            "writer_one_transaction", at_least=0.9, paired=True),
    "slices_end_to_end": Target("end to end in slices / in one transaction a participant",
                                "end_to_end", "end_to_end_one_transaction", at_least=0.95,
                                paired=True),
    "rollups_end_to_end": Target("end to end with rollups / without", "end_to_end",
                                 "end_to_end_no_rollups", at_least=0.85, paired=True),
    # Issue 29: a ratio of costs, the client's CPU for a real Google page (parse, transform,
    # COPY text) over json.loads of its bytes; as rerun_vs_first_load, rates inverted.
    "google_page_vs_json_loads": Target("Google page, client CPU / json.loads of its bytes",
                                        "json_loads", "google_page", at_most=2.0, paired=True),
}


def machine(server_facts: Mapping[str, str]) -> dict[str, object]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_mem_total_kib() / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        **server_facts,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_kib() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def targets(measurements: Mapping[str, Measurement]) -> dict[str, dict[str, object]]:
    results = {}
    for key, target in TARGETS.items():
        ratio, paired = target.ratio(measurements), target.paired_median(measurements)
        results[key] = {
            "label": target.label,
            "ratio": None if ratio is None else round(ratio, 3),
            "paired_median": None if paired is None else round(paired, 3),
            "needed": target.needed,
            "pass": None if ratio is None else target.passes(ratio),
        }
    return results


def document(
    machine_facts: Mapping[str, object],
    workload: Mapping[str, object],
    measurements: Mapping[str, Measurement],
    databases: Sequence[str],
) -> dict[str, Any]:
    return {
        "machine": dict(machine_facts),
        "workload": dict(workload),
        "measurements": {
            key: {
                "label": m.label,
                "rows": m.rows,
                "seconds": round(m.seconds, 3),
                "rows_per_second": round(m.rows_per_second),
                "written": m.written,
                "peak_rss_mib": None if m.peak_rss_kib is None else round(m.peak_rss_kib / 1024, 1),
                **m.details,
            }
            for key, m in measurements.items()
        },
        "targets": targets(measurements),
        "databases": list(databases),  # made and dropped again by the run
    }


def table(doc: Mapping[str, Any]) -> str:
    """The document as the Markdown tables docs/performance.md shows."""
    lines = ["| machine | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in doc["machine"].items()]
    work = doc["workload"]
    lines += [
        "",
        f"Workload: {work['participants']} participants x {work['days']:g} days "
        f"({work['rows']:,} rows); long run {work['long_participants']} x "
        f"{work['long_days']:g} days; BATCH_ROWS {work['batch_rows']:,}; "
        f"best of {work['repeat']} (the command and its variants: of "
        f"{work.get('command_repeat', work['repeat'])}).",
        "",
        "| measurement | rows | seconds | rows/s | written | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in doc["measurements"].values():
        written = "" if m["written"] is None else f"{m['written']:,}"
        rss = "" if m["peak_rss_mib"] is None else f"{m['peak_rss_mib']:,.0f}"
        lines.append(
            f"| {m['label']} | {m['rows']:,} | {m['seconds']:.{1 if m['seconds'] >= 1 else 3}f} "
            f"| {m['rows_per_second']:,} "
            f"| {written} | {rss} |"
        )
    generation = doc["measurements"].get("generation", {})
    if "import_seconds" in generation:
        lines += [
            "",
            f"Generation and end to end both include importing wearipedia "
            f"({generation['import_seconds']:.1f} s here, on the first read); without it "
            f"generation runs at {generation['rows_per_second_after_import']:,} rows/s.",
        ]
    page = doc["measurements"].get("google_page", {})
    if "us_per_point" in page:
        ms = page["us_per_point"] * page["rows"] / 1000
        lines += ["", f"Google page: {page['us_per_point']:.2f} us of client CPU a point "
                  f"({ms:.1f} ms for {page['rows']:,} points, "
                  f"{page['page_bytes'] / 1e6:.1f} MB); json.loads of it "
                  f"{doc['measurements']['json_loads']['us_per_point']:.2f} us a point."]
    lines += ["", "| target | ratio | paired median | needed | |",
              "| --- | ---: | ---: | ---: | --- |"]
    for t in doc["targets"].values():
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["pass"]]
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}"
        paired = "" if t.get("paired_median") is None else f"{t['paired_median']:.2f}"
        lines.append(f"| {t['label']} | {ratio} | {paired} | {t['needed']} | {verdict} |")
    return "\n".join(lines)
