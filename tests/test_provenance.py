"""raw_data_sourced (issue 24, section 5): the source and device of every stored value,
through the real command, the real TimescaleDB and, for Google, the project's fake."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fake_google_health import PHONE, FakeGoogleHealth, heart_rate, steps
from google_support import with_source
from ingester.model import Participant, Row, Window
from ingester.writer import RowWriter
from support import ingest_env, query, run_ingest, utc

NOW = "2026-03-03T00:00:00Z"
DAY = utc("2026-03-01T23:00:00")  # Berlin's 2 March
SOURCED = "SELECT source, device, count(*) FROM raw_data_sourced GROUP BY 1, 2 ORDER BY 1, 2"


def google_env(db, fake: FakeGoogleHealth, workdir) -> dict[str, str]:
    return ingest_env(
        db.env, workdir, GOOGLE_HEALTH_URL=fake.url, GOOGLE_TOKEN_URL=fake.token_url,
        GOOGLE_CLIENT_ID=fake.client_id, GOOGLE_CLIENT_SECRET=fake.client_secret,
        GOOGLE_USER_REQUESTS_PER_MINUTE="100000", GOOGLE_PROJECT_REQUESTS_PER_MINUTE="1000000",
        HTTP_TIMEOUT="2", DEMO_COHORT="false")


def test_a_synthetic_participant_s_rows_name_the_synthetic_charge_6(db, tmp_path):
    env = ingest_env(db.env, tmp_path)
    added = run_ingest(env, "participant", "add", "s1", "--timezone", "UTC", "--seed", "1",
                       "--start-date", "2026-03-02")
    assert added.returncode == 0, added.stderr
    done = run_ingest(env, "--now", "2026-03-02T06:00:00Z")
    assert done.returncode == 0, done.stderr
    [(total,)] = query(env, "SELECT count(*) FROM raw_data")
    assert total > 1000
    assert query(env, SOURCED) == [("synthetic", "Charge 6", total)]


def test_a_google_participant_s_rows_name_their_recorder_and_never_the_phone(
        db, fake, tmp_path):
    env = google_env(db, fake, tmp_path)
    enrol = run_ingest(env, "participant", "enrol", "g1", "--timezone", "Europe/Berlin",
                       "--start-date", "2026-03-02", "--token-file", "-",
                       stdin=next(iter(fake.refresh_tokens)) + "\n")
    assert enrol.returncode == 0, enrol.stderr
    watch = {"platform": "FITBIT", "device": {"displayName": "Pixel Watch 3",
                                              "formFactor": "WATCH"}}
    manual = {"platform": "HEALTH_CONNECT", "recordingMethod": "MANUAL"}  # names no device
    fake.add("heart-rate", [heart_rate(DAY + timedelta(minutes=m), 60 + m) for m in range(10)])
    fake.add("heart-rate", [with_source(heart_rate(DAY + timedelta(hours=1), 80), watch),
                            with_source(heart_rate(DAY + timedelta(hours=2), 90), manual)])
    nine = DAY + timedelta(hours=9)
    fake.add("steps", [steps(nine + timedelta(minutes=m), 20 + m) for m in range(5)])
    fake.add("steps", [steps(nine, 999, recorder=PHONE)])
    done = run_ingest(env, "--now", NOW, timeout=120)
    assert done.returncode == 0, done.stderr
    assert query(env, SOURCED) == [
        ("google_health", "Charge 6", 10),  # the fake's tracker (its default recorder)
        ("google_health", "Pixel Watch 3", 1),
        ("google_health", "google-wearables", 5),  # the roll-up's family, not a device
        ("google_health", None, 1),
    ]
    assert query(env, "SELECT DISTINCT metric_type FROM raw_data_sourced "
                      "WHERE device = 'google-wearables'") == [("steps",)]
    # The phone's 999 steps are stored nowhere: not under its name, not in the sum.
    assert query(env, "SELECT count(*) FROM raw_data_sourced WHERE device = 'Pixel 8'") == [(0,)]
    assert query(env, "SELECT value FROM raw_data_sourced WHERE metric_type = 'steps' "
                      "AND timestamp = %s", (nine,)) == [(20.0,)]
    # A second run re-reads the same values and leaves every origin as it was.
    before = query(env, SOURCED)
    assert run_ingest(env, "--now", NOW, timeout=120).returncode == 0
    assert query(env, SOURCED) == before


def test_rows_stored_before_provenance_name_their_participant_s_source(db_conn):
    with db_conn.cursor() as cursor:
        cursor.execute("INSERT INTO participants (participant_id, timezone, source, start_date)"
                       " VALUES ('g0', 'UTC', 'google_health', '2026-03-01')")
        cursor.execute("INSERT INTO raw_data VALUES ('2026-03-02 10:00Z', 'g0', 'heart_rate', 61)")
        cursor.execute("SELECT source, device FROM raw_data_sourced")
        assert cursor.fetchall() == [("google_health", None)]
    db_conn.rollback()


def test_a_corrected_value_takes_the_origin_of_the_load_that_corrected_it(db_conn):
    at = utc("2026-03-02T10:00:00")
    for kind, device, value in [(None, None, 60.0), ("google_health", "Charge 6", 61.0)]:
        writer = RowWriter(db_conn, 1_000, {"heart_rate": at}, kind)
        writer.write([Row(at, "p1", "heart_rate", value, device)])
        assert writer.finish().written == 1
        db_conn.commit()
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT o.source, o.device, r.value FROM raw_data r "
                       "JOIN data_origins o USING (origin_id)")
        assert cursor.fetchall() == [("google_health", "Charge 6", 61.0)]
    db_conn.rollback()


def test_a_new_device_gets_one_origin_however_many_writers_meet_it(db_conn):
    window = Window(utc("2026-03-02T00:00:00"), utc("2026-03-03T00:00:00"))
    participant = Participant("p1", "UTC", "google_health", date(2026, 3, 1))
    for hour in range(3):  # a writer per slice, as the pipeline runs them
        writer = RowWriter(db_conn, 1_000, {}, participant.source)
        writer.write([Row(window.start + timedelta(hours=hour), "p1", "heart_rate", 60.0,
                          "Inspire 3")])
        writer.finish()
        db_conn.commit()
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT origin_id) FROM raw_data")
        assert cursor.fetchone() == (3, 1)
        cursor.execute("SELECT count(*) FROM data_origins WHERE device = 'Inspire 3'")
        assert cursor.fetchone() == (1,)
    db_conn.rollback()


def test_the_dashboard_reader_may_read_the_view(db_conn):
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'dashboard_reader'")
        if cursor.fetchone() is None:
            pytest.skip("no role dashboard_reader on this server")
        cursor.execute("SELECT has_table_privilege('dashboard_reader', 'raw_data_sourced', "
                       "'SELECT'), has_table_privilege('dashboard_reader', 'data_origins', "
                       "'SELECT')")
        assert cursor.fetchone() == (True, True)
    db_conn.rollback()
