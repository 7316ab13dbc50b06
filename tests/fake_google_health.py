"""A stateful fake of the Google Health API v4 and Google's OAuth token endpoint.

It speaks the documented shapes (developers.google.com/health/reference/rest/v4): a
`users.dataTypes.dataPoints.list` that honours the AIP-160 filter (only the documented
fields, >= and <, AND), orders points newest first and pages with opaque page tokens; and a
token endpoint for the refresh_token grant. Errors use Google's envelope
{"error": {"code", "message", "status"}}; the token endpoint answers OAuth's {"error": ...}.

It also serves `users.pairedDevices.list` (the devices the test adds, with their last sync
and battery), and answers only what the grant's scopes allow: a data type or the device list
outside `granted_scopes` is a 403 PERMISSION_DENIED with the ErrorInfo reason
ACCESS_TOKEN_SCOPE_INSUFFICIENT, as Google's APIs answer it. By default the grant has the
three data scopes and not the settings scope, like every grant enrolled before it was asked.

Scenarios are switched on by the test: 429 with Retry-After, 5xx, an expired access token
(401 then a refresh), a rotated refresh token, a token reply without expires_in,
invalid_grant, a reply slower than the client's timeout, a token reply lost after the
endpoint acted on it, malformed JSON, numbers written as strings, an empty day, points of
two data sources at one instant whose order changes from one query to the next.

Many users: `add_user(name)` hands out a refresh token of that user; every request is logged
in `seen` with its arrival time and user, so a test can check per-user and project-wide
request rates. Realistic latency, on demand: `latency` seconds before every API reply plus
its size over `bytes_per_second` (a page of 10,000 points is 1-2 MB).

Bounded: it binds 127.0.0.1 on a free port, refuses any non-loopback peer, and `stop()` (or
leaving the `with` block) ends it, waking any reply that is being held back.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

API_PATH = re.compile(r"/v4/users/me/dataTypes/([a-z0-9-]+)/dataPoints")
DEVICES_PATH = "/v4/users/me/pairedDevices"
DEVICES_DEFAULT_PAGE_SIZE = 5  # documented: default 5, maximum 100
DEVICES_MAX_PAGE_SIZE = 100
TOKEN_PATH = "/token"
DEFAULT_PAGE_SIZE = 1440  # documented default
MAX_PAGE_SIZE = 10_000  # documented maximum; larger requests are truncated

# data type -> (record kind, DataPoint member); the documented ones the tests use.
TYPES = {
    "heart-rate": ("sample", "heartRate"),
    "steps": ("interval", "steps"),
    "oxygen-saturation": ("sample", "oxygenSaturation"),
    "heart-rate-variability": ("sample", "heartRateVariability"),
    "active-zone-minutes": ("interval", "activeZoneMinutes"),
    "respiratory-rate-sleep-summary": ("sample", "respiratoryRateSleepSummary"),
    "daily-respiratory-rate": ("daily", "dailyRespiratoryRate"),
}
SCOPE = "https://www.googleapis.com/auth/googlehealth."
ACTIVITY = SCOPE + "activity_and_fitness.readonly"
HEALTH_METRICS = SCOPE + "health_metrics_and_measurements.readonly"
SLEEP = SCOPE + "sleep.readonly"
SETTINGS = SCOPE + "settings.readonly"
DATA_SCOPES = frozenset({ACTIVITY, HEALTH_METRICS, SLEEP})
# The scope the data-types page lists for each type (heart rate, SpO2 and the daily
# respiratory rate: health metrics; steps and AZM: activity and fitness).
TYPE_SCOPES = {
    "heart-rate": HEALTH_METRICS,
    "steps": ACTIVITY,
    "oxygen-saturation": HEALTH_METRICS,
    "heart-rate-variability": HEALTH_METRICS,
    "active-zone-minutes": ACTIVITY,
    "respiratory-rate-sleep-summary": HEALTH_METRICS,
    "daily-respiratory-rate": HEALTH_METRICS,
}
FILTER_FIELD = {
    "sample": "sample_time.physical_time",
    "interval": "interval.start_time",
    "daily": "date",
}
TERM = re.compile(r'([a-z0-9_]+)\.([a-z_.]+) (>=|<) "([^"]*)"')
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
# google.rpc.Code names of the HTTP statuses a scripted fault answers with.
FAULT_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def offset(instant: datetime) -> str:
    """A google.protobuf.Duration of the instant's UTC offset, e.g. "3600s"."""
    delta = instant.utcoffset() or timedelta(0)
    return f"{int(delta.total_seconds())}s"


