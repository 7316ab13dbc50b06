"""Sharing the cohort through PostgreSQL: batches, and participants claimed by workers.

A **batch** is one pass over the cohort: the participants enrolled when it opened, and the
"now" every window of it ends at. It is what "a night" means when several processes run
the same command:

- A run opens a batch when no batch is being worked on. A run that starts while another
  run's batch is open and alive (some run holds its membership lock) joins that batch: it
  plans to the batch's "now" and takes participants from the batch's list.
- A batch nobody works on any more (every run of it died with participants left) is
  closed as 'abandoned' by the next run, which opens a new batch: its windows start at the
  committed watermarks, so it loads what the dead batch did not.
- A run with --participant, --since or --until opens a private batch nobody joins.

A worker **claims** a participant with a session advisory lock on it (two-key form,
CLAIM_CLASS and hashtext of the id), taken with a try-lock, so workers never wait on each
other's locks and a worker that dies releases its claim with its connection: the server
drops a dead session's locks. The item is marked done after the participant's last
commit; until then another worker (or the next run) may claim it again and continue from
the committed watermarks. Workers leave only when every item of the batch is done, so an
item released by a dead worker is picked up within the same night by whoever is left.

Every function here works in short transactions of its own on the caller's connection; the
session locks outlive them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .db import Connection, one_row
from .errors import IngestError

log = logging.getLogger(__name__)

# Key classes of the two-key advisory locks. Distinct from credentials.TOKEN_LOCK_CLASS
# (4_417_001) so a claim never blocks a token refresh of the same participant.
CLAIM_CLASS = 4_417_002
BATCH_CLASS = 4_417_003
# One-key, transaction-scoped: runs that start together open or join a batch one at a time.
BATCH_OPEN_KEY = 7_201_311_029
# How often a worker that found every pending participant claimed by others looks again
# (for one released by a dead worker, or for the batch to end).
POLL_SECONDS = 0.5
# How long a worker waits for participants other workers hold; past that something is
# stuck, and piling up one more waiting process every night would only hide it (exit 4).
CLAIM_WAIT = timedelta(hours=1)


class ClaimWaitTimeout(IngestError):
    """Other workers held the batch's last participants for longer than this run waits."""


@dataclass(frozen=True)
class Batch:
    batch_id: int
    run_now: datetime  # what "now" is for every run of the batch


def _int4(value: int) -> int:
    """A bigint id folded into the int4 the two-key advisory lock functions take."""
    return (value % 2**32) - 2**31


def open_or_join(
    connection: Connection, now: datetime, participant_ids: Callable[[], Iterable[str]],
    joinable: bool,
) -> Batch:
    """Join the live joinable batch, or open one holding participant_ids(); hold its
    membership lock (shared, session-level) until leave()."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (BATCH_OPEN_KEY,))
        if joinable:
            cursor.execute(
                "SELECT batch_id, run_now FROM ingest_batches "
                "WHERE closed_at IS NULL AND joinable ORDER BY batch_id"
            )
            for batch_id, run_now in cursor.fetchall():
                # Nobody can hold it exclusively here (openers take turns under the xact
                # lock); a free exclusive lock means no run of the batch is alive.
                cursor.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (BATCH_CLASS, _int4(batch_id))
                )
                if one_row(cursor)[0]:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s, %s)", (BATCH_CLASS, _int4(batch_id))
                    )
                    cursor.execute(
                        "UPDATE ingest_batches SET closed_at = clock_timestamp(), "
                        "outcome = 'abandoned' WHERE batch_id = %s",
                        (batch_id,),
                    )
                    log.warning("batch %d was left unfinished by runs that ended; "
                                "this run starts a new one", batch_id)
                    continue
                cursor.execute(
                    "SELECT pg_advisory_lock_shared(%s, %s)", (BATCH_CLASS, _int4(batch_id))
                )
                connection.commit()
                log.info("joining batch %d, opened by another run, up to %s",
                         batch_id, run_now.isoformat())
                return Batch(batch_id, run_now)
        cursor.execute(
            "INSERT INTO ingest_batches (run_now, joinable) VALUES (%s, %s) RETURNING batch_id",
            (now, joinable),
        )
        (batch_id,) = one_row(cursor)
        cursor.execute(
            "INSERT INTO ingest_batch_items (batch_id, participant_id) "
            "SELECT %s, unnest(%s::text[])",
            (batch_id, list(participant_ids())),
        )
        cursor.execute("SELECT pg_advisory_lock_shared(%s, %s)", (BATCH_CLASS, _int4(batch_id)))
    connection.commit()
    return Batch(batch_id, now)


def hold_membership(connection: Connection, batch: Batch) -> None:
    """Count this connection among the batch's live workers (until leave() or its end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock_shared(%s, %s)", (BATCH_CLASS, _int4(batch.batch_id))
        )
    connection.commit()


