"""Google's request limits, kept across every worker, process, container and pod of a run.

Each limit is a schedule holding the next free request slot: a generic cell rate algorithm
(GCRA, the virtual-scheduling form of a token bucket) with one state value. A request
reserves a slot and sleeps until it:

    next_slot := greatest(next_slot, now) + T       wait := max(0, next_slot - T - tau - now)

T is the spacing the limit allows and tau the burst tolerance (BURST requests may go back
to back). Over any interval of W seconds at most W / T + BURST + 1 requests start, so with
T = 60 / (budget - BURST - 1) no 60 seconds ever see more than `budget`. The budget is
HEADROOM of Google's limit: urllib3's retries of a request (429, 5xx) are not paced and
take the rest.

Every request passes two limits in turn: its participant's (GOOGLE_USER_REQUESTS_PER_MINUTE)
and the project's (GOOGLE_PROJECT_REQUESTS_PER_MINUTE). The participant's schedule is kept in
the worker's memory: a claim (claims.py) gives a participant to one worker at a time, so no
other process requests for it meanwhile. The one exception, a worker that dies mid-
participant and whose claim another worker takes over, overlaps for at most one burst, and
the transport's 429 retries absorb that. The project's schedule is the row 'project' of
`request_pacing`, shared by every worker, container and pod: one autocommit statement per
request, so the row is locked for one statement, never for a participant's transaction.
PostgreSQL's clock decides, so hosts with skewed clocks still share one schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2

from ...db import Connection, one_row

# Google's limits are hard: plan to use 80 % of them, leaving the rest for the retries the
# transport makes without asking the pacer.
HEADROOM = 0.8
# Requests that may go back to back: a participant's first pages need not wait, and a
# worker that was idle does not lose its turn. Never more than a quarter of the budget.
BURST = 20


@dataclass(frozen=True)
class Limit:
    """A per-minute limit as a slot spacing and a burst tolerance, in seconds."""

    per_minute: int  # Google's limit

    @property
    def budget(self) -> int:
        return max(1, int(self.per_minute * HEADROOM))

    @property
    def burst(self) -> int:
        return min(BURST, self.budget // 4)

    @property
    def spacing(self) -> float:
        return 60.0 / max(1, self.budget - self.burst - 1)

    @property
    def tolerance(self) -> float:
        return self.burst * self.spacing


RESERVE = """
INSERT INTO request_pacing AS p (bucket, next_slot)
VALUES ('project', clock_timestamp() + make_interval(secs => %(spacing)s))
ON CONFLICT (bucket) DO UPDATE
    SET next_slot = greatest(p.next_slot, clock_timestamp()) + make_interval(secs => %(spacing)s)
RETURNING greatest(0, extract(epoch FROM p.next_slot - clock_timestamp())
                      - %(spacing)s - %(tolerance)s)
"""


class Schedule:
    """One limit's GCRA schedule in this process's memory, on the monotonic clock."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._next_slot = float("-inf")

    def reserve(self) -> float:
        """Take the next slot; seconds to wait before using it."""
        now, limit = self._clock(), self._limit
        self._next_slot = max(self._next_slot, now) + limit.spacing
        return max(0.0, self._next_slot - limit.spacing - limit.tolerance - now)


class Pacer:
    """Each participant's limit in memory, the project's through PostgreSQL: one per worker."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        user: Limit,
        project: Limit,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connect = connect
        self._connection: Connection | None = None
        self.user = user
        self.project = project
        self._sleep = sleep
        self._users: dict[str, Schedule] = {}

    def acquire(self, participant_id: str) -> None:
        """Wait for the participant's next slot, then for the project's."""
        schedule = self._users.get(participant_id)
        if schedule is None:
            schedule = self._users[participant_id] = Schedule(self.user)
        self._wait(schedule.reserve())
        self._wait(self._reserve_project())

    def for_participant(self, participant_id: str) -> ParticipantPacer:
        return ParticipantPacer(self, participant_id)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> Pacer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def _reserve_project(self) -> float:
        limit = self.project
        for attempt in (1, 2):
            connection = self._connection_or_new()
            try:
                with connection.cursor() as cursor:
                    cursor.execute(RESERVE, {"spacing": limit.spacing,
                                             "tolerance": limit.tolerance})
                    (wait,) = one_row(cursor)
                return float(wait)
            except psycopg2.OperationalError:
                # A connection that died between requests: one new one, then give up.
                self._connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connection_or_new(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
            self._connection.autocommit = True
            with self._connection.cursor() as cursor:
                # A slot lost with the server's last few commits only lets one request
                # start a little early; the retries absorb that, and no request waits on
                # a flush of the WAL.
                cursor.execute("SET synchronous_commit = off")
        return self._connection


class ParticipantPacer:
    """The limiter a participant's HTTP session calls before each API request."""

    def __init__(self, pacer: Pacer, participant_id: str) -> None:
        self._pacer = pacer
        self._participant_id = participant_id

    def acquire(self) -> None:
        self._pacer.acquire(self._participant_id)
