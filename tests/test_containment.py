"""Containment: whatever one participant's data, settings or logging raises, in any step of
its load, the others load and the run goes on (pipeline.load_participant, in process)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from ingester import db, pipeline, state
from ingester.model import DeliveryBound, Participant, Row

NOW = datetime(2026, 5, 3, tzinfo=UTC)
COHORT = [Participant(pid, "UTC", "synthetic", date(2026, 5, 1), 1) for pid in ("p1", "bad", "p3")]


class MinuteSource:
    """One row a minute in two streams; `plant` makes one step raise for participant 'bad'."""

    streams = ("a", "b")

    def __init__(self, plant: str) -> None:
        self.plant = plant

    def delivered_until(self, participant, now):
        if participant.participant_id == "bad" and self.plant == "delivered_until":
            raise RuntimeError("planted in delivered_until")
        return DeliveryBound(now, "generated")

    def read(self, participant, stream, window, report):
        bad = participant.participant_id == "bad"
        if bad and self.plant == "read":
            raise RuntimeError("planted in read")
        instant = window.start
        while instant < window.end:
            if bad and self.plant == "rows" and instant.hour == 12:
                # a naive timestamp, a string for a value: data no source should yield
                yield Row(instant.replace(tzinfo=None), participant.participant_id, stream, "x")
            yield Row(instant, participant.participant_id, f"metric_{stream}", 1.0)
            instant += timedelta(minutes=1)


def raise_for_bad(function):
    def planted(connection, participant_id, *args, **kwargs):
        if participant_id == "bad":
            raise RuntimeError(f"planted in {function.__name__}")
        return function(connection, participant_id, *args, **kwargs)

    return planted


def plant_record_run(function):
    def planted(connection, record):
        if record.participant_id == "bad":
            raise RuntimeError("planted in record_run")
        return function(connection, record)

    return planted


STEPS = ["source_for", "recover_watermark", "delivered_until", "zone", "hold_participant",
         "stored_until", "read", "rows", "record_run", "state_save", "log_line"]


# What each step's failure says: the planted RuntimeError's, or what the bad data raises.
PLANTED_ERROR = {step: f"planted in {step}" for step in STEPS} | {
    "zone": "No time zone found with key Mars/Olympus",
    "rows": "can't compare offset-naive and offset-aware datetimes",
}


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_in_any_step_of_one_participant_leaves_the_others_loaded(
    db_conn, tmp_path, monkeypatch, caplog, step
):
    cohort = list(COHORT)
    if step == "zone":
        cohort[1] = Participant("bad", "Mars/Olympus", "synthetic", date(2026, 5, 1), 1)
    db.add_participants(db_conn, cohort)
    source = MinuteSource(step)

    def source_for(kind):
        if step == "source_for" and source_for.calls == 1:
            source_for.calls += 1
            raise RuntimeError("planted in source_for")
        source_for.calls += 1
        return source

    source_for.calls = 0
    for name in ("recover_watermark", "hold_participant", "stored_until"):
        if step == name:
            monkeypatch.setattr(db, name, raise_for_bad(getattr(db, name)))
    if step == "record_run":
        monkeypatch.setattr(db, "record_run", plant_record_run(db.record_run))
    if step == "state_save":
        original = state.save

        def save(path, updates):
            if "bad" in updates:
                raise OSError("planted in state.save")
            return original(path, updates)

        monkeypatch.setattr(state, "save", save)
    fired = []  # the log line's planted error, each time it is raised
    if step == "log_line":
        class Exploding(logging.Logger):
            def info(self, message, *args, **kwargs):
                if args and args[0] == "bad":
                    fired.append(message % args)
                    raise RuntimeError("planted in the log line")
                super().info(message, *args, **kwargs)

        logger = Exploding("ingester.pipeline")
        logger.parent = logging.getLogger("ingester")
        monkeypatch.setattr(pipeline, "log", logger)
    options = pipeline.RunOptions(now=NOW, overlap=timedelta(hours=24), batch_rows=1_000)
    loaded = state.LoadedState({}, "missing")
    outcomes = pipeline.run_cohort(db_conn, cohort, source_for, loaded,
                                   tmp_path / "state.json", options)
    by_id = {o.participant_id: o for o in outcomes}
    assert by_id["p1"].status == by_id["p3"].status == "ok"
    bad = by_id["bad"]
    if step == "state_save":
        assert bad.status == "ok" and "planted in state.save" in bad.warning
    elif step == "log_line":
        # The planted error did fire (in the line that reports the participant's load), the
        # run said so, and it cost nothing: the participant is loaded all the same.
        assert [line.split(" [")[0] for line in fired] == ["bad ok"], fired
        assert "bad ok (its log line failed: RuntimeError)" in caplog.messages
        assert bad.status == "ok"
    else:
        # Failed by what was planted, not by something else on the way.
        assert bad.status == "failed" and PLANTED_ERROR[step] in bad.error, bad
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT participant_id, count(*) FROM raw_data GROUP BY 1")
        stored = dict(cursor.fetchall())
        # two days, two streams, a row a minute
        assert stored["p1"] == stored["p3"] == 2 * 2 * 1440
        if step not in ("state_save", "log_line"):
            assert "bad" not in stored
        cursor.execute("SELECT status FROM participant_status WHERE participant_id = 'bad'")
        recorded = cursor.fetchall()
    db_conn.commit()
    if step == "record_run":
        assert recorded == []  # the one thing it could not do; the run said so in its log
    elif step not in ("state_save", "log_line"):
        assert recorded == [("failed",)]
    marks = state.load(tmp_path / "state.json").watermarks
    assert set(marks) >= {"p1", "p3"}


def test_a_participant_re_enrolled_in_another_zone_during_the_run_waits_for_the_next(
    db_conn, tmp_path
):
    db.add_participants(db_conn, COHORT)
    with db_conn.cursor() as cursor:  # what `participant enrol` does while the run is busy
        cursor.execute("UPDATE participants SET timezone = 'America/Chicago' "
                       "WHERE participant_id = 'bad'")
    db_conn.commit()
    options = pipeline.RunOptions(now=NOW, overlap=timedelta(hours=24), batch_rows=1_000)
    outcomes = pipeline.run_cohort(db_conn, COHORT, lambda kind: MinuteSource(""),
                                   state.LoadedState({}, "missing"), tmp_path / "state.json",
                                   options)
    by_id = {o.participant_id: o for o in outcomes}
    assert by_id["p1"].status == by_id["p3"].status == "ok"
    assert by_id["bad"].status == "failed" and "America/Chicago" in by_id["bad"].error
    with db_conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM raw_data WHERE participant_id = 'bad'")
        assert cursor.fetchone() == (0,)  # nothing stamped in the zone it no longer has
    db_conn.commit()
