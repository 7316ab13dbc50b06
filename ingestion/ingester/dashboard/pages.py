"""What each page shows, read as the dashboard's role; the shaping is pure and tested alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .. import adherence, monitoring, report
from ..adherence import INGESTION_STATES, Day, Flags
from ..db import Connection, one_row

DAYS = 14  # the cohort's heatmap and the participant's charts: the last 14 local days
RECENT_RUNS = 14  # a participant's runs shown
INGESTION_DAYS = 7  # the Ingestion page's runs: this many days back
INGESTION_RUNS = 200
WEAR_BINS = 8  # the heatmap's colours, as the PNG's
# Before the cohort's rows: what needs someone now. Ours first: while a load fails or is
# held, nothing of that participant can be judged. Then what the participant must do.
URGENCY = {"failed": 0, "held": 0, "needs_consent": 1, "no_upload": 2, "low_wear": 3,
           "never_loaded": 4, "ok": 5}
# Fitabase's battery colours: High, Medium, Low, Empty.
BATTERY_LEVELS = ((50, "high"), (25, "medium"), (10, "low"), (0, "empty"))
# From the alert rules (deploy/prometheus/alerts.yml): their thresholds, in hours.
NO_SUCCESSFUL_RUN_HOURS = 26
NO_NEW_DATA_HOURS = 48


@dataclass(frozen=True)
class Cell:
    text: str
    css: str
    title: str


@dataclass(frozen=True)
class CohortRow:
    flags: Flags
    cells: tuple[Cell, ...]
    valid_days: int
    judged_days: int  # complete and loaded: the days the valid ones are counted among
    flags_text: str
    urgency: int

    @property
    def participant_id(self) -> str:
        return self.flags.participant_id

    @property
    def state(self) -> str:
        return INGESTION_STATES[self.flags.ingestion_state]

    @property
    def battery_class(self) -> str:
        return battery_class(self.flags.battery)


def battery_class(level: int | None) -> str:
    if level is None:
        return "unknown"
    return next(name for floor, name in BATTERY_LEVELS if level >= floor)


def urgency(flags: Flags) -> int:
    if flags.ingestion_state in ("failed", "held", "needs_consent"):
        return URGENCY[flags.ingestion_state]
    if flags.no_upload:
        return URGENCY["no_upload"]
    if flags.low_wear:
        return URGENCY["low_wear"]
    return URGENCY[flags.ingestion_state]


def cell(day: Day | None, on: date) -> Cell:
    if day is None:
        return Cell("", "notenrolled", f"{on}: not enrolled yet")
    text = report.cell_text(day)
    classes = []
    if not day.loaded:
        classes.append("notloaded")
        what = "not loaded: our failure, not theirs"
    elif not day.has_data:
        classes.append("nodata")
        what = "no data"
    else:
        classes.append(f"w{min(WEAR_BINS - 1, int(day.wear_fraction * WEAR_BINS))}")
        what = f"{day.wear_minutes} of {day.day_minutes} minutes worn"
        what += "" if day.valid_day else ", not a valid day"
    if not day.complete:
        classes.append("notover")
        what += " (day not over)"
    return Cell(text, " ".join(classes), f"{on}: {what}")


def cohort_rows(dates: tuple[date, ...], days: list[Day], flags: list[Flags],
                no_upload_hours: int) -> list[CohortRow]:
    """Pure: one row per participant, what needs action first, the longest silent first."""
    shown = report.grid(dates, days, flags)
    rows = []
    for pid in shown.participants:
        found = [shown.cell(pid, d) for d in dates]
        judged = [d for d in found if d is not None and d.complete and d.loaded]
        rows.append(CohortRow(
            shown.flags[pid], tuple(cell(d, on) for d, on in zip(found, dates, strict=True)),
            sum(d.valid_day for d in judged), len(judged),
            shown.flags[pid].describe(no_upload_hours), urgency(shown.flags[pid])))
    floor = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (r.urgency, r.flags.last_sync or r.flags.last_data or floor,
                             r.participant_id))
    return rows


def page_dates(now: datetime) -> tuple[date, ...]:
    """The last DAYS dates up to today (today not over)."""
    return report.report_dates(now.astimezone(UTC).date() + timedelta(days=1), DAYS)


def cohort(connection: Connection, now: datetime) -> tuple[list[CohortRow], tuple[date, ...]]:
    dates = page_dates(now)
    rows = cohort_rows(dates, adherence.days(connection, now, dates[0]),
                       adherence.flags(connection, now), thresholds(connection).no_upload_hours)
    return rows, dates


def report_grid(connection: Connection, now: datetime) -> report.Grid:
    """The CSV download: exactly `ingest.py report --format csv` (its default 14 days)."""
    return report.read(connection, now, DAYS)


@dataclass(frozen=True)
class Thresholds:
    valid_day_minutes: int | None
    valid_day_percent: float | None
    no_upload_hours: int
    low_wear_days: int

    def valid_minutes(self, day_minutes: int = 1440) -> float:
        if self.valid_day_minutes is not None:
            return self.valid_day_minutes
        return (self.valid_day_percent or 0) / 100 * day_minutes


def thresholds(connection: Connection) -> Thresholds:
    """The ones in force: the ingester publishes its settings into adherence_settings."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT valid_day_minutes, valid_day_percent, no_upload_hours, "
                       "low_wear_days FROM adherence_settings")
        found = Thresholds(*one_row(cursor))
    connection.rollback()
    return found


