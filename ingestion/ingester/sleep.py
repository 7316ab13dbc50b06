"""Sleep sessions and their stages: plain values, shared by every source that has sleep.

A session is a span with its stages (the hypnogram). Sources turn their payloads into
SleepSession values (pure); db.store_sleep stores them in the slice's transaction. Time
asleep and awake are computed here, from the stages, the same way for every source, so
that Google's and wearipedia's nights are comparable (docs/metrics.md, "Sleep").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from .model import TAKEOUT, ReadReport

# The stream a source with sleep lists in its `streams`: its watermark is the sleep's.
SLEEP_STREAM = "sleep"

STAGED = "stages"  # awake, light, deep, rem
CLASSIC = "classic"  # asleep, restless, awake
STAGES_OF = {
    STAGED: frozenset({"awake", "light", "deep", "rem"}),
    CLASSIC: frozenset({"asleep", "restless", "awake"}),
}
# Time asleep: every stage but awake and restless (Google's minutesAsleep: "for classic sleep
# the sum of ASLEEP stages (excluding AWAKE and RESTLESS); for stages sleep the sum of
# LIGHT, REM and DEEP"). Time awake: the awake stages only.
# Staging runs on Google's servers once the night has synced, within hours. A session still
# pending after this long is taken as it is, so that a session that never says `processed`
# cannot hold the sleep watermark (and the run log's) for ever.
PENDING_AT_MOST = timedelta(days=3)
ASLEEP_STAGES = frozenset({"light", "deep", "rem", "asleep"})
AWAKE_STAGES = frozenset({"awake"})


def replaces_window(source: str, rejected: int) -> bool:
    """Whether a source's sleep read for a window is all of its sleep there, so that what it
    stored before and no longer holds is deleted (a night the API no longer returns). An
    archive is not: it adds or replaces the nights it holds and deletes none it lacks, so an
    older archive imported after a newer one, or a night it now rejects, leaves the stored
    nights as they are (docs/takeout.md). Nor is a read that rejected sessions: a stored
    night whose new cut is unreadable stays as it was, rather than go with nothing in its
    place."""
    return source != TAKEOUT and not rejected


class WindowSleep(NamedTuple):
    """A window's sleep as read: the storable sessions, and whether they replace all the
    source stored there (replaces_window) or only the stored sessions they overlap."""
    sessions: list[SleepSession]
    whole: bool


@dataclass(frozen=True)
class SleepStage:
    start: datetime  # aware
    end: datetime
    stage: str  # a name of STAGES_OF[kind]


@dataclass(frozen=True)
class SleepSession:
    start: datetime  # aware
    end: datetime
    is_main_sleep: bool
    kind: str  # STAGED or CLASSIC
    stages: tuple[SleepStage, ...]
    processed: bool = True  # False: the source is still staging it; read again later
    device: str | None = None

    @property
    def minutes_asleep(self) -> int:
        return minutes_in(self.stages, ASLEEP_STAGES)

    @property
    def minutes_awake(self) -> int:
        return minutes_in(self.stages, AWAKE_STAGES)


def minutes_in(stages: Iterable[SleepStage], names: frozenset[str]) -> int:
    """Whole minutes spent in the named stages (summed first, then rounded: 30 s epochs)."""
    seconds = sum((s.end - s.start).total_seconds() for s in stages if s.stage in names)
    return round(seconds / 60)


def problem(session: SleepSession) -> str | None:
    """Why a session cannot be stored (a fixed phrase, for ReadReport), or None."""
    if session.kind not in STAGES_OF:
        return "sleep: unknown session type"
    if not session.start < session.end:
        return "sleep: session ends before it starts"
    previous = session.start
    for stage in session.stages:
        if stage.stage not in STAGES_OF[session.kind]:
            return f"sleep: a stage not of a {session.kind} night"
        if not stage.start < stage.end:
            return "sleep: stage ends before it starts"
        if stage.start < previous or stage.end > session.end:
            return "sleep: stages overlap or lie outside their session"
        previous = stage.end
    return None


def hold_until(sessions: Iterable[SleepSession], now: datetime) -> datetime | None:
    """The earliest end of a session still being processed: the sleep watermark must not
    pass it, so the next run reads it again. None: nothing pending. A session pending for
    longer than PENDING_AT_MOST no longer holds it (it stays stored as it is)."""
    pending = [s.end for s in sessions if not s.processed and s.end >= now - PENDING_AT_MOST]
    return min(pending) if pending else None


def storable(sessions: Iterable[SleepSession], report: ReadReport) -> list[SleepSession]:
    """The sessions that can be stored, in time order: a malformed one, or one overlapping a
    session kept before it, is counted in the report and left out (the key is the start)."""
    kept: list[SleepSession] = []
    for session in sorted(sessions, key=lambda s: (s.start, s.end)):
        reason = problem(session)
        if reason is None and kept and session.start < kept[-1].end:
            reason = "sleep: a session overlapping another"
        if reason is None:
            kept.append(session)
        else:
            report.reject(reason)
    return kept