# --- data points in the documented JSON shapes -------------------------------------------


def sample_time(instant: datetime) -> dict:
    return {"physicalTime": rfc3339(instant), "utcOffset": offset(instant)}


def interval(start: datetime, minutes: int = 1) -> dict:
    end = start + timedelta(minutes=minutes)
    return {
        "startTime": rfc3339(start),
        "startUtcOffset": offset(start),
        "endTime": rfc3339(end),
        "endUtcOffset": offset(end),
    }


def heart_rate(instant: datetime, bpm: int) -> dict:
    return {"heartRate": {"sampleTime": sample_time(instant), "beatsPerMinute": str(bpm)}}


def steps(start: datetime, count: int, minutes: int = 1) -> dict:
    body: dict = {"interval": interval(start, minutes)}
    if count:  # proto3 JSON leaves out an int64 that is 0
        body["count"] = str(count)
    return {"steps": body}


def oxygen_saturation(instant: datetime, percentage: float) -> dict:
    return {"oxygenSaturation": {"sampleTime": sample_time(instant), "percentage": percentage}}


def heart_rate_variability(
    instant: datetime, rmssd: float | None, sdnn: float | None = None
) -> dict:
    body: dict = {"sampleTime": sample_time(instant)}
    if rmssd is not None:
        body["rootMeanSquareOfSuccessiveDifferencesMilliseconds"] = rmssd
    if sdnn is not None:
        body["standardDeviationMilliseconds"] = sdnn
    return {"heartRateVariability": body}


def active_zone_minutes(start: datetime, minutes: int, zone: str = "CARDIO") -> dict:
    return {
        "activeZoneMinutes": {
            "interval": interval(start),
            "activeZoneMinutes": str(minutes),
            "heartRateZone": zone,
        }
    }


def respiratory_rate_sleep_summary(instant: datetime, full: float, deep: float = 0.0) -> dict:
    body: dict = {"sampleTime": sample_time(instant), "fullSleepStats": {"breathsPerMinute": full}}
    if deep:
        body["deepSleepStats"] = {"breathsPerMinute": deep}
    return {"respiratoryRateSleepSummary": body}


def paired_device(
    device_id: str,
    device_type: str = "TRACKER",
    last_sync: datetime | None = None,
    battery_level: int = 80,
    battery_status: str = "High",
    version: str = "Charge 6",
) -> dict:
    """A PairedDevice as users.pairedDevices.list returns it."""
    device = {
        "name": f"users/me/pairedDevices/{device_id}",
        "deviceType": device_type,
        "batteryStatus": battery_status,
        "batteryLevel": battery_level,
        "deviceVersion": version,
    }
    if last_sync is not None:
        device["lastSyncTime"] = rfc3339(last_sync)
    return device


def daily_respiratory_rate(day: date, breaths: float) -> dict:
    return {
        "dailyRespiratoryRate": {
            "date": {"year": day.year, "month": day.month, "day": day.day},
            "breathsPerMinute": breaths,
        }
    }


