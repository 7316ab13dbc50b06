"""HTTP for the Google Health source: retries in the transport, one place that classifies.

- Retries live in urllib3's Retry on the adapter, not in the business loop: connection
  errors, read timeouts, 429 and 5xx, with exponential backoff and jitter, for GET. A
  Retry-After is waited out in full, never cut short; one longer than the run may wait
  (Settings.http_max_retry_after) is not retried at all: the request fails with
  RetryAfterTooLong, and the next run asks again. The token endpoint's POST is retried
  only where Google cannot have acted on it: a failed connect, 429 and 503 (see
  POST_RETRY_STATUSES).
- Every request has a timeout (Settings.http_timeout) unless the caller gives one.
- Requests to the Health API pass a limiter: in the service the database-backed pacer of
  quota.py (per participant and for the whole project, across all workers and machines);
  without one, an in-process per-session RateLimiter below 300 requests a minute.
- `send` turns what is left after the retries into the service's typed errors: timeouts,
  connection failures, 429 and 5xx become SourceUnavailable; `classify` reads Google's
  error envelope for the rest.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from ...errors import (
    NeedsConsent,
    PayloadError,
    RequestRejected,
    ScopeNotGranted,
    SourceUnavailable,
)

log = logging.getLogger(__name__)

# Google asks for exponential backoff with jitter on 429, 503 and 504 (developers.google.com/
# health/rate-limits). Five retries at 1 s, 2 s, 4 s, 8 s, 16 s (plus up to 1 s jitter each)
# ride out about half a minute of trouble; a longer outage fails the participant's window
# and the next run re-reads it.
RETRIES = 5
BACKOFF_FACTOR = 1.0  # each wait also gets up to this much random jitter
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Methods whose read errors (a timeout or a dropped connection after the request was sent)
# and RETRY_STATUSES are retried. Not POST: our only POST is the token endpoint's refresh
# grant, and Google may rotate the refresh token in its reply. Had Google acted on the
# request, a retry would send the old token, get invalid_grant and mark a participant whose
# grant is fine as needing consent.
RETRY_METHODS = frozenset({"GET"})
# The statuses that say the server refused the POST before acting on it: those, and a
# failed connect (urllib3 retries connect errors for any method), are retried for POST.
# A 500/502/504 or a read timeout fails the participant; the next run tries again.
POST_RETRY_STATUSES = frozenset({429, 503})
# The longest Retry-After a run waits out (Settings.http_max_retry_after overrides it). A
# server that asks for a longer pause is not asked again early: that would be refused again
# and add to the congestion Google asks us to spare. Google's per-user quota is per minute,
# so a minute covers what a rate limit asks for; longer means an outage.
MAX_RETRY_AFTER = 60.0

# A reply is read whole, in pieces of this size: requests' own read (`Response.content`)
# takes 10 KiB at a time, some 330 trips through urllib3 for a 3.3 MB page of 1 Hz heart
# rate, half the client's CPU of the read (docs/performance.md, "The command's cost a page").
READ_CHUNK_BYTES = 1 << 20
# The largest reply read: 20 times a full page of 1 Hz heart rate (3.3 MB). A server that
# sends more is not holding one page of the API; the read stops there rather than fill the
# worker's memory, and the request fails as a PayloadError (its stream's slice, not the run).
MAX_REPLY_BYTES = 64 << 20

# Documented limit: 300 requests per user per minute. Stay at 80 % of it: urllib3's retries
# of a request are not counted by the limiter (it sees one request per call), and the
# remaining 60 leave room for them.
REQUESTS_PER_MINUTE = 240


class RetryAfterTooLong(SourceUnavailable):
    """The server asked for a pause longer than this run waits: not retried before it ends."""


class CappedRetry(Retry):
    """urllib3's Retry, with no retry before a Retry-After has passed (and none at all when
    it is longer than max_retry_after), no immediate first retry, and POST retried only on
    POST_RETRY_STATUSES (and connect errors, as urllib3 does anyway).

    urllib3 retries the first failure at once; Google asks never to retry immediately
    (it adds to the congestion), so the waits here are factor x 1, 2, 4, ... plus jitter.
    A Retry-After replaces that wait and is slept in full (urllib3's sleep_for_retry).
    """

    max_retry_after: float = MAX_RETRY_AFTER

    def new(self, **kwargs: Any) -> CappedRetry:
        retry = super().new(**kwargs)
        retry.max_retry_after = self.max_retry_after
        return retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            return status_code in POST_RETRY_STATUSES
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method: str | None = None, url: str | None = None, *args: Any,
                  **kwargs: Any) -> CappedRetry:
        response = kwargs.get("response")
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                # No retry: urllib3 hands the response back (raise_on_status=False), and
                # send() turns it into RetryAfterTooLong.
                raise MaxRetryError(
                    kwargs.get("_pool"), url or "", "Retry-After too long"  # type: ignore[arg-type]
                )
        return super().increment(method, url, *args, **kwargs)

    def get_backoff_time(self) -> float:
        if not self.history:
            return 0.0
        wait = self.backoff_factor * 2 ** (len(self.history) - 1)
        return min(self.backoff_max, wait + random.random() * self.backoff_jitter)


def retry_policy(
    retries: int, backoff_factor: float, max_retry_after: float = MAX_RETRY_AFTER
) -> CappedRetry:
    policy = CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=RETRY_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_jitter=backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand back the last 429/5xx; send() classifies it
    )
    policy.max_retry_after = max_retry_after
    return policy


class Limiter(Protocol):
    def acquire(self) -> None: ...


class RateLimiter:
    """At most `limit` acquisitions in any sliding `period` seconds; blocks until allowed."""

    def __init__(
        self,
        limit: int = REQUESTS_PER_MINUTE,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.period:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                wait = self._sent[0] + self.period - now
                log.info(
                    "rate limit: %d requests in %.0f s, waiting %.1f s",
                    self.limit,
                    self.period,
                    wait,
                )
                self._sleep(wait)


class RateLimitedAdapter(HTTPAdapter):
    def __init__(self, limiter: Limiter, **kwargs: Any) -> None:
        self.limiter = limiter
        super().__init__(**kwargs)

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        self.limiter.acquire()
        return super().send(request, *args, **kwargs)


class TimeoutSession(requests.Session):
    """A Session whose requests get a default timeout."""

    def __init__(self, timeout: float, max_retry_after: float = MAX_RETRY_AFTER) -> None:
        super().__init__()
        self.timeout = timeout
        self.max_retry_after = max_retry_after

    def request(  # type: ignore[override]  # passes everything on
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def build_session(
    timeout: float,
    api_url: str,
    limiter: Limiter | None = None,
    max_retry_after: float = MAX_RETRY_AFTER,
) -> requests.Session:
    """A session for one participant: retries everywhere, the limiter on the API only."""
    session = TimeoutSession(timeout, max_retry_after)
    policy = retry_policy(RETRIES, BACKOFF_FACTOR, max_retry_after)
    plain = HTTPAdapter(max_retries=policy)
    session.mount("http://", plain)
    session.mount("https://", plain)
    limited = RateLimitedAdapter(limiter or RateLimiter(), max_retries=policy)
    # Only the API's own paths: the token endpoint is not part of its per-user quota.
    session.mount(api_url.rstrip("/") + "/v4/", limited)
    session.headers["User-Agent"] = "wearable-ingester"
    return session


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request after the transport's retries, its body read (read_body); what still
    failed becomes a typed error."""
    try:
        response = session.request(method, url, stream=True, **kwargs)
        read_body(response, method, url)
    except requests.RequestException as error:
        if timed_out(error):
            raise SourceUnavailable(
                f"{method} {strip_query(url)}: timed out after retries"
            ) from error
        reason = type(error).__name__
        raise SourceUnavailable(f"{method} {strip_query(url)}: {reason} after retries") from error
    if response.status_code == 429 or response.status_code >= 500:
        limit = getattr(session, "max_retry_after", MAX_RETRY_AFTER)
        wait = retry_after_seconds(response)
        if wait is not None and wait > limit:
            raise RetryAfterTooLong(
                f"{method} {strip_query(url)}: {describe(response)} with Retry-After "
                f"{wait:.0f} s, longer than HTTP_MAX_RETRY_AFTER ({limit:.0f} s); not retried "
                "before it has passed, the next run asks again"
            )
        raise SourceUnavailable(f"{method} {strip_query(url)}: {describe(response)} after retries")
    return response


def read_body(response: requests.Response, method: str, url: str) -> None:
    """Read the whole reply into response.content, in READ_CHUNK_BYTES pieces, at most
    MAX_REPLY_BYTES (PayloadError past it). What requests does without stream=True, minus
    its 10 KiB pieces; decoded (gzip) bytes count, as they are what is held."""
    limit = MAX_REPLY_BYTES
    pieces: list[bytes] = []
    size = 0
    try:
        for piece in response.iter_content(READ_CHUNK_BYTES):
            size += len(piece)
            if size > limit:
                raise PayloadError(
                    f"{method} {strip_query(url)}: a reply larger than {limit:,} bytes "
                    "(a page of the API is a few MB); not read further"
                )
            pieces.append(piece)
    finally:
        response.close()  # read to the end, or given up: the connection goes back or away
    # requests keeps a read body here (Response.content returns it); there is no public
    # setter, and every reader of the reply (classify, describe, the 401 hook) goes through
    # content.
    response._content = b"".join(pieces)


def retry_after_seconds(response: requests.Response) -> float | None:
    """The response's Retry-After in seconds (a number or an HTTP date), or None."""
    header = response.headers.get("Retry-After")
    if not header:
        return None
    try:
        return Retry().parse_retry_after(header)
    except urllib3.exceptions.InvalidHeader:
        return None


def timed_out(error: requests.RequestException) -> bool:
    """True for a timeout, also when urllib3's retries wrapped it in a ConnectionError."""
    if isinstance(error, requests.Timeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.TimeoutError)


def classify(response: requests.Response) -> dict:
    """The JSON body of a successful API response, or the typed error for a failure.

    Called after send() (429 and 5xx are already SourceUnavailable) and after the auth's
    one refresh on 401. NeedsConsent here is only raised, never stored: a refused grant
    at the token endpoint is what marks a participant in the database (oauth.py).
    """
    code = response.status_code
    if 200 <= code < 300:
        try:
            return json_body(response.content)  # type: ignore[return-value]
        except ValueError:
            raise PayloadError(
                f"{strip_query(response.url)}: a {code} reply that is not JSON"
            ) from None
    error = google_error(response)
    if code == 401:
        raise SourceUnavailable(f"access token refused after a refresh: {describe(response)}")
    if code == 403 and scope_insufficient(error):
        raise ScopeNotGranted(f"the grant lacks a scope this request needs: {describe(response)}")
    if code == 403 or error.get("status") == "FAILED_PRECONDITION":
        # A scope the participant did not grant, or an account not (yet) on Google Health
        # (ACCOUNT_NOT_LINKED): only the participant can fix either, by consenting again.
        raise NeedsConsent(f"Google refused the participant's data: {describe(response)}")
    raise RequestRejected(f"{strip_query(response.url)}: {describe(response)}")


def json_body(content: bytes) -> object:
    """A reply's JSON. orjson reads a page of 1 Hz heart rate in less CPU than the standard
    library (docs/performance.md, "A Google page"). What it refuses and the standard library
    reads (NaN, an integer past a float's range, a lone surrogate, UTF-16) is read as before,
    so a bad point is still counted, not its page failed. An integer past 64 bits comes as the
    float that parse_number would make of it. ValueError if neither reads it."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


# google.rpc.ErrorInfo reason of a request whose access token lacks the method's scope
# (googleapis/api/error_reason.proto); Google's message for it says "insufficient
# authentication scopes".
SCOPE_INSUFFICIENT = "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def scope_insufficient(error: dict) -> bool:
    """True if Google's error envelope says the access token lacks a scope."""
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("reason") == SCOPE_INSUFFICIENT:
            return True
    message = error.get("message")
    return isinstance(message, str) and "insufficient authentication scopes" in message.lower()


def google_error(response: requests.Response) -> dict:
    """Google's error envelope {"error": {"code", "message", "status"}}, or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def describe(response: requests.Response) -> str:
    """One line for logs and the run log: HTTP code, Google's status and message."""
    error = google_error(response)
    parts = [str(response.status_code)]
    if isinstance(error.get("status"), str):
        parts.append(error["status"])
    if isinstance(error.get("message"), str):
        parts.append(error["message"][:200])
    return " ".join(parts)


def strip_query(url: str | None) -> str:
    """A URL without its query (filters and page tokens make log lines long)."""
    return (url or "").split("?", 1)[0]
