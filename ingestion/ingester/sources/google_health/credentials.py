"""Google OAuth grants in google_credentials: the token store, enrolment and consent state.

The token store works in its own short transactions on its own connection, never in the
pipeline's data transaction: a participant's data transaction may roll back, but a refresh
token that Google rotated must survive it, or the participant's grant is lost.

Two runs never refresh one participant's token at the same time, and an enrolment never
lands in the middle of a refresh: both hold a transaction-scoped advisory lock on the
participant. A refresh re-reads the stored refresh token under it and stores a rotated one
(or the needs-consent mark) before the lock is released, and only if the stored grant is
still the one it used: an update never lands on a grant that replaced it.

Who can read the tokens: whoever can read this database (see docs/google-health-notes.md).
No function here logs a token or puts one in an exception message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from ... import db
from ...config import Settings
from ...errors import IngestError, NeedsConsent, SourceUnavailable
from ...model import GOOGLE_HEALTH, PARTICIPANT_ID
from .devices import PairedDevice, save_devices

log = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection

# Key class of the per-participant token locks, pg_advisory_xact_lock(class, hashtext(id)).
# The two-key form cannot collide with the one-key locks (schema.SCHEMA_LOCK_KEY,
# claims.BATCH_OPEN_KEY); a hashtext collision between two participants only makes one
# wait for the other's refresh.
TOKEN_LOCK_CLASS = 4_417_001
# How long a refresh waits for another run's refresh of the same participant (which is one
# token request: seconds, unless the token endpoint is failing).
LOCK_TIMEOUT = "120s"

# Google's refresh tokens are printable ASCII without spaces ("1//0g…"); anything else is a
# file that holds something other than a token, and must not be stored.
TOKEN_CHARS = re.compile(r"[\x21-\x7e]{10,4096}")


class EnrolError(IngestError):
    """An enrolment that cannot be done as asked (bad input, or a synthetic participant)."""


@dataclass
class Grant:
    """A participant's stored grant, read under the token lock; changes commit on exit."""

    participant_id: str
    refresh_token: str = field(repr=False)
    needs_consent_since: datetime | None
    _cursor: psycopg2.extensions.cursor = field(repr=False)

    # Both updates apply only to the grant this refresh read (and sent to Google): if the
    # participant was re-enrolled meanwhile, the new grant is left alone and they return
    # False. Under the token lock that cannot happen; the condition holds without it too.

    def rotate(self, refresh_token: str) -> bool:
        """Store a new refresh token that Google returned with a refresh; False if the grant
        was replaced meanwhile (nothing is changed)."""
        self._cursor.execute(
            "UPDATE google_credentials SET refresh_token = %s, updated_at = now() "
            "WHERE participant_id = %s AND refresh_token = %s",
            (refresh_token, self.participant_id, self.refresh_token),
        )
        if self._cursor.rowcount == 0:
            return False
        self.refresh_token = refresh_token
        return True

    def record_expiry(self, seconds: float) -> None:
        """Google gave the refresh token a lifetime (refresh_token_expires_in, from now)."""
        self._cursor.execute(
            "UPDATE google_credentials SET refresh_token_expires_at = "
            "now() + make_interval(secs => %s) WHERE participant_id = %s AND refresh_token = %s",
            (seconds, self.participant_id, self.refresh_token),
        )

    def mark_needs_consent(self) -> bool:
        """Google refused the grant (invalid_grant): stop using it until re-enrolment.
        False if the grant was replaced meanwhile (nothing is changed)."""
        self._cursor.execute(
            "UPDATE google_credentials SET needs_consent_since = "
            "coalesce(needs_consent_since, now()), updated_at = now() "
            "WHERE participant_id = %s AND refresh_token = %s RETURNING needs_consent_since",
            (self.participant_id, self.refresh_token),
        )
        row = self._cursor.fetchone()
        if row is None:
            return False
        (self.needs_consent_since,) = row
        return True


