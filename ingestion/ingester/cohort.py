"""The demo cohort a new installation loads when no participant has been enrolled yet."""

from __future__ import annotations

from datetime import date, timedelta

from .model import SYNTHETIC, Participant

# Three zones with different DST rules (none, northern, and the date-line side), so the
# demo data already exercises the time-zone handling a real cohort needs.
DEMO_ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")


def demo_cohort(seed: int, today: date, backfill_days: int) -> list[Participant]:
    start = today - timedelta(days=backfill_days)
    return [
        Participant(f"demo-{n:02d}", zone, SYNTHETIC, start, seed + n)
        for n, zone in enumerate(DEMO_ZONES, start=1)
    ]
