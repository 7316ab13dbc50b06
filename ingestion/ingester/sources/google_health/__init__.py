"""Real participants through the Google Health API v4.

- source.py: the Source: one stream per data type, pages followed to the end;
- transform.py: pages -> rows, pure; the data types we load and their scopes;
- http.py: the session, retries, timeouts and Google's error bodies;
- oauth.py: access tokens from a participant's refresh token;
- credentials.py: the token store, enrolment and needs-consent;
- devices.py: paired devices and their last sync, which bound the watermarks;
- quota.py: the request pacing shared by every worker through the database.
docs/google-health-notes.md says what of this the reference states and what we chose.
"""

from __future__ import annotations

from ... import db
from ...config import Settings
from .credentials import TokenStore
from .quota import Limit, Pacer
from .source import GoogleHealthSource

__all__ = ["GoogleHealthSource", "build"]


def build(settings: Settings) -> GoogleHealthSource:
    """One source per worker, with its token store and its pacer (one database connection,
    opened on the first request and closed with the source)."""
    pacer = Pacer(
        lambda: db.connect(settings),
        Limit(settings.google_user_requests_per_minute),
        Limit(settings.google_project_requests_per_minute),
    )
    return GoogleHealthSource(settings, TokenStore(settings), pacer)
