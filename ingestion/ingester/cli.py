"""The command line: `ingest.py` runs one delta ingestion; subcommands inspect and enrol.

Exit codes: 0 all participants loaded; 1 a participant failed (or the state file had to be
recovered, or could not be written; or a purge answered no); 2 bad configuration or
arguments; 3 the database is unreachable (a run waits DB_WAIT_SECONDS for one that is
starting, other commands do not wait) or failed; 4 other
workers held the batch's last participants for longer than claims.CLAIM_WAIT; 5 a pending schema
migration could not get its lock within schema.LOCK_ATTEMPTS tries of schema.LOCK_TIMEOUT
(the line names the session it waited for).
"""

from __future__ import annotations

import argparse
import logging
import re
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg2
import psycopg2.errors

from . import (
    __version__,
    access,
    adherence,
    claims,
    cli_options,
    cohort,
    db,
    export,
    monitoring,
    report,
    schema,
    state,
    workers,
)
from .config import Settings, load_settings, read_environment
from .errors import ConfigError, DatabaseUnavailable
from .logs import configure_logging
from .model import (
    EARLIEST_START_DATE,
    GOOGLE_HEALTH,
    PARTICIPANT_ID,
    SYNTHETIC,
    TAKEOUT,
    Participant,
)
from .pipeline import Outcome, RunOptions, preview, run_cohort
from .report import FORMATS
from .workers import Job, SourceFactory

log = logging.getLogger("ingester")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_DATABASE, EXIT_BUSY, EXIT_SCHEMA = 0, 1, 2, 3, 4, 5

# Seconds an interactive command gives each address of DB_HOST to answer: a stopped server
# refuses at once, a vanished host is given this long (libpq's minimum is 2).
INTERACTIVE_CONNECT_TIMEOUT = 2
# How far --now may lead this machine's clock (clocks of hosts differ a little).
CLOCK_SKEW = timedelta(minutes=5)

HERE = Path(__file__).resolve().parent
# In the image the schema sits beside ingest.py; in a checkout it is timescaledb/init.sql.
SCHEMA_FILES = (HERE.parent / "init.sql", HERE.parent.parent / "timescaledb" / "init.sql")

