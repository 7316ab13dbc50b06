"""Real participants' data from the Google Health API (v4), one stream per data type.

A stream is read with `users.dataTypes.dataPoints.list`:
    GET {GOOGLE_HEALTH_URL}/v4/users/me/dataTypes/{data-type}/dataPoints
        ?pageSize=10000&filter=<the window>&pageToken=<from the previous page>
following nextPageToken to the end. The filter uses the documented fields (AIP-160, only
>= and <, joined by AND): sample types on `{type}.sample_time.physical_time`, interval
types on `{type}.interval.start_time`, daily types on `{type}.date`.

Each participant gets one session (retries, timeouts, rate limit: http.py) and one OAuth
auth object (oauth.py), kept while the pipeline reads that participant's streams.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests

from ..config import Settings
from ..credentials import TokenStore
from ..errors import ConfigError, PayloadError
from ..http import build_session, classify, send
from ..model import DeliveryBound, Participant, ReadReport, Row, Window
from ..oauth import GoogleOAuth
from ..transform.google_health import DAILY, DATA_TYPES, INTERVAL, DataType, rows_from_page
from ..windows import local_midnight

log = logging.getLogger(__name__)

# The documented maximum (the default is 1440): fewest requests per window.
MAX_PAGE_SIZE = 10_000
# A day of 1 Hz heart rate is 9 pages; a year is ~3,200. More pages than this for one
# window means the server keeps handing out tokens: fail rather than loop for ever.
MAX_PAGES = 20_000
# A server that hands out a page token again would loop for ever. Remembering the last few
# tokens catches a repeat at once (a cycle of up to this many pages); a longer cycle still
# ends at MAX_PAGES. Keeping every token instead would grow with the window.
RECENT_TOKENS = 8


class GoogleHealthSource:
    """The Source for participants whose source is google_health."""

    streams: tuple[str, ...] = tuple(DATA_TYPES)

    def __init__(self, settings: Settings, token_store: TokenStore) -> None:
        if not settings.google_client_id or not settings.google_client_secret:
            raise ConfigError(
                "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set to load Google Health "
                "participants (docs/google-health-notes.md, 'Real participants')"
            )
        self._settings = settings
        self._store = token_store
        self._client: tuple[str, requests.Session, GoogleOAuth] | None = None

    def delivered_until(self, participant: Participant, now: datetime) -> DeliveryBound:
        """The re-read horizon: a Fitbit syncs when its phone app next connects, sometimes
        days late, and its points carry the time they were measured. A tracker keeps about
        7 days of minute data (LATE_SYNC_HORIZON_DAYS), so nothing older can still arrive;
        the watermark stays that far behind now, and every night re-reads it (re-read points
        write nothing: the unique key absorbs them)."""
        return DeliveryBound(now - self._settings.late_sync_horizon, "horizon")

    def read(
        self, participant: Participant, stream: str, window: Window, report: ReadReport
    ) -> Iterator[Row]:
        data_type = DATA_TYPES.get(stream)
        if data_type is None:
            raise ValueError(f"unknown Google Health stream {stream!r}")
        expression = list_filter(data_type, window, participant.zone)
        if expression is None:
            return
        session, auth = self._session_for(participant.participant_id)
        url = (
            f"{self._settings.google_health_url}/v4/users/me/dataTypes/"
            f"{quote(data_type.name)}/dataPoints"
        )
        params = {"pageSize": MAX_PAGE_SIZE, "filter": expression}
        recent_tokens: deque[str] = deque(maxlen=RECENT_TOKENS)
        outside = 0
        for _ in range(MAX_PAGES):
            page = classify(send(session, "GET", url, params=params, auth=auth))
            examples: dict[str, str] = {}
            rows, token = rows_from_page(page, data_type, participant, report, examples)
            for reason, example in examples.items():
                log.debug("%s: rejected %s, e.g. %s", participant.participant_id, reason, example)
            # Points of one instant from two data sources sit side by side in the time-sorted
            # list, so one page's worth of memory catches them; a pair split by a page break
            # is absorbed by the writer's upsert. Memory stays flat over any window.
            seen: set[tuple[str, datetime]] = set()
            for row in rows:
                if row.timestamp not in window:
                    outside += 1  # the filter's whole seconds reach a little past the window
                elif (row.metric_type, row.timestamp) in seen:
                    # list returns every data source's points; two sources with the same
                    # instant would collide on the unique key. The first one wins.
                    report.reject(f"{data_type.name}: a second point at the same instant")
                else:
                    seen.add((row.metric_type, row.timestamp))
                    yield row
            if token is None:
                break
            if token in recent_tokens:
                raise PayloadError(f"{data_type.name}: the server repeated a page token")
            recent_tokens.append(token)
            params["pageToken"] = token
        else:
            raise PayloadError(f"{data_type.name}: more than {MAX_PAGES} pages for one window")
        if outside:
            log.debug(
                "%s %s: %d points outside the window", participant.participant_id, stream, outside
            )

    def close(self) -> None:
        if self._client is not None:
            self._client[1].close()
            self._client = None

    def _session_for(self, participant_id: str) -> tuple[requests.Session, GoogleOAuth]:
        """The participant's session and auth; one participant's at a time is kept."""
        if self._client is None or self._client[0] != participant_id:
            self.close()
            settings = self._settings
            session = build_session(settings.http_timeout, settings.google_health_url)
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
