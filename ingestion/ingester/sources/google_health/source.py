"""Real participants' data from the Google Health API (v4), one stream per data type.

A stream is read with `users.dataTypes.dataPoints.list`:
    GET {GOOGLE_HEALTH_URL}/v4/users/me/dataTypes/{data-type}/dataPoints
        ?pageSize=10000&filter=<the window>&pageToken=<from the previous page>
following nextPageToken to the end. Activity (steps, distance, calories, floors) is read with
`dataPoints:rollUp` instead, per minute from the google-wearables family (_rollup;
docs/google-health-notes.md, "Activity by roll-up"). The filter uses the documented
fields (AIP-160, only >= and <, joined by AND): sample types on
`{type}.sample_time.physical_time`, interval types on `{type}.interval.start_time`, daily
types on `{type}.date`.

Each participant gets one session (retries, timeouts, rate limit: http.py) and one OAuth
auth object (oauth.py), kept while the pipeline reads that participant's streams.

How far a participant's data has arrived (delivered_until) comes from their paired devices'
last sync (devices.py), read once per participant and run where the grant has the settings
scope; otherwise the late-sync horizon.

A 403 for a scope the grant lacks refuses only the streams under that scope: read() records
the scope in the token store and raises ScopeNotGranted before yielding anything, so the
pipeline skips that stream (its watermark stays) and loads the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests

from ...config import Settings
from ...errors import ConfigError, NeedsConsent, ParticipantError, PayloadError, ScopeNotGranted
from ...model import DeliveryBound, Participant, ReadReport, Row, Window
from ...sleep import SLEEP_STREAM, SleepSession
from ...windows import local_midnight
from .credentials import TokenStore
from .devices import (
    DEVICE_PAGE_SIZE,
    HORIZON,
    MAX_DEVICE_PAGES,
    PairedDevice,
    delivery_bound,
    devices_from_page,
)
from .http import build_session, classify, send
from .oauth import GoogleOAuth
from .quota import Pacer
from .sleep import FILTER_FIELD, SLEEP_PAGE_SIZE, SLEEP_TYPE, sessions_from_page
from .transform import (
    DAILY,
    DATA_TYPES,
    INTERVAL,
    ROLLUP,
    SETTINGS,
    Candidate,
    DataType,
    PageCandidates,
    candidates_from_page,
    rows_from_rollup_page,
)

log = logging.getLogger(__name__)

# The documented maximum (the default is 1440): fewest requests per window.
MAX_PAGE_SIZE = 10_000
# A day of 1 Hz heart rate is 9 pages; a year is ~3,200. More pages than this for one
# window means the server keeps handing out tokens: fail rather than loop for ever.
MAX_PAGES = 20_000
# A server that hands out a page token again would loop for ever, so every token of a
# read is remembered, as its hash (32 bytes, whatever the token's length): a cycle of any
# length ends the read at its first repeat. A window's pages are at most MAX_PAGES.
# The body of a rollUp request: the family that holds the tracker's own streams and not the
# phone's (the default, all-sources, sums both), at one window per minute.
WEARABLES = "users/me/dataSourceFamilies/google-wearables"
ROLLUP_WINDOW = "60s"
MINUTE = timedelta(minutes=1)


class GoogleHealthSource:
    """The Source for participants whose source is google_health."""

    streams: tuple[str, ...] = (*DATA_TYPES, SLEEP_STREAM)

    def __init__(
        self, settings: Settings, token_store: TokenStore, pacer: Pacer | None = None
    ) -> None:
        if not settings.google_client_id or not settings.google_client_secret:
            raise ConfigError(
                "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set to load Google Health "
                "participants (docs/google-health-notes.md, 'Real participants')"
            )
        self._settings = settings
        self._store = token_store
        self._pacer = pacer  # None: an in-process limiter per session (http.RateLimiter)
        self._client: tuple[str, requests.Session, GoogleOAuth] | None = None

    def delivered_until(self, participant: Participant, now: datetime) -> DeliveryBound:
        """The oldest sync of the trackers in use (devices.py) where the grant allows, else
        the horizon.

        Never raises for the participant: a grant without the settings scope (every grant
        enrolled before it was asked for) or any failure takes the horizon rule, and the
        streams' own reads report what is wrong with the participant.
        """
        horizon = self._settings.late_sync_horizon
        pid = participant.participant_id
        try:
            devices = self._paired_devices(pid)
        except ScopeNotGranted:
            self._store.record_missing_scope(pid, SETTINGS)
            log.info("%s: no settings scope, so no device sync time: the %s-day horizon "
                     "bounds the watermarks", pid, horizon.days)
            return DeliveryBound(now - horizon, HORIZON)
        except ParticipantError as error:
            log.warning("%s: paired devices unreadable (%s): the horizon bounds the watermarks",
                        pid, error)
            return DeliveryBound(now - horizon, HORIZON)
        self._store.save_devices(pid, devices, datetime.now(UTC))
        bound = delivery_bound(devices, now, horizon)
        log.info("%s: %d paired device(s); %s bounds the watermarks at %s", pid, len(devices),
                 bound.rule, bound.until.isoformat())
        return bound

    def _paired_devices(self, participant_id: str) -> list[PairedDevice]:
        """Every page of users.pairedDevices.list (a person has a handful of devices)."""
        session, auth = self._session_for(participant_id)
        url = f"{self._settings.google_health_url}/v4/users/me/pairedDevices"
        params: dict[str, object] = {"pageSize": DEVICE_PAGE_SIZE}
        devices: list[PairedDevice] = []
        for _ in range(MAX_DEVICE_PAGES):
            page, token = devices_from_page(classify(send(session, "GET", url, params=params,
                                                          auth=auth)))
            devices += page
            if token is None:
                return devices
            params["pageToken"] = token
        raise PayloadError(f"more than {MAX_DEVICE_PAGES} pages of paired devices")

    def read(
        self, participant: Participant, stream: str, window: Window, report: ReadReport
    ) -> Iterator[Row]:
        if stream == SLEEP_STREAM:  # sessions, not rows: the pipeline calls read_sleep
            return
        data_type = DATA_TYPES.get(stream)
        if data_type is None:
            raise ValueError(f"unknown Google Health stream {stream!r}")
        label = f"{participant.participant_id} {stream}"
        if data_type.kind == ROLLUP:
            yield from self._rollup(participant, data_type, window, report)
            return
        expression = list_filter(data_type, window, participant.zone)
        if expression is None:
            return
        pages = self._pages(participant, data_type, expression, report)
        yield from kept_rows(pages, data_type, window, report, label)

    def read_sleep(
        self, participant: Participant, window: Window, report: ReadReport
    ) -> list[SleepSession]:
        """The sleep sessions that end in the window, every page of them (sleep.py)."""
        if window.start >= window.end:
            return []
        pid = participant.participant_id
        url = f"{self._settings.google_health_url}/v4/users/me/dataTypes/sleep/dataPoints"
        low, high = rfc3339(floor_second(window.start)), rfc3339(ceil_second(window.end))
        params = {"pageSize": SLEEP_PAGE_SIZE,
                  "filter": f'{FILTER_FIELD} >= "{low}" AND {FILTER_FIELD} < "{high}"'}
        tokens = PageTokens(SLEEP_TYPE.name)
        sessions: list[SleepSession] = []
        for number in range(MAX_PAGES):
            page = self._ask(pid, SLEEP_TYPE, number, "GET", url, params=params,
                             auth=self._session_for(pid)[1])
            examples: dict[str, str] = {}
            found, token = sessions_from_page(page, report, examples)
            for reason, example in examples.items():
                log.debug("%s: rejected %s, e.g. %s", pid, reason, example)
            sessions += [s for s in found if s.end in window]
            if token is None:
                return sessions
            tokens.check(token)
            params["pageToken"] = token
        raise PayloadError(f"sleep: more than {MAX_PAGES} pages for one window")

    def _pages(
        self, participant: Participant, data_type: DataType, expression: str, report: ReadReport
    ) -> Iterator[PageCandidates]:
        """The candidates of every page of one filtered list, newest first."""
        pid = participant.participant_id
        session, auth = self._session_for(pid)
        url = (
            f"{self._settings.google_health_url}/v4/users/me/dataTypes/"
            f"{quote(data_type.name)}/dataPoints"
        )
        params = {"pageSize": MAX_PAGE_SIZE, "filter": expression}
        tokens = PageTokens(data_type.name)
        for number in range(MAX_PAGES):
            page = self._ask(pid, data_type, number, "GET", url, params=params, auth=auth)
            examples: dict[str, str] = {}
            candidates, token = candidates_from_page(
                page, data_type, participant, report, examples
            )
            for reason, example in examples.items():
                log.debug("%s: rejected %s, e.g. %s", pid, reason, example)
            yield candidates
            if token is None:
                return
            tokens.check(token)
            params["pageToken"] = token
        raise PayloadError(f"{data_type.name}: more than {MAX_PAGES} pages for one window")

    def _ask(self, pid: str, data_type: DataType, number: int, method: str, url: str,
             **kwargs: object) -> dict:
        """One page; a 403 for a missing scope before the first page refuses the stream."""
        session, _ = self._session_for(pid)
        try:
            return classify(send(session, method, url, **kwargs))
        except ScopeNotGranted as error:
            if number:  # rows of this stream have gone out already: fail the participant
                raise NeedsConsent(f"{data_type.name}: {error}") from error
            self._store.record_missing_scope(pid, data_type.scope)
            raise ScopeNotGranted(
                f"{data_type.name} needs the scope {data_type.scope}, which the grant "
                "lacks; the participant must consent again",
                data_type.scope,
            ) from error

    def _rollup(
        self, participant: Participant, data_type: DataType, window: Window, report: ReadReport
    ) -> Iterator[Row]:
        """The per-minute sums of the window from the google-wearables family, in ranges
        of at most data_type.range_days; the minutes are whole UTC minutes, widened
        outwards, and what falls outside the window is dropped."""
        pid = participant.participant_id
        session, auth = self._session_for(pid)
        url = (f"{self._settings.google_health_url}/v4/users/me/dataTypes/"
               f"{quote(data_type.name)}/dataPoints:rollUp")
        number = 0
        for start, end in rollup_ranges(window, data_type.range_days):
            body: dict[str, object] = {
                "range": {"startTime": rfc3339(start), "endTime": rfc3339(end)},
                "windowSize": ROLLUP_WINDOW,
                "dataSourceFamily": WEARABLES,
                "pageSize": MAX_PAGE_SIZE,
            }
            tokens = PageTokens(data_type.name)
            while True:
                if number >= MAX_PAGES:
                    raise PayloadError(
                        f"{data_type.name}: more than {MAX_PAGES} pages for one window")
                page = self._ask(pid, data_type, number, "POST", url, json=body, auth=auth)
                number += 1
                examples: dict[str, str] = {}
                rows, token = rows_from_rollup_page(page, data_type, participant, report,
                                                    examples)
                for reason, example in examples.items():
                    log.debug("%s: rejected %s, e.g. %s", pid, reason, example)
                yield from (row for row in rows if row.timestamp in window)
                if token is None:
                    break
                tokens.check(token)
                body["pageToken"] = token

    def close(self) -> None:
        self._drop_client()
        if self._pacer is not None:
            self._pacer.close()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client[1].close()
            self._client = None

    def _session_for(self, participant_id: str) -> tuple[requests.Session, GoogleOAuth]:
        """The participant's session and auth; one participant's at a time is kept."""
        if self._client is None or self._client[0] != participant_id:
            self._drop_client()
            settings = self._settings
            limiter = self._pacer.for_participant(participant_id) if self._pacer else None
            session = build_session(
                settings.http_timeout,
                settings.google_health_url,
                limiter,
                max_retry_after=settings.http_max_retry_after,
            )
            auth = GoogleOAuth(
                participant_id,
                self._store,
                session,
                settings.google_token_url,
                settings.google_client_id,
                settings.google_client_secret,
            )
            self._client = (participant_id, session, auth)
        return self._client[1], self._client[2]


def kept_rows(
    pages: Iterable[PageCandidates], data_type: DataType, window: Window, report: ReadReport,
    label: str = "",
) -> Iterator[Row]:
    """The rows a list stream yields from its pages: one per instant, inside the window."""
    outside = 0
    start, end = window.start, window.end  # `in window` for every row, inlined
    for row in one_per_instant(pages, report, f"{data_type.name}: a second point at the "
                               "same instant"):
        if start <= row.timestamp < end:
            yield row
        else:
            outside += 1  # the filter's whole seconds reach a little past the window
    if outside:
        log.debug("%s: %d points outside the window", label, outside)


def one_per_instant(
    pages: Iterable[PageCandidates], report: ReadReport, reason: str
) -> Iterator[Row]:
    """The rows of the best-ranked point of every instant (source_rank in transform), over
    pages sorted newest first.

    `list` returns every data source's points; two at one instant would collide on the
    unique key. Equal instants sit side by side in the sorted list, so a pair can straddle a
    page break only at a page's oldest instant: that one is held back until the next page
    shows whether more points share it. Memory: one page and one held instant. Every point
    that loses is counted under `reason`.
    """
    held: dict[datetime, Candidate] = {}
    for page in pages:
        if page.widths is None and not shares_an_instant(page, held):
            held = yield from distinct_page(page, held)
            continue
        best = held
        for candidate in page:
            current = best.get(candidate.instant)
            if current is None:
                best[candidate.instant] = candidate
                continue
            report.reject(reason)
            if candidate.rank < current.rank:
                best[candidate.instant] = candidate
        if not best:
            continue
        oldest = min(best)
        held = {oldest: best.pop(oldest)}
        for candidate in best.values():
            yield from candidate.rows
    for candidate in held.values():
        yield from candidate.rows


def shares_an_instant(page: PageCandidates, held: dict[datetime, Candidate]) -> bool:
    """True if two of the page's points, or one and the held one, share an instant."""
    instants = set(page.instants)
    return len(instants) < len(page) or any(instant in instants for instant in held)


