"""The one synthetic workload every measurement uses, and its rows spooled to disk.

The cohort is planned exactly as `ingest.py --now END` plans it on a fresh database, so the
in-process measurements and the end-to-end run load the very same rows. Generated rows are
kept per participant in a spool directory (pickled Rows, and one COPY text file for all),
so a measurement holds one participant's rows in memory, however big the cohort.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ingester.model import SYNTHETIC, Participant, ReadReport, Row, Window
from ingester.sources.synthetic.source import SyntheticSource
from ingester.windows import local_midnight, plan_window
from ingester.writer import NO_ORIGIN, format_row

# A fixed Monday: the rows, and so the numbers, are the same in every run. Far enough back
# that long runs still end in the past, as ingest.py wants of its --now.
START_DATE = date(2025, 1, 6)
# UTC participants: N days are exactly N local days, with no DST day to skew a count.
ZONE = "UTC"
FIRST_SEED = 1_000


@dataclass(frozen=True)
class Workload:
    participants: tuple[Participant, ...]
    days: float
    start: datetime  # START_DATE 00:00 UTC
    end: datetime  # the run's "now": every window is [start, end)
    plans: tuple[dict[str, Window], ...]  # per participant, stream -> window


def cohort(participants: int, days: float) -> Workload:
    people = tuple(
        Participant(f"bench-{n:04d}", ZONE, SYNTHETIC, START_DATE, FIRST_SEED + n)
        for n in range(1, participants + 1)
    )
    start = datetime.combine(START_DATE, datetime.min.time(), UTC)
    end = start + timedelta(days=days)
    plans = []
    for participant in people:
        # What ingest.py --now END plans for a participant with nothing loaded yet.
        window = plan_window(
            watermark=None,
            participant_start=local_midnight(participant.start_date, participant.zone),
            now=end,
            overlap=timedelta(0),
        )
        assert window is not None  # days > 0
        plans.append(dict.fromkeys(SyntheticSource.streams, window))
    return Workload(people, days, start, end, tuple(plans))


@dataclass
class Generated:
    rows: int
    seconds: float  # reading every stream of every participant, wearipedia's import included
    import_seconds: float  # of which importing wearipedia, on the first read


class Spool:
    """One participant's rows per file, by stream; plus all rows as COPY text."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.copy_text = directory / "all-rows.copy"

    def _path(self, participant_id: str) -> Path:
        return self.directory / f"{participant_id}.pickle"

    def save(self, participant_id: str, streams: list[tuple[str, list[Row]]]) -> None:
        with self._path(participant_id).open("wb") as file:
            pickle.dump(streams, file, protocol=pickle.HIGHEST_PROTOCOL)
        with self.copy_text.open("a", encoding="utf-8") as file:
            for _, rows in streams:
                file.writelines(format_row(row, NO_ORIGIN) for row in rows)

    def load(self, participant_id: str) -> list[tuple[str, list[Row]]]:
        with self._path(participant_id).open("rb") as file:
            return pickle.load(file)


def generate(workload: Workload, spool: Spool | None) -> Generated:
    """Generation only: SyntheticSource.read of every stream (wearipedia + transform).

    Only the reads are timed; spooling each participant's rows, if asked, comes after.
    """
    source = SyntheticSource()
    # The first read imports wearipedia (seconds), as it does in ingest.py, so it is counted;
    # a one-second window of the cheapest stream does it first, to tell how long it took.
    began = time.perf_counter()
    warm_up = Window(workload.start, workload.start + timedelta(seconds=1))
    list(source.read(workload.participants[0], "activity", warm_up, ReadReport()))
    import_seconds = time.perf_counter() - began
    total, seconds = 0, import_seconds
    for participant, plan in zip(workload.participants, workload.plans, strict=True):
        streams: list[tuple[str, list[Row]]] = []
        began = time.perf_counter()
        for stream, window in plan.items():
            streams.append((stream, list(source.read(participant, stream, window, ReadReport()))))
        seconds += time.perf_counter() - began
        total += sum(len(rows) for _, rows in streams)
        if spool is not None:
            spool.save(participant.participant_id, streams)
        del streams
    return Generated(total, seconds, import_seconds)


def spooled(
    workload: Workload, spool: Spool
) -> Iterator[tuple[Participant, dict[str, Window], list[tuple[str, list[Row]]]]]:
    """Each participant with its plan and its generated rows, loaded one at a time."""
    for participant, plan in zip(workload.participants, workload.plans, strict=True):
        yield participant, plan, spool.load(participant.participant_id)
