"""The last check before storage (guard.py): whatever a source yields, no row outside its
window and no value that is not a finite number reaches raw_data; each one is counted.

Pure tests of guarded(), then a whole run of the pipeline over a source that yields such
rows, against the real TimescaleDB (which itself would store a NaN: test_writer.py)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ingester import db, pipeline, state
from ingester.guard import guarded
from ingester.model import DeliveryBound, Participant, ReadReport, Row, Window

T0 = datetime(2026, 5, 2, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))


def row(instant: datetime, value: float) -> Row:
    return Row(instant, "p1", "heart_rate", value)


def guard(rows: list[Row], window: Window = WINDOW) -> tuple[list[Row], ReadReport]:
    report = ReadReport()
    return list(guarded(iter(rows), window, report, "p1 heart_rate")), report


def test_rows_inside_the_window_pass_in_order():
    rows = [row(T0 + timedelta(minutes=m), 60.0 + m) for m in (0, 30, 59)]
    kept, report = guard(rows)
    assert kept == rows and report.rejected_total == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite_is_counted_not_kept(value):
    kept, report = guard([row(T0, 60.0), row(T0 + timedelta(minutes=1), value),
                          row(T0 + timedelta(minutes=2), 62.0)])
    assert [r.value for r in kept] == [60.0, 62.0]
    assert report.rejected == {"values that are not finite numbers": 1}


@pytest.mark.parametrize("instant", [
    T0 - timedelta(microseconds=1),  # just before the start
    WINDOW.end,  # the end is not in the half-open window
    WINDOW.end + timedelta(days=1),  # after the run's "now"
], ids=["before", "at the end", "after"])
def test_a_row_outside_the_window_is_counted_not_kept(instant):
    kept, report = guard([row(T0, 60.0), row(instant, 61.0)])
    assert kept == [row(T0, 60.0)]
    assert report.rejected == {"points outside the window": 1}


def test_a_window_in_a_participant_zone_bounds_the_same_instants():
    """Bounds in Europe/Berlin (UTC+2 in May): a row at the window's UTC end is outside."""
    berlin = ZoneInfo("Europe/Berlin")
    local = Window(WINDOW.start.astimezone(berlin), WINDOW.end.astimezone(berlin))
    kept, report = guard([row(T0, 60.0), row(WINDOW.end, 61.0),
                          row(T0 - timedelta(seconds=1), 59.0)], local)
    assert kept == [row(T0, 60.0)] and report.rejected == {"points outside the window": 2}


def test_a_naive_timestamp_fails_rather_than_being_stored():
    with pytest.raises(TypeError):
        guard([row(T0.replace(tzinfo=None), 60.0)])


class SpoilingSource:
    """A row a minute, plus what no source should yield: NaN, infinity, a row before its
    window and one after it (past the run's "now")."""

    streams = ("heart_rate",)

    def delivered_until(self, participant, now):
        return DeliveryBound(now, "generated")

    def read(self, participant, stream, window, report):
        pid = participant.participant_id
        yield Row(window.start - timedelta(minutes=1), pid, stream, 50.0)
        instant = window.start
        while instant < window.end:
            yield Row(instant, pid, stream, 60.0)
            instant += timedelta(minutes=1)
        yield Row(window.start + timedelta(seconds=30), pid, stream, math.nan)
        yield Row(window.start + timedelta(seconds=31), pid, stream, math.inf)
        yield Row(window.end, pid, stream, 70.0)


def test_a_run_stores_none_of_what_the_guard_rejects_and_logs_the_count(db_conn, tmp_path):
    now = datetime(2026, 5, 3, tzinfo=UTC)
    cohort = [Participant("p1", "UTC", "synthetic", date(2026, 5, 2), 1)]
    db.add_participants(db_conn, cohort)
    options = pipeline.RunOptions(now=now, overlap=timedelta(hours=24), batch_rows=1_000)
    (outcome,) = pipeline.run_cohort(db_conn, cohort, lambda kind: SpoilingSource(),
                                     state.LoadedState({}, "missing"), tmp_path / "state.json",
                                     options)
    assert outcome.status == "ok", outcome
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT count(*), min(\"timestamp\"), max(\"timestamp\"), "
                       "count(*) FILTER (WHERE value <> 60) FROM raw_data")
        assert cursor.fetchone() == (1440, datetime(2026, 5, 2, tzinfo=UTC),
                                     now - timedelta(minutes=1), 0)
        cursor.execute("SELECT sum(rows_rejected) FROM ingest_runs")
        # each slice's window gets the four spoilt rows
        (rejected,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM ingest_runs")
        (slices,) = cursor.fetchone()
    db_conn.commit()
    assert rejected == 4 * slices and slices >= 1
