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
ROLLUP_PATH = re.compile(r"/v4/users/me/dataTypes/([a-z0-9-]+)/dataPoints:rollUp")
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
    "distance": ("interval", "distance"),
    "total-calories": ("interval", "totalCalories"),
    "floors": ("interval", "floors"),
    "daily-resting-heart-rate": ("daily", "dailyRestingHeartRate"),
    "daily-heart-rate-variability": ("daily", "dailyHeartRateVariability"),
    "sleep": ("session", "sleep"),
}
# Roll-up types: the raw point's value field -> the rollupDataPoint's member and sum field
# (the discovery document's StepsRollupValue.countSum, distance.millimetersSum, ...). The
# raw points' field names of distance, calories and floors are the fake's guess.
ROLLUPS = {
    "steps": ("count", "steps", "countSum"),
    "distance": ("millimeters", "distance", "millimetersSum"),
    "total-calories": ("kcal", "totalCalories", "kcalSum"),
    "floors": ("count", "floors", "countSum"),
}
# Live (the peer project's findings): `list` refuses these, and returns no wearable-recorded
# points for these.
LIST_REFUSED = {"total-calories", "floors"}
LIST_HIDES_WEARABLE = {"steps", "distance"}
ROLLUP_MAX_DAYS = {"total-calories": 14}  # 90 for the others
ROLLUP_DEFAULT_MAX_DAYS = 90
WEARABLES = "users/me/dataSourceFamilies/google-wearables"
ALL_SOURCES = "users/me/dataSourceFamilies/all-sources"
SLEEP_MAX_PAGE_SIZE = 25
# The recorders a point can come from (DataSource; the form factor is the fake's guess of
# how the wearables family tells a phone apart).
WEARABLE = {"platform": "FITBIT", "recordingMethod": "PASSIVELY_MEASURED",
            "device": {"displayName": "Charge 6", "formFactor": "FITNESS_BAND"}}
PHONE = {"platform": "FITBIT", "recordingMethod": "PASSIVELY_MEASURED",
         "device": {"displayName": "Pixel 8", "formFactor": "PHONE"}}