@dataclass(frozen=True)
class RunSummary:
    """One run of one participant: its slices in the run log, added up."""

    run_id: uuid.UUID
    participant_id: str
    started_at: datetime
    finished_at: datetime
    status: str
    slices: int
    rows_written: int
    rows_rejected: int
    error: str | None


RUNS = """
SELECT run_id, participant_id, min(started_at), max(finished_at),
       CASE WHEN bool_or(status = 'needs_consent') THEN 'needs_consent'
            WHEN bool_or(status = 'failed') THEN 'failed' ELSE 'ok' END,
       count(*), sum(rows_written), sum(rows_rejected),
       (array_agg(error ORDER BY finished_at DESC) FILTER (WHERE error IS NOT NULL))[1]
FROM ingest_runs WHERE {where}
GROUP BY run_id, participant_id
"""


@dataclass(frozen=True)
class ParticipantPage:
    participant_id: str
    timezone: str
    source: str
    start_date: date
    flags: Flags | None
    heart_rate: list[tuple[datetime, float, float, float]]  # hour, min, mean, max
    steps: list[tuple[date, float]]
    wear: list[Day]
    valid_minutes: float
    sleep: list[tuple[datetime, datetime, str]] | None  # last night's stages, if stored
    runs: list[RunSummary]
    flags_text: str


def participant(connection: Connection, participant_id: str, now: datetime
                ) -> ParticipantPage | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT timezone, source, start_date FROM participants "
                       "WHERE participant_id = %s", (participant_id,))
        found = cursor.fetchone()
        if found is None:
            connection.rollback()
            return None
        since = now - timedelta(days=DAYS)
        # The rollups, never raw_data: 336 hourly rows, whatever the sampling rate.
        cursor.execute("SELECT bucket, min, mean, max FROM data_1h WHERE participant_id = %s "
                       "AND metric_type = 'heart_rate' AND bucket >= %s AND bucket < %s "
                       "ORDER BY bucket", (participant_id, since, now))
        heart = cursor.fetchall()
        cursor.execute("SELECT day, sum FROM data_1d WHERE participant_id = %s "
                       "AND metric_type = 'steps' AND day > %s ORDER BY day",
                       (participant_id, (now - timedelta(days=DAYS)).date()))
        steps = cursor.fetchall()
        cursor.execute(RUNS.format(where="participant_id = %s")
                       + " ORDER BY max(finished_at) DESC LIMIT %s",
                       (participant_id, RECENT_RUNS))
        runs = [RunSummary(*row) for row in cursor.fetchall()]
    connection.rollback()
    flags = next((f for f in adherence.flags(connection, now)
                  if f.participant_id == participant_id), None)
    wear = adherence.days(connection, now, (now - timedelta(days=DAYS - 1)).date(),
                          participant_id)
    limits = thresholds(connection)
    zone, source, start = found
    return ParticipantPage(participant_id, zone, source, start, flags, heart, steps, wear,
                           limits.valid_minutes(), last_night(connection, participant_id, now),
                           runs, flags.describe(limits.no_upload_hours) if flags else "")


