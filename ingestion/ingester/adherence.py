"""Adherence and the morning flags, as the views `adherence` and `participant_flags` say.

The thresholds are settings (VALID_DAY_WEAR, NO_UPLOAD_HOURS, LOW_WEAR_DAYS); every command
writes them into the table adherence_settings, so that psql, `ingest.py report` and the
views all judge a day with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal

from .config import Settings
from .db import Connection


@dataclass(frozen=True)
class Day:
    """One participant's local day: a row of adherence_at()."""

    participant_id: str
    day: date
    complete: bool  # the local day is over
    day_minutes: int  # 1,440; 1,380 or 1,500 on DST days
    wear_minutes: int
    wear_fraction: float
    valid_day: bool
    has_data: bool  # any sample of any metric that day
    first_sample: datetime | None
    last_sample: datetime | None
    last_sync: datetime | None
    battery: int | None
    # False for a day we failed to load (the ingestion is not ok and the day ended after
    # what it loaded): unknown, never counted against the participant.
    loaded: bool


# participant_ingestion_of()'s states, and how the report and the dashboard say them.
INGESTION_STATES = {
    "ok": "ok", "failed": "failed", "held": "held", "needs_consent": "needs consent",
    "never_loaded": "never loaded",
}


@dataclass(frozen=True)
class Flags:
    """One participant's morning check: a row of participant_flags_at()."""

    participant_id: str
    source: str
    last_data: datetime | None
    days_since_data: Decimal | None
    last_sync: datetime | None
    days_since_sync: Decimal | None
    battery: int | None
    invalid_days_of_7: int
    no_upload: bool
    low_wear: bool
    needs_consent: bool
    last_run_status: str | None
    last_run_at: datetime | None
    ingestion_state: str  # a key of INGESTION_STATES
    ingestion_error: str | None  # the latest run's one-line error, when it did not succeed
    last_ok_at: datetime | None  # when a run last loaded this participant
    loaded_until: datetime | None  # what is loaded: the committed watermark

    @property
    def flagged(self) -> bool:
        """A compliance flag: something to ask the participant about."""
        return self.no_upload or self.low_wear or self.needs_consent

    @property
    def ours(self) -> bool:
        """The ingestion needs us (failed, held, never loaded), not the participant."""
        return self.ingestion_state in ("failed", "held", "never_loaded")

    def ingestion(self) -> str:
        """The state in words, with the error of a run that did not succeed."""
        words = INGESTION_STATES[self.ingestion_state]
        return f"{words}: {self.ingestion_error}" if self.ingestion_error else words

    def describe(self, no_upload_hours: int) -> str:
        """The raised flags in words, '' when none is."""
        words = []
        if self.no_upload:
            since = self.days_since_sync if self.last_sync else self.days_since_data
            words.append(f"no upload for {no_upload_hours} h"
                         + (f" ({since} d)" if since is not None else " (never)"))
        if self.low_wear:
            words.append(f"low wear on {self.invalid_days_of_7} of the last 7 days")
        if self.needs_consent:
            words.append("needs consent")
        return "; ".join(words)


def publish_thresholds(connection: Connection, settings: Settings) -> None:
    """Make the database's thresholds this command's settings (a no-op when they are)."""
    values = (settings.valid_day.minutes, settings.valid_day.percent,
              settings.no_upload_hours, settings.low_wear_days)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE adherence_settings SET valid_day_minutes = %s, valid_day_percent = %s, "
            "no_upload_hours = %s, low_wear_days = %s, updated_at = now() "
            "WHERE (valid_day_minutes, valid_day_percent, no_upload_hours, low_wear_days) "
            "IS DISTINCT FROM (%s::integer, %s::double precision, %s::integer, %s::integer)",
            values + values,
        )
    connection.commit()


def days(connection: Connection, as_of: datetime, first_day: date,
         participant_id: str | None = None) -> list[Day]:
    """Every participant's (or one's) days from first_day (or its start date) to as_of's
    local date."""
    columns = ", ".join(f.name for f in fields(Day))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM adherence_at(%s, %s, %s) ORDER BY participant_id, day",
            (as_of, first_day, participant_id),
        )
        found = [Day(*row) for row in cursor.fetchall()]
    connection.commit()
    return found


def flags(connection: Connection, as_of: datetime) -> list[Flags]:
    columns = ", ".join(f.name for f in fields(Flags))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM participant_flags_at(%s) ORDER BY participant_id", (as_of,)
        )
        found = [Flags(*row) for row in cursor.fetchall()]
    connection.commit()
    return found
