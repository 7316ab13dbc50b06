"""Token refresh and rotation (sources/google_health/oauth.py), against the fake API with a
token store in memory, then with the real TimescaleDB: rotation survives a rolled-back data
transaction, needs-consent marking, the refresh lock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests
from fake_google_health import FakeGoogleHealth, heart_rate
from google_support import (
    P1,
    T0,
    MemoryStore,
    db_settings,
    enrolled,
    read,
    settings_for,
    stored_grant,
)
from ingester.config import Settings
from ingester.errors import NeedsConsent, PayloadError, SourceUnavailable
from ingester.model import ReadReport, Window
from ingester.sources.google_health import credentials, http
from ingester.sources.google_health.oauth import EXPIRY_MARGIN, GoogleOAuth
from ingester.sources.google_health.source import GoogleHealthSource
from requests.adapters import BaseAdapter


def test_401_refreshes_once_and_repeats_the_request(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    window = Window(T0, T0 + timedelta(hours=1))
    read(source, "heart-rate", window)
    fake.expire_access_tokens()  # e.g. revoked server-side before its stated expiry
    rows, _ = read(source, "heart-rate", window)
    assert len(rows) == 1
    assert len(fake.token_requests()) == 2
    statuses = [s.authorization for s in fake.api_requests()]
    assert len(statuses) == 3 and statuses[1] != statuses[2]  # the repeat has the new token


def test_an_access_token_is_refreshed_lazily_before_it_expires(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    now = [1_000_000.0]
    session = http.build_session(2.0, fake.url)
    auth = GoogleOAuth(
        "p1",
        MemoryStore(fake.refresh_token),
        session,
        fake.token_url,
        fake.client_id,
        fake.client_secret,
        clock=lambda: now[0],
    )
    url = f"{fake.url}/v4/users/me/dataTypes/heart-rate/dataPoints"
    for _ in range(3):
        assert session.get(url, auth=auth).status_code == 200
    assert len(fake.token_requests()) == 1
    now[0] += fake.access_token_lifetime - EXPIRY_MARGIN  # just inside the margin
    assert session.get(url, auth=auth).status_code == 200
    assert len(fake.token_requests()) == 2


def test_a_rotated_refresh_token_is_stored_before_the_new_access_token_is_used(fake):
    fake.rotate_refresh_token = True
    fake.add("heart-rate", [heart_rate(T0, 70)])
    store = MemoryStore(fake.refresh_token)
    stored_when_used = []
    fake.on_api_request = lambda seen: stored_when_used.append((store.refresh_token, store.commits))
    source = GoogleHealthSource(settings_for(fake), store)
    read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert fake.refresh_tokens == {store.refresh_token} != {"1//test-refresh-token-0"}
    assert stored_when_used == [(store.refresh_token, 1)]


def test_invalid_grant_marks_needs_consent_and_stops_asking(fake):
    fake.revoke_grant()
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    with pytest.raises(NeedsConsent, match="invalid_grant"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert store.needs_consent_since is not None
    assert fake.api_requests() == []
    other = GoogleHealthSource(settings_for(fake), store)  # the next run
    with pytest.raises(NeedsConsent, match="needing consent"):
        read(other, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.token_requests()) == 1


def test_a_wrong_client_secret_is_not_blamed_on_the_participant(fake):
    settings = dataclasses.replace(settings_for(fake), google_client_secret="wrong")
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(http.RequestRejected, match="invalid_client"):
        read(GoogleHealthSource(settings, store), "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert store.needs_consent_since is None


def test_a_token_reply_lost_after_google_acted_is_not_retried(fake, fast_retries):
    # Google rotates the refresh token, and its reply is lost to our read timeout. A retry
    # would send the old token, get invalid_grant and mark a good grant as needing consent.
    fake.rotate_refresh_token = True
    fake.fail("token", reply_delay=2.0)
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake, timeout=0.3), store)
    with pytest.raises(SourceUnavailable, match="timed out"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.token_requests()) == 1
    assert store.needs_consent_since is None


def test_a_token_endpoint_outage_is_source_unavailable(fake, fast_retries):
    fake.fail("token", status=503, times=10)
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(SourceUnavailable):
        read(
            GoogleHealthSource(settings_for(fake), store),
            "heart-rate",
            Window(T0, T0 + timedelta(hours=1)),
        )
    assert store.needs_consent_since is None and len(fake.token_requests()) == 3


def test_a_rotated_refresh_token_is_kept_when_the_reply_lacks_expires_in(fake):
    fake.rotate_refresh_token = True
    fake.omit_expires_in = True  # RFC 6749 makes expires_in only RECOMMENDED
    fake.add("heart-rate", [heart_rate(T0, 70)])
    store = MemoryStore(fake.refresh_token)
    rows, _ = read(GoogleHealthSource(settings_for(fake), store), "heart-rate",
                   Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1
    assert fake.refresh_tokens == {store.refresh_token} != {"1//test-refresh-token-0"}


def test_a_rotated_refresh_token_is_stored_even_when_the_rest_of_the_reply_is_unusable(fake):
    fake.rotate_refresh_token = True
    fake.fail("token", token_reply={"access_token": None})
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(PayloadError, match="access_token"):
        read(GoogleHealthSource(settings_for(fake), store), "heart-rate",
             Window(T0, T0 + timedelta(hours=1)))
    assert fake.refresh_tokens == {store.refresh_token} != {"1//test-refresh-token-0"}


def test_no_token_appears_in_errors_or_reprs(fake, fast_retries):
    fake.fail("api", status=503, times=10)
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    with pytest.raises(SourceUnavailable) as caught:
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    auth = source._client[2]
    text = f"{caught.value} {caught.value.__cause__} {auth.token!r} {settings_for(fake)!r}"
    assert fake.refresh_token not in text and auth.token.value not in text
    assert fake.client_secret not in text


def test_a_rotated_token_is_committed_before_use_and_survives_a_rolled_back_run(db, db_conn, fake):
    fake.rotate_refresh_token = True
    fake.add("heart-rate", [heart_rate(T0, 70)])
    enrolled(db_conn, fake.refresh_token)
    in_db_when_used = []
    fake.on_api_request = lambda seen: in_db_when_used.append(stored_grant(db)[0])
    settings = settings_for(fake, **db_settings(db))
    source = GoogleHealthSource(settings, credentials.TokenStore(settings))
    # The pipeline's data transaction: rows go in, then the participant fails and rolls back.
    with db_conn.cursor() as cursor:
        for row in source.read(P1, "heart-rate", Window(T0, T0 + timedelta(hours=1)), ReadReport()):
            cursor.execute(
                "INSERT INTO raw_data VALUES (%s, %s, %s, %s)",
                (row.timestamp, row.participant_id, row.metric_type, row.value),
            )
    db_conn.rollback()
    (rotated,) = fake.refresh_tokens
    assert in_db_when_used == [rotated]  # committed before the first use of the new token
    assert stored_grant(db) == (rotated, None)  # and not lost with the data transaction


def test_invalid_grant_sets_needs_consent_in_the_database(db, db_conn, fake):
    enrolled(db_conn, fake.refresh_token)
    fake.revoke_grant()
    settings = settings_for(fake, **db_settings(db))
    source = GoogleHealthSource(settings, credentials.TokenStore(settings))
    with pytest.raises(NeedsConsent):
        read(source, "steps", Window(T0, T0 + timedelta(hours=1)))
    token, since = stored_grant(db)
    assert token == fake.refresh_token and since is not None
    assert [c.participant_id for c in credentials.needs_consent(db_conn)] == ["p1"]


# Bounds how long a broken test hangs; no test waits it out when the code works.
DEADLINE_SECONDS = 60.0


class TokenGate:
    """Holds a session's token requests on their way out until the test lets them go: the
    refresh is in flight, its lock held, for exactly as long as the test needs, whatever
    the machine's load. `arrived` is set when the first request reaches the gate."""

    def __init__(self, session: requests.Session, token_url: str) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        inner = session.get_adapter(token_url)
        gate = self

        class Gated(BaseAdapter):
            def send(self, request, **kwargs):
                gate.arrived.set()
                assert gate.release.wait(DEADLINE_SECONDS), "the token request was never let go"
                return inner.send(request, **kwargs)

            def close(self) -> None:
                inner.close()

        session.mount(token_url, Gated())  # the longest matching prefix wins