def distinct_page(
    page: PageCandidates, held: dict[datetime, Candidate]
) -> Generator[Row, None, dict[datetime, Candidate]]:
    """one_per_instant for a page of one row a point, every instant its own: the same rows
    in the same order, without a Candidate a point. Returns what is held next."""
    if not len(page):
        return held
    instants, rows = page.instants, page.rows
    oldest = min(instants)
    if held and min(held) < oldest:
        yield from rows
        return held
    for candidate in held.values():
        yield from candidate.rows
    # Pages come newest first: the oldest point is the last one.
    index = len(instants) - 1 if instants[-1] == oldest else instants.index(oldest)
    yield from rows[:index]
    yield from rows[index + 1:]
    return {oldest: page.candidate(index)}


class PageTokens:
    """The page tokens of one read: a token seen before, at any distance, ends the read."""

    def __init__(self, data_type: str) -> None:
        self._data_type = data_type
        self._seen: set[bytes] = set()

    def check(self, token: str) -> None:
        digest = hashlib.sha256(token.encode()).digest()
        if digest in self._seen:
            raise PayloadError(f"{self._data_type}: the server repeated a page token")
        self._seen.add(digest)


def rollup_ranges(window: Window, days: int) -> Iterator[tuple[datetime, datetime]]:
    """The window in whole UTC minutes (widened outwards), cut into ranges of `days`."""
    start = floor_minute(window.start)
    end = floor_minute(window.end)
    if end < window.end:
        end += MINUTE
    step = timedelta(days=days)
    while start < end:
        yield start, min(start + step, end)
        start += step


