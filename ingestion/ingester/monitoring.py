"""Prometheus metrics of each run: a textfile for node_exporter and a push to a Pushgateway.

prometheus_client renders the exposition format and writes the textfile atomically (a
temporary file renamed over the old one, so the collector never reads half a file). Run
facts come from the run's outcomes; per-participant facts are read from the database
(ingest_runs, raw_data, google_credentials), which is what a run committed, whoever ran it.

`wearables_ingest_last_success_timestamp_seconds` is only written by a run that succeeded,
as Prometheus advises for batch jobs: alert on its age, not on each failure. The push is a
POST (pushadd), which replaces only the metric names it carries, so a failed run leaves
the Pushgateway's last success in place; the textfile is rewritten whole, so a failed run
carries the previous file's value over.

Labels are fixed words (`outcome`) and pseudonymous participant ids, never an error text or
a secret. Publishing never changes a run's exit code: a failure is logged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import psycopg2
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.parser import text_string_to_metric_families

from . import adherence, db
from .config import Endpoint, Settings
from .db import one_row
from .metrics import METRICS
from .pipeline import Outcome
from .sources.google_health.credentials import needs_consent

log = logging.getLogger(__name__)

JOB = "wearables_ingest"  # the Pushgateway group, and the `job` label Prometheus sees
# A Pushgateway that hangs must not hold the nightly job for long.
PUSH_TIMEOUT_SECONDS = 10.0
# Always exported, zeros included: a missing series would read as "no data", not as 0.
OUTCOMES = ("ok", "failed", "needs_consent", "held", "nothing_to_do", "removed")

LAST_SUCCESS = "wearables_ingest_last_success_timestamp_seconds"

# name -> (help, labels). docs/monitoring.md's metric table is checked against this.
METRIC_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    LAST_SUCCESS: ("End of the last run in which no participant failed (Unix time).", ()),
    "wearables_ingest_last_run_timestamp_seconds": ("End of the last run (Unix time).", ()),
    "wearables_ingest_last_run_success": (
        "1 if the last run succeeded (no participant failed), else 0.", ()),
    "wearables_ingest_failed_runs_in_a_row": (
        "Runs in a row, up to the last, that logged a failed participant.", ()),
    "wearables_ingest_run_duration_seconds": ("Wall-clock duration of the last run.", ()),
    "wearables_ingest_run_rows_read": ("Rows the last run read from its sources.", ()),
    "wearables_ingest_run_rows_written": ("Rows the last run stored (new or changed).", ()),
    "wearables_ingest_run_rows_rejected": (
        "Rows the last run rejected (unparseable, or outside the window).", ()),
    "wearables_ingest_run_participants": (
        "Participants of the last run by outcome.", ("outcome",)),
    "wearables_ingest_oldest_watermark_age_seconds": (
        "Age, at the end of the last run, of the oldest participant watermark.", ()),
    "wearables_ingest_participant_last_success_timestamp_seconds": (
        "When the participant's data last committed (Unix time).", ("participant_id",)),
    "wearables_ingest_participant_newest_data_timestamp_seconds": (
        "Instant of the participant's newest stored data point (Unix time).",
        ("participant_id",)),
    "wearables_ingest_participant_watermark_timestamp_seconds": (
        "The participant's watermark: everything before it is loaded (Unix time).",
        ("participant_id",)),
    "wearables_ingest_participant_needs_consent": (
        "1 if the participant's Google grant was refused and they must consent again.",
        ("participant_id",)),
    "wearables_ingest_participant_invalid_day_in_last_7": (
        "Of the last 7 complete local days, those below the valid-day wear threshold.",
        ("participant_id",)),
    "wearables_ingest_participant_low_wear": (
        "1 if the morning report flags the participant for low wear (participant_flags).",
        ("participant_id",)),
}


@dataclass(frozen=True)
class RunFacts:
    finished: float  # Unix time
    seconds: float
    succeeded: bool
    rows_read: int
    rows_written: int
    rows_rejected: int
    participants: dict[str, int]  # outcome -> participants


@dataclass(frozen=True)
class ParticipantFacts:
    participant_id: str
    last_success: datetime | None
    newest_data: datetime | None
    watermark: datetime | None
    needs_consent: bool
    invalid_days_of_7: int = 0
    low_wear: bool = False


def run_facts(
    outcomes: Sequence[Outcome], seconds: float, state_sound: bool, finished: float
) -> RunFacts:
    """Pure: what the run did. A participant needing consent does not make the run fail
    here: it has an alert of its own, and one participant who never consents again would
    otherwise keep 'no successful run' firing and hide every real failure behind it."""
    # A held participant (a first load over MAX_BACKFILL_DAYS) waits for an operator, as a
    # failed one does; the run log records it as failed too.
    succeeded = state_sound and not any(
        o.status in ("failed", "held") or o.warning for o in outcomes
    )
    counted = Counter(o.status for o in outcomes)
    return RunFacts(
        finished=finished,
        seconds=seconds,
        succeeded=succeeded,
        rows_read=sum(o.rows_read for o in outcomes),
        rows_written=sum(o.rows_written for o in outcomes),
        rows_rejected=sum(o.rows_rejected for o in outcomes),
        participants={outcome: counted.get(outcome, 0) for outcome in (*OUTCOMES, *counted)},
    )


def build_registry(
    run: RunFacts,
    people: Sequence[ParticipantFacts],
    failed_in_a_row: int,
    last_success: float | None,
) -> CollectorRegistry:
    """Pure: the metrics of one run; last_success is left out when it is None."""
    registry = CollectorRegistry()

    def gauge(name: str) -> Gauge:
        text, labels = METRIC_HELP[name]
        return Gauge(name, text, labels, registry=registry)

    if last_success is not None:
        gauge(LAST_SUCCESS).set(last_success)
    gauge("wearables_ingest_last_run_timestamp_seconds").set(run.finished)
    gauge("wearables_ingest_last_run_success").set(1 if run.succeeded else 0)
    gauge("wearables_ingest_failed_runs_in_a_row").set(failed_in_a_row)
    gauge("wearables_ingest_run_duration_seconds").set(run.seconds)
    gauge("wearables_ingest_run_rows_read").set(run.rows_read)
    gauge("wearables_ingest_run_rows_written").set(run.rows_written)
    gauge("wearables_ingest_run_rows_rejected").set(run.rows_rejected)
    by_outcome = gauge("wearables_ingest_run_participants")
    for outcome, count in run.participants.items():
        by_outcome.labels(outcome=outcome).set(count)
    marks = [p.watermark.timestamp() for p in people if p.watermark is not None]
    if marks:
        gauge("wearables_ingest_oldest_watermark_age_seconds").set(run.finished - min(marks))

    per_participant = {
        "wearables_ingest_participant_last_success_timestamp_seconds": "last_success",
        "wearables_ingest_participant_newest_data_timestamp_seconds": "newest_data",
        "wearables_ingest_participant_watermark_timestamp_seconds": "watermark",
    }
    for name, attribute in per_participant.items():
        family = gauge(name)
        for person in people:
            value = getattr(person, attribute)
            if value is not None:  # never loaded: no series rather than a made-up instant
                family.labels(participant_id=person.participant_id).set(value.timestamp())
    flags = {
        "wearables_ingest_participant_needs_consent": "needs_consent",
        "wearables_ingest_participant_invalid_day_in_last_7": "invalid_days_of_7",
        "wearables_ingest_participant_low_wear": "low_wear",
    }
    for name, attribute in flags.items():
        family = gauge(name)
        for person in people:
            family.labels(participant_id=person.participant_id).set(
                float(getattr(person, attribute)))
    return registry


# --- the database -----------------------------------------------------------------------

# The newest point per participant, found through raw_data's unique key one metric at a
# time: TimescaleDB then reads each chunk's index from the newest chunk back and stops at
# the first hit, instead of scanning the participant's rows.
PARTICIPANT_FACTS = """
SELECT p.participant_id, r.last_ok, r.watermark,
       (SELECT max(n.newest)
        FROM unnest(%(metrics)s::text[]) AS m(metric_type),
             LATERAL (SELECT max(d."timestamp") AS newest FROM raw_data d
                      WHERE d.participant_id = p.participant_id
                        AND d.metric_type = m.metric_type) n)
