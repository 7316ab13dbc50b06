"""Google OAuth 2.0 for one participant, as a requests auth object.

The access token lives in memory only; the refresh token lives in the token store
(credentials.py). A refresh happens lazily, when the access token is about to expire, and
once more if the API answers 401. It runs under the store's per-participant lock and
re-reads the stored refresh token there, so a token another run rotated meanwhile is used.

Google normally answers a refresh without a new refresh token, but may send one: it is
committed to the store before anything else of the reply is read (the access token, its
expires_in), so neither a crash, a rolled-back data transaction nor a reply we cannot use
can leave us holding only a token Google has replaced.

invalid_grant means the grant is gone (revoked, expired, or the app is in "Testing" and
seven days passed): the participant is marked in the store and NeedsConsent is raised.
Both store updates apply only to the grant this refresh used; if it was replaced
meanwhile (a re-enrolment), the refresh fails as SourceUnavailable and the next run uses
the new grant.
No token is ever logged or put into an exception message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from requests.auth import AuthBase

from ...errors import NeedsConsent, PayloadError, RequestRejected, SourceUnavailable
from .http import describe, send

if TYPE_CHECKING:
    from .credentials import TokenStore

log = logging.getLogger(__name__)

# Refresh this long before the access token's stated expiry, so that a token never expires
# between the check and Google reading the request (and clocks may differ a little).
EXPIRY_MARGIN = 60.0
# RFC 6749 (5.1) makes expires_in only RECOMMENDED. Without it we assume Google's usual
# one hour; if the token dies sooner, the API's 401 gets a fresh one (_refresh_on_401).
DEFAULT_LIFETIME = 3600.0
# A stated refresh-token lifetime beyond this (10 years) is no warning's business.
MAX_REFRESH_LIFETIME = 10 * 366 * 86400


@dataclass
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # on the auth's clock (time.time)

    def usable(self, now: float) -> bool:
        return now < self.expires_at - EXPIRY_MARGIN


class GoogleOAuth(AuthBase):
    """Bearer auth for one participant's requests to the Google Health API."""

    def __init__(
        self,
        participant_id: str,
        store: TokenStore,
        session: requests.Session,
        token_url: str,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.participant_id = participant_id
        self._store = store
        self._session = session
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self.token: AccessToken | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token
        if token is None or not token.usable(self._clock()):
            token = self.refresh()
        request.headers["Authorization"] = f"Bearer {token.value}"
        request.register_hook("response", self._refresh_on_401)
        return request

    def _refresh_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Once per request: a 401 gets a fresh access token and the request again.

        The repeat goes straight to the adapter, so its own reply does not come back
        here: a second 401 is the caller's to classify.
        """
        if response.status_code != 401:
            return response
        log.info(
            "%s: access token refused (%s), refreshing", self.participant_id, describe(response)
        )
        _ = response.content  # read the body, so that the connection can be reused
        response.close()
        token = self.refresh()
        again = response.request.copy()
        again.headers["Authorization"] = f"Bearer {token.value}"
        retried = response.connection.send(again, **kwargs)
        retried.history.append(response)
        retried.request = again
        return retried

    def refresh(self) -> AccessToken:
        """A new access token from the refresh token; see the module docstring."""
        consent_lost = None
        replaced = False
        reply = None
        with self._store.lock(self.participant_id) as grant:
            if grant.needs_consent_since is not None:
                consent_lost = (
                    f"marked as needing consent since {grant.needs_consent_since:%Y-%m-%d %H:%M}"
                )
            else:
                reply = self._grant(grant.refresh_token)
                if reply is None:
                    replaced = not grant.mark_needs_consent()
                    consent_lost = "Google refused the refresh token (invalid_grant)"
                else:
                    # The rotated refresh token first, and nothing else of the reply inside
                    # the lock: a reply we cannot use (no access_token, a bad expires_in)
                    # raises below, after the rotation has been committed.
                    rotated = reply.get("refresh_token")
                    if isinstance(rotated, str) and rotated and rotated != grant.refresh_token:
                        replaced = not grant.rotate(rotated)
                        if not replaced:
                            log.info(
                                "%s: Google rotated the refresh token; stored",
                                self.participant_id,
                            )
                    lifetime = refresh_lifetime(reply)
                    if lifetime is not None and not replaced:
                        grant.record_expiry(lifetime)
        # The store has committed here: a rotated refresh token is safe before first use.
        if replaced:
            raise SourceUnavailable(
                f"{self.participant_id}: the stored grant was replaced during a refresh "
                "(re-enrolled?); the next run uses the new one"
            )
        if consent_lost is not None or reply is None:
            raise NeedsConsent(f"{self.participant_id}: {consent_lost}; they must consent again")
        token = access_token_from(reply, self._clock())
        self.token = token
        log.debug("%s: access token refreshed", self.participant_id)
        return token

    def _grant(self, refresh_token: str) -> dict | None:
        """The token endpoint's JSON reply, or None for invalid_grant."""
        response = send(
            self._session,
            "POST",
            self._token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            headers={"Accept": "application/json"},
        )
        body = token_reply_body(response)
        if response.status_code == 200:
            return body
        error = body.get("error")
        if response.status_code in (400, 401) and error == "invalid_grant":
            return None
        description = body.get("error_description")
        detail = f"{error}: {description}" if isinstance(description, str) else str(error)
        # invalid_client / unauthorized_client: GOOGLE_CLIENT_ID or _SECRET is wrong, which
        # no retry fixes; the participant's grant may well be fine, so it is not marked.
        raise RequestRejected(
            f"token endpoint refused the refresh: {response.status_code} {detail}"
        )


def token_reply_body(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise PayloadError(
            f"token endpoint: a {response.status_code} reply that is not JSON"
        ) from None
    if not isinstance(body, dict):
        raise PayloadError(f"token endpoint: a {response.status_code} reply that is not an object")
    return body


def refresh_lifetime(reply: dict) -> float | None:
    """refresh_token_expires_in (seconds), which Google sends for a refresh token that will
    expire (an app in Testing, time-limited access); None if absent or unreadable: it only
    feeds a warning, never the refresh."""
    value = reply.get("refresh_token_expires_in")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 < value <= MAX_REFRESH_LIFETIME:  # NaN too; more would overflow an interval
        return None
    return float(value)


def access_token_from(reply: dict, now: float) -> AccessToken:
    """The access token of a token reply; expires_in may be absent, or a numeric string."""
    value = reply.get("access_token")
    if not isinstance(value, str) or not value:
        raise PayloadError("token endpoint: a reply without access_token")
    expires_in = reply.get("expires_in")
    if expires_in is None:
        return AccessToken(value, now + DEFAULT_LIFETIME)
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise PayloadError("token endpoint: a reply whose expires_in is not a positive number")
    return AccessToken(value, now + float(expires_in))