@contextmanager
def releasing(*gates: TokenGate) -> Iterator[None]:
    """Lets every request go at the end, so that a failing test does not wait for them."""
    try:
        yield
    finally:
        for gate in gates:
            gate.release.set()


def gated_auth(fake: FakeGoogleHealth, settings: Settings) -> tuple[GoogleOAuth, TokenGate]:
    """p1's auth with the token store in the database, its token requests held at a gate."""
    session = http.build_session(5.0, fake.url)
    gate = TokenGate(session, fake.token_url)
    auth = GoogleOAuth("p1", credentials.TokenStore(settings), session, fake.token_url,
                       fake.client_id, fake.client_secret)
    return auth, gate


def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def waiting_for_a_token_lock(db) -> bool:
    """Whether a session of the test's database waits for an advisory lock (the token
    lock: no other advisory lock is taken here)."""
    conn = db.connect()
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d "
                           "ON d.oid = l.database WHERE l.locktype = 'advisory' "
                           "AND NOT l.granted AND d.datname = current_database()")
            return cursor.fetchone()[0] > 0
    finally:
        conn.close()


def test_re_enrolment_waits_for_a_refresh_in_flight(db, db_conn, fake):
    # The nightly run refreshes with the old, revoked grant while the operator re-enrols the
    # participant: the run's invalid_grant must not mark the fresh grant.
    enrolled(db_conn, fake.refresh_token)
    fake.revoke_grant()
    auth, gate = gated_auth(fake, settings_for(fake, **db_settings(db)))
    with ThreadPoolExecutor(max_workers=2) as pool, releasing(gate):
        refreshing = pool.submit(auth.refresh)
        until(gate.arrived.is_set, "the refresh to send its token request")
        enrolling = pool.submit(credentials.enrol, db_conn, "p1", "Europe/Berlin", None,
                                "1//fresh-consent-token")
        until(lambda: enrolling.done() or waiting_for_a_token_lock(db),
              "enrol to wait for the token lock (or to end)")
        assert not enrolling.done(), "enrol did not wait for the refresh in flight"
        gate.release.set()
        with pytest.raises(NeedsConsent):  # the old grant's, marked before enrol replaced it
            refreshing.result(timeout=DEADLINE_SECONDS)
        enrolling.result(timeout=DEADLINE_SECONDS)
    assert stored_grant(db) == ("1//fresh-consent-token", None)


