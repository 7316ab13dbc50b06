"""`ingest.py export` against the real TimescaleDB: exact rows, typed and parseable files,
rollups as stored, the dictionary and manifest, and files that land whole or not at all."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ScratchDatabase, scratch_database
from ingester import cli, export
from ingester.metrics import AZM_SCORE, METRICS
from ingester.model import GOOGLE_HEALTH, SYNTHETIC, TAKEOUT
from ingester.sources.google_health.transform import DATA_TYPES
from ingester.sources.synthetic import transform as synthetic
from ingester.sources.takeout import transform as takeout
from support import ROOT, ingest_env, ok, query, run_ingest

# Three zones: Berlin springs forward on 2024-03-31 (a 23-hour local day), Los Angeles is
# 7 hours behind UTC, Kolkata 5:30 ahead with no DST.
ZONES = {"p-berlin": "Europe/Berlin", "p-la": "America/Los_Angeles",
         "p-kolkata": "Asia/Kolkata"}
SPAN = ("--since", "2024-03-30", "--until", "2024-04-02")  # three local days each
FIRST_DAY, END_DAY = date(2024, 3, 30), date(2024, 4, 2)
TOKEN = "1//refresh-token-that-must-never-be-exported"

# Two days more than the export's span on either side (the export must leave them out):
# heart rate every 7 s, SpO2 a minute with fractional values, a daily metric at each local
# midnight.
FILL = """
INSERT INTO participants (participant_id, timezone, source, start_date, seed)
SELECT id, zone, 'synthetic', DATE '2024-03-28', 7 FROM unnest(%(ids)s::text[], %(zones)s::text[])
    AS c(id, zone);
SELECT setseed(0.27);
INSERT INTO raw_data ("timestamp", participant_id, metric_type, value)
SELECT t, p.participant_id, 'heart_rate', 50 + floor(random() * 100)
FROM participants p,
     generate_series(TIMESTAMPTZ '2024-03-28 00:00Z', TIMESTAMPTZ '2024-04-04 00:00Z',
                     INTERVAL '7 seconds') t;
INSERT INTO raw_data ("timestamp", participant_id, metric_type, value)
SELECT t, p.participant_id, 'spo2', 90 + random() * 10
FROM participants p,
     generate_series(TIMESTAMPTZ '2024-03-28 00:00Z', TIMESTAMPTZ '2024-04-04 00:00Z',
                     INTERVAL '1 minute') t;
INSERT INTO raw_data ("timestamp", participant_id, metric_type, value)
SELECT d::date::timestamp AT TIME ZONE p.timezone, p.participant_id, 'steps_daily',
       floor(random() * 20000)
FROM participants p, generate_series(DATE '2024-03-28', DATE '2024-04-04', INTERVAL '1 day') d;
SELECT rollups_refresh(participant_id, TIMESTAMPTZ '2024-03-27 00:00Z',
                       TIMESTAMPTZ '2024-04-05 00:00Z') FROM participants;
