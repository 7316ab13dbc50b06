import json
import os
import pwd
import shutil
import tempfile
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ingester import state
from support import run_ingest

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def test_round_trip(tmp_path):
    path = tmp_path / "last_run.json"
    state.save(path, {"p1": {"heart_rate": T0}})
    loaded = state.load(path)
    assert loaded.problem is None
    assert loaded.watermarks == {"p1": {"heart_rate": T0}}


def test_a_watermark_never_moves_back(tmp_path):
    path = tmp_path / "last_run.json"
    state.save(path, {"p1": {"heart_rate": T0}})
    state.save(path, {"p1": {"heart_rate": T0 - timedelta(days=3)}, "p2": {"spo2": T0}})
    assert state.load(path).watermarks == {"p1": {"heart_rate": T0}, "p2": {"spo2": T0}}


def test_missing_file_is_reported_not_raised(tmp_path):
    loaded = state.load(tmp_path / "nope.json")
    assert loaded == state.LoadedState({}, "missing")


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not JSON"),
    ('{"version": 99, "watermarks": {}}', "version"),
    ('{"version": 1, "watermarks": {"p1": {"hr": "yesterday"}}}', "not a timestamp"),
    ('{"version": 1, "watermarks": {"p1": {"hr": "2026-11-26T01:00:00"}}}', "no UTC offset"),
    ('{"version": 1, "watermarks": []}', "not an object"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),  # RecursionError in the parser
    ('{"version": 1, "watermarks": {"p1": {"hr": ' + "7" * 5000 + "}}}", "not JSON"),
    ('{"version": ' + "1" * 5000 + ', "watermarks": {}}', "not JSON"),  # int digit limit
    ('{"version": 1, "watermarks": {"p1": {"hr": ' + "[" * 500 + "]" * 500 + "}}}",
     "not a timestamp"),
    ('{"version": 1, "watermarks": {"p1": {"hr": 1e999}}}', "not a timestamp"),
])
def test_corrupt_files_are_named_with_a_reason(tmp_path, text, reason):
    path = tmp_path / "last_run.json"
    path.write_text(text)
    loaded = state.load(path)
    assert loaded.watermarks == {}
    assert loaded.problem.startswith("corrupt") and reason in loaded.problem


def test_written_atomically_leaving_no_temp_files(tmp_path):
    path = tmp_path / "last_run.json"
    state.save(path, {"p1": {"heart_rate": T0}})
    assert sorted(os.listdir(tmp_path)) == ["last_run.json", "last_run.json.lock"]
    assert json.loads(path.read_text())["version"] == state.VERSION


def test_set_aside_keeps_the_bad_file(tmp_path):
    path = tmp_path / "last_run.json"
    path.write_text("garbage")
    kept = state.set_aside(path, "bad-1")
    assert kept.read_text() == "garbage" and not path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
def test_another_user_can_share_the_lock_and_replace_the_file():
    """A forced run as root must not lock cron's unprivileged job out of the state."""
    directory = Path(tempfile.mkdtemp(prefix="state-"))  # pytest's tmp_path is root-only
    directory.chmod(0o777)  # the state directory belongs to the job's user in the image
    path = directory / "last_run.json"
    state.save(path, {"p1": {"heart_rate": T0}})  # as root: root owns the file and its lock
    later = T0 + timedelta(days=1)
    nobody = pwd.getpwnam("nobody")
    child = os.fork()
    if child == 0:  # the job's user, in a forked copy of this process
        code = 1
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            state.save(path, {"p1": {"heart_rate": later}})
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert state.load(path).watermarks == {"p1": {"heart_rate": later}}
    shutil.rmtree(directory)


@pytest.mark.parametrize("text", [
    '{"version": 1, "watermarks": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"version": 1, "watermarks": {"p1": {"hr": ' + "9" * 5000 + "}}}",
])
def test_a_state_file_python_cannot_parse_is_set_aside_not_a_crash_loop(env, text):
    path = Path(env["STATE_FILE"])
    path.parent.mkdir(parents=True)
    path.write_text(text)
    env = {**env, "DEMO_COHORT": "false"}
    first = run_ingest(env)
    assert first.returncode == 1, first.stderr  # flagged, as every corrupt state file
    assert "Traceback" not in first.stderr and "is corrupt" in first.stderr, first.stderr
    kept = [p for p in path.parent.iterdir() if p.name.startswith("last_run.json.bad-")]
    assert [p.read_text() for p in kept] == [text]
    second = run_ingest(env)
    assert second.returncode == 0, second.stderr
