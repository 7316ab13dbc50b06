"""The Docker section of docs/operations.md, run for real: `docker compose up` on a Docker
engine. (README's first screen keeps four of its commands and points there.)

The engine and the base images come from scripts/docker-testbed.sh (`make test` starts it as
root and exports DOCKER, DOCKER_HOST and DOCKER_CONFIG; run by hand, this module starts it
itself). Without root there is no engine, and the module skips, as the README says; in CI
(CI=true) it fails instead.

One stack serves the whole module, in file order, because building the image and creating
the database are the expensive part. It runs in its own compose project, from a copy of the
files compose reads (so a developer's .env never applies), on a free host port, and
`down -v --rmi local` removes it afterwards, whatever happened. Each test brings the stack
into the state it needs (its .env, `up -d`), so a failure in one does not hide the others.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The page that holds the Docker path's facts; README keeps only its four commands.
README = (ROOT / "docs" / "operations.md").read_text()
TESTBED = ROOT / "scripts" / "docker-testbed.sh"
PROJECT_PREFIX = "wearables-test-"
# What the README quotes of the first run's log (section "Running it with Docker").
FIRST_RUN_LINES = (
    "no participants enrolled: loading the demo cohort demo-01, demo-02, demo-03",
    "run finished: 3 participants (3 ok); ",
    "ingester: ingest.py ended with exit status 0",
)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RUN_ENDED = re.compile(r"ingester: ingest\.py ended with exit status (\d+)")
# A --now in the past: runs pinned to it plan the same windows whenever the test runs.
PINNED_NOW = "2026-11-20T06:00:00Z"
# Generous bounds for a loaded 2-core machine; none of them is what a test asserts.
BUILD_TIMEOUT = 1200
RUN_TIMEOUT = 300

# With parallel workers, one runs the whole module (conftest.ONE_WORKER_FILES): its tests
# share one stack, built once.
pytestmark = pytest.mark.slow


def readme_section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    end = re.compile(r"\n##+ ").search(README, start + len(title) + 2)
    return README[start : end.start() if end else None]


def readme_block_after(marker: str) -> list[str]:
    """The command lines of the README's first ```sh block that holds or follows MARKER."""
    at = README.index(marker)
    for block in re.finditer(r"```sh\n(.*?)```", README, re.S):
        if block.end() > at:
            lines = block.group(1).splitlines()
            return [line for line in lines if line and not line.startswith("#")]
    raise AssertionError(f"no sh block at or after {marker!r} in the README")


# --- the engine and the stack ------------------------------------------------------------