FROM participants p
LEFT JOIN LATERAL (
    SELECT max(finished_at) FILTER (WHERE status = 'ok') AS last_ok,
           max(watermark) FILTER (WHERE status = 'ok') AS watermark
    FROM ingest_runs i WHERE i.participant_id = p.participant_id
) r ON true
ORDER BY p.participant_id
"""

# A run is a run_id of the run log; it failed when it logged a failed participant.
FAILED_RUNS_IN_A_ROW = """
WITH runs AS (
    SELECT max(finished_at) AS ended, bool_or(status = 'failed') AS failed
    FROM ingest_runs GROUP BY run_id
)
SELECT count(*) FROM runs
WHERE failed AND ended > coalesce((SELECT max(ended) FROM runs WHERE NOT failed), '-infinity')
"""


def participant_facts(connection: db.Connection, now: datetime) -> list[ParticipantFacts]:
    consent = {row.participant_id for row in needs_consent(connection)}
    wear = {f.participant_id: f for f in adherence.flags(connection, now)}
    with connection.cursor() as cursor:
        cursor.execute(PARTICIPANT_FACTS, {"metrics": list(METRICS)})
        rows = cursor.fetchall()
    connection.commit()
    facts = []
    for pid, last_ok, watermark, newest in rows:
        flags = wear.get(pid)  # None for one enrolled after the flags were read
        facts.append(ParticipantFacts(
            pid, last_ok, newest, watermark, pid in consent,
            flags.invalid_days_of_7 if flags else 0, flags.low_wear if flags else False))
    return facts


def failed_runs_in_a_row(connection: db.Connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute(FAILED_RUNS_IN_A_ROW)
        (count,) = one_row(cursor)
    connection.commit()
    return count


# --- the shell --------------------------------------------------------------------------


def publish(
    connection: db.Connection,
    settings: Settings,
    outcomes: Sequence[Outcome],
    seconds: float,
    state_sound: bool,
) -> None:
    """Write the textfile and push, as configured; log any failure, never raise it."""
    if settings.metrics_file is None and not settings.pushgateway_url:
        return
    run = run_facts(outcomes, seconds, state_sound, time.time())
    try:
        people = participant_facts(connection, datetime.fromtimestamp(run.finished, UTC))
        failed_in_a_row = failed_runs_in_a_row(connection)
    except psycopg2.Error as error:
        connection.rollback()
        log.error("metrics not published: reading the run log failed: %s", _one_line(error))
        return
    own = run.finished if run.succeeded else None
    if settings.metrics_file is not None:
        carried = own if own is not None else previous_last_success(settings.metrics_file)
        write_textfile(settings.metrics_file,
                       build_registry(run, people, failed_in_a_row, carried))
    if settings.pushgateway is not None:
        push(settings.pushgateway, build_registry(run, people, failed_in_a_row, own))


def previous_last_success(path: Path) -> float | None:
    """The last success the previous textfile recorded, so a failed run does not erase it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("cannot read the previous metrics file %s: %s", path, error)
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return sample.value
    except ValueError as error:
        log.warning("the previous metrics file %s does not parse (%s); its last success "
                    "is lost", path, error)
    return None


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as error:
        log.error("metrics file %s not written: %s", path, error)
        return
    log.info("metrics written to %s", path)


def push(gateway: Endpoint, registry: CollectorRegistry) -> None:
    """POST the registry; the URL carries no credentials (config.Endpoint), so neither does
    any error about it."""
    handler = default_handler
    if gateway.username is not None:
        handler = partial(basic_auth_handler, username=gateway.username,
                          password=gateway.password or "")
    try:
        pushadd_to_gateway(gateway.url, job=JOB, registry=registry,
                           timeout=PUSH_TIMEOUT_SECONDS, handler=handler)
    except Exception as error:  # whatever went wrong (refused, timeout, HTTP 4xx/5xx)
        log.warning("metrics not pushed to the Pushgateway at %s: %s", gateway.url,
                    _one_line(error))
        return
    log.info("metrics pushed to the Pushgateway at %s", gateway.url)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
