"""scripts/timescaledb.sh when its port is taken: say by whom, and how to choose another."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

from support import ROOT

TSDB = ROOT / "scripts" / "timescaledb.sh"


def test_start_on_a_port_held_by_another_process_names_it_and_stops_at_once():
    data_dir = Path(f"/tmp/tsdb-test-port-{uuid.uuid4().hex[:8]}")
    with socket.socket() as holder:  # stands in for another checkout's server
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "TSDB_PORT": str(port), "TSDB_DATA_DIR": str(data_dir)}
        # Far below pg_ctl's own 120 s wait, which is what used to end it.
        done = subprocess.run([str(TSDB), "start"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode != 0
    assert done.stdout == ""  # nothing an `eval "$(… start)"` would take for settings
    message = done.stderr.strip().splitlines()[-1]
    assert f"port {port} is already in use by" in message, done.stderr
    if shutil.which("ss"):  # without iproute2 it can say only that the port is taken
        assert f"pid {os.getpid()}:" in message, message
    assert "TSDB_PORT=" in message and "--port" in message
    assert not data_dir.exists()  # refused before creating a cluster


def test_the_community_edition_says_why_it_cannot_start_without_its_source(tmp_path):
    env = {**os.environ, "TSDB_EDITION": "community",
           "TSDB_COMMUNITY_SOURCE": str(tmp_path / "nowhere")}
    done = subprocess.run([str(TSDB), "available"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "needs the TimescaleDB source" in line and "TSDB_COMMUNITY_SOURCE" in line
    assert str(tmp_path / "nowhere") in line


def test_an_unknown_edition_is_refused_with_exit_2():
    done = subprocess.run([str(TSDB), "--edition", "enterprise", "status"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("timescaledb.sh: --edition must be apache or community, "
                                   "not enterprise")
