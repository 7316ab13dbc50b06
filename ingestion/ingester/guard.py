"""The last guard before storage: every row is checked on its way to the database, and a
long stream tells how far it has come."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from datetime import UTC

from .model import ReadReport, Row, Window

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 10.0
CHECK_CLOCK_EVERY_ROWS = 20_000  # reading the clock per row would cost more than the check


def guarded(rows: Iterable[Row], window: Window, report: ReadReport, label: str) -> Iterator[Row]:
    """Rows inside the window with a finite value; logs progress on long streams.

    A source should never yield anything else: this is the last guard before storage, so
    no point after the run's "now" and no NaN can reach raw_data whatever a source does.
    A naive timestamp cannot even be compared with the window and fails the participant.
    """
    # The same instants in UTC: rows are aware UTC, and two datetimes sharing one tzinfo
    # compare field by field, while a bound in a participant's ZoneInfo costs utcoffset()
    # calls on every comparison (0.5-0.8 us a row against 0.15: docs/performance.md).
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    began = last_report = time.monotonic()
    count = 0
    for row in rows:
        if not start <= row.timestamp < end:
            report.reject("points outside the window")
            continue
        if not math.isfinite(row.value):
            report.reject("values that are not finite numbers")
            continue
        count += 1
        if count % CHECK_CLOCK_EVERY_ROWS == 0:
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_SECONDS:
                last_report = now
                log.info(
                    "%s at %s: %d rows, %.0f rows/s",
                    label,
                    row.timestamp.date(),
                    count,
                    count / (now - began),
                )
        yield row