# --- the server ---------------------------------------------------------------------------


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by the next matching request."""

    status: int | None = None  # an HTTP error with Google's envelope (or OAuth's)
    retry_after: str | None = None
    delay: float = 0.0  # hold the reply back this long (past the client's timeout)
    # Token endpoint: act on the request (a rotation takes effect), then hold the reply back
    # this long: the reply is lost if the client times out first.
    reply_delay: float = 0.0
    raw_body: bytes | None = None  # a 200 with this body instead of the real one
    oauth_error: str | None = None  # token endpoint: {"error": oauth_error}
    # Token endpoint: act on the request, then change these members of its reply (None
    # leaves a member out).
    token_reply: dict | None = None


@dataclass
class Seen:
    """A request the fake received, for the test to inspect."""

    route: str  # "api" (data points), "devices" (pairedDevices) or "token"
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    form: dict[str, str]
    at: float
    user: str | None = None  # whose token it carried (None: no valid token)


@dataclass
class FakeGoogleHealth:
    client_id: str = "test-client-id"
    client_secret: str = "test-client-secret"
    refresh_token: str = "1//test-refresh-token-0"
    access_token_lifetime: int = 3599
    # Page size cap below the documented 10,000, so that small data sets paginate.
    max_page_size: int = MAX_PAGE_SIZE
    rotate_refresh_token: bool = False  # every refresh answers a new refresh token
    numbers_as_strings: bool = False  # double and int32 fields written as JSON strings
    omit_expires_in: bool = False  # token replies without expires_in (RFC 6749 allows it)
    # Points at one instant come in insertion order, or reversed on every other query.
    flip_ties: bool = False
    granted_scopes: set[str] = field(default_factory=lambda: set(DATA_SCOPES))
    points: dict[str, list[dict]] = field(default_factory=dict)
    devices: list[dict] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    # Called with each API request's Seen before it is answered (e.g. to look at the DB).
    on_api_request: Callable[[Seen], None] | None = None
    # Each API reply waits latency + len(body) / bytes_per_second (0: no transfer time).
    latency: float = 0.0
    bytes_per_second: float = 0.0
    user: str = "p1"  # the owner of refresh_token

    def __post_init__(self) -> None:
        self.refresh_tokens = {self.refresh_token}
        self.users = {self.refresh_token: self.user}  # refresh token -> user
        self.access_tokens: dict[str, float] = {}
        self.access_users: dict[str, str] = {}
        self._sorted: dict[str, tuple[list[dict], int, list[tuple[str, dict]]]] = {}
        self._faults: dict[str, deque[Fault]] = {
            "api": deque(),
            "token": deque(),
            "devices": deque(),
        }
        self._issued = 0
        self._queries = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeGoogleHealth:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-google-health")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def add_user(self, name: str) -> str:
        """A further user with a grant of their own; returns their refresh token."""
        token = f"1//test-refresh-token-{name}"
        with self._lock:
            self.refresh_tokens.add(token)
            self.users[token] = name
        return token

    # data

    def add(self, data_type: str, points: Iterable[dict]) -> None:
        assert data_type in TYPES, data_type
        with self._lock:
            self.points.setdefault(data_type, []).extend(points)

    # scenarios

    def fail(self, route: str = "api", times: int = 1, **fault: object) -> None:
        """The next `times` requests on route ("api", "devices" or "token") misbehave."""
        with self._lock:
            self._faults[route].extend(Fault(**fault) for _ in range(times))  # type: ignore[arg-type]

    def expire_access_tokens(self) -> None:
        """Every access token handed out so far is now refused with 401."""
        with self._lock:
            self.access_tokens.clear()

    def revoke_grant(self) -> None:
        """The participant withdrew consent: every refresh answers invalid_grant."""
        with self._lock:
            self.refresh_tokens.clear()

    def api_requests(self, data_type: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.route == "api" and (data_type is None or f"/dataTypes/{data_type}/" in s.path)
        ]

    def device_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.route == "devices"]

    def token_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.route == "token"]

    # request handling (called from the server's threads)

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            return self._faults[route].popleft() if self._faults[route] else None

    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return 401, {
                "error": "invalid_client",
                "error_description": "The OAuth client was not found.",
            }
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            self._issued += 1
            access = f"ya29.test-access-{self._issued}"
            self.access_tokens[access] = time.time() + self.access_token_lifetime
            user = self.users.get(form["refresh_token"])
            if user is not None:
                self.access_users[access] = user
            reply = {
                "access_token": access,
                "expires_in": self.access_token_lifetime,
                "scope": " ".join(sorted(self.granted_scopes)),
                "token_type": "Bearer",
            }
            if self.omit_expires_in:
                del reply["expires_in"]
            if self.rotate_refresh_token:
                rotated = f"1//test-refresh-token-{self._issued}"
                self.refresh_tokens = {rotated}  # the old one stops working: strict rotation
                if user is not None:
                    self.users[rotated] = user
                reply["refresh_token"] = rotated
        return 200, reply

    def user_of(self, header: str | None, form: dict[str, str]) -> str | None:
        with self._lock:
            if "refresh_token" in form:
                return self.users.get(form["refresh_token"])
            return self.access_users.get((header or "").removeprefix("Bearer "))

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            expires = self.access_tokens.get(header.removeprefix("Bearer "))
        return expires is not None and expires > time.time()

    def _scope_refused(self, scope: str) -> tuple[int, dict] | None:
        """Google's 403 for an access token without the method's scope, or None."""
        with self._lock:
            if scope in self.granted_scopes:
                return None
        return 403, {
            "error": {
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
                "status": "PERMISSION_DENIED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                        "domain": "googleapis.com",
                        "metadata": {"service": "health.googleapis.com"},
                    }
                ],
            }
        }

    def _devices(self, query: dict[str, str]) -> tuple[int, dict]:
        refused = self._scope_refused(SETTINGS)
        if refused is not None:
            return refused
        size = min(int(query.get("pageSize", DEVICES_DEFAULT_PAGE_SIZE)), DEVICES_MAX_PAGE_SIZE)
        start = int(query.get("pageToken") or 0)
        with self._lock:
            devices = list(self.devices)
        body: dict = {}
        if devices[start : start + size]:
            body["pairedDevices"] = devices[start : start + size]
        if start + size < len(devices):
            body["nextPageToken"] = str(start + size)
        return 200, body

    def _list(self, data_type: str, query: dict[str, str]) -> tuple[int, dict]:
        if data_type not in TYPES:
            return error(400, "INVALID_ARGUMENT", f"Invalid data type ID: {data_type}.")
        refused = self._scope_refused(TYPE_SCOPES[data_type])
        if refused is not None:
            return refused
        kind, member = TYPES[data_type]
        try:
            bounds = parse_filter(query.get("filter", ""), data_type.replace("-", "_"), kind)
            size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
        except ValueError as problem:
            return error(400, "INVALID_ARGUMENT", str(problem))
        if size <= 0:
            return error(400, "INVALID_ARGUMENT", "pageSize must be positive.")
        size = min(size, MAX_PAGE_SIZE, self.max_page_size)
        start, flip = 0, False
        if query.get("pageToken"):
            try:
                cursor = json.loads(base64.urlsafe_b64decode(query["pageToken"]))
                if cursor["filter"] != query.get("filter", ""):
                    raise ValueError
                start, flip = int(cursor["offset"]), bool(cursor.get("flip"))
            except (ValueError, KeyError, TypeError):
                return error(400, "INVALID_ARGUMENT", "Invalid page token.")
        elif self.flip_ties:
            with self._lock:
                self._queries += 1
                flip = self._queries % 2 == 0
        limits = [(op, bound_key(literal)) for op, literal in bounds]
        keyed = [(key, p) for key, p in self._newest_first(data_type, member, kind)
                 if in_bounds(key, limits)]
        if flip:  # reversed, then a stable sort: equal instants come in the other order
            keyed.reverse()
            keyed.sort(key=lambda kp: kp[0], reverse=True)  # newest first
        matching = [p for _, p in keyed]
        page = matching[start : start + size]
        body: dict = {}
        if page:  # proto3 JSON leaves out an empty list
            body["dataPoints"] = [self._render(p) for p in page]
        if start + size < len(matching):
            cursor = {"offset": start + size, "filter": query.get("filter", ""), "flip": flip}
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        return 200, body

    def _newest_first(self, data_type: str, member: str, kind: str) -> list[tuple[str, dict]]:
        """(key, point) of a type, newest first; kept until points are added, so that a
        cohort of hundreds paging through days of data costs the fake little CPU."""
        with self._lock:
            points = self.points.get(data_type, [])
            cached = self._sorted.get(data_type)
            if cached is None or cached[0] is not points or cached[1] != len(points):
                keyed = sorted(((sort_key(p, member, kind), p) for p in points),
                               key=lambda kp: kp[0], reverse=True)  # stable, as before
                cached = (points, len(points), keyed)
                self._sorted[data_type] = cached
            return cached[2]

    def _render(self, point: dict) -> dict:
        if not self.numbers_as_strings:
            return point
        return json.loads(json.dumps(point), parse_float=str, parse_int=str)


def error(code: int, status: str, message: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def parse_filter(expression: str, name: str, kind: str) -> list[tuple[str, str]]:
    """[(op, literal)] of a documented filter; ValueError for anything else."""
    if not expression:
        return []
    bounds = []
    for term in expression.split(" AND "):
        match = TERM.fullmatch(term.strip())
        if match is None:
            raise ValueError(f"Invalid filter syntax: {term!r}.")
        term_name, term_field, op, literal = match.groups()
        if term_name != name or term_field != FILTER_FIELD[kind]:
            raise ValueError(f"Invalid filter field {term_name}.{term_field} for {name}.")
        literal_form = ISO_DATE if kind == "daily" else RFC3339
        if not literal_form.fullmatch(literal):
            raise ValueError(f"Invalid literal {literal!r} for {term_field}.")
        bounds.append((op, literal))
    return bounds


def sort_key(point: dict, member: str, kind: str) -> str:
    """The point's filtered field as a sortable string: a UTC instant or an ISO date."""
    body = point[member]
    if kind == "daily":
        d = body["date"]
        return date(d["year"], d["month"], d["day"]).isoformat()
    raw = body["sampleTime"]["physicalTime"] if kind == "sample" else body["interval"]["startTime"]
    return rfc3339(datetime.fromisoformat(raw))


