"""Workers that share the cohort: runs started together, many workers, a killed worker,
and Google's request limits as the fake server saw them."""

from __future__ import annotations

import gc
import os
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fake_google_health import (
    FakeGoogleHealth,
    heart_rate,
    most_in_any_window,
    oxygen_saturation,
    steps,
)
from ingester import workers
from ingester.sources.google_health.quota import Limit, Schedule
from support import fingerprint, ingest_env, query, run_ingest, start_ingest

NOW = "2026-03-03T00:00:00Z"
SYNTHETIC_COHORT = [("s1", "America/New_York", "1"), ("s2", "Europe/Berlin", "2"),
                    ("s3", "Asia/Kolkata", "3"), ("s4", "UTC", "4")]
GOOGLE_COHORT = [f"g{i}" for i in range(1, 9)]
RUN_LOG = ("SELECT participant_id, window_start, window_end, status, rows_read, rows_written, "
           "rows_rejected, watermark FROM ingest_runs ORDER BY 1, 2, 3")


def ok(done):
    assert done.returncode == 0, done.stderr
    return done


def add_synthetic(env, cohort):
    for pid, zone, seed in cohort:
        ok(run_ingest(env, "participant", "add", pid, "--timezone", zone, "--seed", seed,
                      "--start-date", "2026-03-02"))


def add_google(env, fake, ids):
    for pid in ids:
        ok(run_ingest(env, "participant", "enrol", pid, "--timezone", "Europe/Berlin",
                      "--start-date", "2026-03-02", "--token-file", "-",
                      stdin=fake.add_user(pid) + "\n"))


def a_day_for_everyone(fake: FakeGoogleHealth) -> None:
    """Berlin's 2 March 2026 for every user of the cohort, each with values of their own
    (user i's heart rate is 60 + i + m % 30): heart rate per minute in pages of 200."""
    day = datetime(2026, 3, 1, 23, tzinfo=UTC)
    fake.max_page_size = 200  # 1,440 heart-rate points: 8 pages, as a real night has ~9
    for i, user in enumerate(GOOGLE_COHORT):
        fake.add("heart-rate", [heart_rate(day + timedelta(minutes=m), 60 + i + m % 30)
                                for m in range(1440)], user=user)
        fake.add("steps", [steps(day + timedelta(hours=9, minutes=m), 20 + i + m)
                           for m in range(30)], user=user)
        fake.add("oxygen-saturation", [oxygen_saturation(day + timedelta(hours=4), 90.0 + i)],
                 user=user)


def assert_each_has_their_own(env) -> None:
    """Each participant's stored heart rate is the one the fake holds for their user."""
    sums = query(env, "SELECT participant_id, sum(value) FROM raw_data "
                      "WHERE metric_type = 'heart_rate' GROUP BY 1 ORDER BY 1")
    base = sum(60 + m % 30 for m in range(1440))
    assert sums == sorted((pid, float(base + 1440 * GOOGLE_COHORT.index(pid)))
                          for pid in GOOGLE_COHORT)


def reset(env):
    query(env, "TRUNCATE raw_data, ingest_runs, ingest_batches CASCADE")
    Path(env["STATE_FILE"]).unlink(missing_ok=True)


def single_worker_result(env):
    """What one run with one worker leaves: the baseline every shared run must equal."""
    reset(env)
    ok(run_ingest({**env, "WORKERS": "1"}, "--now", NOW))
    return query(env, RUN_LOG), fingerprint(env)


def together(env, runs: int, workers: int):
    started = [start_ingest({**env, "WORKERS": str(workers)}, "--now", NOW) for _ in range(runs)]
    outputs = [run.communicate(timeout=600) for run in started]
    assert [run.returncode for run in started] == [0] * runs, outputs
    return outputs


def assert_each_participant_once(env, ids):
    """Every participant in the run log (one row per committed slice), each claimed once."""
    log = query(env, RUN_LOG)
    assert {row[0] for row in log} == set(ids), log
    claims = query(env, "SELECT participant_id, claims, status FROM ingest_batch_items "
                        "ORDER BY 1")
    assert claims == [(pid, 1, "ok") for pid in sorted(ids)]
    assert query(env, "SELECT count(*), count(*) FILTER (WHERE outcome = 'done') "
                      "FROM ingest_batches") == [(1, 1)]  # the runs shared one batch


@pytest.fixture
def google(db, tmp_path):
    with FakeGoogleHealth() as fake:
        a_day_for_everyone(fake)
        env = ingest_env(db.env, tmp_path, GOOGLE_HEALTH_URL=fake.url,
                         GOOGLE_TOKEN_URL=fake.token_url, GOOGLE_CLIENT_ID=fake.client_id,
                         GOOGLE_CLIENT_SECRET=fake.client_secret,
                         GOOGLE_USER_REQUESTS_PER_MINUTE="100000",
                         GOOGLE_PROJECT_REQUESTS_PER_MINUTE="1000000")
        add_google(env, fake, GOOGLE_COHORT)
        yield env, fake