"""


@pytest.fixture(scope="module")
def cohort(db_server, template_db) -> Iterator[ScratchDatabase]:
    """Three participants in three zones, a week of data, rollups as the ingester keeps them.
    Read only: each test exports into a directory of its own."""
    with scratch_database(db_server, template_db, "export") as database:
        connection = database.connect()
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(FILL, {"ids": list(ZONES), "zones": list(ZONES.values())})
        finally:
            connection.close()
        yield database


@pytest.fixture
def cohort_env(cohort: ScratchDatabase, tmp_path: Path) -> dict[str, str]:
    return ingest_env(cohort.env, tmp_path)


def exported(env: dict[str, str], out: Path, *args: str) -> dict:
    ok(run_ingest(env, "export", "--out", str(out), *args))
    return json.loads((out / "manifest.json").read_text())


def stored(env: dict[str, str], participant: str) -> list[tuple]:
    """raw_data of the participant's three local days, found by SQL's own zone rules."""
    return query(env, """
        SELECT metric_type, "timestamp", value FROM raw_data r JOIN participants p
            USING (participant_id)
        WHERE participant_id = %s
          AND "timestamp" >= (%s::date::timestamp AT TIME ZONE p.timezone)
          AND "timestamp" < (%s::date::timestamp AT TIME ZONE p.timezone)
        ORDER BY metric_type, "timestamp" """, (participant, FIRST_DAY, END_DAY))


def wall_clock(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


# --- pure ------------------------------------------------------------------------------------


def test_the_data_dictionary_lists_every_metric_of_the_vocabulary():
    rows = export.dictionary_rows()
    assert [row[0] for row in rows] == list(METRICS)
    for name, unit, meaning, resolution, sources in rows:
        assert (unit, meaning) == (METRICS[name].unit, METRICS[name].description)
        assert resolution and sources, name


def test_each_metric_names_exactly_the_sources_whose_transforms_emit_it():
    emits = {
        SYNTHETIC: {
            "heart_rate", "spo2", "resting_heart_rate", "hrv_rmssd_daily",
            *(metric for metric, _ in synthetic._ZONE_MINUTES),
            *(metric for metric, _ in synthetic._HRV),
            *(metric for metric, _ in synthetic._BREATHING),
            *synthetic.ACTIVITY_TYPES.values(),
        },
        GOOGLE_HEALTH: {
            *(t.metric_type for t in DATA_TYPES.values()),
            *(metric for t in DATA_TYPES.values() for _, metric in t.zone_metrics),
        },
        TAKEOUT: {
            *(v.metric for v in (*takeout.CSV_VALUES.values(), *takeout.JSON_VALUES.values(),
                                 takeout.AZM)),
            *(f"{zone}_active_zone_minutes" for zone in AZM_SCORE),
        },
    }
    for name, metric in METRICS.items():
        assert set(metric.sources) == {kind for kind, names in emits.items() if name in names}, name


def test_a_date_bound_is_the_participants_local_midnight_even_on_a_dst_day():
    start, end = export.span(date(2024, 3, 31), date(2024, 4, 1), "Europe/Berlin")
    assert start == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert end == datetime(2024, 3, 31, 22, tzinfo=UTC)  # 23 hours later
    instant = datetime(2024, 3, 31, 5, tzinfo=UTC)
    assert export.span(instant, None, "Asia/Kolkata") == (instant, "infinity")
    # America/Santiago skips 2024-09-08 00:00: the day starts at the jump, 01:00 -03.
    assert export.span(date(2024, 9, 8), None, "America/Santiago")[0] == datetime(
        2024, 9, 8, 4, tzinfo=UTC)


# --- against the database --------------------------------------------------------------------


def test_a_raw_export_holds_exactly_the_stored_rows_with_local_times_in_three_zones(
    cohort_env, tmp_path
):
    out = tmp_path / "out"
    exported(cohort_env, out, *SPAN)
    for participant, zone in ZONES.items():
        table = pq.read_table(out / f"{participant}.parquet")
        rows = stored(cohort_env, participant)
        assert len(rows) > 3 * 86_400 // 7
        assert table.num_rows == len(rows)
        got = table.to_pylist()
        assert [(r["metric_type"], r["timestamp_utc"], r["value"]) for r in got] == rows
        for row in got:
            assert row["timestamp_local"] == wall_clock(row["timestamp_utc"], zone)
            assert (row["participant_id"], row["timezone"]) == (participant, zone)
            assert row["unit"] == METRICS[row["metric_type"]].unit
            assert (row["source"], row["device"]) == ("synthetic", None)
        daily = [r["timestamp_local"] for r in got if r["metric_type"] == "steps_daily"]
        assert daily == [datetime.combine(FIRST_DAY + timedelta(days=n), time()) for n in range(3)]

    berlin = pq.read_table(out / "p-berlin.parquet").to_pylist()
    on_dst_day = [r["timestamp_local"] for r in berlin if r["metric_type"] == "spo2"
                  and r["timestamp_local"].date() == date(2024, 3, 31)]
    assert len(on_dst_day) == 23 * 60  # the clocks skip 02:00-03:00
    assert not any(t.hour == 2 for t in on_dst_day)


def test_parquet_round_trips_with_typed_columns(cohort_env, tmp_path):
    out = tmp_path / "out"
    exported(cohort_env, out, "--participant", "p-la", "--metric", "spo2", *SPAN)
    table = pq.read_table(out / "p-la.parquet")
    assert table.schema.remove_metadata() == pa.schema([
        ("participant_id", pa.string()), ("metric_type", pa.string()), ("unit", pa.string()),
        ("timestamp_utc", pa.timestamp("us", tz="UTC")),
        ("timestamp_local", pa.timestamp("us")), ("timezone", pa.string()),
        ("value", pa.float64()), ("source", pa.string()), ("device", pa.string()),
    ])
    assert table.schema.metadata[b"timezone"] == b"America/Los_Angeles"
    assert set(table.column("metric_type").to_pylist()) == {"spo2"}
    assert sorted(p.name for p in out.iterdir()) == [
        "data_dictionary.csv", "manifest.json", "p-la.parquet", "participants.csv"]


def test_csv_parses_with_the_csv_module_and_holds_the_same_values(cohort_env, tmp_path):
    out = tmp_path / "out"
    exported(cohort_env, out, "--participant", "p-kolkata", "--format", "csv", *SPAN)
    with (out / "p-kolkata.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    expected = stored(cohort_env, "p-kolkata")
    assert [(r["metric_type"], datetime.fromisoformat(r["timestamp_utc"]), float(r["value"]))
            for r in rows] == expected
    first = rows[0]
    assert datetime.fromisoformat(first["timestamp_local"]) == wall_clock(
        datetime.fromisoformat(first["timestamp_utc"]), "Asia/Kolkata")
    assert list(first) == ["participant_id", "metric_type", "unit", "timestamp_utc",
                           "timestamp_local", "timezone", "value", "source", "device"]


def test_an_hourly_export_equals_data_1h_and_a_daily_one_data_1d(cohort_env, tmp_path):
    hourly, daily = tmp_path / "hourly", tmp_path / "daily"
    exported(cohort_env, hourly, "--resolution", "1h")
    exported(cohort_env, daily, "--resolution", "1d", "--format", "csv")
    for participant, zone in ZONES.items():
        rows = pq.read_table(hourly / f"{participant}.parquet").to_pylist()
        assert [(r["metric_type"], r["timestamp_utc"], r["count"], r["min"], r["max"],
                 r["mean"], r["sum"]) for r in rows] == query(cohort_env, """
            SELECT metric_type, bucket, count, min, max, mean, sum FROM data_1h
            WHERE participant_id = %s ORDER BY metric_type, bucket""", (participant,))
        assert all(r["timestamp_local"] == wall_clock(r["timestamp_utc"], zone) for r in rows)
        with (daily / f"{participant}.csv").open(newline="") as stream:
            days = list(csv.DictReader(stream))
        assert [(d["metric_type"], date.fromisoformat(d["date_local"]), int(d["count"]),
                 float(d["sum"])) for d in days] == query(cohort_env, """
            SELECT metric_type, day, count, sum FROM data_1d
            WHERE participant_id = %s ORDER BY metric_type, day""", (participant,))


def test_the_manifest_names_every_file_with_its_rows_and_hash(cohort_env, tmp_path):
    out = tmp_path / "out"
    manifest = exported(cohort_env, out, *SPAN, "--format", "csv")
    files = {f["name"]: f for f in manifest["files"]}
    assert sorted(files) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    for name, entry in files.items():
        content = (out / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest(), name
        assert entry["bytes"] == len(content)
        assert entry["rows"] == len(content.decode().splitlines()) - 1, name  # the header
    assert manifest["arguments"] == {
        "out": str(out), "participants": [], "since": "2024-03-30", "until": "2024-04-02",
        "metrics": [], "resolution": "raw", "format": "csv"}
    assert manifest["service"]["schema_version"] == query(
        cohort_env, "SELECT max(version) FROM schema_migrations")[0][0]
    assert len(manifest["service"]["code_sha256"]) == 64
    datetime.fromisoformat(manifest["exported_at"])


def test_participants_csv_has_zone_source_and_start_but_no_secret(db, env, tmp_path):
    query(db.env, "INSERT INTO participants (participant_id, timezone, source, start_date) "
                  "VALUES ('g1', 'Europe/Paris', 'google_health', '2024-03-01')")
    query(db.env, "INSERT INTO google_credentials (participant_id, refresh_token) "
                  "VALUES ('g1', %s)", (TOKEN,))
    out = tmp_path / "out"
    exported(env, out)
    with (out / "participants.csv").open(newline="") as stream:
        assert list(csv.reader(stream)) == [
            ["participant_id", "timezone", "source", "start_date"],
            ["g1", "Europe/Paris", "google_health", "2024-03-01"]]
    assert pq.read_table(out / "g1.parquet").num_rows == 0
    for path in out.iterdir():
        assert TOKEN.encode() not in path.read_bytes(), path.name


KILLED_EXPORT = """
import sys
sys.path.insert(0, sys.argv[1])
from ingester import cli, export_files

