"""Claims (claims.py) on the real database: who gets which participant, what a dead worker
leaves behind, when a batch closes and when a worker gives up waiting."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from ingester import claims

NOW = datetime(2026, 3, 3, tzinfo=UTC)
IDS = [f"p{i:02d}" for i in range(10)]


def open_batch(connection, ids=IDS):
    return claims.open_or_join(connection, NOW, lambda: ids, joinable=False)


def batch_row(db, batch):
    with db.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT closed_at IS NOT NULL, outcome FROM ingest_batches "
                       "WHERE batch_id = %s", (batch.batch_id,))
        return cursor.fetchone()


def test_every_participant_is_claimed_once_and_the_last_finish_closes_the_batch(db):
    connection = db.connect()
    try:
        batch = open_batch(connection)
        loaded = []
        for pid in claims.claims(connection, batch, "host:1/0"):
            assert batch_row(db, batch) == (False, None)
            loaded.append(pid)
            claims.finish(connection, batch, pid, "ok")
        assert sorted(loaded) == IDS
        assert batch_row(db, batch) == (True, "done")
        assert list(claims.claims(connection, batch, "host:1/1")) == []
    finally:
        connection.close()


def test_workers_hold_distinct_participants_and_start_their_scans_at_different_places(db):
    """N workers that all tried the same first participant would each try up to N - 1 locks
    that others hold before finding a free one."""
    connections = [db.connect() for _ in range(8)]
    try:
        batch = open_batch(connections[0])
        held = [claims.claim_next(c, batch, f"host:1/{i}") for i, c in enumerate(connections)]
        assert len({pid for pid, _pending in held}) == 8
        assert {pending for _pid, pending in held} == {10}  # claimed is not done
    finally:
        for connection in connections:
            connection.close()  # every claim is free again
    first_tries = set()
    for i in range(8):
        connection = db.connect()
        first_tries.add(claims.claim_next(connection, batch, f"host:2/{i}")[0])
        connection.close()
    assert len(first_tries) > 1


def test_a_dead_workers_participant_is_claimed_again(db):
    dead, alive = db.connect(), db.connect()
    try:
        batch = open_batch(alive, ["a", "b"])
        held, _ = claims.claim_next(dead, batch, "host:1/0")
        dead.close()  # the server drops its session locks: the claim is free again
        taken = []
        for pid in claims.claims(alive, batch, "host:2/0"):
            taken.append(pid)
            claims.finish(alive, batch, pid, "ok")
        assert sorted(taken) == ["a", "b"]
        with alive.cursor() as cursor:
            cursor.execute("SELECT claims FROM ingest_batch_items WHERE participant_id = %s",
                           (held,))
            assert cursor.fetchone() == (2,)
    finally:
        alive.close()


def test_a_worker_gives_up_on_participants_others_hold_too_long(db):
    holder, waiter = db.connect(), db.connect()
    slept: list[float] = []

    def pause(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(0.1)

    try:
        batch = open_batch(holder, ["a"])
        assert claims.claim_next(holder, batch, "host:1/0") == ("a", 1)
        with pytest.raises(claims.ClaimWaitTimeout, match="held the last participants"):
            for _pid in claims.claims(waiter, batch, "host:2/0", wait=timedelta(seconds=0.2),
                                      sleep=pause):
                pytest.fail("claimed a participant another worker holds")
        assert slept  # it waited before giving up
        assert batch_row(db, batch) == (False, None)  # still open: the holder is alive
    finally:
        holder.close()
        waiter.close()