class TokenStore:
    """google_credentials, read and written in short transactions of its own."""

    def __init__(self, settings: Settings, connect: Callable[[], Connection] | None = None) -> None:
        # db.connect: a session in UTC, DatabaseUnavailable if the server cannot be reached.
        self._connect = connect or (lambda: db.connect(settings))

    @contextmanager
    def lock(self, participant_id: str) -> Iterator[Grant]:
        """The participant's grant under the token lock; commits on a clean exit.

        Raises NeedsConsent if there is no stored grant at all.
        """
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                if not take_token_lock(cursor, participant_id):
                    raise SourceUnavailable(
                        f"another run kept {participant_id}'s token lock for {LOCK_TIMEOUT}"
                    )
                cursor.execute(
                    "SELECT refresh_token, needs_consent_since FROM google_credentials "
                    "WHERE participant_id = %s",
                    (participant_id,),
                )
                row = cursor.fetchone()
                if row is None:
                    raise NeedsConsent(
                        f"{participant_id} has no stored Google grant: enrol them "
                        "(python ingest.py participant enrol)"
                    )
                yield Grant(participant_id, row[0], row[1], cursor)
            connection.commit()
        finally:
            if not connection.closed:
                connection.rollback()  # a no-op after the commit; undoes a failed refresh
                connection.close()


    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A short transaction of its own, committed on a clean exit."""
        connection = self._connect()
        try:
            with connection, connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    def record_missing_scope(self, participant_id: str, scope: str) -> None:
        """Note a read scope the participant's grant lacks (re-enrolment clears the list)."""
        with self.transaction() as cursor:
            cursor.execute(
                "UPDATE google_credentials SET missing_scopes = ARRAY(SELECT DISTINCT s FROM "
                "unnest(array_append(missing_scopes, %s)) AS s ORDER BY s) "
                "WHERE participant_id = %s AND NOT %s = ANY(missing_scopes)",
                (scope, participant_id, scope),
            )

    def save_devices(
        self, participant_id: str, devices: list[PairedDevice], seen_at: datetime
    ) -> None:
        """Store what users.pairedDevices said: kept even if the data transaction rolls back."""
        with self.transaction() as cursor:
            save_devices(cursor, participant_id, devices, seen_at)


def take_token_lock(cursor: psycopg2.extensions.cursor, participant_id: str) -> bool:
    """The participant's token lock, until the transaction ends; False after LOCK_TIMEOUT."""
    cursor.execute("SET LOCAL lock_timeout = %s", (LOCK_TIMEOUT,))
    try:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (TOKEN_LOCK_CLASS, participant_id)
        )
    except psycopg2.errors.LockNotAvailable:
        return False
    return True


# --- enrolment, for the CLI ---------------------------------------------------------------


def read_refresh_token(source: str, stdin: TextIO | None = None) -> str:
    """The refresh token in a file, or on standard input for "-"; never from argv.

    The file may hold the token alone, or the token endpoint's JSON reply with a
    "refresh_token" member (what an authorization-code exchange returns).
    """
    if source == "-":
        text = (stdin or sys.stdin).read()
        where = "standard input"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise EnrolError(
                f"cannot read the token file {path}: {error.__class__.__name__}"
            ) from None
        where = str(path)
    text = text.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("refresh_token") or "")
        except (ValueError, AttributeError):
            raise EnrolError(f"{where} holds JSON without a refresh_token member") from None
    if not TOKEN_CHARS.fullmatch(text):
        raise EnrolError(f"{where} does not hold a refresh token (one line, no spaces)")
    return text


def enrol(
    connection: Connection,
    participant_id: str,
    timezone: str,
    start_date: date | None,
    refresh_token: str,
) -> None:
    """Enrol (or re-enrol) a Google Health participant with their grant, in one transaction.

    A new participant starts on start_date, or today in their zone. Re-enrolling keeps
    the stored data and start date (unless start_date is given), replaces the grant and
    clears needs-consent and the missing scopes: this is how a participant comes back after
    consenting again.

    A re-enrolment with another zone re-stamps the participant's stored daily values (one
    per local date, stamped at local midnight) at the new zone's midnight of the same date,
    in this transaction: a date keeps one value of a daily metric whatever the zone did.
    """
    if not PARTICIPANT_ID.fullmatch(participant_id):
        raise EnrolError(f"participant id {participant_id!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise EnrolError(
            f"timezone {timezone!r} is not an IANA zone name (e.g. Europe/Berlin)"
        ) from None
    if not TOKEN_CHARS.fullmatch(refresh_token):
        raise EnrolError("the refresh token is empty or malformed")
    first_day = start_date or datetime.now(zone).date()
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT source, timezone FROM participants WHERE participant_id = %s FOR UPDATE",
            (participant_id,),
        )
        row = cursor.fetchone()
        # Then the token lock, so that a refresh in flight (which read the old grant) ends
        # before the new grant is stored, and the next one reads the new grant. In this
        # order: a run may hold the participant's row while its refresh waits for the token
        # lock, a wait the database cannot see; token lock first could wait in a circle.
        if not take_token_lock(cursor, participant_id):
            raise EnrolError(
                f"a run kept {participant_id}'s token lock for {LOCK_TIMEOUT}; try again"
            )
        if row is None:
            cursor.execute(
                "INSERT INTO participants (participant_id, timezone, source, start_date) "
                "VALUES (%s, %s, %s, %s)",
                (participant_id, timezone, GOOGLE_HEALTH, first_day),
            )
        elif row[0] != GOOGLE_HEALTH:
            raise EnrolError(
                f"{participant_id} is a {row[0]} participant; remove them first to enrol "
                "them from Google Health"
            )
        else:
            cursor.execute(
                "UPDATE participants SET timezone = %s, start_date = coalesce(%s, start_date) "
                "WHERE participant_id = %s",
                (timezone, start_date, participant_id),
            )
            if row[1] != timezone:
                moved = db.restamp_daily_values(cursor, participant_id, ZoneInfo(row[1]), zone)
                log.info("%s: %d daily values moved from %s to %s midnight", participant_id,
                         moved, row[1], timezone)
        cursor.execute(
            "INSERT INTO google_credentials (participant_id, refresh_token) VALUES (%s, %s) "
            "ON CONFLICT (participant_id) DO UPDATE SET refresh_token = excluded.refresh_token, "
            "updated_at = now(), needs_consent_since = NULL, missing_scopes = '{}', "
            "granted_at = now(), refresh_token_expires_at = NULL",
            (participant_id, refresh_token),
        )
    log.info("enrolled %s (Google Health, %s)", participant_id, timezone)