write = export_files.ParquetSink.write

def write_then_wait(self, batch):
    write(self, batch)
    print("wrote a row group", flush=True)
    sys.stdin.read()  # until the test kills this process

export_files.ParquetSink.write = write_then_wait
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_killed_export_leaves_no_file_under_a_final_name_and_the_same_command_finishes(
    cohort_env, tmp_path
):
    out = tmp_path / "out"
    arguments = ("export", "--out", str(out), *SPAN)
    # The real command, stopped inside its first file, right after a row group went out.
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(ROOT / "ingestion"), *arguments],
        env=cohort_env, cwd=cohort_env["HOME"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "wrote a row group\n"
        staged = out / export.STAGING / "p-berlin.parquet"
        assert staged.stat().st_size > 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert [p.name for p in out.iterdir()] == [export.STAGING]

    manifest = exported(cohort_env, out, *SPAN)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f["name"] for f in manifest["files"]] + ["manifest.json"])
    for entry in manifest["files"]:
        assert hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert pq.read_table(out / "p-berlin.parquet").num_rows == len(stored(cohort_env, "p-berlin"))


def test_a_second_export_into_the_same_directory_replaces_the_first(cohort_env, tmp_path):
    out = tmp_path / "out"
    exported(cohort_env, out, "--participant", "p-la", "--metric", "spo2", *SPAN)
    manifest = exported(cohort_env, out, "--participant", "p-la", "--metric", "heart_rate")
    assert set(pq.read_table(out / "p-la.parquet").column("metric_type").to_pylist()) == {
        "heart_rate"}
    entry = next(f for f in manifest["files"] if f["name"] == "p-la.parquet")
    assert hashlib.sha256((out / "p-la.parquet").read_bytes()).hexdigest() == entry["sha256"]