# participants.seed is a bigint; the synthetic source hashes the seed with the date, so any
# value in that range is a good seed, and a larger one could never be stored.
MAX_SEED = 2**63 - 1
PLAIN_INTEGER = re.compile(r"[0-9]+")
EARLIEST_INSTANT = datetime.combine(EARLIEST_START_DATE, datetime.min.time(), tzinfo=UTC)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (and exit 2), not the usage plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def instant(text: str) -> datetime:
    """An ISO date or date-time from EARLIEST_START_DATE on; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or date-time, got {text!r}"
        ) from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if value < EARLIEST_INSTANT:
        # Year 26 for 2026 would start a decades-long backfill, and year 1 overflows.
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or date-time from {EARLIEST_START_DATE} on, got {text!r}"
        )
    return value


def start_date(text: str) -> date:
    """An ISO date (YYYY-MM-DD) from EARLIEST_START_DATE on (the later bound needs the zone)."""
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None
    if value < EARLIEST_START_DATE:
        raise argparse.ArgumentTypeError(
            f"expected a date from {EARLIEST_START_DATE} to today, got {text!r}"
        )
    return value


def seed(text: str) -> int:
    if not PLAIN_INTEGER.fullmatch(text) or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer 0-{MAX_SEED}, got {text!r}")
    return int(text)


def participant_id(text: str) -> str:
    if not PARTICIPANT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected 1-64 letters, digits, '_', '.' or '-', got {text!r}"
        )
    return text


def zone_name(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected an IANA time zone like Europe/Berlin, got {text!r}"
        ) from None
    return text


def port(text: str) -> int:
    number = int(text) if PLAIN_INTEGER.fullmatch(text) else -1
    if not 0 <= number <= 65535:  # 0: any free port (the log line names it)
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {text!r}")
    return number


def days_back(text: str) -> int:
    days = int(text) if PLAIN_INTEGER.fullmatch(text) else 0
    if not 1 <= days <= 366:
        raise argparse.ArgumentTypeError(f"expected a whole number of days 1-366, got {text!r}")
    return days


def parser() -> argparse.ArgumentParser:
    main = OneLineParser(
        prog="ingest.py",
        description="Load new wearable data of the cohort into TimescaleDB (one delta run).",
    )
    main.add_argument("--version", action="version", version=version_text())
    main.add_argument(
        "--participant",
        action="append",
        default=[],
        type=participant_id,
        metavar="ID",
        help="only this participant (repeatable); also for status",
    )
    main.add_argument("--since", type=instant, metavar="TIME",
                      help="backfill from this instant: an ISO date or date-time, UTC if it "
                           "has no offset (2026-11-20, 2026-11-20T06:00:00+01:00)")
    main.add_argument("--until", type=instant, metavar="TIME",
                      help="backfill up to this instant, exclusive (the form of --since)")
    main.add_argument("--now", type=instant, metavar="TIME",
                      help="pretend the current time, for demos and tests (the form of "
                           "--since; never later than the clock); also for status and report")
    main.add_argument("--dry-run", action="store_true", help="fetch and transform, write nothing")
    commands = main.add_subparsers(dest="command", metavar="COMMAND")
    status = commands.add_parser(
        "status", help="watermarks, last run and rows stored per participant")
    cli_options.add_late_options(status, "status", main)
    reporting = commands.add_parser("report", help="adherence per participant and day")
    reporting.add_argument("--days", type=days_back, default=14, metavar="N",
                           help="whole days up to yesterday, 1-366 (default 14)")
    reporting.add_argument("--format", choices=FORMATS, default="table",
                           help="table (default), csv or png")
    reporting.add_argument("--out", metavar="FILE", default="-",
                           help="where to write it (default -: standard output)")
    cli_options.add_late_options(reporting, "report", main)
    board = commands.add_parser("dashboard", help="serve the read-only web dashboard "
                                "(docs/dashboard.md)")
    board.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                       help="address to listen on (default 127.0.0.1; any other needs "
                            "DASHBOARD_PASSWORD)")
    board.add_argument("--port", type=port, default=8050, metavar="PORT",
                       help="TCP port 0-65535 (default 8050; 0: any free one)")
    people = commands.add_parser("participant", help="manage the cohort").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    add = people.add_parser("add", help="add a synthetic participant")
    add.add_argument("participant_id", type=participant_id, help=ID_HELP)
    add.add_argument("--timezone", type=zone_name, required=True, metavar="ZONE", help=ZONE_HELP)
    add.add_argument("--seed", type=seed, required=True, metavar="N",
                     help=f"the generator's seed, an integer 0-{MAX_SEED}")
    add.add_argument("--start-date", type=start_date, required=True, metavar="YYYY-MM-DD",
                     help=START_HELP)
    enrol = people.add_parser("enrol", help="add a Google Health participant with a refresh token")
    enrol.add_argument("participant_id", type=participant_id, help=ID_HELP)
    enrol.add_argument("--timezone", type=zone_name, required=True, metavar="ZONE",
                       help=ZONE_HELP)
    enrol.add_argument("--start-date", type=start_date, default=None, metavar="YYYY-MM-DD",
                       help=START_HELP + " (default: today there; kept when enrolling again)")
    enrol.add_argument(
        "--token-file",
        required=True,
        metavar="FILE",
        help="file holding the refresh token, or - for stdin (never the token itself)",
    )
    edit = people.add_parser("edit", help="change a participant's zone or start date")
    edit.add_argument("participant_id", type=participant_id, help=ID_HELP)
    edit.add_argument("--timezone", type=zone_name, metavar="ZONE",
                      help=ZONE_HELP + "; stored daily values move to its midnight")
    edit.add_argument("--start-date", type=start_date, metavar="YYYY-MM-DD", help=START_HELP)
    donate = people.add_parser("import-takeout", help="load a donated Google Takeout archive "
                               "(docs/takeout.md)")
    donate.add_argument("participant_id", type=participant_id, help=ID_HELP)
    donate.add_argument("archive", metavar="ARCHIVE.zip", help="the zip Google Takeout made")
    donate.add_argument("--timezone", type=zone_name, metavar="ZONE",
                        help=ZONE_HELP + "; required for a new id, changes a known one's")
    people.add_parser("list", help="the cohort")
    people.add_parser("needs-consent", help="participants whose Google grant was revoked")
    remove = people.add_parser("remove", help="remove from the cohort")
    remove.add_argument("participant_id", type=participant_id, help=ID_HELP)
    remove.add_argument("--purge", action="store_true",
                        help="also delete its rows, rollups and run log (asks on a terminal)")
    remove.add_argument("--yes", action="store_true",
                        help="purge without asking (needed where no terminal can answer)")
    export.add_parser(commands, participant_id, instant)
    return main


ID_HELP = "the participant's id: 1-64 letters, digits, '_', '.' or '-' (a pseudonym)"
ZONE_HELP = "the participant's IANA time zone, e.g. Europe/Berlin"
START_HELP = f"the first local day to load, YYYY-MM-DD, from {EARLIEST_START_DATE} to today"


def version_text() -> str:
    """ingest.py 0.23.0 (schema migration 9): the code, and the schema it brings."""
    path = next((p for p in SCHEMA_FILES if p.is_file()), None)
    newest = max(schema.migrations(path.read_text())) if path else "unknown"
    return f"%(prog)s {__version__} (schema migration {newest})"


def main(argv: Sequence[str] | None = None) -> int:
    command_line = parser()
    given = sys.argv[1:] if argv is None else list(argv)
    wrong = cli_options.problem(command_line, given)
    if wrong:
        print(f"ingest.py: {wrong}", file=sys.stderr)
        return EXIT_CONFIG
    arguments = cli_options.merge_late_options(command_line.parse_args(given))
    try:
        settings = load_settings(read_environment())
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    problem = check_arguments(arguments, datetime.now(UTC))
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    if arguments.command == "dashboard":  # reads as its own role: no owner connection
        from .dashboard import serve

        return serve(settings, arguments.host, arguments.port, arguments.now)
    if arguments.command is not None:
        # A person waits at a terminal: a database that is not there is said at once. Only
        # the nightly run waits DB_WAIT_SECONDS, for a server that may still be starting.
        settings = replace(settings, db_wait=timedelta(0),
                           db_connect_timeout=INTERACTIVE_CONNECT_TIMEOUT)
    try:
        connection = db.connect(settings)
    except DatabaseUnavailable as error:
        log.error("%s", error)
        return EXIT_DATABASE
    try:
        schema.migrate(connection, next(p for p in SCHEMA_FILES if p.is_file()),
                       monitor=lambda: psycopg2.connect(**settings.db_params()))
        adherence.publish_thresholds(connection, settings)
        access.publish_reader_password(connection, settings)
        if arguments.command == "status":
            return show_status(connection, settings, arguments)
        if arguments.command == "report":
            return show_report(connection, settings, arguments)
        if arguments.command == "participant":
            return manage_participants(connection, settings, arguments)
        if arguments.command == "export":
            return export.run(connection, arguments)
        return run(connection, settings, arguments)
    except schema.SchemaLockTimeout as error:
        log.error("%s", error)
        return EXIT_SCHEMA
    except DatabaseUnavailable as error:
        log.error("%s", error)
        return EXIT_DATABASE
    except psycopg2.Error as error:  # e.g. a DB_USER that may not create the schema
        log.error("database error: %s", str(error).strip().splitlines()[0])
        return EXIT_DATABASE
    finally:
        connection.close()


def check_arguments(arguments: argparse.Namespace, clock: datetime) -> str | None:
    """What is wrong with arguments that make sense one by one but not together; None if
    nothing. Checked before anything is connected, read or written."""
    if arguments.now is not None and arguments.now > clock + CLOCK_SKEW:
        # A --now in the future would store points that have not happened yet and push the
        # watermarks past days that then never load.
        return (f"--now must not be later than the current time ({clock:%Y-%m-%dT%H:%M:%SZ}), "
                f"got {arguments.now.isoformat()}")
    if (arguments.since is not None and arguments.until is not None
            and arguments.since >= arguments.until):
        return (f"--since must be earlier than --until, got {arguments.since.isoformat()} "
                f"and {arguments.until.isoformat()}")
    if arguments.command == "export":
        return export.check(arguments.export_since, arguments.export_until)
    first = getattr(arguments, "start_date", None)
    if first is not None and arguments.timezone is not None:  # edit: the participant's zone
        # A start date is a local day: "today" is the participant's.
        today = clock.astimezone(ZoneInfo(arguments.timezone)).date()
        if first > today:
            return (f"--start-date must be a date from {EARLIEST_START_DATE} to today "
                    f"({today} in {arguments.timezone}), got {first}")
    return None


def run(connection: db.Connection, settings: Settings, arguments: argparse.Namespace) -> int:
    now = arguments.now or datetime.now(UTC)  # not in the future: check_arguments
    options = RunOptions(
        now=now,
        overlap=settings.overlap,
        batch_rows=settings.batch_rows,
        since=arguments.since,
        until=arguments.until,
        dry_run=arguments.dry_run,
        max_backfill_days=settings.max_backfill_days,
    )
    began = time.monotonic()
    participants = _cohort(connection, settings, now, arguments)
    # A Takeout participant's data comes only by `participant import-takeout`.
    donors = {p.participant_id for p in participants if p.source == TAKEOUT}
    if donors:
        log.info("no nightly pull for %d Takeout participant(s): %s", len(donors),
                 ", ".join(sorted(donors)))
        participants = [p for p in participants if p.source != TAKEOUT]
    unknown = set(arguments.participant) - {p.participant_id for p in participants} - donors
    if unknown:
        log.error("unknown participant(s): %s", ", ".join(sorted(unknown)))
        return EXIT_CONFIG
    loaded = read_state(settings.state_file, arguments.dry_run)
    if arguments.dry_run:  # writes nothing, claims nothing: one pass on this connection
        with SourceFactory(settings) as sources:
            outcomes = run_cohort(connection, participants, sources, loaded,
                                  settings.state_file, options)
        summarise(outcomes, True, time.monotonic() - began)
        return EXIT_FAILED if _failed(outcomes) or _corrupt(loaded) else EXIT_OK
    # A run for some participants or an explicit window is the operator's own: nobody joins
    # it. Everything else is "the night", which other processes may be working on already.
    joinable = not (arguments.participant or arguments.since or arguments.until)
    batch = claims.open_or_join(
        connection, now, lambda: [p.participant_id for p in participants], joinable
    )
    options = replace(options, now=batch.run_now)  # a joined batch's, else our own
    job = Job(settings, batch, options, loaded, uuid.uuid4())
    kind = settings.worker_kind
    log.info("batch %d: %d %s worker(s)", batch.batch_id, settings.workers, kind)
    try:
        results = workers.run_workers(job, settings.workers, kind)
    finally:
        claims.leave(connection, batch)
    log.info("peak RSS %.0f MiB (this process)",
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    outcomes = [o for r in results for o in r.outcomes]
    summarise(outcomes, False, time.monotonic() - began)
    if any(r.database_lost for r in results):
        return EXIT_DATABASE
    if any(r.busy for r in results):
        return EXIT_BUSY
    # METRICS_FILE, PUSHGATEWAY_URL; never changes the exit code
    monitoring.publish(connection, settings, outcomes, time.monotonic() - began,
                       not _corrupt(loaded))
    died = any(r.error for r in results)  # a worker that stopped early (its claim is freed)
    return EXIT_FAILED if _failed(outcomes) or _corrupt(loaded) or died else EXIT_OK


def _failed(outcomes: list[Outcome]) -> bool:
    return any(o.status in ("failed", "needs_consent", "held") or o.warning for o in outcomes)


def _corrupt(loaded: state.LoadedState) -> bool:
    return loaded.problem is not None and loaded.problem != "missing"


def _cohort(
    connection: db.Connection, settings: Settings, now: datetime, arguments: argparse.Namespace
) -> list[Participant]:
    """The participants of this run; an empty cohort gets the demo cohort (DEMO_COHORT)."""
    if settings.demo_cohort and db.cohort_is_empty(connection):
        demo = cohort.demo_cohort(settings.seed, now.date(), settings.backfill_days)
        if arguments.dry_run:  # a dry run shows what the demo cohort would load, enrols nobody
            wanted = set(arguments.participant)
            return [p for p in demo if not wanted or p.participant_id in wanted]
        if db.enrol_if_empty(connection, demo):
            log.info("no participants enrolled: loading the demo cohort %s",
                     ", ".join(p.participant_id for p in demo))
    return db.load_participants(connection, arguments.participant)


def read_state(path: Path, dry_run: bool) -> state.LoadedState:
    loaded = state.load(path)
    if loaded.problem == "missing":
        log.info("no state file at %s: watermarks come from the database", path)
    elif loaded.problem is not None:
        kept = path
        if not dry_run:  # kept for inspection; a dry run leaves even a bad file in place
            kept = state.set_aside(path, f"bad-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        log.error("state file %s is %s; kept it as %s and recovered watermarks from the "
                  "database (the run goes on; exit code 1 flags it)", path, loaded.problem, kept)
    return loaded


def summarise(outcomes: list[Outcome], dry_run: bool, seconds: float) -> None:
    by_status: dict[str, int] = {}
    for outcome in outcomes:
        by_status[outcome.status] = by_status.get(outcome.status, 0) + 1
    read = sum(o.rows_read for o in outcomes)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "no participants"
    if dry_run:
        for o in outcomes:
            print(f"{o.participant_id}\t{o.status}\t{o.rows_read} rows\t{o.rows_rejected} rejected")
    log.info(
        "%srun finished: %d participants (%s); %d rows read, %d written, %d rejected "
        "in %.1f s (%.0f rows/s)",
        "dry " if dry_run else "", len(outcomes), statuses, read,
        sum(o.rows_written for o in outcomes), sum(o.rows_rejected for o in outcomes),
        seconds, read / seconds if seconds else 0.0,
    )


def show_status(
    connection: db.Connection, settings: Settings, arguments: argparse.Namespace
) -> int:
    """Per participant and stream: the watermark the next run starts from and where it comes
    from, the rule that bounds it, and a first load the next run would hold; then the rows
    stored per metric, removed participants' included."""
    wanted = set(arguments.participant)
    participants = {p.participant_id: p
                    for p in db.load_participants(connection, arguments.participant)}
    counts = {key: value for key, value in db.stored_counts(connection).items()
              if not wanted or key[0] in wanted}
    unknown = wanted - set(participants) - {pid for pid, _ in counts}
    if unknown:
        print(f"status: no participant {', '.join(sorted(unknown))} (enrolled or stored)",
              file=sys.stderr)
        return EXIT_CONFIG
    loaded = state.load(settings.state_file)
    if loaded.problem:
        print(f"state file {settings.state_file}: {loaded.problem}")
    now = arguments.now or datetime.now(UTC)
    options = RunOptions(now=now, overlap=settings.overlap, batch_rows=settings.batch_rows,
                         max_backfill_days=settings.max_backfill_days)
    notes: list[str] = []
    print("participant\tsource\tlast run\trun ended\tconsent\tmissing scopes\tbound\tstream\t"
          "watermark\tfrom")
    with SourceFactory(settings) as sources:
        for pid, source_kind, status, finished, error, consent, missing in db.participant_report(
            connection
        ):
            if pid not in participants:
                continue
            consent_text = f"needed since {consent:%Y-%m-%d}" if consent else "ok"
            consent_text += "\t" + (" ".join(short_scope(s) for s in missing or ()) or "-")
            last = f"{status or 'never'}" + (f" ({error})" if error else "")
            when = f"{finished:%Y-%m-%dT%H:%M:%SZ}" if finished else "-"
            bound, rows, note = _next_run(connection, sources, participants[pid],
                                          loaded.watermarks.get(pid, {}), options)
            if note:
                notes.append(f"{pid}: {note}")
            for stream, mark, origin in rows:
                print(
                    f"{pid}\t{source_kind}\t{last}\t{when}\t{consent_text}\t{bound}\t{stream}\t"
                    f"{mark.isoformat() if mark else '-'}\t{origin}"
                )
    removed: dict[str, int] = {}
    for (pid, _), (n, _) in counts.items():
        if pid not in participants:
            removed[pid] = removed.get(pid, 0) + n
    for pid, n in sorted(removed.items()):
        notes.append(f"{pid}: removed from the cohort; {n} rows still stored "
                     f"(`participant remove {pid} --purge` deletes them)")
    notes += _expiring(connection, settings, participants, now)
    for note in notes:
        print(note)
    print("\nparticipant\tmetric_type\trows stored\tlatest\tenrolled")
    for (pid, metric), (n, latest) in sorted(counts.items()):
        enrolled = "removed" if pid in removed else "yes"
        print(f"{pid}\t{metric}\t{n}\t{latest.isoformat()}\t{enrolled}")
    return EXIT_OK


