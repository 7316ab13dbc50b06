"""Helpers shared by the tests of the Google Health source (tests/test_google_*.py).

The fixtures they share (`fake`, `fast_retries`) are in tests/conftest.py.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fake_google_health import FakeGoogleHealth, heart_rate
from ingester.config import Settings
from ingester.model import GOOGLE_HEALTH, Participant, ReadReport, Window
from ingester.sources.google_health import credentials

P1 = Participant("p1", "Europe/Berlin", GOOGLE_HEALTH, date(2026, 3, 1))
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


class MemoryStore:
    """A token store in memory: changes made under lock() count only on a clean exit."""

    def __init__(self, refresh_token: str) -> None:
        self.refresh_token = refresh_token
        self.needs_consent_since: datetime | None = None
        self.commits = 0
        self.missing_scopes: set[str] = set()
        self.devices: list = []

    def record_missing_scope(self, participant_id: str, scope: str) -> None:
        self.missing_scopes.add(scope)

    def save_devices(self, participant_id: str, devices: list, seen_at: datetime) -> None:
        self.devices = list(devices)

    @contextmanager
    def lock(self, participant_id: str):
        grant = MemoryGrant(participant_id, self.refresh_token, self.needs_consent_since)
        yield grant
        self.refresh_token, self.needs_consent_since = (
            grant.refresh_token,
            grant.needs_consent_since,
        )
        self.commits += 1


@dataclass
class MemoryGrant:
    participant_id: str
    refresh_token: str
    needs_consent_since: datetime | None
    expires_in: float | None = None  # what a refresh reply's refresh_token_expires_in said

    def rotate(self, refresh_token: str) -> bool:
        self.refresh_token = refresh_token
        return True

    def record_expiry(self, seconds: float) -> None:
        self.expires_in = seconds

    def mark_needs_consent(self) -> bool:
        self.needs_consent_since = datetime.now(UTC)
        return True


def settings_for(fake: FakeGoogleHealth, timeout: float = 2.0, **db: object) -> Settings:
    return Settings(
        google_health_url=fake.url,
        google_token_url=fake.token_url,
        google_client_id=fake.client_id,
        google_client_secret=fake.client_secret,
        http_timeout=timeout,
        **db,
    )


def read(source, stream: str, window: Window, participant: Participant = P1):
    report = ReadReport()
    rows = list(source.read(participant, stream, window, report))
    return rows, report


def heart_rate_every(seconds: int, start: datetime, end: datetime) -> list[dict]:
    points, at, bpm = [], start, 60
    while at < end:
        points.append(heart_rate(at, bpm))
        at += timedelta(seconds=seconds)
        bpm = 60 + (bpm - 59) % 40
    return points


def db_settings(database) -> dict[str, object]:
    return {
        "db_host": database.server.host,
        "db_port": database.server.port,
        "db_name": database.dbname,
        "db_user": database.server.user,
        "db_password": database.server.password,
    }


def enrolled(db_conn, token: str, participant: Participant = P1) -> None:
    credentials.enrol(
        db_conn, participant.participant_id, participant.timezone, participant.start_date, token
    )


def stored_grant(database, participant_id: str = "p1") -> tuple[str, datetime | None]:
    connection = database.connect()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT refresh_token, needs_consent_since FROM google_credentials "
                "WHERE participant_id = %s",
                (participant_id,),
            )
            return cursor.fetchone()
    finally:
        connection.close()


def with_source(point: dict, source: dict) -> dict:
    return {**point, "dataSource": source}
