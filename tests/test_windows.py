from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ingester.model import Participant, Window
from ingester.pipeline import RunOptions, plan_participant
from ingester.windows import advance, local_midnight, plan_window, trusted_watermark

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
    assert advance(NOW, START, old) == NOW
    assert advance(None, START, old) == START + DAY
    assert advance(START, START, old) == START + DAY


def test_a_backfill_that_leaves_a_gap_does_not_move_the_watermark():
    recent = Window(NOW - 2 * DAY, NOW)
    assert advance(None, START, recent) is None  # days since START are not loaded yet
    assert advance(START + DAY, START, recent) == START + DAY
    assert advance(NOW - 3 * DAY, START, Window(NOW - 4 * DAY, NOW)) == NOW


@pytest.mark.parametrize("in_file, in_database, trusted", [
    (NOW, NOW, NOW),
    (NOW, NOW - DAY, NOW - DAY),  # the database was restored from a backup
    (NOW - DAY, NOW, NOW - DAY),  # the run committed, then died before writing the file
    (NOW, None, None),  # the participant was purged: reload it
    (None, NOW, NOW),  # no state file: recover from the database
])
def test_the_state_file_never_leads_the_database(in_file, in_database, trusted):
    assert trusted_watermark(in_file, in_database) == trusted


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
    plan = plan_participant(participant, ("heart_rate", "spo2"), marks, timedelta(0), options)
    assert plan["heart_rate"] == Window(datetime(2026, 11, 25, tzinfo=UTC), NOW)
    # Berlin midnight of the start date, in UTC
    assert plan["spo2"] == Window(datetime(2026, 10, 31, 23, 0, tzinfo=UTC), NOW)


def test_a_source_whose_data_arrives_late_rereads_more_than_the_overlap():
    participant = Participant("g1", "UTC", "google_health", date(2026, 11, 1))
    options = RunOptions(now=NOW, overlap=DAY, batch_rows=1000)
    marks = {"heart-rate": NOW - DAY}
    plan = plan_participant(participant, ("heart-rate",), marks, 3 * DAY, options)
    assert plan["heart-rate"] == Window(NOW - 4 * DAY, NOW)
