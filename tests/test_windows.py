from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ingester.db import Recovered
from ingester.model import DeliveryBound, Participant, Window
from ingester.pipeline import RunOptions, plan_participant, preview, run_log_watermark, slices_of
from ingester.windows import (
    MAX_SLICE_DAYS,
    SLICE_ROWS,
    advance,
    local_midnight,
    new_stream_start,
    next_slice_days,
    plan_window,
    slice_end,
    trusted_watermark,
)

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_first_run_backfills_from_the_participant_start():
    window = plan_window(watermark=None, participant_start=START, now=NOW, overlap=DAY)
    assert window == Window(START, NOW)


def test_later_runs_reread_the_overlap_before_the_watermark():
    mark = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    window = plan_window(watermark=mark, participant_start=START, now=NOW, overlap=DAY)
    assert window == Window(mark - DAY, NOW)


def test_overlap_never_reaches_before_the_participant_start():
    window = plan_window(watermark=START + timedelta(hours=2), participant_start=START,
                         now=NOW, overlap=DAY)
    assert window.start == START


@pytest.mark.parametrize("until, expected_end", [
    (datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)),
    (datetime(2027, 1, 1, tzinfo=UTC), NOW),  # never past now: no future points
])
def test_explicit_backfill_window(until, expected_end):
    since = datetime(2026, 11, 5, tzinfo=UTC)
    window = plan_window(watermark=NOW, participant_start=START, now=NOW, overlap=DAY,
                         since=since, until=until)
    assert window == Window(since, expected_end)


def test_nothing_to_do_when_the_participant_starts_in_the_future():
    later = NOW + DAY
    assert plan_window(watermark=None, participant_start=later, now=NOW, overlap=DAY) is None


def test_watermark_only_moves_forward():
    old = Window(START, START + DAY)
    assert advance(NOW, START, old, NOW) == NOW
    assert advance(None, START, old, NOW) == START + DAY
    assert advance(START, START, old, NOW) == START + DAY


def test_a_backfill_that_leaves_a_gap_does_not_move_the_watermark():
    recent = Window(NOW - 2 * DAY, NOW)
    assert advance(None, START, recent, NOW) is None  # days since START are not loaded yet
    assert advance(START + DAY, START, recent, NOW) == START + DAY
    assert advance(NOW - 3 * DAY, START, Window(NOW - 4 * DAY, NOW), NOW) == NOW


@pytest.mark.parametrize("watermark, window, until, moved", [
    # the rule: max(old, min(end, until))
    (None, Window(START, NOW), NOW - 7 * DAY, NOW - 7 * DAY),
    (NOW - 8 * DAY, Window(NOW - 9 * DAY, NOW), NOW - 7 * DAY, NOW - 7 * DAY),
    (NOW - 7 * DAY, Window(NOW - 8 * DAY, NOW), NOW - 7 * DAY, NOW - 7 * DAY),
    # a bound older than the watermark never moves it back
    (NOW - 2 * DAY, Window(NOW - 3 * DAY, NOW), NOW - 7 * DAY, NOW - 2 * DAY),
    # a slice wholly after the bound moves nothing
    (NOW - 7 * DAY, Window(NOW - DAY, NOW), NOW - 7 * DAY, NOW - 7 * DAY),
    # nothing delivered after the participant's start yet: still no watermark
    (None, Window(START, START + DAY), START - DAY, None),
])
def test_the_watermark_never_passes_what_the_source_may_still_deliver(
    watermark, window, until, moved
):
    assert advance(watermark, START, window, until) == moved


@pytest.mark.parametrize("in_file, in_database, trusted", [
    (NOW, NOW, NOW),
    (NOW, NOW - DAY, NOW - DAY),  # the database was restored from a backup
    (NOW - DAY, NOW, NOW - DAY),  # the run committed, then died before writing the file
    (NOW, None, None),  # the participant was purged: reload it
    (None, NOW, NOW),  # no state file: recover from the database
])
def test_the_state_file_never_leads_the_database(in_file, in_database, trusted):
    assert trusted_watermark(in_file, in_database) == trusted


@pytest.mark.parametrize("in_file, in_database, in_run_log, trusted", [
    (NOW - 3 * DAY, NOW, NOW, NOW),  # the file could not be written for two nights
    (NOW, NOW - DAY, NOW - DAY, NOW - DAY),  # the database was restored from a backup
    (START, NOW, START, START),  # a stream held at its start: the grant lacks its scope
    (None, NOW, START, START),  # ... and no state file
])
def test_a_streams_own_watermark_in_the_run_log_wins(in_file, in_database, in_run_log,
                                                       trusted):
    assert trusted_watermark(in_file, in_database, in_run_log) == trusted