def _expiring(connection: db.Connection, settings: Settings,
              shown: dict[str, Participant], now: datetime) -> list[str]:
    """The warnings of Google grants that expire within 2 days (a Google-free cohort has
    none, and never imports the Google source)."""
    if not any(p.source == GOOGLE_HEALTH for p in shown.values()):
        return []
    from .sources.google_health import credentials

    return [credentials.expiry_text(grant, now)
            for grant in credentials.expiring_grants(connection,
                                                     settings.google_oauth_app_status, now)
            if grant.participant_id in shown]


def _next_run(
    connection: db.Connection, sources: SourceFactory, participant: Participant,
    in_file: dict[str, datetime], options: RunOptions,
) -> tuple[str, list[tuple[str, datetime | None, str]], str | None]:
    """The bound, (stream, watermark, origin) rows and a note of a participant's next run."""
    try:
        source = sources(participant.source)
        planned = preview(participant, source.streams, in_file,
                          db.recover_watermark(connection, participant.participant_id),
                          source.delivered_until(participant, options.now), options)
    except psycopg2.Error:
        raise  # the database's own trouble: exit 3, as everywhere
    except Exception as problem:  # one participant's bad zone or settings: shown, not fatal
        text = str(problem).strip()
        return "-", [("-", None, "-")], (f"cannot plan its next run: {type(problem).__name__}: "
                                         f"{text.splitlines()[0] if text else ''}")
    bound = f"{planned.bound.rule} {planned.bound.until:%Y-%m-%dT%H:%M:%SZ}"
    rows = [(stream, planned.marks[stream], planned.origins[stream])
            for stream in sorted(planned.marks)]
    return bound, rows, planned.held or None


