"""bench/run.py on a tiny workload: it measures everything and cleans up. Never timed."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg2.extensions
import pytest
from support import ROOT

from bench import run
from bench.measure import Measurement
from bench.report import TARGETS as REPORTED
from bench.report import targets

BENCH = ROOT / "bench" / "run.py"
PAGE = ("google_page", "json_loads")  # CPU of one real Google page, no database
MEASUREMENTS = (
    "generation", "copy", "writer", "writer_rerun", "writer_one_transaction", "original",
    "end_to_end", "end_to_end_one_transaction", "end_to_end_no_rollups", "end_to_end_long",
)
TARGETS = ("writer_vs_original", "writer_vs_copy", "end_to_end_vs_generation",
           "rerun_vs_first_load", "rss_long_vs_short", "slices_writer", "slices_end_to_end",
           "rollups_end_to_end", "google_page_vs_json_loads")


@pytest.mark.slow
@pytest.mark.editions("apache", "community")
def test_a_tiny_run_reports_every_measurement_and_drops_its_databases(db_server, tmp_path):
    results = tmp_path / "results.json"
    dsn = psycopg2.extensions.make_dsn(**db_server.params("postgres"))
    done = subprocess.run(
        [sys.executable, str(BENCH), "--participants", "1", "--days", "0.125",
         "--long-days", "0.25", "--page-repeat", "2", "--dsn", dsn, "--json", str(results),
         "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr

    doc = json.loads(results.read_text())
    measured = doc["measurements"]
    assert tuple(measured) == PAGE + MEASUREMENTS
    assert measured["google_page"]["rows"] == measured["json_loads"]["rows"] == 10_000
    assert measured["google_page"]["us_per_point"] > 0
    assert "us of client CPU a point" in done.stdout
    for key, m in measured.items():
        assert m["rows"] > 0 and m["seconds"] > 0 and m["rows_per_second"] > 0, key
    rows = doc["workload"]["rows"]
    assert all(measured[key]["rows"] == rows for key in MEASUREMENTS[:-1])
    assert measured["end_to_end_long"]["rows"] > rows  # a quarter day against an eighth
    assert measured["writer"]["written"] == rows and measured["writer_rerun"]["written"] == 0
    assert measured["end_to_end"]["peak_rss_mib"] > 0
    # Generation alone is a process, timed as the command is and in turn with it in every
    # repeat: the ratio of the two has a paired median, as the command's variants have.
    repeats = doc["workload"]["command_repeat"]
    assert len(measured["generation"]["samples_seconds"]) == repeats
    assert len(measured["end_to_end"]["samples_seconds"]) == repeats
    assert measured["generation"]["peak_rss_mib"] > 0
    assert doc["targets"]["end_to_end_vs_generation"]["paired_median"] > 0
    # So is plain COPY with the writer, in every repeat of theirs.
    assert len(measured["copy"]["samples_seconds"]) == doc["workload"]["repeat"]
    assert doc["targets"]["writer_vs_copy"]["paired_median"] > 0
    assert measured["end_to_end_long"]["peak_rss_mib"] > 0
    assert tuple(doc["targets"]) == TARGETS
    for key, target in doc["targets"].items():
        assert target["ratio"] > 0 and target["pass"] in (True, False), key
    assert {"cpu", "cores", "ram_gib", "postgresql", "timescaledb"} <= set(doc["machine"])
    for key in TARGETS:
        assert doc["targets"][key]["label"] in done.stdout

    with db_server.admin() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)",
                       (doc["databases"],))
        assert doc["databases"] and cursor.fetchall() == []


def test_the_paired_median_takes_each_repeats_own_ratio_and_not_the_fastest_of_each():
    """A lucky repeat of one side (the 16.9 s of a drifting machine) decides the ratio of the
    fastest; the median of the repeats' own ratios is the middle one."""
    def measured(seconds):
        return Measurement("m", 1_000, min(seconds), details={"samples_seconds": seconds})

    doc = targets({"end_to_end": measured([30.0, 27.0, 28.0]),
                   "end_to_end_one_transaction": measured([27.0, 16.9, 28.0])})
    slices = doc["slices_end_to_end"]
    assert slices["ratio"] == round(16.9 / 27.0, 3)
    assert slices["paired_median"] == 0.9  # of 0.9, 0.626 and 1.0
    assert REPORTED["writer_vs_original"].paired is False
    assert doc["writer_vs_original"]["paired_median"] is None


def test_no_paired_median_without_repeats():
    one = Measurement("m", 1_000, 2.0)
    assert targets({"writer": one, "writer_rerun": one})["rerun_vs_first_load"][
        "paired_median"] is None


def test_measurements_compared_in_pairs_swap_places_from_one_repeat_to_the_next():
    """The run that goes first in a pair tends to be the slower one: each side of a pair
    runs first in every other repeat, so that neither always takes that cost."""
    runs = ["slices", "one transaction", "no rollups"]
    orders = [run.in_turn(runs, attempt) for attempt in range(4)]
    assert orders[0] == orders[2] == runs
    assert orders[1] == orders[3] == ["no rollups", "one transaction", "slices"]
    assert runs == ["slices", "one transaction", "no rollups"]  # not reordered in place


ONLY = {
    "end-to-end": (("generation", "end_to_end", "end_to_end_one_transaction",
                    "end_to_end_no_rollups"),
                   {"end_to_end_vs_generation", "slices_end_to_end", "rollups_end_to_end"}),
    "writer": (("copy", "writer", "writer_rerun", "writer_one_transaction"),
               {"writer_vs_copy", "rerun_vs_first_load", "slices_writer"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("only", sorted(ONLY))
def test_only_measures_what_it_names_and_its_targets_alone(db_server, tmp_path, only):
    results = tmp_path / "results.json"
    dsn = psycopg2.extensions.make_dsn(**db_server.params("postgres"))
    done = subprocess.run(
        [sys.executable, str(BENCH), "--participants", "1", "--days", "0.125", "--only", only,
         "--repeat", "2", "--command-repeat", "2", "--dsn", dsn, "--json", str(results),
         "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr

    doc = json.loads(results.read_text())
    measured, targets_measured = ONLY[only]
    assert tuple(doc["measurements"]) == measured
    assert doc["workload"]["rows"] == doc["measurements"][measured[0]]["rows"] > 0
    for key, target in doc["targets"].items():
        if key in targets_measured:
            assert target["ratio"] > 0 and target["paired_median"] > 0, key
        else:
            assert target["ratio"] is None and target["pass"] is None, key