def leave(connection: Connection, batch: Batch) -> None:
    if connection.closed:
        return
    connection.rollback()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock_shared(%s, %s)", (BATCH_CLASS, _int4(batch.batch_id))
        )
    connection.commit()


def worker_name(index: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}/{index}"


def claim_next(connection: Connection, batch: Batch, worker: str) -> tuple[str | None, int]:
    """Claim a pending participant of the batch: (the participant or None, how many were
    pending). None of 0 pending: the batch is done, and closed here.

    The claim is a session lock: it lasts until finish(), or until the connection dies.
    Each worker scans the pending list from its own place in it, so that N workers do not
    all try the same N - 1 held participants first.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT participant_id FROM ingest_batch_items "
            "WHERE batch_id = %s AND done_at IS NULL ORDER BY participant_id",
            (batch.batch_id,),
        )
        pending = [pid for (pid,) in cursor.fetchall()]
        if not pending:
            cursor.execute(
                "UPDATE ingest_batches SET closed_at = clock_timestamp(), outcome = 'done' "
                "WHERE batch_id = %s AND closed_at IS NULL",
                (batch.batch_id,),
            )
        turn = zlib.crc32(worker.encode()) % max(1, len(pending))
        for pid in pending[turn:] + pending[:turn]:
            cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (CLAIM_CLASS, pid))
            if not one_row(cursor)[0]:
                continue
            # Another worker may have finished it after the list was read: it marks the item
            # done before it lets the lock go, so under the lock this reads the truth.
            cursor.execute(
                "UPDATE ingest_batch_items SET claims = claims + 1, claimed_by = %s "
                "WHERE batch_id = %s AND participant_id = %s AND done_at IS NULL",
                (worker, batch.batch_id, pid),
            )
            if cursor.rowcount == 1:
                connection.commit()
                return pid, len(pending)
            cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CLAIM_CLASS, pid))
    connection.commit()
    return None, len(pending)


def finish(connection: Connection, batch: Batch, participant_id: str, status: str) -> None:
    """Mark the claimed participant done for this batch, then release the claim."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingest_batch_items SET status = %s, done_at = clock_timestamp() "
            "WHERE batch_id = %s AND participant_id = %s",
            (status, batch.batch_id, participant_id),
        )
        connection.commit()
        cursor.execute(
            "SELECT pg_advisory_unlock(%s, hashtext(%s))", (CLAIM_CLASS, participant_id)
        )
    connection.commit()


def claims(
    connection: Connection, batch: Batch, worker: str, wait: timedelta = CLAIM_WAIT,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterable[str]:
    """The participants this worker loads, claimed one at a time, until the batch is done.

    The caller must finish() each one before asking for the next. When every pending
    participant is held by other workers this waits for them (one may die and release its
    participant), at most `wait` without progress: then ClaimWaitTimeout.
    """
    idle_since: float | None = None
    while True:
        pid, pending = claim_next(connection, batch, worker)
        if pid is not None:
            idle_since = None
            yield pid
            continue
        if pending == 0:
            return
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > wait.total_seconds():
            raise ClaimWaitTimeout(
                f"other workers have held the last participants of batch {batch.batch_id} for "
                f"over {wait}; giving up (see ingest_batch_items and pg_stat_activity)"
            )
        sleep(POLL_SECONDS)