@pytest.mark.slow
def test_two_runs_started_together_load_every_participant_once(env):
    add_synthetic(env, SYNTHETIC_COHORT[:3])
    together(env, runs=2, workers=1)
    ids = [pid for pid, _, _ in SYNTHETIC_COHORT[:3]]
    assert_each_participant_once(env, ids)
    shared = query(env, RUN_LOG), fingerprint(env)
    assert shared == single_worker_result(env)


@pytest.mark.slow
def test_two_runs_of_four_thread_workers_share_a_google_cohort(google):
    env, fake = google
    outputs = together({**env, "WORKER_KIND": "thread"}, runs=2, workers=4)
    assert_each_participant_once(env, GOOGLE_COHORT)
    assert any("joining batch" in err for _, err in outputs), outputs
    assert all("thread worker(s)" in err for _, err in outputs), outputs
    shared = query(env, RUN_LOG), fingerprint(env)
    assert shared[1][0] == 8 * (1440 + 30 + 1)
    assert_each_has_their_own(env)
    assert shared == single_worker_result(env)


@pytest.mark.slow
def test_two_runs_of_four_process_workers_share_a_synthetic_cohort(env):
    add_synthetic(env, SYNTHETIC_COHORT)
    outputs = together(env, runs=2, workers=4)
    assert all("process worker(s)" in err for _, err in outputs), outputs
    assert_each_participant_once(env, [pid for pid, _, _ in SYNTHETIC_COHORT])
    shared = query(env, RUN_LOG), fingerprint(env)
    assert shared == single_worker_result(env)


def wait_until_mid_participant(env, committed: int) -> None:
    """Until `committed` participants are in the run log and another one is mid-COPY."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = query(env, "SELECT count(*) FROM ingest_runs")[0][0]
        # This test's database only: other tests' runs may be copying beside it (xdist).
        copying = query(env, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = 'wearable-ingester' "
                             "AND query LIKE 'COPY%%'")[0][0]
        if done >= committed and copying:
            return
        time.sleep(0.05)
    pytest.fail("the run never reached a participant's COPY")


@pytest.mark.slow
def test_a_run_killed_mid_participant_is_completed_by_the_next(env):
    add_synthetic(env, SYNTHETIC_COHORT[:3])
    baseline = single_worker_result(env)
    reset(env)
    run = start_ingest(env, "--now", NOW)
    wait_until_mid_participant(env, committed=1)
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    assert 0 < fingerprint(env)[0] < baseline[1][0]
    # The killed run's claim died with its connection; its batch has nobody left.
    assert query(env, "SELECT count(*) FROM ingest_batch_items WHERE done_at IS NULL")[0][0] >= 2
    second = ok(run_ingest(env, "--now", NOW))
    assert "left unfinished" in second.stderr
    assert fingerprint(env) == baseline[1]
    assert {row[0] for row in query(env, RUN_LOG)} == {"s1", "s2", "s3"}


@pytest.mark.slow
def test_a_worker_process_killed_mid_participant_is_taken_over_in_the_same_run(env):
    add_synthetic(env, SYNTHETIC_COHORT[:3])
    baseline = single_worker_result(env)
    reset(env)
    run = start_ingest({**env, "WORKERS": "2"}, "--now", NOW)
    try:
        worker, pid = stop_a_worker_mid_participant(env, run.pid)
        os.kill(worker, signal.SIGKILL)
    except BaseException:
        run.kill()
        raise
    out, err = run.communicate(timeout=600)
    assert run.returncode == 1, err  # the run says a worker died ...
    assert "worker 0 ended" in err or "worker 1 ended" in err, err
    # ... and the other worker took its participant over and finished it: nothing skipped,
    # nothing twice
    assert fingerprint(env) == baseline[1]
    assert query(env, "SELECT participant_id, status FROM ingest_batch_items "
                      "WHERE claims = 2") == [(pid, "ok")]
    assert {r[0] for r in query(env, RUN_LOG)} == {"s1", "s2", "s3"}


COPYING = ("SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
           "AND application_name = 'wearable-ingester' AND query LIKE 'COPY%%' "
           "AND state = 'active'")


def stop_a_worker_mid_participant(env, run_pid: int) -> tuple[int, str]:
    """A worker process of the run, frozen (SIGSTOP) while it holds a participant it has not
    finished, seen in the middle of a COPY; its pid and that participant."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for (port,) in query(env, COPYING):
            worker = child_with_connection(run_pid, port, int(env["DB_PORT"]))
            if worker is None:
                continue
            os.kill(worker, signal.SIGSTOP)
            # Frozen, it can neither finish the participant nor claim another: what the
            # batch says now is what the kill leaves.
            held = query(env, "SELECT participant_id FROM ingest_batch_items WHERE "
                              "claimed_by LIKE %s AND done_at IS NULL", (f"%:{worker}/%",))
            if held:
                return worker, held[0][0]
            os.kill(worker, signal.SIGCONT)  # between participants after all: next COPY
        time.sleep(0.05)
    pytest.fail("no worker was ever seen in a participant's COPY")