def short_scope(scope: str) -> str:
    """googlehealth.sleep.readonly for https://www.googleapis.com/auth/googlehealth.sleep…"""
    return scope.rsplit("/", 1)[-1]


def show_report(
    connection: db.Connection, settings: Settings, arguments: argparse.Namespace
) -> int:
    """The adherence grid of the last --days whole days, as of --now (or the clock)."""
    now = arguments.now or datetime.now(UTC)
    if arguments.format == "png" and arguments.out == "-" and sys.stdout.isatty():
        print("report --format png needs --out FILE (or a redirected standard output)",
              file=sys.stderr)
        return EXIT_CONFIG
    shown = report.read(connection, now, arguments.days)
    if arguments.format == "png":
        payload = report.png_bytes(shown, settings.no_upload_hours)
    elif arguments.format == "csv":
        payload = report.csv_text(shown).encode()
    else:
        payload = report.table(shown, settings.no_upload_hours).encode()
    if arguments.out == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
    else:
        try:
            Path(arguments.out).write_bytes(payload)
        except OSError as error:
            print(f"report: cannot write {arguments.out}: {error.strerror}", file=sys.stderr)
            return EXIT_CONFIG
        log.info("report: %s written (%d participants, %d days)", arguments.out,
                 len(shown.participants), len(shown.dates))
    return EXIT_OK


