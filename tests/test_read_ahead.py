"""Reading ahead (pipeline.ReadAhead): the next slice's first rows are read while the slice
before ends, and what is stored, counted and logged is what reading in turn gives. In
process, against the real database."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from ingester import db as service_db
from ingester import pipeline, rollups, state
from ingester.model import DeliveryBound, Participant, Row

# 13 days from the start: slices of 4, 8 and 1 days (windows.FIRST_SLICE_DAYS, then doubled)
NOW = datetime(2026, 5, 14, tzinfo=UTC)
P1 = Participant("p1", "UTC", "synthetic", date(2026, 5, 1), 1)
SLICE_2, SLICE_3 = datetime(2026, 5, 5, tzinfo=UTC), datetime(2026, 5, 13, tzinfo=UTC)
DAY_ROWS = 2 * 1440  # two streams, a row a minute


class MinuteSource:
    """A row a minute in two streams, each day's first point a NaN (rejected by the guard).
    Records every read; `fail_on` (an instant) makes stream "a" raise there."""

    streams = ("a", "b")

    def __init__(self, fail_on: datetime | None = None) -> None:
        self.fail_on = fail_on
        self.reads: list[tuple[str, datetime, str]] = []  # stream, window start, thread
        self._begun: dict[datetime, threading.Event] = {}
        self._lock = threading.Lock()

    def begun(self, start: datetime) -> threading.Event:
        """Set once a read of a window starting at `start` has begun."""
        with self._lock:
            return self._begun.setdefault(start, threading.Event())

    def delivered_until(self, participant, now):
        return DeliveryBound(now, "generated")

    def read(self, participant, stream, window, report):
        self.reads.append((stream, window.start, threading.current_thread().name))
        self.begun(window.start).set()
        instant = window.start
        while instant < window.end:
            if stream == "a" and instant == self.fail_on:
                raise RuntimeError(f"planted at {instant:%d %b}")
            value = math.nan if instant.hour == instant.minute == 0 else 60.0
            yield Row(instant, participant.participant_id, f"metric_{stream}", value)
            instant += timedelta(minutes=1)


def run(connection, tmp_path, source, participant=P1):
    options = pipeline.RunOptions(now=NOW, overlap=timedelta(0), batch_rows=1_000)
    (outcome,) = pipeline.run_cohort(connection, [participant], lambda kind: source,
                                     state.LoadedState({}, "missing"), tmp_path / "state.json",
                                     options)
    return outcome


def stored(connection, participant_id="p1"):
    with connection.cursor() as cursor:
        cursor.execute('SELECT "timestamp", metric_type, value, origin_id FROM raw_data '
                       "WHERE participant_id = %s ORDER BY 1, 2", (participant_id,))
        rows = cursor.fetchall()
        cursor.execute("SELECT window_start, window_end, status, rows_read, rows_written, "
                       "rows_rejected, error, watermark FROM ingest_runs "
                       "WHERE participant_id = %s ORDER BY window_start", (participant_id,))
        runs = cursor.fetchall()
        cursor.execute("SELECT bucket, metric_type, count, sum FROM data_1m "
                       "WHERE participant_id = %s ORDER BY 1, 2", (participant_id,))
        minutes = cursor.fetchall()
    connection.commit()
    return rows, runs, minutes


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_the_next_slice_is_read_while_the_slice_before_ends(db_conn, tmp_path, monkeypatch):
    """Each slice's rollups (the end of the slice, before its commit) wait until the next
    slice's first stream is being read: reading in turn, it would be read only after the
    commit, and every wait would run out."""
    service_db.add_participants(db_conn, [P1])
    source = MinuteSource()
    refresh = rollups.refresh
    seen: list[bool] = []  # per slice: the next slice's read had begun before its rollups

    def refresh_after_the_next_read(connection, participant_id, window):
        if window.end < NOW:  # not the last slice: there is a next one to read ahead
            seen.append(source.begun(window.end).wait(timeout=10))
        refresh(connection, participant_id, window)

    monkeypatch.setattr(rollups, "refresh", refresh_after_the_next_read)
    outcome = run(db_conn, tmp_path, source)
    assert outcome.status == "ok" and outcome.slices == 3, outcome
    assert seen == [True, True]
    # The first stream of slices 2 and 3 was read on the read-ahead thread; everything else
    # in turn, on the run's own.
    ahead = [(stream, start) for stream, start, thread in source.reads if thread == "read-ahead"]
    assert ahead == [("a", SLICE_2), ("a", SLICE_3)]
    rows, runs, _ = stored(db_conn)
    assert len(rows) == 13 * (DAY_ROWS - 2)  # each day's two NaNs rejected
    assert [r[3:6] for r in runs] == [(4 * (DAY_ROWS - 2), 4 * (DAY_ROWS - 2), 8),
                                      (8 * (DAY_ROWS - 2), 8 * (DAY_ROWS - 2), 16),
                                      (1 * (DAY_ROWS - 2), 1 * (DAY_ROWS - 2), 2)]
    assert not read_ahead_threads()


@pytest.mark.parametrize("fail_on", [None, datetime(2026, 5, 13, 5, tzinfo=UTC)],
                         ids=["loads", "slice 3 fails mid-stream"])
def test_reading_ahead_stores_counts_and_fails_as_reading_in_turn(
    db_conn, tmp_path, monkeypatch, fail_on
):
    """The same run twice, reading ahead (a batch of 1,000 rows: the rest of the stream is
    read on after the hand-over) and in turn: the same rows, rollups, run log, rejected
    points and, where the source fails in a stream read ahead, the same failure."""
    results = []
    for batches, participant in ((1, P1), (0, replace(P1, participant_id="p2"))):
        monkeypatch.setattr(pipeline, "READ_AHEAD_BATCHES", batches)
        service_db.add_participants(db_conn, [participant])
        outcome = run(db_conn, tmp_path / participant.participant_id, MinuteSource(fail_on),
                      participant)
        results.append((outcome.status, outcome.error, outcome.slices, outcome.rows_read,
                        outcome.rows_written, dict(outcome.rejected),
                        stored(db_conn, participant.participant_id)))
    ahead, in_turn = results
    assert ahead == in_turn
    status, error, slices, *_ = ahead
    if fail_on is None:
        assert (status, slices) == ("ok", 3)
    else:
        assert (status, slices) == ("failed", 2) and "planted at 13 May" in error
    assert not read_ahead_threads()


def test_a_slice_that_fails_at_its_end_stores_nothing_read_ahead(db_conn, tmp_path, monkeypatch):
    """Slice 2 fails in its rollups, after slice 3's first rows were read ahead: slice 2 is
    rolled back, nothing of slice 3 is stored, the participant stops there, and the
    read-ahead thread has ended when the run goes on (the source is never shared)."""
    service_db.add_participants(db_conn, [P1])
    source = MinuteSource()
    refresh = rollups.refresh

    def failing_second(connection, participant_id, window):
        if window.start == SLICE_2:
            assert source.begun(SLICE_3).wait(timeout=10)  # slice 3 is being read ahead
            raise RuntimeError("planted in the rollups")
        refresh(connection, participant_id, window)

    monkeypatch.setattr(rollups, "refresh", failing_second)
    outcome = run(db_conn, tmp_path, source)
    assert outcome.status == "failed" and "planted in the rollups" in outcome.error
    assert outcome.slices == 1
    assert ("a", SLICE_3, "read-ahead") in source.reads
    rows, runs, _ = stored(db_conn)
    assert {r[0].date() for r in rows} == {date(2026, 5, d) for d in range(1, 5)}
    assert [r[2] for r in runs] == ["ok", "failed"]
    assert not read_ahead_threads()
    marks = state.load(tmp_path / "state.json").watermarks["p1"]
    assert set(marks.values()) == {SLICE_2}
