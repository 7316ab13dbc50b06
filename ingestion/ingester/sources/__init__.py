"""Where rows come from: one module per kind of participant, behind one protocol."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Protocol

from ..errors import PayloadError
from ..model import Participant, ReadReport, Row, Window

__all__ = ["PayloadError", "Source"]


class Source(Protocol):
    """Yields the rows of one participant's stream within a window.

    Rows are in [window.start, window.end), aware UTC, value a Python float.
    A payload that cannot be read raises PayloadError; a single point that
    cannot be read is counted in the report and skipped.
    """

    streams: tuple[str, ...]
    # How late the source's data can arrive: a run re-reads at least this much before each
    # watermark, even when OVERLAP_HOURS is shorter.
    late_sync: timedelta

    def read(
        self, participant: Participant, stream: str, window: Window, report: ReadReport
    ) -> Iterator[Row]: ...
