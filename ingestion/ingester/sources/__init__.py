"""Where rows come from: one folder per kind of participant, behind one protocol.

A source folder (sources/<kind>/) holds everything that kind needs: how it reads, how its
payloads become rows, and whatever client, auth or pacing it has. Its `__init__.py` has a
`build(settings)` that returns a Source. REGISTRY maps each kind, as stored in
participants.source, to its folder: adding a source is a new folder and one line here
(docs/ARCHITECTURE.md walks through it).

The folder is imported only when a run first needs that kind, so a cohort without Google
needs no Google settings, and a run without synthetic participants never imports wearipedia.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import ConfigError, PayloadError
from ..model import (
    GOOGLE_HEALTH,
    SYNTHETIC,
    TAKEOUT,
    DeliveryBound,
    Participant,
    ReadReport,
    Row,
    Window,
)
from ..sleep import SleepSession

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["REGISTRY", "PayloadError", "SleepSource", "Source", "UnknownSource", "build_source"]

# kind (participants.source) -> the folder below sources/ that builds it.
REGISTRY: dict[str, str] = {
    SYNTHETIC: "synthetic",
    GOOGLE_HEALTH: "google_health",
    TAKEOUT: "takeout",
}


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

    def close(self) -> None:
        """Release what the source holds (sessions, connections); called once, at the end."""
        ...


@runtime_checkable
class SleepSource(Protocol):
    """A source whose streams include sleep.SLEEP_STREAM ("sleep") reads it here, not with
    read(): sleep is sessions and stages, stored in sleep_sessions and sleep_stages."""

    def read_sleep(
        self, participant: Participant, window: Window, report: ReadReport
    ) -> list[SleepSession]:
        """The sessions that end in [window.start, window.end), each with its stages; a
        session the source is still processing has processed=False."""
        ...


class UnknownSource(ConfigError):
    """A participant's source names no folder in REGISTRY (exit 2)."""


def build_source(kind: str, settings: Settings) -> Source:
    """The Source for participants of `kind`, from its folder's build()."""
    folder = REGISTRY.get(kind)
    if folder is None:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownSource(f"no source of kind {kind!r} (known kinds: {known})")
    module = importlib.import_module(f"{__name__}.{folder}")
    source: Source = module.build(settings)
    return source