def floor_minute(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(second=0, microsecond=0)


def list_filter(data_type: DataType, window: Window, zone: ZoneInfo) -> str | None:
    """The AIP-160 filter for a window, or None if no point can fall into it.

    Physical times are written in whole seconds, widened outwards (the caller drops what
    falls outside the window). A daily point's instant is local midnight of its date, so
    a daily filter names the dates whose local midnight lies in the window.
    """
    if data_type.kind == DAILY:
        first, stop = civil_days(window, zone)
        if first >= stop:
            return None
        field, low, high = f"{data_type.filter_name}.date", first.isoformat(), stop.isoformat()
    else:
        if window.start >= window.end:
            return None
        suffix = (
            "interval.start_time" if data_type.kind == INTERVAL else "sample_time.physical_time"
        )
        field = f"{data_type.filter_name}.{suffix}"
        low, high = rfc3339(floor_second(window.start)), rfc3339(ceil_second(window.end))
    return f'{field} >= "{low}" AND {field} < "{high}"'


def civil_days(window: Window, zone: ZoneInfo) -> tuple[date, date]:
    """[first, stop): the local dates whose midnight in `zone` lies in the window."""
    first = window.start.astimezone(zone).date()
    if local_midnight(first, zone) < window.start:
        first += timedelta(days=1)
    stop = window.end.astimezone(zone).date()
    if local_midnight(stop, zone) < window.end:
        stop += timedelta(days=1)
    return first, stop


def floor_second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def ceil_second(instant: datetime) -> datetime:
    whole = instant.replace(microsecond=0)
    return whole if whole == instant else whole + timedelta(seconds=1)


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