@pytest.mark.parametrize(("arguments", "message"), [
    (("--metric", "heartrate"), "expected a metric_type of the vocabulary"),
    (("--resolution", "5m"), "invalid choice: '5m'"),
    (("--format", "xlsx"), "invalid choice: 'xlsx'"),
    (("--since", "2024-04-02", "--until", "2024-03-30"), "--since must be earlier than --until"),
    (("--since", "2024-03-30", "--until", "2024-04-02T00:00Z"),
     "must both be dates or both date-times"),
    (("--since", "yesterday"), "expected an ISO date or date-time"),
    (("--participant", "nobody"), "unknown participant(s): nobody"),
])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(
    cohort_env, tmp_path, arguments, message
):
    out = tmp_path / "out"
    done = run_ingest(cohort_env, "export", "--out", str(out), *arguments)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_an_out_that_is_a_file_exits_2(cohort_env, tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    done = run_ingest(cohort_env, "export", "--out", str(target))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"export: cannot create --out {target}")
    assert target.read_text() == "mine"


# Issue 24 builds the sleep tables (CONTRACTS.md); until then the test makes them with the
# contracted columns, so the export's use of them is tested now. Where they exist they are
# used as built. raw_data_sourced is migration 13's.
PROVENANCE = """
INSERT INTO participants (participant_id, timezone, source, start_date, seed)
VALUES ('p-berlin', 'Europe/Berlin', 'synthetic', '2024-03-01', 1);
-- The provenance view is migration 13's, the sleep tables migration 12's.
INSERT INTO raw_data ("timestamp", participant_id, metric_type, value, origin_id)
SELECT '2024-03-30 12:00Z', 'p-berlin', 'heart_rate', 61, origin_id FROM data_origins
WHERE source = 'synthetic' AND device = 'Charge 6';
INSERT INTO sleep_sessions (participant_id, session_start, session_end, is_main_sleep,
                            minutes_asleep, minutes_awake, source, kind)
VALUES ('p-berlin', '2024-03-30 22:30Z', '2024-03-31 05:30Z', true, 390, 30, 'synthetic',
        'stages'),
       ('p-berlin', '2024-03-29 22:30Z', '2024-03-30 05:30Z', true, 400, 20, 'synthetic',
        'stages');
INSERT INTO sleep_stages (participant_id, session_start, stage_start, stage_end, stage, source)
VALUES ('p-berlin', '2024-03-30 22:30Z', '2024-03-30 22:30Z', '2024-03-30 23:00Z', 'light',
        'synthetic');
"""


