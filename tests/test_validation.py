"""Bad values: exit 2 and one line naming the variable or argument, before anything else.

Each case runs the real command. The database settings point at a port where nothing
listens, with DB_WAIT_SECONDS=0: a run that got as far as connecting would exit 3, so exit 2
also proves that nothing was connected. Nothing may be written either (no state directory).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import ingest_env, query, run_ingest, unused_port

TOMORROW = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
ADD = ("participant", "add", "p1", "--timezone", "UTC", "--seed", "1", "--start-date")
ENROL = ("participant", "enrol", "g1", "--timezone", "UTC", "--token-file", "-",
         "--start-date")


@pytest.fixture
def offline(tmp_path):
    """A run's environment whose database cannot be reached (exit 3 if it tried)."""
    db_env = {"DB_HOST": "127.0.0.1", "DB_PORT": str(unused_port()), "DB_NAME": "wearables",
              "DB_USER": "postgres", "DB_PASSWORD": "hunter2"}
    return ingest_env(db_env, tmp_path, DB_WAIT_SECONDS="0")


def assert_refused(done, *expected: str) -> str:
    """Exit 2, one line holding every expected phrase, no traceback, no secret."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    for phrase in expected:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("variable", ["DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD"])
def test_a_setting_that_is_not_utf8_is_refused_in_one_line(offline, tmp_path, variable):
    # What a shell passes on for a value saved in Latin-1: os.environ holds it as surrogates.
    env: dict[str, str | bytes] = {**offline, variable: b"caf\xe9"}
    line = assert_refused(run_ingest(env), variable, "not UTF-8")
    assert "caf" not in line  # not even a non-secret is echoed half-decoded
    assert not (tmp_path / "state").exists()


def test_a_latin1_env_file_is_refused_in_one_line(offline, tmp_path):
    (tmp_path / ".env").write_bytes(b"# settings\nDB_PASSWORD=caf\xe9\n")
    line = assert_refused(run_ingest(offline), ".env", "UTF-8", "line 2")
    assert "caf" not in line
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("variable, value, expected", [
    ("HTTP_TIMEOUT", "inf", "HTTP_TIMEOUT must be a number of seconds"),
    ("HTTP_TIMEOUT", "1e400", "HTTP_TIMEOUT must be a number of seconds"),
    ("HTTP_TIMEOUT", "nan", "HTTP_TIMEOUT must be a number of seconds"),
    ("HTTP_TIMEOUT", "1e300", "HTTP_TIMEOUT must be a number of seconds"),
    ("DB_PORT", "1_000", "DB_PORT must be an integer 1-65535, got '1_000'"),
    ("DB_PORT", "+5432", "DB_PORT must be an integer 1-65535"),
    ("SEED", "4_2", "SEED must be an integer"),
    ("BATCH_ROWS", "1e5", "BATCH_ROWS must be an integer"),
    ("DB_WAIT_SECONDS", "-1", "DB_WAIT_SECONDS must be a whole number of seconds"),
    ("GOOGLE_TOKEN_URL", "https://oauth2.example:99999/token", "GOOGLE_TOKEN_URL must be"),
])
def test_a_malformed_number_is_refused_in_one_line(offline, tmp_path, variable, value,
                                                   expected):
    assert_refused(run_ingest({**offline, variable: value}), expected)
    assert not (tmp_path / "state").exists()


def test_a_state_file_that_is_a_directory_is_refused_and_never_moved(db, tmp_path):
    directory = tmp_path / "results"
    directory.mkdir()
    (directory / "analysis.csv").write_text("precious\n")
    env = ingest_env(db.env, tmp_path, STATE_FILE=str(directory))
    assert_refused(run_ingest(env, "--now", "2026-03-08T01:00:00Z"), "STATE_FILE",
                   "not of a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert (directory / "analysis.csv").read_text() == "precious\n"
    assert query(db.env, "SELECT count(*) FROM participants") == [(0,)]


@pytest.mark.parametrize("seed", ["99999999999999999999", "9223372036854775808", "-1", "1_0"])
def test_a_seed_outside_bigint_is_refused_in_one_line(offline, seed):
    args = ("participant", "add", "p1", "--timezone", "UTC", "--seed", seed,
            "--start-date", "2026-11-01")
    assert_refused(run_ingest(offline, *args), "--seed", "0-9223372036854775807")


def test_the_largest_seed_is_accepted_and_stored(db, tmp_path):
    env = ingest_env(db.env, tmp_path)
    done = run_ingest(env, "participant", "add", "p1", "--timezone", "UTC",
                      "--seed", "9223372036854775807", "--start-date", "2026-11-01")
    assert done.returncode == 0, done.stderr
    assert query(db.env, "SELECT seed FROM participants") == [(2**63 - 1,)]


def test_since_later_than_until_is_refused(db, tmp_path):
    env = ingest_env(db.env, tmp_path)
    done = run_ingest(env, "--since", "2026-03-09", "--until", "2026-03-08")
    assert_refused(done, "--since must be earlier than --until")
    assert not (tmp_path / "state").exists()
    assert query(db.env, "SELECT count(*) FROM participants") == [(0,)]  # no demo cohort


@pytest.mark.parametrize("command", [ADD, ENROL], ids=["add", "enrol"])
@pytest.mark.parametrize("day", ["0001-01-01", "0026-11-01", "2008-12-31", TOMORROW])
def test_a_start_date_before_the_floor_or_after_today_is_refused(offline, command, day):
    done = run_ingest(offline, *command, day, stdin="1//0gtoken-for-the-test\n")
    assert_refused(done, "--start-date", "2009-01-01", day)


@pytest.mark.parametrize("args, expected", [
    (("--now", "0001-01-01"), "--now"),
    (("--since", "0026-11-01"), "--since"),
    (("--participant", "p 1"), "--participant"),
    (("participant", "remove", "../etc"), "participant_id"),
    (("--frobnicate",), "unrecognized arguments: --frobnicate"),
])
def test_other_bad_arguments_are_one_line(offline, args, expected):
    assert_refused(run_ingest(offline, *args), expected)