def child_with_connection(parent: int, local_port: int, db_port: int) -> int | None:
    """The child process of `parent` whose TCP connection to the database has this local
    port (the backend's client_port), from /proc as ss -p would; only the run's own
    children are looked at, so nothing else on the machine is ever touched."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
            if (int(local, 16), int(remote, 16)) == (local_port, db_port):
                inodes.add(f"socket:[{fields[9]}]")
    for child in children(parent):
        try:
            fds = os.listdir(f"/proc/{child}/fd")
            if any(os.readlink(f"/proc/{child}/fd/{fd}") in inodes for fd in fds):
                return child
        except OSError:  # ended meanwhile
            continue
    return None


def children(parent: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


# --- quotas, from the fake's log ---------------------------------------------------------


def conforms(times: list[float], limit: Limit, slack: float = 0.05) -> bool:
    """Every window of W seconds holds at most W / spacing + burst + 1 requests, which for
    W = 60 is the limit's budget: the per-minute limit holds on every window."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i, len(times)):
            width = times[j] - times[i]
            if j - i + 1 > (width + slack) / limit.spacing + limit.burst + 1:
                return False
    return True


@pytest.mark.slow
def test_requests_stay_under_the_per_user_and_project_limits(google):
    env, fake = google
    # Limits small enough to bind within seconds: 8 users x ~10 requests.
    user, project = Limit(600), Limit(1200)
    env = {**env, "GOOGLE_USER_REQUESTS_PER_MINUTE": "600",
           "GOOGLE_PROJECT_REQUESTS_PER_MINUTE": "1200", "WORKERS": "8"}
    fake.latency = 0.01
    began = time.time()
    ok(run_ingest(env, "--now", NOW))
    api = [s for s in fake.api_requests() if s.at >= began]
    by_user = defaultdict(list)
    for seen in api:
        by_user[seen.user].append(seen.at)
    assert set(by_user) == set(GOOGLE_COHORT)
    assert all(len(times) >= 10 for times in by_user.values())
    for times in by_user.values():
        assert conforms(times, user)
        assert most_in_any_window(times, 60) <= 600
    everything = [s.at for s in api]
    assert conforms(everything, project)
    assert most_in_any_window(everything, 60) <= 1200
    # The project's limit bound: its spacing, not the network, set the pace.
    assert max(everything) - min(everything) >= (len(everything) - project.burst - 1) * \
        project.spacing * 0.95
    # Only the project's schedule is shared; each participant's stayed in its worker.
    assert query(env, "SELECT bucket FROM request_pacing") == [("project",)]


def test_a_participants_schedule_allows_its_burst_then_spaces_requests():
    limit, clock = Limit(150), [1000.0]
    schedule = Schedule(limit, clock=lambda: clock[0])
    waits = [schedule.reserve() for _ in range(limit.burst + 3)]
    assert waits[: limit.burst + 1] == pytest.approx([0.0] * (limit.burst + 1), abs=1e-9)
    assert waits[limit.burst + 1:] == pytest.approx([limit.spacing, 2 * limit.spacing])
    clock[0] += 3600  # an idle hour gives the whole burst back, never more
    assert [schedule.reserve() for _ in range(limit.burst + 2)][-2:] == \
        pytest.approx([0.0, limit.spacing], abs=1e-9)


def test_the_limits_follow_google_and_leave_room_for_retries():
    verified, unverified = Limit(300), Limit(150)
    assert verified.budget == 240 and unverified.budget == 120
    for limit in (verified, unverified, Limit(120_000), Limit(15_000), Limit(4)):
        # what any 60 s can hold: 60 / spacing + burst + 1 requests
        assert 60 / limit.spacing + limit.burst + 1 <= limit.budget + 1e-9
        assert limit.budget <= limit.per_minute


def test_workers_collect_garbage_once_a_page_and_give_the_setting_back():
    # A 1 Hz page is ~50,000 dictionaries: the default threshold (700) walked them ~70 times
    # a page and set off full collections (docs/performance.md, "The command's cost a page").
    before = gc.get_threshold()
    with workers.collector_for_pages():
        assert gc.get_threshold() == workers.GC_THRESHOLDS
        assert workers.GC_THRESHOLDS[0] >= 60_000  # more than one page's objects
    assert gc.get_threshold() == before
