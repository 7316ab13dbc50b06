"""Real Prometheus, Pushgateway and node_exporter processes on 127.0.0.1, for the tests.

Debian's packages `prometheus` (with promtool), `prometheus-pushgateway` and
`prometheus-node-exporter` (.ci/run installs them). Each daemon listens on a free port, is
waited for with a bounded deadline, and is killed when its context ends.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

# Generous: the machine is shared, and a deadline only bounds how long a broken test hangs.
DEADLINE_SECONDS = 120.0
POLL_SECONDS = 0.2


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (Debian: apt-get install prometheus "
                    "prometheus-pushgateway prometheus-node-exporter; .ci/run does)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def poll(check: Callable[[], T | None], what: str, deadline: float = DEADLINE_SECONDS) -> T:
    """check() until it returns something truthy; fail after the deadline."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"gave up after {deadline:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()
    except OSError:
        return None


@dataclass(frozen=True)
class Daemon:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def daemon(args: list[str], port: int, ready_path: str, log: Path) -> Iterator[Daemon]:
    with log.open("wb") as output:
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{args[0]} exited with {process.returncode}: {log.read_text()}")
            return get(url + ready_path) is not None

        poll(ready, f"{Path(args[0]).name} on {url}")
        yield Daemon(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def pushgateway(tmp: Path) -> Iterator[Daemon]:
    port = free_port()
    # Debian's build persists to /var/lib/prometheus/pushgateway.data by default: shared by
    # every Pushgateway on the machine, so one test (or run) would see another's metrics.
    args = [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file="]
    with daemon(args, port, "/-/ready", tmp / f"pushgateway-{port}.log") as running:
        yield running


@contextmanager
def node_exporter(textfile_dir: Path, tmp: Path) -> Iterator[Daemon]:
    port = free_port()
    args = [
        binary("prometheus-node-exporter"),
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={textfile_dir}",
    ]
    with daemon(args, port, "/metrics", tmp / f"node-exporter-{port}.log") as running:
        yield running


@contextmanager
def prometheus(tmp: Path, scrape_target: str, rule_file: Path | None = None) -> Iterator[Daemon]:
    """Scrapes one target every second (honor_labels, as for a Pushgateway) and evaluates
    rule_file every second."""
    port = free_port()
    home = tmp / f"prometheus-{port}"
    home.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_file)] if rule_file else [],
        "scrape_configs": [{
            "job_name": "pushgateway",
            "honor_labels": True,
            "static_configs": [{"targets": [urllib.parse.urlsplit(scrape_target).netloc]}],
        }],
    }
    (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    args = [
        binary("prometheus"),
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with daemon(args, port, "/-/ready", home / "prometheus.log") as running:
        yield running


def api(prometheus_url: str, path: str, **params: str) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    text = get(f"{prometheus_url}/api/v1/{path}{query}")
    assert text is not None, f"Prometheus API {path} did not answer"
    body = json.loads(text)
    assert body["status"] == "success", body
    return body["data"]