def manage_participants(
    connection: db.Connection, settings: Settings, arguments: argparse.Namespace
) -> int:
    action = arguments.action
    if action == "list":
        print("participant\tsource\ttimezone\tstart date\tseed")
        for p in db.load_participants(connection):
            print(
                f"{p.participant_id}\t{p.source}\t{p.timezone}\t{p.start_date}\t"
                f"{'' if p.seed is None else p.seed}"
            )
        return EXIT_OK
    if action == "add":
        participant = Participant(
            arguments.participant_id,
            arguments.timezone,
            SYNTHETIC,
            arguments.start_date,
            arguments.seed,
        )
        return _insert(connection, participant)
    if action == "remove":
        return cohort.remove(connection, arguments.participant_id, arguments.purge,
                             arguments.yes)
    if action == "edit":
        return cohort.edit(connection, arguments.participant_id, arguments.timezone,
                           arguments.start_date, datetime.now(UTC))
    if action == "import-takeout":
        from . import takeout_import

        return takeout_import.command(connection, settings, arguments.participant_id,
                                      arguments.archive, arguments.timezone)
    if action == "needs-consent":
        from .sources.google_health import credentials
        from .sources.google_health.transform import SETTINGS

        # stdout is the list a script reads (who must consent again); a grant that only
        # expires soon is a warning for the operator, on stderr.
        now = datetime.now(UTC)
        for grant in credentials.expiring_grants(connection, settings.google_oauth_app_status,
                                                 now):
            print(credentials.expiry_text(grant, now), file=sys.stderr)
        for pid, since, missing in credentials.needs_consent(connection):
            if since is not None:
                print(f"{pid}\tneeds consent since {since.isoformat()}")
            data_scopes = [short_scope(s) for s in missing if s != SETTINGS]
            if data_scopes:
                print(f"{pid}\tgrant lacks {' '.join(data_scopes)}: those streams are not "
                      "loaded until they consent again")
            if SETTINGS in missing:
                print(f"{pid}\tgrant lacks {short_scope(SETTINGS)} (optional: without device "
                      "sync times, each run re-reads LATE_SYNC_HORIZON_DAYS)")
        return EXIT_OK
    return _enrol(connection, arguments)