def test_provenance_and_sleep_are_exported_once_the_database_has_them(db, env, tmp_path):
    query(db.env, PROVENANCE)
    out = tmp_path / "out"
    manifest = exported(env, out, "--since", "2024-03-30", "--until", "2024-04-01")
    [row] = pq.read_table(out / "p-berlin.parquet").to_pylist()
    assert (row["source"], row["device"]) == ("synthetic", "Charge 6")
    sessions = pq.read_table(out / "sleep_sessions.parquet").to_pylist()
    # The night that starts on 2024-03-29 22:30 UTC starts on the 29th in Berlin too: left out.
    assert [(s["session_start_utc"], s["session_start_local"], s["session_end_local"],
             s["minutes_asleep"], s["timezone"]) for s in sessions] == [
        (datetime(2024, 3, 30, 22, 30, tzinfo=UTC), datetime(2024, 3, 30, 23, 30),
         datetime(2024, 3, 31, 7, 30), 390, "Europe/Berlin")]  # after the DST jump: +2
    [stage] = pq.read_table(out / "sleep_stages.parquet").to_pylist()
    assert (stage["stage"], stage["stage_end_local"]) == ("light", datetime(2024, 3, 31, 0, 0))
    assert {"sleep_sessions.parquet", "sleep_stages.parquet"} <= {
        f["name"] for f in manifest["files"]}

    metric_only = tmp_path / "metric"
    exported(env, metric_only, "--metric", "heart_rate")
    assert not list(metric_only.glob("sleep_*"))


def test_the_benchmark_runs_on_a_tiny_span(db_server, tmp_path):
    results = tmp_path / "export.json"
    dsn = " ".join(f"{k}={v}" for k, v in db_server.params("postgres").items())
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "export.py"), "--days", "0.01", "--long-days",
         "0.04", "--dsn", dsn, "--json", str(results)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(results.read_text())
    short, long = doc["measurements"]["export_short"], doc["measurements"]["export_long"]
    assert (short["rows"], long["rows"]) == (864, 3456)
    assert short["rows_per_second"] > 0 and long["peak_rss_mib"] > 0
    target = doc["targets"]["export_rss_long_vs_short"]
    assert target["ratio"] > 0 and target["pass"] in (True, False)
    assert target["label"] in done.stdout


def test_the_namespace_for_callers_without_a_command_line_is_the_commands():
    """export.arguments (the dashboard's download) gives run() what the command's options do."""
    main = argparse.ArgumentParser()
    export.add_parser(main.add_subparsers(dest="command"), cli.participant_id, cli.instant)
    parsed = vars(main.parse_args(["export", "--out", "d", "--participant", "p01", *SPAN,
                                   "--metric", "steps", "--resolution", "1h",
                                   "--format", "csv"]))
    del parsed["command"]
    assert vars(export.arguments(Path("d"), ["p01"], FIRST_DAY, END_DAY, ["steps"], "1h",
                                 "csv")) == parsed
