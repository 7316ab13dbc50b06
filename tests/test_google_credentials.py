"""The stored Google grants (sources/google_health/credentials.py): enrol, read_refresh_token,
clear_consent, needs_consent, against the real TimescaleDB.
"""

from __future__ import annotations

from datetime import date

import pytest
from google_support import enrolled, stored_grant
from ingester.config import Settings
from ingester.errors import NeedsConsent
from ingester.sources.google_health import credentials


def test_enrol_stores_the_participant_and_grant_in_one_transaction(db, db_conn):
    enrolled(db_conn, "1//first-token-abc")
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT participant_id, timezone, source, start_date FROM participants")
        assert cursor.fetchall() == [("p1", "Europe/Berlin", "google_health", date(2026, 3, 1))]
    assert stored_grant(db) == ("1//first-token-abc", None)


def test_enrol_refuses_bad_input_and_leaves_nothing_behind(db, db_conn):
    with pytest.raises(credentials.EnrolError, match="IANA"):
        credentials.enrol(db_conn, "p1", "Mars/Olympus", None, "1//token-abcdef")
    with pytest.raises(credentials.EnrolError, match="participant id"):
        credentials.enrol(db_conn, "p 1", "UTC", None, "1//token-abcdef")
    with pytest.raises(credentials.EnrolError, match="refresh token"):
        credentials.enrol(db_conn, "p1", "UTC", None, "has spaces in it")
    with db_conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO participants VALUES ('s1', 'UTC', 'synthetic', '2026-03-01', 7)"
        )
    db_conn.commit()
    with pytest.raises(credentials.EnrolError, match="synthetic"):
        credentials.enrol(db_conn, "s1", "UTC", None, "1//token-abcdef")
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM google_credentials")
        assert cursor.fetchone() == (0,)


def test_re_enrolment_replaces_the_grant_and_clears_needs_consent(db, db_conn):
    enrolled(db_conn, "1//first-token-abc")
    with db_conn, db_conn.cursor() as cursor:
        cursor.execute("UPDATE google_credentials SET needs_consent_since = now()")
    assert [c.participant_id for c in credentials.needs_consent(db_conn)] == ["p1"]
    credentials.enrol(db_conn, "p1", "Europe/Paris", None, "1//second-token-xyz")
    assert stored_grant(db) == ("1//second-token-xyz", None)
    assert credentials.needs_consent(db_conn) == []
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT timezone, start_date FROM participants")
        assert cursor.fetchone() == ("Europe/Paris", date(2026, 3, 1))  # start date kept


def test_clear_consent(db, db_conn):
    enrolled(db_conn, "1//first-token-abc")
    assert credentials.clear_consent(db_conn, "p1") is False
    with db_conn, db_conn.cursor() as cursor:
        cursor.execute("UPDATE google_credentials SET needs_consent_since = now()")
    assert credentials.clear_consent(db_conn, "p1") is True
    assert stored_grant(db)[1] is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1//0gAbC-dEf_123\n", "1//0gAbC-dEf_123"),
        (
            '{"access_token": "ya29.x", "refresh_token": "1//0gFromJson", "expires_in": 3599}',
            "1//0gFromJson",
        ),
    ],
)
def test_the_refresh_token_is_read_from_a_file_or_stdin(tmp_path, content, expected):
    path = tmp_path / "token"
    path.write_text(content)
    assert credentials.read_refresh_token(str(path)) == expected

    class Stdin:
        def read(self):
            return content

    assert credentials.read_refresh_token("-", Stdin()) == expected


@pytest.mark.parametrize("content", ["", "two words", '{"access_token": "only"}', "{not json"])
def test_a_token_file_without_a_token_is_refused_without_echoing_it(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(credentials.EnrolError) as caught:
        credentials.read_refresh_token(str(path))
    assert not content or content not in str(caught.value)


def test_a_participant_without_a_grant_needs_consent(db, fake):
    store = credentials.TokenStore(Settings(), connect=db.connect)
    with pytest.raises(NeedsConsent, match="no stored Google grant"), store.lock("nobody"):
        pass