EVERYONE = "*"  # add(..., user=EVERYONE): points every user sees (the benchmark's cohort)
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
    "distance": ACTIVITY,
    "total-calories": ACTIVITY,
    "floors": ACTIVITY,
    "daily-resting-heart-rate": HEALTH_METRICS,
    "daily-heart-rate-variability": HEALTH_METRICS,
    "sleep": SLEEP,
}
FILTER_FIELD = {
    "sample": "sample_time.physical_time",
    "interval": "interval.start_time",
    "daily": "date",
    "session": "interval.end_time",  # sleep: a start-time filter is refused
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
# The ErrorInfo reasons of those that Google's APIs document (googleapis error_reason.proto).
FAULT_REASON = {
    401: "ACCESS_TOKEN_EXPIRED",
    429: "RATE_LIMIT_EXCEEDED",
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
    body: dict = {"sampleTime": sample_time(instant)}
    if bpm:  # proto3 JSON leaves out an int64 that is 0
        body["beatsPerMinute"] = str(bpm)
    return {"heartRate": body}


def steps(start: datetime, count: int, minutes: int = 1, recorder: dict | None = None) -> dict:
    """A step count; `recorder` PHONE makes it the phone's (the wearables family leaves it
    out of a roll-up, all-sources adds it in)."""
    return activity("steps", start, count, minutes, recorder)


def activity(data_type: str, start: datetime, value: float, minutes: int = 1,
             recorder: dict | None = None) -> dict:
    """A raw point of a roll-up type (steps, distance in mm, total-calories, floors)."""
    field_name = ROLLUPS[data_type][0]
    body: dict = {"interval": interval(start, minutes)}
    if value:  # proto3 JSON leaves out a number that is 0
        body[field_name] = str(value) if isinstance(value, int) else value
    point = {TYPES[data_type][1]: body}
    if recorder is not None:
        point["dataSource"] = recorder
    return point


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
    body: dict = {"interval": interval(start), "heartRateZone": zone}
    if minutes:  # proto3 JSON leaves out an int64 that is 0
        body["activeZoneMinutes"] = str(minutes)
    return {"activeZoneMinutes": body}


def civil_date(day: date) -> dict:
    return {"year": day.year, "month": day.month, "day": day.day}


def daily_resting_heart_rate(day: date, bpm: int) -> dict:
    return {"dailyRestingHeartRate": {"date": civil_date(day), "beatsPerMinute": str(bpm)}}


def daily_heart_rate_variability(day: date, rmssd: float) -> dict:
    return {"dailyHeartRateVariability": {
        "date": civil_date(day), "averageHeartRateVariabilityMilliseconds": rmssd}}


def sleep(stages: list[tuple[datetime, datetime, str]], kind: str = "STAGES",
          main: bool = True, processed: bool = True) -> dict:
    """A sleep session as `list` returns it: its stages (start, end, AWAKE|LIGHT|...), the
    summary Google computes from them, and the metadata (mainSleep, nap, processed)."""
    start, end = stages[0][0], stages[-1][1]
    asleep = {"LIGHT", "DEEP", "REM", "ASLEEP"}
    minutes: dict[str, int] = {}
    for first, last, stage in stages:
        minutes[stage] = minutes.get(stage, 0) + int((last - first).total_seconds() // 60)
    summary: dict = {"stagesSummary": [{"type": t, "minutes": str(m)}
                                       for t, m in minutes.items() if m]}
    asleep_minutes = sum(m for t, m in minutes.items() if t in asleep)
    awake_minutes = minutes.get("AWAKE", 0)
    if asleep_minutes:
        summary["minutesAsleep"] = str(asleep_minutes)
    if awake_minutes:
        summary["minutesAwake"] = str(awake_minutes)
    metadata: dict = {}
    for key, value in (("mainSleep", main), ("nap", not main), ("processed", processed)):
        if value:  # proto3 JSON leaves out a false bool
            metadata[key] = True
    session_interval = {"startTime": rfc3339(start), "startUtcOffset": offset(start),
                        "endTime": rfc3339(end), "endUtcOffset": offset(end)}
    return {"sleep": {
        "interval": session_interval,
        "type": kind,
        "stages": [{"startTime": rfc3339(a), "startUtcOffset": offset(a),
                    "endTime": rfc3339(b), "endUtcOffset": offset(b), "type": t}
                   for a, b, t in stages],
        "summary": summary,
        "metadata": metadata,
    }}


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
    body: object = None  # a rollUp's JSON request


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
    # Seconds a refresh token has left, said in every token reply as refresh_token_expires_in
    # (Google's field for a refresh token with a time limit); None: not said.
    refresh_token_lifetime: int | None = None
    # Points at one instant come in insertion order, or reversed on every other query.
    flip_ties: bool = False
    granted_scopes: set[str] = field(default_factory=lambda: set(DATA_SCOPES))
    # Every query's first page comes back empty, with a token to the real first page (the
    # reference allows fewer points than asked, even none, on any page).
    empty_first_page: bool = False
    devices: list[dict] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    # Called with each API request's Seen before it is answered (e.g. to look at the DB).
    on_api_request: Callable[[Seen], None] | None = None
    # Each API reply waits latency + len(body) / bytes_per_second (0: no transfer time).
    latency: float = 0.0
    bytes_per_second: float = 0.0
    user: str = "p1"  # the owner of refresh_token

    def __post_init__(self) -> None:
        # user -> data type -> points: each user's data is their own, found by the user of
        # the access token the request carries. `points` is the default user's.
        self.data: dict[str, dict[str, list[dict]]] = {self.user: {}}
        self.points = self.data[self.user]
        self._names = 0
        self.refresh_tokens = {self.refresh_token}
        self.users = {self.refresh_token: self.user}  # refresh token -> user
        self.access_tokens: dict[str, float] = {}
        self.access_users: dict[str, str] = {}
        self._sorted: dict[tuple[str, str], tuple[tuple, list[tuple[str, dict]]]] = {}
        self._faults: dict[str, deque[Fault]] = {
            "api": deque(),  # lists and roll-ups
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

    def new_grant(self, refresh_token: str, user: str | None = None) -> None:
        """The user consented again: only this refresh token of theirs works now."""
        with self._lock:
            self.refresh_tokens = {refresh_token}
            self.users[refresh_token] = user or self.user

    # data

    def add(self, data_type: str, points: Iterable[dict], user: str | None = None) -> None:
        """Points of `user` (the default user if None; EVERYONE: seen by every user). A
        point without a resource name or a data source gets one (the tracker's)."""
        assert data_type in TYPES, data_type
        with self._lock:
            named = []
            for point in points:
                self._names += 1
                named.append({"name": f"users/me/dataTypes/{data_type}/dataPoints/"
                                      f"{self._names}", "dataSource": WEARABLE, **point})
            owner = self.user if user is None else user
            self.data.setdefault(owner, {}).setdefault(data_type, []).extend(named)

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
        """Data requests: lists and roll-ups."""
        return [
            s
            for s in self.seen
            if s.route in ("api", "rollup")
            and (data_type is None or f"/dataTypes/{data_type}/" in s.path)
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
            if self.refresh_token_lifetime is not None:
                reply["refresh_token_expires_in"] = self.refresh_token_lifetime
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

    def _list(self, data_type: str, query: dict[str, str], user: str | None
              ) -> tuple[int, dict]:
        if data_type not in TYPES:
            return error(400, "INVALID_ARGUMENT", f"Invalid data type ID: {data_type}.",
                         "INVALID_DATA_TYPE")
        refused = self._scope_refused(TYPE_SCOPES[data_type])
        if refused is not None:
            return refused
        if data_type in LIST_REFUSED:
            return error(400, "INVALID_ARGUMENT",
                         f"List is not supported for data type {data_type}; use rollUp.",
                         "UNSUPPORTED_OPERATION")
        kind, member = TYPES[data_type]
        try:
            bounds = parse_filter(query.get("filter", ""), data_type.replace("-", "_"), kind)
            size = int(query.get("pageSize", SLEEP_MAX_PAGE_SIZE if kind == "session"
                                 else DEFAULT_PAGE_SIZE))
        except ValueError as problem:
            return error(400, "INVALID_ARGUMENT", str(problem), "INVALID_FILTER")
        if size <= 0:
            return error(400, "INVALID_ARGUMENT", "pageSize must be positive.",
                         "INVALID_PAGE_SIZE")
        # The documented maximum, refused beyond (not truncated): a client asking for more shows.
        if kind == "session" and size > SLEEP_MAX_PAGE_SIZE:
            return error(400, "INVALID_ARGUMENT",
                         f"pageSize must be at most {SLEEP_MAX_PAGE_SIZE} for {data_type}.",
                         "INVALID_PAGE_SIZE")
        size = min(size, MAX_PAGE_SIZE, self.max_page_size)
        binding = [user, data_type, query.get("filter", ""), query.get("pageSize", "")]
        cursor = self._cursor(query.get("pageToken"), binding)
        if cursor is None:
            return error(400, "INVALID_ARGUMENT", "Invalid page token.", "INVALID_PAGE_TOKEN")
        start, flip = cursor
        limits = [(op, bound_key(literal)) for op, literal in bounds]
        keyed = [(key, p) for key, p in self._newest_first(user, data_type, member, kind)
                 if in_bounds(key, limits)
                 and not (data_type in LIST_HIDES_WEARABLE and is_wearable(p))]
        if flip:  # reversed, then a stable sort: equal instants come in the other order
            keyed.reverse()
            keyed.sort(key=lambda kp: kp[0], reverse=True)  # newest first
        matching = [p for _, p in keyed]
        return 200, self._page("dataPoints", [self._render(p) for p in matching],
                               start, size, flip, binding)

    def _cursor(self, token: str | None, binding: list) -> tuple[int, bool] | None:
        """(offset, flip) of a page token bound to this very request, or of a first page;
        None for a token that is not one of ours or was issued for another request."""
        if not token:
            flip = False
            if self.flip_ties:
                with self._lock:
                    self._queries += 1
                    flip = self._queries % 2 == 0
            return (-1 if self.empty_first_page else 0), flip
        try:
            cursor = json.loads(base64.urlsafe_b64decode(token))
            if cursor["bind"] != binding:
                return None
            return int(cursor["offset"]), bool(cursor["flip"])
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _page(member: str, items: list[dict], start: int, size: int, flip: bool,
              binding: list) -> dict:
        """One page of items from `start` (-1: an empty page before the first)."""
        body: dict = {}
        page = items[start : start + size] if start >= 0 else []
        if page:  # proto3 JSON leaves out an empty list
            body[member] = page
        following = 0 if start < 0 else start + size
        if following < len(items) or start < 0 < len(items):
            cursor = {"offset": following, "flip": flip, "bind": binding}
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        return body

    def _rollup(self, data_type: str, request: object, user: str | None) -> tuple[int, dict]:
        """users.dataTypes.dataPoints.rollUp: per window of windowSize, the sum of the
        family's points whose interval starts in it; windows without points left out."""
        if data_type not in ROLLUPS:
            return error(400, "INVALID_ARGUMENT", f"RollUp is not supported for {data_type}.",
                         "UNSUPPORTED_OPERATION")
        refused = self._scope_refused(TYPE_SCOPES[data_type])
        if refused is not None:
            return refused
        try:
            assert isinstance(request, dict)
            first = datetime.fromisoformat(request["range"]["startTime"])
            last = datetime.fromisoformat(request["range"]["endTime"])
            window = int(str(request["windowSize"]).removesuffix("s"))
            family = request.get("dataSourceFamily", ALL_SOURCES)
            size = int(request.get("pageSize", DEFAULT_PAGE_SIZE))
        except (AssertionError, KeyError, TypeError, ValueError):
            return error(400, "INVALID_ARGUMENT", "Invalid rollUp request.", "INVALID_REQUEST")
        if family not in (WEARABLES, ALL_SOURCES) or window <= 0 or size <= 0 or last <= first:
            return error(400, "INVALID_ARGUMENT", "Invalid rollUp request.", "INVALID_REQUEST")
        if last - first > timedelta(days=ROLLUP_MAX_DAYS.get(data_type, ROLLUP_DEFAULT_MAX_DAYS)):
            return error(400, "INVALID_ARGUMENT", "The range is longer than allowed.",
                         "RANGE_TOO_LONG")
        binding = [user, data_type, request["range"], request["windowSize"], family,
                   request.get("pageSize")]
        cursor = self._cursor(request.get("pageToken"), binding)
        if cursor is None:
            return error(400, "INVALID_ARGUMENT", "Invalid page token.", "INVALID_PAGE_TOKEN")
        field_name, member, total = ROLLUPS[data_type]
        sums: dict[int, float] = {}
        lo, hi = rfc3339(first), rfc3339(last)
        for key, point in self._newest_first(user, data_type, TYPES[data_type][1], "interval"):
            if not lo <= key < hi or family == WEARABLES and not is_wearable(point):
                continue
            at = datetime.fromisoformat(key)
            slot = int((at - first).total_seconds()) // window
            value = float(point[TYPES[data_type][1]].get(field_name, 0))
            sums[slot] = sums.get(slot, 0.0) + value
        windows = []
        for slot in sorted(sums, reverse=True):  # newest first, like list
            begin = first + timedelta(seconds=slot * window)
            summed: dict = {}
            if sums[slot]:  # proto3 JSON leaves out a 0
                whole = sums[slot] == int(sums[slot]) and total != "kcalSum"
                summed[total] = str(int(sums[slot])) if whole else sums[slot]
            windows.append({"startTime": rfc3339(begin),
                            "endTime": rfc3339(begin + timedelta(seconds=window)),
                            member: summed})
        start, flip = cursor
        size = min(size, MAX_PAGE_SIZE, self.max_page_size)
        return 200, self._page("rollupDataPoints", windows, start, size, flip, binding)

    def _newest_first(self, user: str | None, data_type: str, member: str, kind: str
                      ) -> list[tuple[str, dict]]:
        """(key, point) of a user's type, newest first; kept until points are added, so that
        a cohort of hundreds paging through days of data costs the fake little CPU."""
        with self._lock:
            mine = self.data.get(user or "", {}).get(data_type, [])
            shared = self.data.get(EVERYONE, {}).get(data_type, [])
            version = (id(mine), len(mine), id(shared), len(shared))
            cached = self._sorted.get((user or "", data_type))
            if cached is None or cached[0] != version:
                keyed = sorted(((sort_key(p, member, kind), p) for p in mine + shared),
                               key=lambda kp: kp[0], reverse=True)  # stable, as before
                cached = (version, keyed)
                self._sorted[(user or "", data_type)] = cached
            return cached[1]

    def _render(self, point: dict) -> dict:
        if not self.numbers_as_strings:
            return point
        return json.loads(json.dumps(point), parse_float=str, parse_int=str)


def is_wearable(point: dict) -> bool:
    """In the google-wearables family: recorded by a device that is not a phone."""
    device = (point.get("dataSource") or {}).get("device") or {}
    return bool(device) and device.get("formFactor") != "PHONE"


def error(code: int, status: str, message: str, reason: str | None = None
          ) -> tuple[int, dict]:
    """Google's error envelope, with an ErrorInfo detail naming the reason (the reasons
    for invalid arguments are the fake's own words: the reference lists none)."""
    body: dict = {"code": code, "message": message, "status": status}
    if reason is not None:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": reason, "domain": "health.googleapis.com"}]
    return code, {"error": body}


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
    if kind == "session":
        raw = body["interval"]["endTime"]
    elif kind == "sample":
        raw = body["sampleTime"]["physicalTime"]
    else:
        raw = body["interval"]["startTime"]
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
            # Taken first: the look-ups below wait for the fake's lock, and a request's
            # arrival must not move with another thread's work.
            arrived = time.time()
            if not is_loopback(self.client_address[0]):
                self.close_connection = True
                self._reply(403, {"error": {"code": 403, "message": "loopback only"}})
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            match = API_PATH.fullmatch(parts.path)
            rollup = ROLLUP_PATH.fullmatch(parts.path)
            form = ({k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    if method == "POST" and not rollup else {})
            if method == "POST" and parts.path == TOKEN_PATH:
                route = "token"
            elif method == "GET" and match:
                route = "api"
            elif method == "POST" and rollup:
                route = "rollup"
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
                arrived,
                fake.user_of(self.headers.get("Authorization"), form),
            )
            if route == "rollup":
                try:
                    seen.body = json.loads(raw or b"null")
                except ValueError:
                    seen.body = None
            fake.seen.append(seen)
            fault = fake._next_fault("api" if route == "rollup" else route)
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
                    self._reply(*error(fault.status, status, "scripted failure",
                                       FAULT_REASON.get(fault.status)), headers=headers)
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
                        "ACCESS_TOKEN_EXPIRED",
                    )
                )
                return
            if fake.on_api_request is not None and route in ("api", "rollup"):
                fake.on_api_request(seen)
            if fault is not None and fault.raw_body is not None:
                self._send(200, fault.raw_body, {})
                return
            if route == "devices":
                self._reply(*fake._devices(query))
                return
            if rollup is not None:
                status, body = fake._rollup(rollup.group(1), seen.body, seen.user)
            else:
                assert match is not None
                status, body = fake._list(match.group(1), query, seen.user)
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
