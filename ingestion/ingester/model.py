"""The plain values every module shares: participants, windows and rows."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

SYNTHETIC = "synthetic"
GOOGLE_HEALTH = "google_health"
TAKEOUT = "takeout"  # a donated archive, imported by hand: no nightly pull

PARTICIPANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as the CHECK in init.sql

# No participant's data can start earlier. Fitbit's first tracker (the Classic) shipped in
# autumn 2009, and the wrist heart-rate and sleep data this service loads came years later:
# a start date before this is a typo (0026-11-01 for 2026-11-01) that would otherwise start
# a backfill of centuries, or overflow (0001-01-01).
EARLIEST_START_DATE = date(2009, 1, 1)


@dataclass(frozen=True)
class Participant:
    participant_id: str
    timezone: str  # IANA name, e.g. "Europe/Berlin"
    source: str  # SYNTHETIC, GOOGLE_HEALTH or TAKEOUT
    start_date: date  # first local day to backfill
    seed: int | None = None  # synthetic participants only
    # Which enrolment under this id (participants.enrolment): a participant removed and
    # enrolled again is another one. None for one not read from the database (nothing to
    # check it against).
    enrolment: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class DeliveryBound:
    """How far a source has delivered a participant's data: nothing it will ever deliver lies
    before `until`, so a watermark may move up to it and no further."""

    until: datetime  # aware UTC: everything the source will ever deliver before it, it has
    rule: str  # for `status`: "generated", "device sync", "horizon" (short, fixed words)


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of aware UTC instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window needs aware datetimes")
        if self.end < self.start:
            raise ValueError(f"window ends before it starts: {self.start} > {self.end}")

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


class Row(NamedTuple):
    """One stored point of raw_data; timestamp is always aware UTC."""

    timestamp: datetime
    participant_id: str
    metric_type: str
    value: float
    # The recorder, where the source names it (raw_data_sourced.device); None where not.
    device: str | None = None


@dataclass
class ReadReport:
    """What a source could not turn into rows: counted, never stored."""

    rejected: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())