class ConsentNeeded(NamedTuple):
    participant_id: str
    since: datetime | None  # when Google refused the grant; None if only scopes are missing
    missing_scopes: list[str]


def needs_consent(connection: Connection) -> list[ConsentNeeded]:
    """Participants whose grant Google refused (oldest first), then those whose grant lacks
    a scope: they must consent again."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT participant_id, needs_consent_since, missing_scopes FROM google_credentials "
            "WHERE needs_consent_since IS NOT NULL OR cardinality(missing_scopes) > 0 "
            "ORDER BY needs_consent_since NULLS LAST, participant_id"
        )
        rows = [ConsentNeeded(*row) for row in cursor.fetchall()]
    connection.commit()
    return rows


# Google expires the refresh tokens of an app in Testing this long after consent.
TESTING_GRANT_LIFETIME = timedelta(days=7)
# Warn this long before: a weekend, for a study team that asks participants to consent again.
EXPIRY_WARNING = timedelta(days=2)


class Expiring(NamedTuple):
    participant_id: str
    expires_at: datetime
    why: str  # what the expiry is from, for the warning


def grant_expiry(granted_at: datetime, stated: datetime | None, app_status: str
                 ) -> tuple[datetime, str] | None:
    """When a grant expires and why: the lifetime Google stated, else 7 days after consent
    for an app in Testing; None for a grant of a published app that states none."""
    if stated is not None:
        return stated, "Google gave its refresh token a lifetime"
    if app_status == "testing":
        return (granted_at + TESTING_GRANT_LIFETIME,
                "GOOGLE_OAUTH_APP_STATUS=testing: Google expires it 7 days after consent")
    return None


def expiring_grants(connection: Connection, app_status: str, now: datetime) -> list[Expiring]:
    """Grants not (yet) refused that expire within EXPIRY_WARNING of `now`, or have already."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT participant_id, granted_at, refresh_token_expires_at FROM google_credentials "
            "WHERE needs_consent_since IS NULL ORDER BY participant_id"
        )
        rows = cursor.fetchall()
    connection.commit()
    found = []
    for participant_id, granted_at, stated in rows:
        expiry = grant_expiry(granted_at, stated, app_status)
        if expiry is not None and expiry[0] - now <= EXPIRY_WARNING:
            found.append(Expiring(participant_id, *expiry))
    return found


def expiry_text(grant: Expiring, now: datetime) -> str:
    """One line of `status` and `participant needs-consent`."""
    when = f"{grant.expires_at:%Y-%m-%d %H:%M}Z"
    verb = "expired" if grant.expires_at <= now else "expires"
    return (f"{grant.participant_id}	grant {verb} {when} ({grant.why}): they must consent "
            "again before it does; publish the app (docs/google-health-notes.md, "
            "\"Publish the app\")")


def clear_consent(connection: Connection, participant_id: str) -> bool:
    """Clear a participant's needs-consent mark; True if they had one. enrol() does this too."""
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE google_credentials SET needs_consent_since = NULL, updated_at = now() "
            "WHERE participant_id = %s AND needs_consent_since IS NOT NULL",
            (participant_id,),
        )
        return cursor.rowcount > 0