@pytest.mark.parametrize("reply", ["rotated", "invalid_grant"])
def test_a_refresh_never_updates_a_grant_that_replaced_the_one_it_used(db, db_conn, fake, reply):
    enrolled(db_conn, fake.refresh_token)
    if reply == "rotated":
        fake.rotate_refresh_token = True
    else:
        fake.revoke_grant()
    auth, gate = gated_auth(fake, settings_for(fake, **db_settings(db)))
    with ThreadPoolExecutor(max_workers=1) as pool, releasing(gate):
        refreshing = pool.submit(auth.refresh)
        until(gate.arrived.is_set, "the refresh to send its token request")
        # A writer that does not take the token lock replaces the grant meanwhile.
        with db_conn, db_conn.cursor() as cursor:
            cursor.execute(
                "UPDATE google_credentials SET refresh_token = '1//replacement-token', "
                "needs_consent_since = NULL"
            )
        gate.release.set()
        with pytest.raises(SourceUnavailable, match="replaced"):
            refreshing.result(timeout=DEADLINE_SECONDS)
    assert len(fake.token_requests()) == 1
    assert stored_grant(db) == ("1//replacement-token", None)


def test_two_runs_never_refresh_one_participant_at_the_same_time(db, db_conn, fake):
    # With strict rotation, a refresh that read the token before the other stored its
    # replacement would present a dead token and get invalid_grant.
    fake.rotate_refresh_token = True
    enrolled(db_conn, fake.refresh_token)
    settings = settings_for(fake, **db_settings(db))
    (first, first_gate), (second, second_gate) = (gated_auth(fake, settings) for _ in range(2))
    with ThreadPoolExecutor(max_workers=2) as pool, releasing(first_gate, second_gate):
        first_run = pool.submit(first.refresh)
        until(first_gate.arrived.is_set, "the first refresh to send its token request")
        second_run = pool.submit(second.refresh)
        until(lambda: second_gate.arrived.is_set() or waiting_for_a_token_lock(db),
              "the second refresh to wait for the token lock (or to send its request)")
        assert not second_gate.arrived.is_set(), "both refreshes were in flight at once"
        first_gate.release.set()
        first_run.result(timeout=DEADLINE_SECONDS)
        until(second_gate.arrived.is_set, "the second refresh, once the first has ended")
        second_gate.release.set()
        second_run.result(timeout=DEADLINE_SECONDS)  # re-raises an error, e.g. invalid_grant
    sent = [seen.form["refresh_token"] for seen in fake.token_requests()]
    (last,) = fake.refresh_tokens
    assert sent[0] == "1//test-refresh-token-0" and sent[1] != sent[0], sent
    assert len(sent) == 2 and stored_grant(db) == (last, None)
