"""The Google Health transport (sources/google_health/http.py): the rate limiter, the
retry policy, and against the fake API retries, errors and timeouts.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
import requests
from fake_google_health import heart_rate
from google_support import T0, MemoryStore, read, settings_for
from ingester.errors import NeedsConsent, PayloadError, SourceUnavailable
from ingester.model import Window
from ingester.sources.google_health import http
from ingester.sources.google_health.oauth import GoogleOAuth
from ingester.sources.google_health.source import GoogleHealthSource
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.util.retry import RequestHistory


def test_the_rate_limiter_keeps_to_its_limit_in_any_sliding_period():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = http.RateLimiter(limit=3, period=60.0, clock=lambda: now[0], sleep=sleep)
    times = []
    for _ in range(7):
        limiter.acquire()
        times.append(now[0])
        now[0] += 1.0
    assert times == [0.0, 1.0, 2.0, 60.0, 61.0, 62.0, 120.0]
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 60.0


def test_the_documented_limit_is_respected_with_room_for_retries():
    assert http.REQUESTS_PER_MINUTE < 300


@pytest.mark.slow
def test_429_waits_for_retry_after_then_succeeds(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", status=429, retry_after="1")
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    began = time.monotonic()
    rows, _ = read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1
    requests_seen = fake.api_requests()
    assert len(requests_seen) == 2
    assert requests_seen[1].at - requests_seen[0].at >= 1.0
    assert time.monotonic() - began >= 1.0


def test_a_retry_after_is_never_cut_short():
    policy = http.retry_policy(1, 0.0)
    assert policy.parse_retry_after("3600") == 3600.0
    assert policy.parse_retry_after("2") == 2.0


def test_a_retry_after_longer_than_the_run_waits_fails_without_an_early_retry(fake):
    # The old code cut a Retry-After over 60 s to 60 s and asked again after a minute.
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", status=429, retry_after="61")
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(http.RetryAfterTooLong, match="Retry-After 61 s.*HTTP_MAX_RETRY_AFTER"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 1


@pytest.mark.slow
def test_a_retry_after_within_the_configured_maximum_is_waited_out_in_full(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", status=503, retry_after="2")
    settings = dataclasses.replace(settings_for(fake), http_max_retry_after=3.0)
    rows, _ = read(GoogleHealthSource(settings, MemoryStore(fake.refresh_token)), "heart-rate",
                   Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1
    first, second = fake.api_requests()
    assert second.at - first.at >= 2.0  # as the server saw them: never before Retry-After
    fake.fail("api", status=503, retry_after="4")  # over the configured 3 s: not retried
    with pytest.raises(http.RetryAfterTooLong):
        read(GoogleHealthSource(settings, MemoryStore(fake.refresh_token)), "heart-rate",
             Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 3


@pytest.mark.parametrize(("retry", "low", "high"), [(1, 1.0, 2.0), (2, 2.0, 3.0), (4, 8.0, 9.0)])
def test_backoff_doubles_with_jitter_and_never_retries_at_once(retry, low, high):
    policy = http.retry_policy(5, 1.0)
    history = tuple(RequestHistory("GET", "/", None, 503, None) for _ in range(retry))
    waits = {policy.new(history=history).get_backoff_time() for _ in range(50)}
    assert all(low <= wait <= high for wait in waits) and len(waits) > 1
    assert policy.get_backoff_time() == 0.0  # before any failure


@pytest.mark.parametrize(
    ("method", "status", "retried"),
    [
        ("GET", 429, True),
        ("GET", 500, True),
        ("GET", 503, True),
        ("GET", 504, True),
        ("GET", 400, False),
        # The token POST: only statuses that say Google did not act on the request.
        ("POST", 429, True),
        ("POST", 503, True),
        ("POST", 500, False),
        ("POST", 502, False),
        ("POST", 504, False),
        ("POST", 400, False),
    ],
)
def test_which_statuses_are_retried(method, status, retried):
    assert http.retry_policy(5, 1.0).is_retry(method, status) is retried


def test_a_token_post_is_retried_after_a_failed_connect_but_never_after_a_read_error():
    policy = http.retry_policy(5, 1.0)
    refused = NewConnectionError(None, "connection refused")
    assert policy.increment("POST", "/token", error=refused).connect == 4
    timeout = ReadTimeoutError(None, "/token", "read timed out")
    assert policy.increment("GET", "/v4/x", error=timeout).read == 4
    with pytest.raises(ReadTimeoutError):  # Google may have acted on it: no second POST
        policy.increment("POST", "/token", error=timeout)


def test_a_request_google_rejects_is_not_retried(fake, fast_retries):
    fake.fail("api", status=400)
    with pytest.raises(http.RequestRejected, match="400 INVALID_ARGUMENT"):
        read(
            GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token)),
            "steps",
            Window(T0, T0 + timedelta(hours=1)),
        )
    assert len(fake.api_requests()) == 1


def test_500_then_success(fake, fast_retries):
    # A GET (a list) is retried on any 5xx; a rollUp is a POST, retried on 429 and 503 only.
    fake.add("heart-rate", [heart_rate(T0, 61)])
    fake.fail("api", status=500)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, _ = read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert [r.value for r in rows] == [61.0]
    assert len(fake.api_requests()) == 2


def test_5xx_that_persists_is_source_unavailable(fake, fast_retries):
    fake.fail("api", status=503, times=10)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(SourceUnavailable, match="503"):
        read(source, "steps", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 3  # the request and its two retries


@pytest.mark.slow
def test_a_slow_reply_is_retried_after_the_timeout(fake, fast_retries):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", delay=3.0)
    source = GoogleHealthSource(settings_for(fake, timeout=0.3), MemoryStore(fake.refresh_token))
    rows, _ = read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(rows) == 1 and len(fake.api_requests()) == 2


@pytest.mark.slow
def test_timeouts_that_persist_are_source_unavailable(fake, fast_retries):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    fake.fail("api", delay=3.0, times=10)
    source = GoogleHealthSource(settings_for(fake, timeout=0.2), MemoryStore(fake.refresh_token))
    # Bounded by the client's timeouts, not the server: a client that waited for the held
    # replies would get them (a delay ends in a normal answer) and read a row.
    with pytest.raises(SourceUnavailable, match="timed out"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))
    assert len(fake.api_requests()) == 3


def test_malformed_json_is_a_payload_error(fake):
    fake.fail("api", raw_body=b'{"dataPoints": [{"heartRate": ')
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(PayloadError, match="not JSON"):
        read(source, "heart-rate", Window(T0, T0 + timedelta(hours=1)))


def test_403_needs_consent_without_marking_the_grant(fake, fast_retries):
    fake.fail("api", status=403)
    store = MemoryStore(fake.refresh_token)
    with pytest.raises(NeedsConsent, match="403"):
        read(
            GoogleHealthSource(settings_for(fake), store),
            "heart-rate",
            Window(T0, T0 + timedelta(hours=1)),
        )
    assert store.needs_consent_since is None


def test_the_rate_limiter_sits_on_api_requests_only(fake):
    fake.add("heart-rate", [heart_rate(T0, 70)])
    counted = []

    class Counting(http.RateLimiter):
        def acquire(self) -> None:
            counted.append(1)

    session = http.build_session(2.0, fake.url, limiter=Counting())
    auth = GoogleOAuth(
        "p1",
        MemoryStore(fake.refresh_token),
        session,
        fake.token_url,
        fake.client_id,
        fake.client_secret,
    )
    session.get(f"{fake.url}/v4/users/me/dataTypes/heart-rate/dataPoints", auth=auth)
    assert len(fake.token_requests()) == 1 and len(counted) == 1


def test_every_request_has_a_timeout(fake, fast_retries):
    session = http.build_session(0.2, fake.url)
    fake.fail("api", delay=2.0, times=20)
    with pytest.raises(requests.exceptions.RequestException):
        session.get(f"{fake.url}/v4/users/me/dataTypes/steps/dataPoints", auth=None)


@pytest.mark.parametrize(("error", "lacks_scope"), [
    # Each of the two signs alone must be enough: the fake sends both, so a test through it
    # would not notice either check broken (a mutation of each survived the whole suite).
    ({"code": 403, "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}, True),
    ({"code": 403, "message": "Request had insufficient authentication scopes."}, True),
    ({"code": 403, "message": "The caller does not have permission",
      "details": [{"reason": "IAM_PERMISSION_DENIED"}]}, False),
    ({"code": 403, "details": "not a list", "message": 7}, False),
])
def test_a_missing_scope_is_told_by_the_errorinfo_reason_or_by_the_message_alone(
        error, lacks_scope):
    assert http.scope_insufficient(error) is lacks_scope


def test_a_page_is_read_whole_and_a_reply_past_the_cap_fails_its_request(fake, monkeypatch):
    # send() reads the body itself, in large pieces (READ_CHUNK_BYTES), up to MAX_REPLY_BYTES.
    points = [heart_rate(T0 + timedelta(seconds=s), 60 + s % 40) for s in range(3000)]
    fake.add("heart-rate", points)
    window = Window(T0, T0 + timedelta(hours=1))
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    rows, _ = read(source, "heart-rate", window)
    assert len(rows) == 3000  # a reply of several pieces (~1 MB at 1 MiB pieces, 3 KiB ones here)
    source.close()
    monkeypatch.setattr(http, "READ_CHUNK_BYTES", 3 << 10)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    assert len(read(source, "heart-rate", window)[0]) == 3000
    source.close()
    monkeypatch.setattr(http, "MAX_REPLY_BYTES", 100_000)
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    with pytest.raises(PayloadError, match="a reply larger than"):
        read(source, "heart-rate", window)
    source.close()
