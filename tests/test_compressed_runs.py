"""The whole command on compressed chunks (community edition only).

A cohort is loaded once (a template database each test copies); then each scenario runs
twice on copies of it: once on chunks compressed with compress_chunk() and once as loaded,
uncompressed. Both must end with the same table and the same counts. Each scenario also runs
killed with SIGKILL mid-write and then run again, which must end the same.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg2
import pytest
from conftest import scratch_database
from ingester.config import Settings
from support import (
    compress_chunks,
    compression_state,
    fingerprint,
    ingest_env,
    query,
    run_ingest,
    start_ingest,
)
from test_pipeline import enrol, ok

pytestmark = pytest.mark.editions("community")

COHORT = [("p1", "America/New_York", "1"), ("p2", "Europe/Berlin", "2")]
START = "2026-03-02"
LOADED = "2026-03-04T06:00:00Z"
NIGHT = "2026-03-05T06:00:00Z"
# Every daily chunk before 4 March: the next night's 24-hour overlap reaches into them.
COMPRESS_BEFORE = "2026-03-04T00:00:00Z"
# What a nightly run re-reads at the late-sync horizon's default: LATE_SYNC_HORIZON_DAYS
# plus OVERLAP_HOURS before now (the cohort's data starts later, so all of it).
DEFAULTS = Settings()
HORIZON_SINCE = (datetime.fromisoformat(LOADED) - DEFAULTS.late_sync_horizon
                 - DEFAULTS.overlap).isoformat()


def unsynced(env):
    """Ten minutes of p1's heart rate that its tracker had not synced yet."""
    query(env, "DELETE FROM raw_data WHERE participant_id = 'p1' AND metric_type = "
               "'heart_rate' AND \"timestamp\" >= '2026-03-02T12:00Z' AND "
               "\"timestamp\" < '2026-03-02T12:10Z'")


def miscomputed(env):
    """Five minutes of p2's heart rate stored with wrong values, the source corrects them."""
    query(env, "UPDATE raw_data SET value = value + 1000 WHERE participant_id = 'p2' AND "
               "metric_type = 'heart_rate' AND \"timestamp\" >= '2026-03-02T18:00Z' AND "
               "\"timestamp\" < '2026-03-02T18:05Z'")


def newcomer(env):
    enrol(env, [("p3", "Asia/Kolkata", "3")], start=START)


@dataclass(frozen=True)
class Scenario:
    args: tuple[str, ...]
    before: Callable[[dict], None] | None = None  # applied before compression
    written: int | None = None  # rows the run must write, where known
    chunks_untouched: bool = False  # it must leave the compressed chunks as they were


SCENARIOS = {
    "nightly": Scenario(("--now", NIGHT), chunks_untouched=True),
    "reread": Scenario(("--now", LOADED, "--since", START), written=0, chunks_untouched=True),
    "late_sync": Scenario(("--now", LOADED, "--since", HORIZON_SINCE), unsynced, written=600),
    "newcomer": Scenario(("--now", LOADED), newcomer),
    "corrected": Scenario(("--now", LOADED, "--since", START), miscomputed, written=300),
    "purge": Scenario(("participant", "remove", "p2", "--purge", "--yes")),
}


@pytest.fixture(scope="module")
def loaded(db_server, template_db, tmp_path_factory):
    """The cohort loaded up to LOADED, as a template database, and its state file."""
    with scratch_database(db_server, template_db, "loaded") as database:
        workdir = tmp_path_factory.mktemp("loaded")
        env = ingest_env(database.env, workdir)
        enrol(env, COHORT, start=START)
        ok(run_ingest(env, "--now", LOADED))
        database.freeze()
        yield database.dbname, workdir / "state" / "last_run.json"


@pytest.fixture
def copy_of_loaded(db_server, loaded, tmp_path):
    """Copies of the loaded cohort, each with its own environment and state file."""
    dbname, state_file = loaded
    with_copies = []

    def make(label: str) -> dict[str, str]:
        manager = scratch_database(db_server, dbname, "copy", schema=False)
        database = manager.__enter__()
        with_copies.append(manager)
        workdir = tmp_path / label
        (workdir / "state").mkdir(parents=True)
        shutil.copy(state_file, workdir / "state" / "last_run.json")
        return ingest_env(database.env, workdir)

    yield make
    for manager in with_copies:
        manager.__exit__(None, None, None)