def test_window_rejects_naive_instants_and_is_half_open():
    with pytest.raises(ValueError):
        Window(datetime(2026, 1, 1), NOW)
    window = Window(START, NOW)
    assert START in window and NOW not in window


def test_local_midnight_is_the_participants_midnight():
    midnight = local_midnight(date(2026, 3, 8), ZoneInfo("America/New_York"))
    assert midnight.astimezone(UTC) == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)


def test_plan_gives_each_stream_its_own_window():
    participant = Participant("p1", "Europe/Berlin", "synthetic", date(2026, 11, 1), 1)
    options = RunOptions(now=NOW, overlap=DAY, batch_rows=1000)
    marks = {"heart_rate": datetime(2026, 11, 26, tzinfo=UTC)}
    plan = plan_participant(participant, ("heart_rate", "spo2"), marks, options)
    assert plan["heart_rate"] == Window(datetime(2026, 11, 25, tzinfo=UTC), NOW)
    # Berlin midnight of the start date, in UTC
    assert plan["spo2"] == Window(datetime(2026, 10, 31, 23, 0, tzinfo=UTC), NOW)


@pytest.mark.parametrize("zone, start, days, end", [
    # a slice ends at the participant's next local midnight, even when it starts mid-day
    ("Europe/Berlin", datetime(2026, 11, 2, 10, tzinfo=UTC), 1,
     datetime(2026, 11, 2, 23, tzinfo=UTC)),
    # spring forward: New York's 8 March 2026 has 23 hours
    ("America/New_York", datetime(2026, 3, 8, 5, tzinfo=UTC), 1,
     datetime(2026, 3, 9, 4, tzinfo=UTC)),
    ("UTC", START, 14, START + 14 * DAY),
    ("UTC", START, 60, NOW),  # never past the window's end
])
def test_a_slice_ends_at_a_local_midnight(zone, start, days, end):
    assert slice_end(start, NOW, ZoneInfo(zone), days) == end


def test_sparse_slices_grow_to_the_cap_and_dense_ones_settle_near_the_row_target():
    days, seen = 1, []
    for _ in range(6):  # a history of one daily value
        days = next_slice_days(days, rows=days)
        seen.append(days)
    assert seen == [2, 4, 8, MAX_SLICE_DAYS, MAX_SLICE_DAYS, MAX_SLICE_DAYS]
    days, seen = 1, []
    for _ in range(5):  # 1 Hz heart rate and the minute streams: ~94,000 rows a day
        days = next_slice_days(days, rows=94_000 * days)
        seen.append(days)
    assert seen == [2, 4, 4, 4, 4]  # ~376,000 rows a slice
    assert next_slice_days(MAX_SLICE_DAYS, rows=94_000 * MAX_SLICE_DAYS) == MAX_SLICE_DAYS // 2
    assert next_slice_days(1, rows=4 * SLICE_ROWS) == 1  # never less than a local day
    assert next_slice_days(4, rows=SLICE_ROWS) == 4  # near the target: kept


def test_each_stream_gets_its_part_of_a_slice():
    plan = {"a": Window(START, NOW), "b": Window(START + 3 * DAY, NOW)}
    assert slices_of(plan, START, START + DAY) == {"a": Window(START, START + DAY)}
    assert slices_of(plan, START + 2 * DAY, START + 4 * DAY) == {
        "a": Window(START + 2 * DAY, START + 4 * DAY),
        "b": Window(START + 3 * DAY, START + 4 * DAY),
    }


def test_the_run_log_holds_the_earliest_stream_and_none_while_a_stream_has_none():
    assert run_log_watermark({"a": NOW, "b": NOW - DAY}) == NOW - DAY
    assert run_log_watermark({"a": NOW, "b": None}) is None


SYNTHETIC_P = Participant("p1", "UTC", "synthetic", date(2026, 11, 1), 1)
GENERATED = DeliveryBound(NOW, "generated")