def last_night(connection: Connection, participant_id: str, now: datetime
               ) -> list[tuple[datetime, datetime, str]] | None:
    """The stages of the participant's latest main sleep before now; None until sleep is
    stored (a database before migration 12 has no sleep_sessions and sleep_stages)
    or when there is none in the last DAYS days."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('sleep_stages') IS NOT NULL AND "
                       "to_regclass('sleep_sessions') IS NOT NULL")
        if not one_row(cursor)[0]:
            connection.rollback()
            return None
        cursor.execute(
            "SELECT st.stage_start, st.stage_end, st.stage FROM sleep_stages st "
            "JOIN (SELECT source, session_start FROM sleep_sessions "
            "      WHERE participant_id = %s AND is_main_sleep AND session_end <= %s "
            "        AND session_start >= %s ORDER BY session_end DESC LIMIT 1) s "
            "  USING (source, session_start) "
            "WHERE st.participant_id = %s ORDER BY st.stage_start",
            (participant_id, now, now - timedelta(days=DAYS), participant_id))
        stages = cursor.fetchall()
    connection.rollback()
    return stages or None


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    subject: str  # the participant, or "" for the whole service
    says: str


@dataclass(frozen=True)
class IngestionPage:
    runs: list[RunSummary]
    consent: list[tuple[str, datetime | None, list[str]]]
    alerts: list[Alert]


def ingestion(connection: Connection, now: datetime) -> IngestionPage:
    with connection.cursor() as cursor:
        cursor.execute(RUNS.format(where="finished_at >= %s")
                       + " ORDER BY (bool_or(status <> 'ok')) DESC, max(finished_at) DESC "
                         "LIMIT %s", (now - timedelta(days=INGESTION_DAYS), INGESTION_RUNS))
        runs = [RunSummary(*row) for row in cursor.fetchall()]
        cursor.execute("SELECT participant_id, needs_consent_since, missing_scopes "
                       "FROM google_credentials WHERE needs_consent_since IS NOT NULL "
                       "OR cardinality(missing_scopes) > 0 "
                       "ORDER BY needs_consent_since NULLS LAST, participant_id")
        consent = [(pid, since, [s.rsplit("/", 1)[-1] for s in missing])
                   for pid, since, missing in cursor.fetchall()]
        cursor.execute("SELECT max(ended) FROM (SELECT max(finished_at) AS ended, "
                       "bool_or(status = 'failed') AS failed FROM ingest_runs GROUP BY run_id) "
                       "runs WHERE NOT failed")
        (last_success,) = one_row(cursor)
    connection.rollback()
    alerts = alerts_now(now, last_success, monitoring.failed_runs_in_a_row(connection),
                        monitoring.participant_facts(connection, now))
    return IngestionPage(runs, consent, alerts)


def alerts_now(now: datetime, last_success: datetime | None, failed_in_a_row: int,
               facts: list[monitoring.ParticipantFacts]) -> list[Alert]:
    """Pure: what deploy/prometheus/alerts.yml would fire on these facts (without their
    `for:` delays), critical first."""
    found = []
    if last_success is None or now - last_success > timedelta(hours=NO_SUCCESSFUL_RUN_HOURS):
        found.append(Alert("WearablesIngestNoSuccessfulRun", "critical", "",
                           "no successful run " + ("ever" if last_success is None else
                                                   f"since {when(last_success)}")))
    if failed_in_a_row >= 2:
        found.append(Alert("WearablesIngestRunFailedTwice", "critical", "",
                           f"the last {failed_in_a_row} runs each failed a participant"))
    for fact in facts:
        pid = fact.participant_id
        if fact.newest_data is None or now - fact.newest_data > timedelta(
                hours=NO_NEW_DATA_HOURS):
            found.append(Alert("WearablesIngestParticipantNoNewData", "warning", pid,
                               "no data stored yet" if fact.newest_data is None else
                               f"newest data {ago(fact.newest_data, now)}"))
        if fact.needs_consent:
            found.append(Alert("WearablesIngestParticipantNeedsConsent", "warning", pid,
                               "must consent again"))
        if fact.low_wear:
            found.append(Alert("WearablesIngestParticipantLowWear", "warning", pid,
                               f"worn too little on {fact.invalid_days_of_7} of the last 7 "
                               "days"))
    return found


def when(instant: datetime | None) -> str:
    return "never" if instant is None else f"{instant.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def ago(instant: datetime | None, now: datetime) -> str:
    if instant is None:
        return "never"
    if instant > now:  # a dashboard pinned to a past --now: the time itself
        return when(instant)
    hours = (now - instant).total_seconds() / 3600
    return f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.1f} d ago"
