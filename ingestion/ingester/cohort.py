"""The cohort's commands that need more than one statement: the demo cohort a new
installation loads when nobody is enrolled, `participant edit`, and `participant remove`
with its confirmation."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from . import db
from .model import EARLIEST_START_DATE, SYNTHETIC, Participant

EXIT_OK, EXIT_DECLINED, EXIT_BAD = 0, 1, 2

# Three zones with different DST rules (none, northern, and the date-line side), so the
# demo data already exercises the time-zone handling a real cohort needs.
DEMO_ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")


def demo_cohort(seed: int, today: date, backfill_days: int) -> list[Participant]:
    start = today - timedelta(days=backfill_days)
    return [
        Participant(f"demo-{n:02d}", zone, SYNTHETIC, start, seed + n)
        for n, zone in enumerate(DEMO_ZONES, start=1)
    ]


def edit(connection: db.Connection, participant_id: str, timezone: str | None,
         start_date: date | None, clock: datetime) -> int:
    """`participant edit`: a new zone and/or start date, with what the next run does about
    it. The stored data stays; a new zone moves the daily values to its midnight."""
    if timezone is None and start_date is None:
        return _refuse(f"participant edit {participant_id}: give --timezone or --start-date")
    found = db.load_participants(connection, [participant_id])
    if not found:
        return _refuse(f"participant edit: no participant {participant_id!r}")
    zone = ZoneInfo(timezone or found[0].timezone)
    today = clock.astimezone(zone).date()
    if start_date is not None and start_date > today:  # the later bound needs the zone
        return _refuse(f"--start-date must be a date from {EARLIEST_START_DATE} to today "
                       f"({today} in {zone.key}), got {start_date}")
    try:
        edited = db.edit_participant(connection, participant_id, timezone, start_date)
    except LookupError as error:  # removed meanwhile
        return _refuse(f"participant edit: {error}")
    after = edited.after
    print(f"edited {participant_id}: timezone {after.timezone}, start date {after.start_date}")
    if edited.daily_values_moved:
        print(f"{edited.daily_values_moved} daily values moved to {after.timezone} midnight")
    if after.start_date < edited.before.start_date and db.stored_rows(connection,
                                                                       participant_id):
        print(f"the nightly run goes on from its watermark; to load the days from "
              f"{after.start_date}, run once: ingest.py --participant {participant_id} "
              f"--since {after.start_date}")
    elif after.start_date > edited.before.start_date:
        earlier = db.stored_rows(connection, participant_id,
                                 before=datetime.combine(after.start_date, datetime.min.time(),
                                                         tzinfo=after.zone))
        if earlier:
            print(f"{earlier} rows stored before {after.start_date} stay stored")
    return EXIT_OK


def remove(connection: db.Connection, participant_id: str, purge: bool, confirmed: bool) -> int:
    """`participant remove`; with --purge, asks first on a terminal and needs --yes where
    nobody can answer (a purge cannot be undone)."""
    if purge and not confirmed:
        rows = db.stored_rows(connection, participant_id)
        question = (f"participant remove {participant_id} --purge: delete {rows} rows of "
                    f"{participant_id}, its rollups and its run log?")
        if not sys.stdin.isatty():
            return _refuse(f"{question} Nothing deleted: add --yes to confirm (no terminal "
                           "to ask on)")
        print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return EXIT_DECLINED
    try:
        deleted = db.remove_participant(connection, participant_id, purge)
    except LookupError as error:
        return _refuse(f"participant remove: {error}")
    print(f"removed {participant_id}; {deleted} rows deleted from raw_data")
    return EXIT_OK


def _refuse(line: str) -> int:
    print(line, file=sys.stderr)
    return EXIT_BAD