def _enrol(connection: db.Connection, arguments: argparse.Namespace) -> int:
    from .sources.google_health import credentials

    try:
        # The token never comes from argv: `ps` shows every process's arguments to all users.
        refresh_token = credentials.read_refresh_token(arguments.token_file)
        credentials.enrol(connection, arguments.participant_id, arguments.timezone,
                          arguments.start_date, refresh_token)
    except credentials.EnrolError as error:
        print(f"cannot enrol {arguments.participant_id}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"enrolled {arguments.participant_id} (google_health, {arguments.timezone}); "
          "the next run loads it")
    return EXIT_OK


def _insert(connection: db.Connection, participant: Participant) -> int:
    try:
        db.add_participants(connection, [participant])
    except psycopg2.errors.UniqueViolation:
        connection.rollback()
        print(f"cannot add {participant.participant_id}: {participant.participant_id} is "
              "already enrolled (`participant edit` changes its zone or start date)",
              file=sys.stderr)
        return EXIT_CONFIG
    except psycopg2.IntegrityError as error:
        connection.rollback()
        print(
            f"cannot add {participant.participant_id}: {str(error).splitlines()[0]}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    print(
        f"added {participant.participant_id} ({participant.source}, {participant.timezone}, "
        f"from {participant.start_date}); the next run backfills it"
    )
    return EXIT_OK