def last_run(env) -> tuple[int, int]:
    """Rows read and written by the latest run."""
    return query(env, "SELECT coalesce(sum(rows_read), 0), coalesce(sum(rows_written), 0) "
                      "FROM ingest_runs WHERE run_id = "
                      "(SELECT run_id FROM ingest_runs ORDER BY id DESC LIMIT 1)")[0]


def act(env, scenario: Scenario, killed: bool):
    if not killed:
        return ok(run_ingest(env, *scenario.args))
    if scenario.args[0] == "participant":
        return purge_killed_midway(env, scenario)
    # Mid-run: once the run's first slice has committed, the rest is being read, compared
    # or written (an identical re-read sends no COPY to wait for).
    (logged,) = query(env, "SELECT count(*) FROM ingest_runs")[0]
    run = start_ingest(env, *scenario.args)
    wait_for(run, env, "SELECT count(*) > %s FROM ingest_runs", (logged,))
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    return ok(run_ingest(env, *scenario.args))


def purge_killed_midway(env, scenario: Scenario):
    """A purge killed inside its DELETE: a row it must delete is locked by another session,
    so the DELETE stops there (after whatever it had deleted before) until the kill."""
    blocker = psycopg2.connect(host=env["DB_HOST"], port=env["DB_PORT"], dbname=env["DB_NAME"],
                               user=env["DB_USER"], password=env.get("DB_PASSWORD", ""))
    try:
        with blocker.cursor() as cursor:
            cursor.execute("SELECT 1 FROM raw_data WHERE participant_id = 'p2' AND \"timestamp\" = "
                           "(SELECT max(\"timestamp\") FROM raw_data WHERE participant_id = 'p2') "
                           "FOR UPDATE")
        run = start_ingest(env, *scenario.args)
        wait_for(run, env, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND wait_event_type = 'Lock' "
                           "AND query LIKE 'DELETE FROM raw_data%%'")
        run.send_signal(signal.SIGKILL)
        run.wait(30)
    finally:
        blocker.close()
    assert query(env, "SELECT count(*) FROM participants WHERE participant_id = 'p2'") == [(1,)]
    return ok(run_ingest(env, *scenario.args))


def wait_for(run, env, sql: str, params: tuple = ()) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if query(env, sql, params)[0][0]:
            return
        time.sleep(0.02)
    pytest.fail(f"never caught the run in the middle: {run.communicate()}")


@pytest.fixture(scope="module")
def uncompressed_outcome():
    """Per scenario: what it gives on the uncompressed copy (computed once)."""
    return {}


@pytest.mark.parametrize("killed", [False, True], ids=["clean", "killed"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_run_on_compressed_chunks_ends_as_on_uncompressed_ones(
        copy_of_loaded, uncompressed_outcome, name, killed):
    scenario = SCENARIOS[name]
    if name not in uncompressed_outcome:
        plain = copy_of_loaded("plain")
        if scenario.before:
            scenario.before(plain)
        done = act(plain, scenario, killed=False)
        uncompressed_outcome[name] = (fingerprint(plain), last_run(plain), done.stdout)
    expected, expected_counts, expected_stdout = uncompressed_outcome[name]

    env = copy_of_loaded("compressed")
    if scenario.before:
        scenario.before(env)
    assert compress_chunks(env, older_than=COMPRESS_BEFORE) >= 3
    before = compression_state(env)
    done = act(env, scenario, killed)

    assert fingerprint(env) == expected
    if killed:
        return
    assert last_run(env) == expected_counts
    assert done.stdout == expected_stdout  # the purge's "N rows deleted" among them
    if scenario.written is not None:
        assert expected_counts[1] == scenario.written
    if scenario.chunks_untouched:
        chunks, size = compression_state(env)
        compressed_before = [c for c in before[0] if c[1] & 1]
        assert [c for c in chunks if c[0] in {b[0] for b in compressed_before}] == \
            compressed_before
        if scenario.written == 0:
            assert size == before[1]


def test_purge_counts_the_rows_it_deleted(copy_of_loaded):
    env = copy_of_loaded("purge")
    compress_chunks(env, older_than=COMPRESS_BEFORE)
    (stored,) = query(env, "SELECT count(*) FROM raw_data WHERE participant_id = 'p2'")[0]
    done = ok(run_ingest(env, "participant", "remove", "p2", "--purge", "--yes"))
    assert done.stdout.strip() == f"removed p2; {stored} rows deleted from raw_data"
    assert stored > 200_000