def engine_settings() -> dict[str, str]:
    if all(os.environ.get(name) for name in ("DOCKER", "DOCKER_HOST")):
        return {
            n: os.environ[n]
            for n in ("DOCKER", "DOCKER_HOST", "DOCKER_CONFIG")
            if os.environ.get(n)
        }
    if os.geteuid() != 0:
        reason = "the Docker tests need root to run dockerd (README, 'Skipped tests')"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must run them")
        pytest.skip(reason)
    started = subprocess.run(
        ["bash", str(TESTBED), "start"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    return dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """A compose project in a directory of its own; the README's commands run in it."""

    def __init__(self, engine: dict[str, str], workdir: Path) -> None:
        self.docker = engine["DOCKER"]
        self.workdir = workdir
        self.project = PROJECT_PREFIX + uuid.uuid4().hex[:8]
        self.port = free_port()
        # Only what a user's shell would hold: no DB_* or INGEST_* from the test process.
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "COMPOSE_PROJECT_NAME": self.project,
            "DB_PORT": str(self.port),
            **{k: v for k, v in engine.items() if k != "DOCKER"},
        }

    def run(
        self, argv: list[str], timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        if argv[0] == "docker":
            argv = [self.docker, *argv[1:]]
        done = subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, (
                f"{shlex.join(argv)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def readme(self, line: str, **kwargs) -> subprocess.CompletedProcess:
        """A command line exactly as the README prints it."""
        return self.run(shlex.split(line), **kwargs)

    def compose(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(["docker", "compose", *args], **kwargs)

    def write_env(self, text: str | None) -> None:
        dotenv = self.workdir / ".env"
        if text is None:
            dotenv.unlink(missing_ok=True)
        else:
            dotenv.write_text(text)

    def logs(self, service: str, since: str | None = None) -> str:
        args = ["logs", "--no-color", "--no-log-prefix", service]
        if since:
            args[1:1] = ["--since", since]
        done = self.compose(*args)
        # Compose starts each line with an erase-line escape even without a terminal.
        return ANSI_ESCAPE.sub("", done.stdout + done.stderr)

    def wait_for_log(
        self, service: str, pattern: re.Pattern, since: str, timeout: float = RUN_TIMEOUT
    ) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            text = self.logs(service, since)
            if found := pattern.search(text):
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern.pattern!r} in the {service} log in {timeout} s:\n{text}")
            time.sleep(1)

    def wait_for_run(self, since: str, timeout: float = RUN_TIMEOUT) -> int:
        """The exit status of the first run that ended after SINCE."""
        return int(self.wait_for_log("ingester", RUN_ENDED, since, timeout).group(1))

    def psql(self, query: str) -> str:
        done = self.compose(
            "exec",
            "-T",
            "timescaledb",
            "psql",
            "-U",
            "postgres",
            "-d",
            "wearables",
            "-Atq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            query,
        )
        return done.stdout.strip()

    def container(self, service: str) -> dict:
        cid = self.compose("ps", "-a", "-q", service).stdout.split()
        assert cid, f"no {service} container"
        return json.loads(self.run(["docker", "inspect", cid[0]]).stdout)[0]

    def volumes(self) -> list[str]:
        done = self.run(
            [
                "docker",
                "volume",
                "ls",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
            ]
        )
        return done.stdout.split()

    def wait_healthy(self, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.container("timescaledb")["State"].get("Health", {}).get("Status") != "healthy":
            assert time.monotonic() < deadline, self.logs("timescaledb")[-3000:]
            time.sleep(1)

    def db_password(self) -> str:
        """The database's password: the .env's, else the compose file's default."""
        dotenv = self.workdir / ".env"
        found = re.search(r"^DB_PASSWORD=(.*)$", dotenv.read_text() if dotenv.exists() else "",
                          re.MULTILINE)
        return found.group(1) if found else "postgres"

    def up(self, *args: str) -> subprocess.CompletedProcess:
        return self.compose("up", "-d", *args, timeout=BUILD_TIMEOUT)


def now() -> str:
    """A --since value: the engine's clock is this machine's."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def remove_stale_projects(stack: Stack) -> None:
    """Stacks a killed test session left behind (only ours: the prefix)."""
    listed = stack.compose("ls", "-a", "--format", "json", check=False)
    for project in json.loads(listed.stdout or "[]"):
        if project["Name"].startswith(PROJECT_PREFIX):
            stack.run(
                ["docker", "compose", "-p", project["Name"], "down", "-v", "--rmi", "local"],
                check=False,
            )


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    engine = engine_settings()
    workdir = tmp_path_factory.mktemp("compose")
    # What compose and the build read, nothing else (no .env, no state, no venv).
    shutil.copy(ROOT / "docker-compose.yml", workdir)
    shutil.copy(ROOT / ".dockerignore", workdir)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "timescaledb", workdir / "timescaledb", ignore=ignore)
    shutil.copytree(ROOT / "ingestion", workdir / "ingestion", ignore=ignore)
    s = Stack(engine, workdir)
    remove_stale_projects(s)
    try:
        s.first_up_since = now()
        s.first_up = s.readme("docker compose up -d", timeout=BUILD_TIMEOUT, check=False)
        yield s
    finally:
        s.compose("down", "-v", "--rmi", "local", "--remove-orphans", timeout=300, check=False)


# --- first start, queries, exec ----------------------------------------------------------


def test_first_up_without_env_loads_the_demo_cohort_as_the_readme_says(stack):
    assert stack.first_up.returncode == 0, stack.first_up.stdout + stack.first_up.stderr
    # Built here, never looked for in a registry.
    assert not re.search(
        r"(?i)ingester\s+pull|pull access denied", stack.first_up.stdout + stack.first_up.stderr
    )
    assert stack.wait_for_run(stack.first_up_since) == 0
    log = stack.logs("ingester")
    section = readme_section("## Running it with Docker")
    for line in FIRST_RUN_LINES:
        assert line in section, f"the README no longer quotes {line!r}"
        assert line in log, log
    assert stack.psql(
        "SELECT string_agg(DISTINCT participant_id, ',' ORDER BY participant_id) FROM raw_data"
    ) == ("demo-01,demo-02,demo-03")


def test_readme_queries_run_through_compose_exec(stack):
    commands = [c for c in readme_block_after("# the newest rows") if "exec timescaledb psql" in c]
    assert len(commands) == 2, commands
    newest = stack.readme(commands[0]).stdout
    assert "(5 rows)" in newest and "timestamp" in newest, newest
    status = stack.readme(commands[1]).stdout
    for participant in ("demo-01", "demo-02", "demo-03"):
        assert participant in status, status


def test_status_and_a_forced_run_through_compose_exec(stack):
    commands = [c for c in readme_block_after("# the newest rows") if "exec ingester" in c]
    assert commands == [
        "docker compose exec ingester python /app/ingest.py status",
        "docker compose exec ingester python /app/ingest.py",
    ]
    status = stack.readme(commands[0]).stdout
    assert all(f"demo-0{i}" in status for i in (1, 2, 3)), status
    # The forced run, pinned to this instant; then the same run again finds everything stored.
    pinned = f"{commands[1]} --now {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    forced = stack.readme(pinned, timeout=RUN_TIMEOUT)
    assert "run finished: 3 participants (3 ok)" in forced.stdout + forced.stderr
    rerun = stack.readme(pinned, timeout=RUN_TIMEOUT)
    summary = re.search(
        r"run finished: 3 participants \(3 ok\); (\d+) rows read, (\d+) written",
        rerun.stdout + rerun.stderr,
    )
    assert summary, rerun.stdout + rerun.stderr
    assert int(summary.group(1)) > 0 and int(summary.group(2)) == 0, summary.group(0)


# --- restarts, schedule, settings --------------------------------------------------------


def test_every_start_up_run_after_compose_restart_exits_0(stack):
    # `restart` restarts both containers at once and does not wait for the health check: the
    # start-up run must wait for the database itself (issue 10).
    statuses = []
    for _ in range(3):
        since = now()
        stack.readme("docker compose restart", timeout=300)
        statuses.append(stack.wait_for_run(since))
    assert statuses == [0, 0, 0], stack.logs("ingester")[-4000:]


# Run inside the ingester container: the users of the processes running `python ingest.py`.
JOB_USERS = """
import os, pwd
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        if argv[1:2] == [b"ingest.py"]:
            print(pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name)
    except OSError:
        pass
"""


def test_cron_fires_a_one_minute_schedule_as_the_ingester_user(stack):
    stack.write_env('INGEST_SCHEDULE="* * * * *"\nRUN_ON_START=false\n')
    try:
        since = now()
        stack.up()
        # With RUN_ON_START=false, a running ingest.py is cron's.
        deadline = time.monotonic() + 120
        while not (
            users := stack.compose(
                "exec", "-T", "ingester", "python", "-c", JOB_USERS
            ).stdout.split()
        ):
            assert time.monotonic() < deadline, "cron started no run within 2 minutes"
            time.sleep(1)
        assert set(users) == {"ingester"}
        assert stack.wait_for_run(since) == 0
        assert "running once now" not in stack.logs("ingester", since)
    finally:
        stack.write_env(None)


def test_a_bad_schedule_ends_the_start_with_exit_2_and_one_line(stack):
    stack.write_env('INGEST_SCHEDULE="every night"\n')
    try:
        since = now()
        stack.up()
        deadline = time.monotonic() + 60
        while (state := stack.container("ingester")["State"])["ExitCode"] != 2:
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        lines = set(stack.logs("ingester", since).splitlines())
        assert lines == {
            "entrypoint: INGEST_SCHEDULE must be 5 cron fields"
            " (minute hour day-of-month month day-of-week),"
            ' e.g. "0 1 * * *", got "every night"'
        }
    finally:
        stack.write_env(None)  # the next test's `up -d` replaces the failing container


def test_a_changed_password_gives_the_readme_text_and_the_readme_fix_works(stack):
    troubleshooting = readme_section("### Troubleshooting")
    quoted = re.search(
        r"\*\*Wrong credentials\*\* \(`([^`]+)`, exit status (\d)\)", troubleshooting
    )
    assert quoted, "the README's 'Wrong credentials' entry changed shape"
    message, status = quoted.group(1), int(quoted.group(2))
    password = "a-new-password"
    stack.write_env(f"DB_PASSWORD={password}\n")
    since = now()
    stack.up()
    assert stack.wait_for_run(since) == status
    assert message in stack.logs("ingester", since)

    fix = readme_block_after("**Wrong credentials**")
    assert (
        fix[0].startswith("docker compose exec timescaledb psql") and "the-new-password" in fix[0]
    ), fix
    since = now()
    for line in fix:
        stack.readme(line.replace("the-new-password", password), timeout=300)
    # The fix itself starts a run: nothing else would until 01:00.
    assert stack.wait_for_run(since) == 0, stack.logs("ingester", since)
    # The password stays changed in the database; the .env that says so stays too.


# --- stop, down, kill --------------------------------------------------------------------


def test_stop_ends_a_running_job_within_the_grace_period(stack):
    """`docker compose stop` while a run is busy: both containers exit 0, none killed when
    Docker's grace period ran out. The run is held (the test locks the cohort table, so the
    run waits on it inside the database), so it is still running when the stop comes."""
    holder = psycopg2.connect(host="127.0.0.1", port=stack.port, dbname="wearables",
                              user="postgres", password=stack.db_password())
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE participants IN ACCESS EXCLUSIVE MODE")
            since = now()
            stack.readme("docker compose restart ingester", timeout=300)
            stack.wait_for_log("ingester", re.compile("running once now"), since)
            deadline = time.monotonic() + RUN_TIMEOUT
            while True:  # the start-up run waits for the lock: it is mid-run
                # pg_stat_activity is read once per transaction unless told to read again.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                               "= 'wearable-ingester' AND wait_event_type = 'Lock'")
                if cursor.fetchone()[0]:
                    break
                assert time.monotonic() < deadline, stack.logs("ingester", since)
                time.sleep(0.5)
            stopping = subprocess.Popen(
                [stack.docker, "compose", "stop"], cwd=stack.workdir, env=stack.env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            # The run stays held until its container has stopped; then the lock goes, so
            # that the database can stop too.
            deadline = time.monotonic() + RUN_TIMEOUT
            while stack.container("ingester")["State"]["Running"]:
                assert time.monotonic() < deadline, "the ingester did not stop"
                time.sleep(0.5)
    finally:
        holder.close()
    output = stopping.communicate(timeout=300)[0]
    assert stopping.returncode == 0, output
    for service in ("ingester", "timescaledb"):
        state = stack.container(service)["State"]
        # 137 would mean Docker had to SIGKILL it when the grace period ran out.
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), (service, state)
    log = stack.logs("ingester", since)
    assert "entrypoint: stopped" in log
    assert not RUN_ENDED.search(log), log  # the run was ended by the stop, not finished


def state_and_rows(stack: Stack) -> tuple[str, str]:
    state = stack.compose("exec", "-T", "ingester", "cat", "/var/lib/ingester/last_run.json").stdout
    rows = stack.psql("SELECT count(*), max(timestamp) FROM raw_data")
    return state, rows


def test_down_then_up_keeps_the_data_and_the_state(stack):
    stack.write_env("DB_PASSWORD=a-new-password\nRUN_ON_START=false\n")
    stack.up()
    stack.wait_healthy()
    before = state_and_rows(stack)
    assert json.loads(before[0]) and int(before[1].split("|")[0]) > 0
    stack.readme("docker compose down", timeout=300)
    assert len(stack.volumes()) == 2
    stack.up()
    stack.wait_healthy()
    assert state_and_rows(stack) == before


def test_down_v_removes_the_volumes(stack):
    assert len(stack.volumes()) == 2
    stack.readme("docker compose down -v", timeout=300)
    assert stack.volumes() == []


def table_digest(stack: Stack) -> str:
    return stack.psql(
        "SELECT count(*) || ' ' || md5(string_agg(format('%s|%s|%s|%s', participant_id,"
        " metric_type, timestamp, value), ',' ORDER BY participant_id, metric_type, timestamp))"
        " FROM raw_data"
    )


def test_docker_kill_during_the_first_backfill_then_up_equals_an_uninterrupted_run(stack):
    # One day of backfill instead of three: the test runs it three times.
    stack.write_env(f"INGEST_ARGS=--now {PINNED_NOW}\nBACKFILL_DAYS=1\n")
    try:
        since = now()
        stack.up()
        stack.wait_healthy()
        # Kill as soon as the first participant is committed, before the run ends.
        params = dict(
            host="127.0.0.1",
            port=stack.port,
            dbname="wearables",
            user="postgres",
            password="postgres",
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            conn = psycopg2.connect(**params)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT EXISTS (SELECT 1 FROM raw_data)")
                    if cur.fetchone()[0]:
                        break
            finally:
                conn.close()
            assert time.monotonic() < deadline, stack.logs("ingester", since)
            time.sleep(0.2)
        stack.run(["docker", "kill", stack.container("ingester")["Id"]])
        assert not RUN_ENDED.search(stack.logs("ingester", since)), "the run ended before the kill"
        interrupted = table_digest(stack)
        since = now()
        stack.readme("docker compose up -d", timeout=BUILD_TIMEOUT)
        assert stack.wait_for_run(since) == 0
        resumed = table_digest(stack)
        assert resumed != interrupted  # the kill did cut the backfill short

        stack.readme("docker compose down -v", timeout=300)
        since = now()
        stack.up()
        assert stack.wait_for_run(since) == 0
        assert table_digest(stack) == resumed
    finally:
        stack.write_env(None)


# --- more than one machine: compose --scale (issue 12) ---------------------------------

RUN_LOG = (
    "SELECT participant_id, window_start, window_end, status, rows_read, rows_written,"
    " rows_rejected, watermark FROM ingest_runs ORDER BY 1, 2, 3"
)


def start_up_runs(stack: Stack, count: int) -> list[int]:
    """The exit status of each ingester container's start-up run, once all have ended;
    every container is still running (cron) afterwards."""
    deadline = time.monotonic() + RUN_TIMEOUT
    ids = stack.compose("ps", "-q", "ingester").stdout.split()
    assert len(ids) == count, ids
    statuses: dict[str, int] = {}
    while len(statuses) < count:
        for cid in set(ids) - set(statuses):
            done = stack.run(["docker", "logs", cid])
            if found := RUN_ENDED.search(ANSI_ESCAPE.sub("", done.stdout + done.stderr)):
                statuses[cid] = int(found.group(1))
        assert time.monotonic() < deadline, (statuses, stack.logs("ingester")[-4000:])
        time.sleep(1)
    for cid in ids:
        state = json.loads(stack.run(["docker", "inspect", cid]).stdout)[0]["State"]
        assert state["Running"], state
    return [statuses[cid] for cid in ids]


def test_scale_3_start_up_runs_share_the_cohort_like_one_run(stack):
    # An empty database, so the three start-up runs have the whole (one-day) backfill to
    # share; --now pinned, so the single run below plans the same windows.
    stack.readme("docker compose down -v", timeout=300)
    stack.write_env(f"INGEST_ARGS=--now {PINNED_NOW}\nBACKFILL_DAYS=1\n")
    try:
        stack.up("--scale", "ingester=3")
        assert start_up_runs(stack, 3) == [0, 0, 0]
        # Each participant loaded by exactly one of the runs, and the runs took turns:
        assert stack.psql(
            "SELECT string_agg(participant_id || ':' || runs, ',' ORDER BY participant_id) FROM"
            " (SELECT participant_id, count(DISTINCT run_id) AS runs FROM ingest_runs"
            " GROUP BY 1) AS per_participant"
        ) == "demo-01:1,demo-02:1,demo-03:1"
        assert int(stack.psql("SELECT count(DISTINCT run_id) FROM ingest_runs")) >= 2
        # ... every claim of every batch taken once and finished, no batch left open.
        assert stack.psql(
            "SELECT count(*) FILTER (WHERE claims <> 1 OR done_at IS NULL) || ' '"
            " || (SELECT count(*) FROM ingest_batches WHERE outcome IS DISTINCT FROM 'done')"
            " FROM ingest_batch_items"
        ) == "0 0"
        shared = stack.psql(RUN_LOG), table_digest(stack)

        # The same night as one run with one worker, in one container, from nothing.
        stack.psql("TRUNCATE raw_data, ingest_runs, ingest_batches CASCADE")
        stack.compose("exec", "-T", "ingester", "rm", "-f", "/var/lib/ingester/last_run.json")
        single = stack.compose(
            "exec", "-T", "ingester", "python", "/app/ingest.py", "--now", PINNED_NOW,
            timeout=RUN_TIMEOUT,
        )
        assert "run finished: 3 participants (3 ok)" in single.stdout + single.stderr, single
        assert shared == (stack.psql(RUN_LOG), table_digest(stack))
    finally:
        stack.write_env(None)


# --- the dashboard (docs/dashboard.md) ---------------------------------------------------

DASHBOARD_PASSWORD = "a-long-test-password"


def dashboard_status(port: int, password: str | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request
    from base64 import b64encode

    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if password is not None:
        token = b64encode(f"coordinator:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_the_dashboard_service_needs_a_password_and_is_published_on_127_0_0_1(stack):
    # The ingester's first run gave the read-only role its password (compose's default).
    assert stack.wait_for_run(stack.first_up_since) == 0
    port = free_port()
    profile = ("--profile", "dashboard")
    stack.write_env(f"DASHBOARD_PORT={port}\n")
    try:
        since = now()
        stack.compose(*profile, "up", "-d", "dashboard", timeout=BUILD_TIMEOUT)
        # It listens on all of the container's interfaces: without a password it refuses.
        stack.wait_for_log("dashboard", re.compile(
            r"dashboard: DASHBOARD_PASSWORD must be set to serve on 0\.0\.0\.0"), since)

        stack.write_env(f"DASHBOARD_PORT={port}\nDASHBOARD_PASSWORD={DASHBOARD_PASSWORD}\n")
        since = now()
        stack.compose(*profile, "up", "-d", "dashboard", timeout=BUILD_TIMEOUT)
        stack.wait_for_log("dashboard", re.compile(
            r"dashboard on http://0\.0\.0\.0:8050/ \(password required\), reading the "
            r"database as dashboard_reader"), since)
        container = stack.container("dashboard")
        assert container["HostConfig"]["PortBindings"]["8050/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(port)}]
        assert "DB_PASSWORD=" in container["Config"]["Env"]  # not the owner's password
        assert container["Config"]["User"] == "ingester"
        assert dashboard_status(port) == (401, "")
        assert dashboard_status(port, "wrong")[0] == 401
        status, page = dashboard_status(port, DASHBOARD_PASSWORD)
        assert status == 200 and 'data-participant="demo-01"' in page, page[:2000]
        assert DASHBOARD_PASSWORD not in page
    finally:
        stack.compose(*profile, "rm", "-s", "-f", "dashboard", check=False)
        stack.write_env(None)