@pytest.mark.parametrize("in_file, in_database, mark, origin", [
    ({"s": NOW - DAY}, Recovered(NOW, "run log"), NOW - DAY, "state file"),
    ({"s": NOW}, Recovered(NOW - DAY, "run log"), NOW - DAY, "run log"),
    ({}, Recovered(NOW - DAY, "run log"), NOW - DAY, "run log"),
    ({}, Recovered(NOW - DAY, "stored data"), NOW - DAY, "stored data"),
    ({"s": NOW}, Recovered(None, None), None, "start date"),  # purged and added again
    ({"s": NOW - 3 * DAY}, Recovered(NOW - DAY, "run log", {"s": NOW}), NOW, "run log"),
])
def test_the_preview_says_where_each_watermark_comes_from(in_file, in_database, mark, origin):
    options = RunOptions(now=NOW, overlap=DAY, batch_rows=1000)
    planned = preview(SYNTHETIC_P, ("s",), in_file, in_database, GENERATED, options)
    assert (planned.marks, planned.origins) == ({"s": mark}, {"s": origin})


def test_a_first_load_longer_than_the_limit_is_held_unless_asked_for_with_since():
    typo = Participant("p1", "Asia/Tokyo", "synthetic", date(2016, 11, 1), 1)
    options = RunOptions(now=NOW, overlap=DAY, batch_rows=1000, max_backfill_days=92)
    planned = preview(typo, ("s",), {}, Recovered(None, None), GENERATED, options)
    assert planned.held is not None and "MAX_BACKFILL_DAYS (92)" in planned.held
    assert "--participant p1 --since 2016-11-01T00:00:00+09:00" in planned.held
    since = RunOptions(now=NOW, overlap=DAY, batch_rows=1000, max_backfill_days=92,
                       since=datetime(2016, 10, 31, 15, tzinfo=UTC))
    assert preview(typo, ("s",), {}, Recovered(None, None), GENERATED, since).held is None
    # a participant with a watermark catches up however long it was away
    away = preview(typo, ("s",), {}, Recovered(NOW - 400 * DAY, "run log"), GENERATED, options)
    assert away.held is None


def test_a_stream_new_to_a_loaded_participant_starts_at_its_start_date_within_the_limit():
    # The run log keeps "heart" and not "sleep": the source gained sleep after the last run.
    logged = Recovered(NOW - DAY, "run log", {"heart": NOW - DAY})
    options = RunOptions(now=NOW, overlap=DAY, batch_rows=1000, max_backfill_days=92)
    planned = preview(SYNTHETIC_P, ("heart", "sleep"), {"heart": NOW - DAY}, logged, GENERATED,
                      options)
    assert planned.marks == {"heart": NOW - DAY, "sleep": None}
    assert planned.origins == {"heart": "run log", "sleep": "new stream"}
    assert planned.plan["sleep"] == Window(START, NOW)  # SYNTHETIC_P's start date
    assert planned.held is None
    # Started long ago (Tokyo, 2016): no more than MAX_BACKFILL_DAYS, from a local midnight.
    veteran = Participant("p2", "Asia/Tokyo", "synthetic", date(2016, 11, 1), 1)
    planned = preview(veteran, ("heart", "sleep"), {}, logged, GENERATED, options)
    bound = datetime(2026, 8, 27, tzinfo=ZoneInfo("Asia/Tokyo"))  # 27 Nov 10:00 local - 92 d
    assert planned.marks["sleep"] == bound and planned.origins["sleep"] == "new stream"
    assert planned.plan["sleep"] == Window(bound - DAY, NOW)  # the usual overlap before it
    assert planned.held is None
    # Away for 400 days: the other streams catch up from there, and so does the new one.
    away = Recovered(NOW - 400 * DAY, "run log", {"heart": NOW - 400 * DAY})
    planned = preview(veteran, ("heart", "sleep"), {}, away, GENERATED, options)
    assert planned.marks == {"heart": NOW - 400 * DAY, "sleep": NOW - 400 * DAY}
    # A run log from before per-stream watermarks (none at all): every stream as before.
    old_log = Recovered(NOW - DAY, "run log")
    planned = preview(SYNTHETIC_P, ("heart", "sleep"), {}, old_log, GENERATED, options)
    assert planned.marks == {"heart": NOW - DAY, "sleep": NOW - DAY}


def test_new_stream_start():
    zone = ZoneInfo("UTC")
    assert new_stream_start(START, NOW, zone, 92) is None
    assert new_stream_start(START, NOW, zone, 10) == datetime(2026, 11, 17, tzinfo=zone)
