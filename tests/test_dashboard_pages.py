"""The dashboard's pure parts: the cohort's order, a heatmap cell, the alerts, the charts,
the export's query string."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from ingester.adherence import Day, Flags
from ingester.dashboard import charts, download, is_loopback, pages
from ingester.monitoring import ParticipantFacts

NOW = datetime(2026, 3, 9, 8, tzinfo=UTC)


def flags(pid: str, state: str = "ok", no_upload=False, low_wear=False, last_sync=None,
          battery=None) -> Flags:
    return Flags(pid, "google_health", None, None, last_sync, None, battery, 0, no_upload,
                 low_wear, state == "needs_consent", None, None, state, None, None, None)


def test_the_cohort_sorts_ours_then_consent_then_their_flags_then_the_rest_oldest_first():
    old, recent = NOW - timedelta(days=5), NOW - timedelta(days=3)
    cohort = [flags("fine"), flags("new", "never_loaded"), flags("worn", low_wear=True),
              flags("quiet-recent", no_upload=True, last_sync=recent),
              flags("quiet-old", no_upload=True, last_sync=old),
              flags("revoked", "needs_consent"), flags("broken", "failed"),
              flags("held", "held")]
    rows = pages.cohort_rows(pages.page_dates(NOW), [], cohort, 48)
    assert [r.participant_id for r in rows] == [
        "broken", "held", "revoked", "quiet-old", "quiet-recent", "worn", "new", "fine"]


def test_a_cell_says_not_loaded_not_over_and_invalid():
    def day(**kw) -> Day:
        values = dict(participant_id="p", day=date(2026, 3, 8), complete=True, day_minutes=1440,
                      wear_minutes=300, wear_fraction=300 / 1440, valid_day=False,
                      has_data=True, first_sample=None, last_sample=None, last_sync=None,
                      battery=None, loaded=True)
        return Day(**{**values, **kw})

    assert pages.cell(day(), date(2026, 3, 8)) == pages.Cell(
        "21%!", "w1", "2026-03-08: 300 of 1440 minutes worn, not a valid day")
    assert pages.cell(day(has_data=False, loaded=False), date(2026, 3, 8)).css == "notloaded"
    assert pages.cell(day(complete=False), date(2026, 3, 8)).text == "21%!~"
    assert pages.cell(None, date(2026, 3, 8)).css == "notenrolled"


def test_battery_colours_and_loopback_addresses():
    assert [pages.battery_class(b) for b in (None, 90, 30, 12, 3)] == [
        "unknown", "high", "medium", "low", "empty"]
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "dashboard.lab"))


def test_the_alerts_are_the_rules_thresholds():
    facts = [ParticipantFacts("quiet", None, NOW - timedelta(hours=49), None, False),
             ParticipantFacts("fresh", None, NOW - timedelta(hours=47), None, True, 4, True)]
    said = pages.alerts_now(NOW, NOW - timedelta(hours=27), 2, facts)
    assert [(a.name, a.subject) for a in said] == [
        ("WearablesIngestNoSuccessfulRun", ""), ("WearablesIngestRunFailedTwice", ""),
        ("WearablesIngestParticipantNoNewData", "quiet"),
        ("WearablesIngestParticipantNeedsConsent", "fresh"),
        ("WearablesIngestParticipantLowWear", "fresh")]
    assert pages.alerts_now(NOW, NOW - timedelta(hours=25), 1, facts[1:2])[0].name == (
        "WearablesIngestParticipantNeedsConsent")


def test_the_hypnogram_draws_a_bar_per_stage_and_nothing_for_no_night():
    start = datetime(2026, 3, 8, 22, tzinfo=UTC)
    stages = [(start + timedelta(minutes=30 * n), start + timedelta(minutes=30 * (n + 1)),
               stage) for n, stage in enumerate(["light", "deep", "rem", "awake", "light"])]
    svg = charts.hypnogram(stages)
    assert svg is not None and svg.startswith("<svg") and svg.count('id="stage') == 5
    assert ">deep<" in svg and ">rem<" in svg  # the rows are named, as text
    assert charts.hypnogram([]) is None
    assert charts.heart_rate([], NOW) is None


@pytest.mark.parametrize(("query", "expected", "stem"), [
    ({}, download.Wanted(), "p01-raw-parquet"),
    # The form sends its empty date fields: no bound.
    ({"format": "csv", "resolution": "1d", "since": "", "until": ""},
     download.Wanted("csv", "1d"), "p01-1d-csv"),
    ({"since": "2026-03-03", "until": "2026-03-06", "resolution": "1h"},
     download.Wanted("parquet", "1h", date(2026, 3, 3), date(2026, 3, 6)),
     "p01-1h-2026-03-03-2026-03-06-parquet"),
    ({"until": "2026-03-06"}, download.Wanted(until=date(2026, 3, 6)),
     "p01-raw-2026-03-06-parquet"),
])
def test_the_export_query_gives_the_commands_choices(query, expected, stem):
    chosen = download.wanted(query)
    assert chosen == expected and chosen.stem("p01") == stem


@pytest.mark.parametrize(("query", "line"), [
    ({"format": "PARQUET"}, "format: expected one of parquet, csv, got 'PARQUET'"),
    ({"until": "2026-3-6"}, "until: expected a date YYYY-MM-DD, got '2026-3-6'"),
    ({"since": "2026-02-30"}, "since: expected a date YYYY-MM-DD, got '2026-02-30'"),
    ({"since": "2026-03-07", "until": "2026-03-06"},
     "--since must be earlier than --until, got 2026-03-07 and 2026-03-06"),
])
def test_a_bad_export_query_names_the_value(query, line):
    with pytest.raises(download.BadQuery) as refused:
        download.wanted(query)
    assert str(refused.value) == line