def bound_key(literal: str) -> str:
    """A filter literal in the form of sort_key: an ISO date as is, an instant in UTC."""
    return literal if ISO_DATE.fullmatch(literal) else sort_key_of_literal(literal)


def in_bounds(key: str, bounds: list[tuple[str, str]]) -> bool:
    """bounds: (op, bound_key(literal)) pairs."""
    for op, value in bounds:
        if op == ">=" and not key >= value:
            return False
        if op == "<" and not key < value:
            return False
    return True


def sort_key_of_literal(literal: str) -> str:
    return rfc3339(datetime.fromisoformat(literal))


def _handler(fake: FakeGoogleHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            if not is_loopback(self.client_address[0]):
                self.close_connection = True
                self._reply(403, {"error": {"code": 403, "message": "loopback only"}})
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()} if method == "POST" else {}
            match = API_PATH.fullmatch(parts.path)
            if method == "POST" and parts.path == TOKEN_PATH:
                route = "token"
            elif method == "GET" and match:
                route = "api"
            elif method == "GET" and parts.path == DEVICES_PATH:
                route = "devices"
            else:
                self._reply(*error(404, "NOT_FOUND", f"no {method} {parts.path}"))
                return
            seen = Seen(
                route,
                method,
                parts.path,
                query,
                self.headers.get("Authorization"),
                form,
                time.time(),
                fake.user_of(self.headers.get("Authorization"), form),
            )
            fake.seen.append(seen)
            fault = fake._next_fault(route)
            if fault is not None and fault.delay and fake._stopping.wait(fault.delay):
                return
            if fault is not None and fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                if route == "token":
                    self._reply(
                        fault.status, {"error": fault.oauth_error or "server_error"}, headers
                    )
                else:
                    status = FAULT_STATUS.get(fault.status, "INTERNAL")
                    self._reply(*error(fault.status, status, "scripted failure"), headers=headers)
                return
            if route == "token":
                reply = fake._token(form)
                if fault is not None and fault.token_reply is not None:
                    body = {**reply[1], **fault.token_reply}
                    reply = (reply[0], {k: v for k, v in body.items() if v is not None})
                if (
                    fault is not None
                    and fault.reply_delay
                    and fake._stopping.wait(fault.reply_delay)
                ):
                    return
                self._reply(*reply)
                return
            if not fake._authorized(seen.authorization):
                self._reply(
                    *error(
                        401,
                        "UNAUTHENTICATED",
                        "Request had invalid authentication credentials. "
                        "INVALID_AUTHENTICATOR: Token expired",
                    )
                )
                return
            if fake.on_api_request is not None and route == "api":
                fake.on_api_request(seen)
            if fault is not None and fault.raw_body is not None:
                self._send(200, fault.raw_body, {})
                return
            if match is None:
                self._reply(*fake._devices(query))
                return
            status, body = fake._list(match.group(1), query)
            payload = json.dumps(body).encode()
            delay = fake.latency
            if fake.bytes_per_second:
                delay += len(payload) / fake.bytes_per_second
            if delay and fake._stopping.wait(delay):
                return
            self._send(status, payload, {})

        def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(body).encode(), headers or {})

        def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout scenario)

    return Handler


def most_in_any_window(times: list[float], seconds: float = 60.0) -> int:
    """The most requests of a log (their `at`) that started within any `seconds` interval."""
    times, best, first = sorted(times), 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"
