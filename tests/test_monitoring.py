"""Monitoring (issue 14): what a run exports, and real Prometheus tools reading it.

Real processes only: the ingester runs as a command against the real TimescaleDB, pushes to
a real Pushgateway and writes a textfile that a real node_exporter serves; a real Prometheus
scrapes the Pushgateway and evaluates the shipped alert rule. The shipped rules are checked
and unit-tested with promtool.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from conftest import ScratchDatabase, scratch_database
from daemons import Daemon, api, binary, get, node_exporter, poll, prometheus, pushgateway
from ingester import monitoring
from ingester.config import load_settings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import ROOT, ingest_env, query, run_ingest

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
README = (ROOT / "docs" / "monitoring.md").read_text()  # the page that holds the tables
ALLOWED_LABELS = {"participant_id", "outcome", "job", "instance"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, sorted labels) -> value, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float | None:
    for (found, found_labels), number in parsed.items():
        has = dict(found_labels)
        if found == name and all(has.get(k) == v for k, v in labels.items()):
            return number
    return None


# --- settings ---------------------------------------------------------------------------


def test_metrics_settings_are_off_by_default_and_validated():
    assert load_settings({}).metrics_file is None
    assert load_settings({}).pushgateway_url == ""
    assert str(load_settings({"METRICS_FILE": "/var/lib/nx/w.prom"}).metrics_file).endswith(
        "w.prom")


@pytest.mark.parametrize(
    ("variable", "bad", "message"),
    [
        ("METRICS_FILE", "/tmp/metrics.txt", "METRICS_FILE must be a file path ending in .prom"),
        ("PUSHGATEWAY_URL", "pushgateway:9091", "PUSHGATEWAY_URL must be an http(s) URL"),
    ],
)
def test_a_bad_metrics_setting_exits_2_naming_it(tmp_path, variable, bad, message):
    env = ingest_env({"DB_HOST": "127.0.0.1", "DB_PORT": "1"}, tmp_path, **{variable: bad})
    done = run_ingest(env)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_metrics_file_that_names_a_directory_exits_2_and_leaves_it_alone(tmp_path):
    folder = tmp_path / "textfile.prom"
    folder.mkdir()
    env = ingest_env({"DB_HOST": "127.0.0.1", "DB_PORT": "1"}, tmp_path, METRICS_FILE=str(folder))
    done = run_ingest(env)
    assert done.returncode == 2
    assert "METRICS_FILE must be a file path ending in .prom" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert folder.is_dir() and not any(folder.iterdir())


# --- the shipped rules ------------------------------------------------------------------


def test_promtool_checks_the_shipped_rules():
    done = subprocess.run([binary("promtool"), "check", "rules", str(RULES)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_promtool_unit_tests_of_every_alert_pass():
    done = subprocess.run([binary("promtool"), "test", "rules", str(RULE_TESTS)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    # Every shipped alert has a firing case (exp_alerts with an entry) and a quiet case.
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), rule["alert"]
        assert any(not case["exp_alerts"] for case in mine), rule["alert"]


def test_the_shipped_prometheus_config_is_valid():
    done = subprocess.run(
        [binary("promtool"), "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_shipped_alertmanager_config_is_valid():
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian: apt-get install prometheus-alertmanager)")
    done = subprocess.run(
        [amtool, "check-config", str(ROOT / "deploy/alertmanager/alertmanager.yml")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the pure core ----------------------------------------------------------------------


def test_last_success_is_exported_only_when_given():
    run = monitoring.RunFacts(100.0, 2.0, False, 5, 4, 1, {"ok": 1, "failed": 1})
    person = monitoring.ParticipantFacts("p1", None, None, None, False)
    without = samples(generate_latest(
        monitoring.build_registry(run, [person], 1, None)).decode())
    assert value(without, monitoring.LAST_SUCCESS) is None
    assert value(without, "wearables_ingest_last_run_success") == 0
    with_it = samples(generate_latest(
        monitoring.build_registry(run, [person], 1, 42.0)).decode())
    assert value(with_it, monitoring.LAST_SUCCESS) == 42.0
    # A participant never loaded has no made-up timestamps, but its consent state.
    assert value(with_it, "wearables_ingest_participant_newest_data_timestamp_seconds") is None
    assert value(with_it, "wearables_ingest_participant_needs_consent", participant_id="p1") == 0


def test_needs_consent_alone_does_not_fail_the_run_for_monitoring():
    from ingester.pipeline import Outcome

    consent = [Outcome("p1", "ok"), Outcome("p2", "needs_consent")]
    assert monitoring.run_facts(consent, 1.0, True, 0.0).succeeded
    assert not monitoring.run_facts([Outcome("p1", "failed")], 1.0, True, 0.0).succeeded
    assert not monitoring.run_facts([Outcome("p1", "held")], 1.0, True, 0.0).succeeded
    assert not monitoring.run_facts([Outcome("p1", "ok")], 1.0, False, 0.0).succeeded
    warned = Outcome("p1", "ok", warning="state file not written")
    assert not monitoring.run_facts([warned], 1.0, True, 0.0).succeeded
    counts = monitoring.run_facts(consent, 1.0, True, 0.0).participants
    assert counts == {"ok": 1, "failed": 0, "needs_consent": 1, "held": 0, "nothing_to_do": 0,
                      "removed": 0}


def test_the_readme_documents_every_metric_with_type_and_labels():
    rows = re.findall(r"^\| `(wearables_ingest_[a-z0-9_]+)` \| (\w+) \| ([^|]+) \| ([^|]*) \|",
                      README, re.M)
    documented = {name: (kind, labels.strip()) for name, kind, _unit, labels in rows}
    assert set(documented) == set(monitoring.METRIC_HELP)
    for name, (_help, labels) in monitoring.METRIC_HELP.items():
        kind, shown = documented[name]
        assert kind == "gauge", name
        assert shown == (", ".join(f"`{label}`" for label in labels) or "none"), name


def test_the_readme_explains_every_shipped_alert():
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        assert f"`{rule['alert']}`" in README, rule["alert"]


# --- real runs, a real Pushgateway, a real Prometheus -----------------------------------


@dataclass(frozen=True)
class Stack:
    database: ScratchDatabase
    gateway: Daemon
    metrics_file: Path
    run_began: float
    run_ended: float
    tmp: Path
    stopped_now: datetime  # the --now of `stopped`'s one run: its watermark
    fresh_now: datetime  # the --now of `fresh`'s run, whose metrics are pushed


@pytest.fixture(scope="module")
def stack(db_server, template_db, tmp_path_factory) -> Iterator[Stack]:
    """Two synthetic participants in UTC: `stopped`, enrolled 4 days ago, whose data stopped
    2 hours into its first day (so its complete days since are not worn either), and a later
    run of it that failed; and `fresh`, enrolled 4 days ago and loaded up to the last whole
    minute, in two slices (four local days, then today's) whatever the hour. Both runs push
    to a real Pushgateway and write the textfile; every expected value is known before they
    run."""
    tmp = tmp_path_factory.mktemp("monitoring")
    fresh_now = datetime.now(UTC).replace(second=0, microsecond=0)
    today = fresh_now.date()
    starts = {"stopped": today - timedelta(days=4), "fresh": today - timedelta(days=4)}
    stopped_now = datetime.combine(starts["stopped"], datetime.min.time(), UTC) + timedelta(
        hours=2)
    with scratch_database(db_server, template_db) as database, pushgateway(tmp) as gateway:
        metrics_file = tmp / "textfile" / "wearables.prom"
        env = ingest_env(database.env, tmp, DEMO_COHORT="false",
                         PUSHGATEWAY_URL=gateway.url, METRICS_FILE=str(metrics_file))
        for seed, (pid, start) in enumerate(starts.items(), 1):
            added = run_ingest(env, "participant", "add", pid, "--timezone", "UTC",
                               "--seed", str(seed), "--start-date", start.isoformat())
            assert added.returncode == 0, added.stderr
        first = run_ingest(env, "--participant", "stopped", "--now", stopped_now.isoformat())
        assert first.returncode == 0, first.stderr
        # A later run of `stopped` failed: its last success is still the run before.
        query(database.env, "INSERT INTO ingest_runs (run_id, participant_id, status, error, "
                            "started_at) VALUES (gen_random_uuid(), 'stopped', 'failed', "
                            "'planted by the test', clock_timestamp()) RETURNING id")
        began = time.time()
        second = run_ingest(env, "--participant", "fresh", "--now", fresh_now.isoformat())
        ended = time.time()
        assert second.returncode == 0, second.stderr
        assert "metrics pushed to the Pushgateway" in second.stderr
        yield Stack(database, gateway, metrics_file, began, ended, tmp, stopped_now, fresh_now)


def instant_query(prometheus_url: str, promql: str) -> list[dict]:
    return api(prometheus_url, "query", query=promql)["result"]


def test_a_run_pushes_and_prometheus_returns_its_metrics(stack):
    with prometheus(stack.tmp, stack.gateway.url) as server:
        poll(lambda: instant_query(server.url, "wearables_ingest_run_rows_written"),
             "the first scrape of the Pushgateway")

        def one(selector: str) -> tuple[dict, float]:
            # last_over_time: one scrape that timed out on this busy machine marks the series
            # stale, and a plain instant query would then find nothing.
            (result,) = instant_query(server.url, f"last_over_time({selector}[10m])")
            return result["metric"], float(result["value"][1])

        # The run's totals are its slices' sums.
        (read, written, rejected), = query(
            stack.database.env,
            "SELECT sum(rows_read), sum(rows_written), sum(rows_rejected) FROM ingest_runs "
            "WHERE participant_id = 'fresh'")
        assert written > 0
        labels, got = one("wearables_ingest_run_rows_written")
        assert labels["job"] == "wearables_ingest" and got == written
        assert one("wearables_ingest_run_rows_read")[1] == read
        assert one("wearables_ingest_run_rows_rejected")[1] == rejected
        assert one('wearables_ingest_run_participants{outcome="ok"}')[1] == 1
        assert one('wearables_ingest_run_participants{outcome="failed"}')[1] == 0
        assert one("wearables_ingest_last_run_success")[1] == 1
        assert one("wearables_ingest_failed_runs_in_a_row")[1] == 0
        last_success = one(monitoring.LAST_SUCCESS)[1]
        assert stack.run_began <= last_success <= stack.run_ended
        assert 0 < one("wearables_ingest_run_duration_seconds")[1] <= (
            stack.run_ended - stack.run_began)

        # Per participant, against what the test knows: the watermark is the run's --now,
        # the newest point the last minute's before it, the last success the end of the
        # last slice that committed (not of the failed run after it, nor an earlier slice).
        runs = query(stack.database.env,
                     "SELECT participant_id, status, extract(epoch FROM finished_at) "
                     "FROM ingest_runs ORDER BY finished_at")
        for pid, now, slices in (("stopped", stack.stopped_now, 1),
                                 ("fresh", stack.fresh_now, 2)):
            ended = [float(at) for p, status, at in runs if p == pid and status == "ok"]
            assert len(ended) == slices, runs
            selector = f'{{participant_id="{pid}"}}'
            newest = one("wearables_ingest_participant_newest_data_timestamp_seconds"
                         + selector)[1]
            assert now.timestamp() - 60 <= newest < now.timestamp(), (pid, newest)
            assert one("wearables_ingest_participant_last_success_timestamp_seconds"
                       + selector)[1] == ended[-1]
            assert one("wearables_ingest_participant_watermark_timestamp_seconds"
                       + selector)[1] == now.timestamp()
            assert one("wearables_ingest_participant_needs_consent" + selector)[1] == 0
        assert [status for p, status, _ in runs if p == "stopped"] == ["ok", "failed"]
        assert stack.run_began <= ended[-1] <= stack.run_ended  # fresh's, this run's
        # `stopped`: its last run failed, so every day from its watermark on is a day *we*
        # failed to load, never flagged against the participant (docs/dashboard.md: its first
        # day ends after the watermark too); `fresh` was enrolled 4 days ago and wore it every
        # day. tests/test_report_truth.py checks a flagged day beside a failed one.
        for pid, invalid, low_wear in (("stopped", 0, 0), ("fresh", 0, 0)):
            selector = f'{{participant_id="{pid}"}}'
            assert one("wearables_ingest_participant_invalid_day_in_last_7" + selector
                       )[1] == invalid
            assert one("wearables_ingest_participant_low_wear" + selector)[1] == low_wear
        # The oldest watermark is stopped's, as old as the time since then.
        age = one("wearables_ingest_oldest_watermark_age_seconds")[1]
        oldest = stack.stopped_now.timestamp()
        assert stack.run_began - oldest <= age <= stack.run_ended - oldest

        # Every documented metric arrived, and no label but the fixed ones.
        series = api(server.url, "series", **{"match[]": '{__name__=~"wearables_ingest_.*"}'})
        assert {s["__name__"] for s in series} == set(monitoring.METRIC_HELP)
        for one_series in series:
            assert set(one_series) - {"__name__"} <= ALLOWED_LABELS, one_series


def alert_rule_scaled_down(tmp: Path) -> Path:
    """The shipped no-new-data rule, with 1 h instead of 48 h and `for: 20s` instead of
    30 minutes, so that a real Prometheus shows pending, then firing, within a test."""
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [r for r in rules["groups"][0]["rules"]
               if r["alert"] == "WearablesIngestParticipantNoNewData"]
    assert "48 * 3600" in rule["expr"] and rule["for"] == "30m"
    rule["expr"] = rule["expr"].replace("48 * 3600", "3600")
    rule["for"] = "20s"
    path = tmp / "scaled-alerts.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "scaled", "rules": [rule]}]}))
    return path


def test_an_alert_goes_pending_then_firing_for_the_participant_whose_data_stopped(stack):
    rule_file = alert_rule_scaled_down(stack.tmp)
    with prometheus(stack.tmp, stack.gateway.url, rule_file) as server:

        def alerts(state: str) -> list[dict] | None:
            found = [a for a in api(server.url, "alerts")["alerts"] if a["state"] == state]
            return found or None

        (pending,) = poll(lambda: alerts("pending"), "the alert to be pending")
        (firing,) = poll(lambda: alerts("firing"), "the alert to fire")
        for alert in (pending, firing):
            assert alert["labels"]["alertname"] == "WearablesIngestParticipantNoNewData"
            assert alert["labels"]["participant_id"] == "stopped"
        assert "stopped" in firing["annotations"]["summary"]
        # The participant loaded up to now is not alerting, pending or firing.
        assert [a["labels"]["participant_id"] for a in api(server.url, "alerts")["alerts"]] == [
            "stopped"]
        print("fired:", json.dumps(firing, indent=1))


def test_the_textfile_parses_and_node_exporter_serves_it(stack):
    text = stack.metrics_file.read_text()
    checked = subprocess.run([binary("promtool"), "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not list(stack.metrics_file.parent.glob("*.prom.*"))  # no temporary file left
    in_file = samples(text)
    with node_exporter(stack.metrics_file.parent, stack.tmp) as exporter:
        served = samples(poll(lambda: get(exporter.url + "/metrics"), "node_exporter"))
    assert value(served, "node_textfile_scrape_error") == 0
    for (name, labels), number in in_file.items():
        assert served[(name, labels)] == number, name
    assert value(served, monitoring.LAST_SUCCESS) is not None


# --- failures: the last success stays, the runs in a row count ---------------------------


def test_failed_runs_keep_the_last_success_and_count_in_a_row(db, tmp_path):
    metrics_file = tmp_path / "wearables.prom"
    with pushgateway(tmp_path) as gateway:
        env = ingest_env(db.env, tmp_path, DEMO_COHORT="false", PUSHGATEWAY_URL=gateway.url,
                         METRICS_FILE=str(metrics_file))

        def exported() -> tuple[dict, dict]:
            pushed = {key: number for key, number in samples(get(gateway.url + "/metrics") or "")
                      .items() if key[0].startswith("wearables_ingest_")}  # not its own
            return samples(metrics_file.read_text()), pushed

        ok = run_ingest(env)  # nobody enrolled yet: a successful run with 0 participants
        assert ok.returncode == 0, ok.stderr
        in_file, pushed = exported()
        success = value(in_file, monitoring.LAST_SUCCESS)
        assert success is not None and value(pushed, monitoring.LAST_SUCCESS) == success

        # A Google participant without the Google settings fails before loading.
        enrolled = run_ingest(env, "participant", "enrol", "g1", "--timezone", "UTC",
                              "--token-file", "-", stdin="1//a-refresh-token")
        assert enrolled.returncode == 0, enrolled.stderr
        for in_a_row in (1, 2):
            failed = run_ingest(env)
            assert failed.returncode == 1, failed.stderr
            in_file, pushed = exported()
            for source in (in_file, pushed):
                assert value(source, monitoring.LAST_SUCCESS) == success
                assert value(source, "wearables_ingest_last_run_success") == 0
                assert value(source, "wearables_ingest_failed_runs_in_a_row") == in_a_row
                assert value(source, "wearables_ingest_run_participants",
                             outcome="failed") == 1
            assert value(in_file, "wearables_ingest_last_run_timestamp_seconds") > success
        # The error text is in the run log, never in a label.
        for (_name, labels), _number in {**in_file, **pushed}.items():
            assert set(dict(labels)) <= ALLOWED_LABELS
        assert "ConfigError" not in metrics_file.read_text()


def test_a_failed_push_is_logged_and_never_fails_the_run(db, tmp_path):
    port = 1  # nothing listens there
    env = ingest_env(db.env, tmp_path, DEMO_COHORT="false",
                     PUSHGATEWAY_URL=f"http://user:s3cret@127.0.0.1:{port}")
    done = run_ingest(env)
    assert done.returncode == 0, done.stderr
    assert f"metrics not pushed to the Pushgateway at http://127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr


def test_needs_consent_is_exported_per_participant(db, tmp_path):
    from fake_google_health import FakeGoogleHealth

    metrics_file = tmp_path / "wearables.prom"
    with FakeGoogleHealth() as fake:
        env = ingest_env(db.env, tmp_path, DEMO_COHORT="false", METRICS_FILE=str(metrics_file),
                         GOOGLE_CLIENT_ID=fake.client_id, GOOGLE_CLIENT_SECRET=fake.client_secret,
                         GOOGLE_HEALTH_URL=fake.url, GOOGLE_TOKEN_URL=fake.token_url)
        enrolled = run_ingest(env, "participant", "enrol", "g1", "--timezone", "UTC",
                              "--token-file", "-", stdin=fake.refresh_token)
        assert enrolled.returncode == 0, enrolled.stderr
        fake.revoke_grant()
        done = run_ingest(env)
    assert done.returncode == 1, done.stderr  # the exit code still says: look at this
    exported = samples(metrics_file.read_text())
    assert value(exported, "wearables_ingest_participant_needs_consent", participant_id="g1") == 1
    assert value(exported, "wearables_ingest_run_participants", outcome="needs_consent") == 1
    # Not a failed run: the consent alert says it, "no successful run" stays quiet.
    assert value(exported, monitoring.LAST_SUCCESS) is not None
    assert value(exported, "wearables_ingest_failed_runs_in_a_row") == 0


# --- compose ----------------------------------------------------------------------------


def compose_config(tmp: Path, *profile: str) -> dict:
    """`docker compose [--profile …] config` on a copy of the files it reads (no .env)."""
    found = subprocess.run(["bash", str(ROOT / "scripts" / "compose-client.sh")],
                           capture_output=True, text=True, timeout=600)
    if found.returncode != 0:
        pytest.skip("no Docker Compose v2 client (scripts/compose-client.sh failed)")
    if not (tmp / "docker-compose.yml").exists():
        for name in ("docker-compose.yml", "deploy", "ingestion", "timescaledb"):
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, tmp / name)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run([found.stdout.strip(), *profile, "config", "--format", "json"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_compose_monitoring_profile_validates_and_is_optional(tmp_path):
    plain = compose_config(tmp_path)
    assert set(plain["services"]) == {"timescaledb", "ingester"}
    assert set(plain["volumes"]) == {"timescaledb-data", "ingester-state"}
    config = compose_config(tmp_path, "--profile", "monitoring")
    services = config["services"]
    assert set(services) == {"timescaledb", "ingester", "pushgateway", "prometheus",
                             "alertmanager"}
    assert services["ingester"] == plain["services"]["ingester"]  # the profile changes nothing
    for name, image in (("pushgateway", "prom/pushgateway:v"), ("prometheus", "prom/prometheus:v"),
                        ("alertmanager", "prom/alertmanager:v")):
        assert services[name]["image"].startswith(image), name
        for port in services[name]["ports"]:
            assert port["host_ip"] == "127.0.0.1", port
    mounts = {v["target"]: v for v in services["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus"]["source"]).parts[-2:] == ("deploy", "prometheus")
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    shipped = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert shipped["rule_files"] == ["alerts.yml"]  # beside it in the mounted directory
    targets = [t for job in shipped["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]]
    assert "pushgateway:9091" in targets
    assert shipped["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"]


# --- credentials in PUSHGATEWAY_URL -------------------------------------------------------

PUSH_USER, PUSH_PASSWORD = "metrics", "S3cret:@/x"  # ':', '@' and '/' percent-encoded below
PUSH_USERINFO = f"{PUSH_USER}:{quote(PUSH_PASSWORD, safe='')}"


class BasicAuthGateway(ThreadingHTTPServer):
    """A stand-in Pushgateway that demands HTTP basic auth and keeps what was pushed."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), BasicAuthHandler)
        self.pushes: list[tuple[str, str, bytes]] = []  # method, path, body (authorised)
        self.refused = 0

    @property
    def port(self) -> int:
        return self.server_address[1]


class BasicAuthHandler(BaseHTTPRequestHandler):
    server: BasicAuthGateway

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = base64.b64encode(f"{PUSH_USER}:{PUSH_PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self.server.refused += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="pushgateway"')
            self.end_headers()
            return
        self.server.pushes.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT = _answer

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def basic_auth_gateway() -> Iterator[BasicAuthGateway]:
    server = BasicAuthGateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_credentials_in_the_pushgateway_url_arrive_as_basic_auth(db, tmp_path):
    with basic_auth_gateway() as gateway:
        env = ingest_env(db.env, tmp_path, DEMO_COHORT="false",
                         PUSHGATEWAY_URL=f"http://{PUSH_USERINFO}@127.0.0.1:{gateway.port}")
        done = run_ingest(env)
    assert done.returncode == 0, done.stderr
    assert gateway.refused == 0, done.stderr
    assert [(method, path) for method, path, _ in gateway.pushes] == [
        ("POST", f"/metrics/job/{monitoring.JOB}")]
    assert b"wearables_ingest_last_run_success" in gateway.pushes[0][2]
    assert f"metrics pushed to the Pushgateway at http://127.0.0.1:{gateway.port}" in done.stderr
    assert PUSH_PASSWORD not in done.stderr and quote(PUSH_PASSWORD, safe="") not in done.stderr


@pytest.mark.parametrize("failure", ["wrong password", "no port, nothing listens",
                                     "closed port", "a malformed URL"])
def test_no_log_line_of_a_failing_push_carries_the_password(db, tmp_path, failure):
    secret = "S3cretPushPassword"
    with basic_auth_gateway() as gateway:
        url = {
            "wrong password": f"http://{PUSH_USER}:{secret}@127.0.0.1:{gateway.port}",
            "no port, nothing listens": f"http://{PUSH_USER}:{secret}@127.0.0.1",
            "closed port": f"http://{PUSH_USER}:{secret}@127.0.0.1:1",
            "a malformed URL": f"http://{PUSH_USER}:{secret}@127.0.0.1:99999",
        }[failure]
        env = ingest_env(db.env, tmp_path, DEMO_COHORT="false", PUSHGATEWAY_URL=url)
        done = run_ingest(env)
    lines = (done.stdout + done.stderr).splitlines()
    assert lines, "the run said nothing"
    assert [line for line in lines if secret in line] == []
    if failure == "a malformed URL":  # refused at start, naming the variable
        assert done.returncode == 2 and len(lines) == 1 and "PUSHGATEWAY_URL" in lines[0]
        return
    assert done.returncode == 0, done.stderr
    assert any("metrics not pushed to the Pushgateway at http://127.0.0.1" in line
               for line in lines), done.stderr
    assert gateway.pushes == []
