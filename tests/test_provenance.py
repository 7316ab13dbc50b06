"""raw_data_sourced (issue 24, section 5): the source and device of every stored value,
through the real command, the real TimescaleDB and, for Google, the project's fake."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import date, timedelta

import pytest
from fake_google_health import PHONE, FakeGoogleHealth, heart_rate, steps
from google_support import with_source
from ingester.db import (
    DEVICE_NAME_CHARS,
    MAX_DEVICES_PER_SOURCE,
    OTHER_DEVICES,
    device_name,
    origin_id,
)
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


# --- data_origins: names from payloads are untrusted (any length, any characters, any number)


def device_origins(db_conn, source: str) -> list[str | None]:
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT device FROM data_origins WHERE source = %s ORDER BY origin_id",
                       (source,))
        return [device for (device,) in cursor.fetchall()]


def test_device_names_are_cleaned_and_cut():
    assert device_name(None) is None
    assert device_name("Charge 6") == "Charge 6"
    assert device_name("  Pixel\x00\x1b\t Watch\u200b 3 \n") == "Pixel Watch 3"
    assert device_name(" \x07\u200e ") is None  # nothing printable: no device
    assert device_name("é" * 500) == "é" * DEVICE_NAME_CHARS


def test_a_10_kb_device_name_is_stored_cut_and_the_slice_loads(db_conn):
    # Hex of sha256 chains does not compress: a repeated letter would fit the index
    # compressed, and hide the limit.
    noise = "".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(160))
    device = " Pixel\x1b Watch\t" + noise[:10_240]
    at = utc("2026-03-02T10:00:00")
    writer = RowWriter(db_conn, 1_000, {}, "google_health")
    writer.write([Row(at, "p1", "heart_rate", 61.0, device)])
    assert writer.finish().written == 1
    db_conn.commit()
    stored = ("Pixel Watch " + noise)[:DEVICE_NAME_CHARS]
    assert device_origins(db_conn, "google_health")[-1] == stored
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT device, value FROM raw_data_sourced")
        assert cursor.fetchall() == [(stored, 61.0)]
    db_conn.rollback()


def test_a_source_naming_endless_devices_cannot_use_up_the_origins(db_conn):
    with db_conn.cursor() as cursor:  # the source has named as many devices as it may
        cursor.execute("INSERT INTO data_origins (source, device) SELECT 'google_health', "
                       "'watch ' || n FROM generate_series(1, %s - 2) AS n",
                       (MAX_DEVICES_PER_SOURCE,))
    db_conn.commit()
    assert len(device_origins(db_conn, "google_health")) == MAX_DEVICES_PER_SOURCE
    at = utc("2026-03-02T10:00:00")
    writer = RowWriter(db_conn, 1_000, {}, "google_health")
    writer.write([Row(at + timedelta(seconds=n), "p1", "heart_rate", 60.0, f"new {n}")
                  for n in range(50)] + [Row(at + timedelta(minutes=5), "p1", "heart_rate",
                                             70.0, "watch 7")])
    assert writer.finish().written == 51
    db_conn.commit()
    assert device_origins(db_conn, "google_health")[-1] == OTHER_DEVICES
    assert len(device_origins(db_conn, "google_health")) == MAX_DEVICES_PER_SOURCE + 1
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT device, count(*) FROM raw_data_sourced GROUP BY 1 ORDER BY 1")
        assert cursor.fetchall() == [(OTHER_DEVICES, 50), ("watch 7", 1)]
    # Another source's devices are its own to count.
    assert origin_id(db_conn, "synthetic", "Charge 5") > 0
    assert device_origins(db_conn, "synthetic") == ["Charge 6", "Charge 5"]
    db_conn.rollback()


def open_slice(db, pid: str):
    """A connection in an open transaction that holds its participant, as a slice's does;
    its lock waits end after 2 s, so that a slice that waits for another fails, not hangs."""
    connection = db.connect()
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")
        cursor.execute("INSERT INTO participants (participant_id, timezone, source, start_date)"
                       " VALUES (%s, 'UTC', 'google_health', '2026-03-01')", (pid,))
    return connection


def test_slices_meeting_new_devices_in_opposite_orders_never_wait_for_each_other(db):
    first, second = open_slice(db, "p1"), open_slice(db, "p2")
    try:
        x = origin_id(first, "google_health", "Versa 4")
        y = origin_id(second, "google_health", "Sense 2")
        # Before, each name waited for the other slice's commit: a deadlock.
        assert origin_id(first, "google_health", "Sense 2") == y
        assert origin_id(second, "google_health", "Versa 4") == x
        # Registered for good, even by a slice that rolls back.
        first.rollback()
        second.commit()
        assert device_origins(first, "google_health")[-2:] == ["Versa 4", "Sense 2"]
    finally:
        first.close()
        second.close()


def test_two_slices_meeting_one_new_device_burn_no_origin_id(db):
    first, second = open_slice(db, "p1"), open_slice(db, "p2")
    met: list[int] = []
    try:
        x = origin_id(first, "google_health", "Luxe")
        meeting = threading.Thread(
            target=lambda: met.append(origin_id(second, "google_health", "Luxe")))
        meeting.start()
        # Before, the second slice's insert waited for the first slice's commit, then
        # conflicted, and ON CONFLICT had taken an identity value all the same.
        watcher = db.connect()
        with watcher.cursor() as cursor:
            for _ in range(100):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type "
                               "= 'Lock' AND pid = %s", (second.get_backend_pid(),))
                if cursor.fetchone() == (1,) or not meeting.is_alive():
                    break
                time.sleep(0.02)
        watcher.close()
        first.commit()
        meeting.join()
        assert met == [x]
        with first.cursor() as cursor:
            cursor.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence("
                           "'data_origins', 'origin_id')), max(origin_id) FROM data_origins")
            last_value, highest = cursor.fetchone()
        assert last_value == highest == x
    finally:
        first.close()
        second.close()
