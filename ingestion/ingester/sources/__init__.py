"""Where rows come from: one module per kind of participant, behind one protocol."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from ..errors import PayloadError
from ..model import DeliveryBound, Participant, ReadReport, Row, Window

__all__ = ["PayloadError", "Source"]


class Source(Protocol):
    """Yields the rows of one participant's stream within a window.

    Rows are in [window.start, window.end), aware UTC, value a Python float.
    A payload that cannot be read raises PayloadError; a single point that
    cannot be read is counted in the report and skipped.
    """

    streams: tuple[str, ...]

    def delivered_until(self, participant: Participant, now: datetime) -> DeliveryBound:
        """How far the source has delivered the participant's data as of `now` (aware UTC).

        The pipeline never moves a watermark past `until`. `status` calls it too, so it
        should be cheap; a participant-level problem may raise (the run contains it).
        """
        ...

    def read(
        self, participant: Participant, stream: str, window: Window, report: ReadReport
    ) -> Iterator[Row]: ...
