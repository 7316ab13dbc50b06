import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from ingester import state

UTC = UTC
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
