"""`ingest.py dashboard` in Debian's headless Chromium (through Playwright), on the real
TimescaleDB, with the cohort of test_report_truth.py: a held and a failed participant, one
our loads failed for, one who stopped wearing the device, one who is fine."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import pyarrow.parquet as pq
import pytest
from conftest import scratch_database
from ingester import export
from support import ARTEFACTS, INGEST, ingest_env, ok, query, run_ingest
from test_report_truth import NOW, cohort

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
# Chromium as a test browser: no sandbox (root in CI), no GPU, nothing fetched from outside.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LISTENING = re.compile(r"dashboard on (http://127\.0\.0\.1:\d+/)")


@pytest.fixture(scope="module")
def study(db_server, template_db, tmp_path_factory) -> Iterator[dict[str, str]]:
    with scratch_database(db_server, template_db) as database:
        env = ingest_env(database.env, tmp_path_factory.mktemp("dashboard"))
        cohort(database, env)
        yield env


@pytest.fixture(scope="module")
def dashboard(study) -> Iterator[str]:
    """The dashboard's URL: the real command, on a free port, at the cohort's --now."""
    server = subprocess.Popen(
        [sys.executable, str(INGEST), "--now", NOW, "dashboard", "--port", "0"],
        env={**study, "DASHBOARD_PASSWORD": PASSWORD}, stderr=subprocess.PIPE, text=True,
        cwd=study["HOME"])
    try:
        assert server.stderr is not None
        seen = []
        for line in server.stderr:  # the line comes once the socket is bound
            seen.append(line)
            if match := LISTENING.search(line):
                break
        else:
            pytest.fail("the dashboard ended before listening: " + "".join(seen))
        # Keep reading its log, so that a full pipe never stops the server.
        threading.Thread(target=seen.extend, args=(server.stderr,), daemon=True).start()
        yield match[1]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(dashboard, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            args=CHROMIUM_ARGS, headless=True, accept_downloads=True,
            viewport={"width": 1500, "height": 900},
            http_credentials={"username": "coordinator", "password": PASSWORD})
        # A bound for a hung page, not a speed: parallel workers share two cores, and the
        # first chart imports matplotlib.
        context.set_default_timeout(180_000)
        context.set_default_navigation_timeout(180_000)
        try:
            yield context
        finally:
            context.close()


def screenshot(page, name: str) -> None:
    ARTEFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"dashboard-{name}.png"), full_page=True)


def test_the_cohort_page_lists_everyone_ours_first_with_their_flags(browser, dashboard):
    page = browser.new_page()
    page.goto(dashboard)
    rows = page.locator("#cohort tbody tr")
    order = [rows.nth(n).get_attribute("data-participant") for n in range(rows.count())]
    # Our failures first (nothing of theirs can be judged), the longest silent first; then
    # their flags, then the rest.
    assert order == ["d-held", "e-google", "c-failed", "b-stopped", "a-ok"]

    def row(pid: str) -> dict[str, str]:
        found = page.locator(f'#cohort tr[data-participant="{pid}"]')
        return {"state": found.locator("td.state").inner_text(),
                "flags": found.locator("td.flags").inner_text(),
                "cells": "|".join(found.locator("td.cell").all_inner_texts())}

    assert row("b-stopped")["flags"].startswith("no upload for 48 h")
    assert "low wear on 4 of the last 7 days" in row("b-stopped")["flags"]
    assert row("a-ok")["flags"] == "" and row("a-ok")["state"] == "ok"
    failed = row("c-failed")
    assert failed["state"].startswith("failed") and "PayloadError" in failed["state"]
    assert failed["flags"] == ""
    # The 14 local days up to today: 03-05 to 03-08 not loaded, today not over.
    assert failed["cells"].split("|")[-5:] == ["?", "?", "?", "?", "?"]
    assert row("a-ok")["cells"].split("|")[-1].endswith("~")
    assert row("d-held")["state"].startswith("held") and row("d-held")["flags"] == ""
    assert "GOOGLE_CLIENT_ID" in row("e-google")["state"] and row("e-google")["flags"] == ""
    assert PASSWORD not in page.content() and PASSWORD not in page.url
    screenshot(page, "cohort")


def test_the_csv_download_equals_report_format_csv(browser, dashboard, study, tmp_path):
    page = browser.new_page()
    page.goto(dashboard)
    with page.expect_download() as download:
        page.click("#download-csv")
    saved = tmp_path / "cohort.csv"
    download.value.save_as(saved)
    expected = ok(run_ingest(study, "--now", NOW, "report", "--format", "csv")).stdout
    assert saved.read_text() == expected
    assert len(expected.splitlines()) > 5 * 7  # it holds the cohort's days


def test_the_participant_page_draws_its_charts_from_the_rollups(browser, dashboard):
    page = browser.new_page()
    page.goto(dashboard)
    page.click('#cohort a:text-is("a-ok")')
    page.wait_for_url("**/participant/a-ok")
    for chart in ("heart_rate", "wear"):
        svg = page.locator(f"#chart-{chart} svg")
        assert svg.count() == 1, chart
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 60, (chart, box)
        assert svg.locator("path").count() > 10, chart  # the data, not only the frame
    assert page.locator("#chart-heart_rate #hr-mean path").count() >= 1
    # One bar per local day of the last 14 since the start date (03-02 to today, 03-09).
    assert page.locator("#chart-wear #wear-bars path").count() == 8
    assert "no sleep stored yet" in page.locator("#chart-hypnogram").inner_text()
    assert page.locator("#runs tbody tr").count() >= 1
    screenshot(page, "participant")

    page.goto(dashboard + "participant/c-failed")
    assert "malformed payload" in page.locator("#runs").inner_text()
    page.goto(dashboard + "participant/nobody")
    assert "Not Found" in page.content()


def test_the_ingestion_page_shows_failures_first_and_the_alerts(browser, dashboard):
    page = browser.new_page()
    page.goto(dashboard + "ingestion")
    statuses = page.locator("#runs tbody td.state").all_inner_texts()
    assert statuses[:2] == ["failed", "failed"] and "ok" in statuses
    assert statuses.index("ok") > max(i for i, s in enumerate(statuses) if s == "failed")
    alerts = page.locator("#alerts").inner_text()
    assert "WearablesIngestParticipantNoNewData" in alerts
    assert "WearablesIngestParticipantLowWear" in alerts
    screenshot(page, "ingestion")


def _fetch(url: str, password: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if password is not None:
        token = b64encode(f"coordinator:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _get(url: str, password: str | None = None) -> int:
    return _fetch(url, password)[0]


def _unzip(archive: zipfile.ZipFile, into: Path) -> Path:
    """The zip's one folder, unpacked: the export's DIR."""
    (folder,) = {name.split("/")[0] for name in archive.namelist()}
    archive.extractall(into)
    return into / folder


def _same_export(downloaded: Path, exported: Path, data_file: str) -> None:
    """The downloaded folder holds what `ingest.py export` wrote: the same files, rows and
    side files; its manifest's hashes match its own files."""
    manifest = json.loads((downloaded / "manifest.json").read_text())
    expected = json.loads((exported / "manifest.json").read_text())
    assert sorted(p.name for p in downloaded.iterdir()) == sorted(
        [f["name"] for f in expected["files"]] + ["manifest.json"])
    assert [(f["name"], f["rows"]) for f in manifest["files"]] == [
        (f["name"], f["rows"]) for f in expected["files"]]
    for entry in manifest["files"]:
        digest = hashlib.sha256((downloaded / entry["name"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"], entry["name"]
    if data_file.endswith(".parquet"):
        got, want = pq.read_table(downloaded / data_file), pq.read_table(exported / data_file)
        assert got.schema == want.schema and got.to_pylist() == want.to_pylist()
    else:
        assert (downloaded / data_file).read_text() == (exported / data_file).read_text()
    for side in ("participants.csv", "data_dictionary.csv"):
        assert (downloaded / side).read_text() == (exported / side).read_text(), side
    assert (downloaded / "participants.csv").read_text().splitlines()[1:] == [
        "a-ok,Europe/Berlin,synthetic,2026-03-02"]  # that participant only


def test_the_participant_page_downloads_what_ingest_export_writes(
        browser, dashboard, study, tmp_path):
    page = browser.new_page()
    page.goto(dashboard + "participant/a-ok")
    screenshot(page, "participant-export")
    with page.expect_download() as download:
        page.click("#download-export")  # the defaults: Parquet, raw, every day
    assert download.value.suggested_filename == "a-ok-raw-parquet.zip"
    saved = tmp_path / "download.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        downloaded = _unzip(archive, tmp_path / "unzipped")
    ok(run_ingest(study, "export", "--participant", "a-ok", "--out", str(tmp_path / "cli")))
    _same_export(downloaded, tmp_path / "cli", "a-ok.parquet")
    assert pq.read_table(downloaded / "a-ok.parquet").num_rows > 7 * 1440  # a week, a minute

    page.goto(dashboard + "participant/a-ok")
    page.select_option("#export select[name=format]", "csv")
    page.select_option("#export select[name=resolution]", "1h")
    page.fill("#export input[name=since]", "2026-03-03")
    page.fill("#export input[name=until]", "2026-03-06")
    with page.expect_download() as download:
        page.click("#download-export")
    assert download.value.suggested_filename == "a-ok-1h-2026-03-03-2026-03-06-csv.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        downloaded = _unzip(archive, tmp_path / "unzipped-csv")
    ok(run_ingest(study, "export", "--participant", "a-ok", "--format", "csv",
                  "--resolution", "1h", "--since", "2026-03-03", "--until", "2026-03-06",
                  "--out", str(tmp_path / "cli-csv")))
    _same_export(downloaded, tmp_path / "cli-csv", "a-ok.csv")
    assert len((downloaded / "a-ok.csv").read_text().splitlines()) == 1 + 3 * 24  # 3 days


def test_the_export_reads_every_resolution_as_the_read_only_role(dashboard):
    """The dashboard connects only as dashboard_reader: each resolution's tables are among
    what it may read."""
    for resolution in ("raw", "1m", "1h", "1d"):
        status, body = _fetch(f"{dashboard}participant/a-ok/export?resolution={resolution}"
                              "&format=csv", PASSWORD)
        assert status == 200, (resolution, body[:200])
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith("/manifest.json")]
            files = json.loads(archive.read(name))["files"]
        assert [f["rows"] > 0 for f in files if f["name"] == "a-ok.csv"] == [True], resolution
    assert _get(dashboard + "participant/nobody/export", PASSWORD) == 404


def test_the_reader_may_read_every_relation_the_export_reads(study):
    """Read from the export's own queries, so that a table or view a later migration gives
    the export (raw_data_sourced, the sleep tables) fails here until it is granted."""
    from ingester import export_files

    layouts = [export_files.data_layout(resolution, provenance)
               for resolution in export.RESOLUTIONS for provenance in (False, True)]
    layouts += export_files.SLEEP_FILES.values()
    read = {re.search(r"FROM (\w+)", layout.source)[1] for layout in layouts}
    read |= {"participants", "schema_migrations"}  # export.py's own two queries
    assert {"raw_data", "raw_data_sourced", "data_1m", "data_1h", "data_1d",
            "sleep_sessions"} <= read
    refused = [relation for relation in sorted(read) if query(
        study, "SELECT CASE WHEN to_regclass(%s) IS NULL THEN false ELSE NOT "
               "has_table_privilege('dashboard_reader', %s, 'SELECT') END",
        (relation, relation))[0][0]]
    assert refused == []


@pytest.mark.parametrize(("query", "line"), [
    ("format=xlsx", "format: expected one of parquet, csv, got 'xlsx'"),
    ("resolution=5m", "resolution: expected one of raw, 1m, 1h, 1d, got '5m'"),
    ("since=03/01/2026", "since: expected a date YYYY-MM-DD, got '03/01/2026'"),
    ("since=2026-03-05&until=2026-03-05",
     "--since must be earlier than --until, got 2026-03-05 and 2026-03-05"),
])
def test_a_bad_export_query_is_a_400_with_one_line(dashboard, query, line):
    status, body = _fetch(f"{dashboard}participant/a-ok/export?{query}", PASSWORD)
    assert (status, body.decode()) == (400, line + "\n")


def test_every_page_needs_the_password(dashboard):
    for path in ("", "cohort.csv", "participant/a-ok", "participant/a-ok/export", "ingestion",
                 "static/style.css"):
        assert _get(dashboard + path) == 401, path
        assert _get(dashboard + path, "wrong") == 401, path
    assert _get(dashboard, PASSWORD) == 200


def test_without_a_password_it_serves_only_on_loopback(study):
    done = run_ingest(study, "dashboard", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dashboard: DASHBOARD_PASSWORD must be set to serve on 0.0.0.0, which is not a "
        "loopback address (or use --host 127.0.0.1)"]


def test_the_read_only_role_cannot_write_escalate_or_read_tokens(db, env):
    reader = psycopg2.connect(**{**db.params, "user": "dashboard_reader"})
    try:
        reader.autocommit = True
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM participant_flags")  # what it is for
            for statement, refused in [
                ("SET TRANSACTION READ WRITE; INSERT INTO raw_data VALUES "
                 "(now(), 'p1', 'heart_rate', 60)", psycopg2.errors.InsufficientPrivilege),
                ("INSERT INTO raw_data VALUES (now(), 'p1', 'heart_rate', 60)",
                 psycopg2.errors.ReadOnlySqlTransaction),
                ("BEGIN READ WRITE; DELETE FROM raw_data", psycopg2.errors.InsufficientPrivilege),
                ("SET ROLE postgres", psycopg2.errors.InsufficientPrivilege),
                ("BEGIN READ WRITE; ALTER ROLE dashboard_reader SUPERUSER",
                 psycopg2.errors.InsufficientPrivilege),
                ("SELECT refresh_token FROM google_credentials",
                 psycopg2.errors.InsufficientPrivilege),
                ("BEGIN READ WRITE; CREATE TABLE mine (x int)",
                 psycopg2.errors.InsufficientPrivilege),
            ]:
                with pytest.raises(refused):
                    cursor.execute(statement)
                cursor.execute("ROLLBACK")
    finally:
        reader.close()
    assert query(env, "SELECT rolsuper, rolcreaterole, rolcreatedb, rolinherit, rolbypassrls "
                      "FROM pg_roles WHERE rolname = 'dashboard_reader'") == [
        (False, False, False, False, False)]
    assert query(env, "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r "
                      "ON r.oid = m.member WHERE r.rolname = 'dashboard_reader'") == [(0,)]


def test_the_ingester_gives_the_reader_its_password_as_a_scram_verifier(db, env):
    ok(run_ingest({**env, "DASHBOARD_DB_PASSWORD": "reader-secret"}, "participant", "list"))
    (verifier,) = query(env, "SELECT rolpassword FROM pg_authid "
                             "WHERE rolname = 'dashboard_reader'")[0]
    assert verifier.startswith("SCRAM-SHA-256$") and "reader-secret" not in verifier


def test_the_docs_page_is_where_the_help_points():
    assert (Path(__file__).resolve().parent.parent / "docs" / "dashboard.md").is_file()
