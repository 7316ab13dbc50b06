"""The command line a coordinator meets on day one (issue 23): help with formats, global
options in either place, one clear line for a typo or a duplicate id, `--version`, a header
on `participant list`, `participant edit`, a confirmed `remove --purge`, removed
participants in `status`, and interactive commands that fail fast without a database."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
from ingester import cli
from support import INGEST, ingest_env, ok, query, run_ingest, unused_port

DAY = "2026-03-10T12:00:00+00:00"  # a run pinned here loads 2026-03-09 and half of the 10th


@pytest.fixture
def offline(tmp_path):
    """A database that is not there, and a wait that would show if a command took it."""
    db_env = {"DB_HOST": "127.0.0.1", "DB_PORT": str(unused_port()), "DB_NAME": "wearables",
              "DB_USER": "postgres"}
    return ingest_env(db_env, tmp_path, DB_WAIT_SECONDS="3")


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def add(env, pid: str, zone: str = "Europe/Berlin", start: str = "2026-03-09", seed: str = "1"):
    return run_ingest(env, "participant", "add", pid, "--timezone", zone, "--seed", seed,
                      "--start-date", start)


# --- help, version, typos: no database needed ---------------------------------------------


def every_action(parser: argparse.ArgumentParser, path: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_action(sub, f"{path} {name}".strip())
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


def test_every_option_has_help_and_a_value_shows_its_form():
    for path, action in every_action(cli.parser()):
        where = f"{path or 'ingest.py'} {'/'.join(action.option_strings) or action.dest}"
        assert action.help, f"{where} has no help text"
        if action.option_strings and action.nargs != 0 and not action.choices:
            assert action.metavar, f"{where} does not show the form of its value"


def test_version_prints_the_version_and_the_schema(offline):
    done = ok(run_ingest(offline, "--version"))
    assert re.fullmatch(r"ingest\.py \d+\.\d+\.\d+ \(schema migration \d+\)\n", done.stdout)


def test_a_misspelt_option_is_named_with_the_right_one(offline):
    line = one_line(run_ingest(offline, "--participants", "stu-001"), 2)
    assert "--participants" in line and "did you mean --participant?" in line
    assert "invalid choice" not in line


@pytest.mark.parametrize("args, option, belongs", [
    (("participant", "list", "--now", "2026-03-10"), "--now", "a run, status, report or dashboard"),
    (("--since", "2026-03-01", "status"), "--since", "a run"),
    (("report", "--dry-run"), "--dry-run", "a run"),
    (("--participant", "p1", "report"), "--participant", "a run or status"),
])
def test_a_global_option_where_it_does_not_apply_says_where_it_belongs(offline, args, option,
                                                                       belongs):
    line = one_line(run_ingest(offline, *args), 2)
    assert option in line and belongs in line, line


# --- failing fast --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("status",), ("report",), ("participant", "list"),
                                     ("participant", "remove", "p1", "--yes")])
def test_interactive_commands_do_not_wait_for_the_database(offline, command):
    line = one_line(run_ingest(offline, *command), 3)
    assert f"127.0.0.1:{offline['DB_PORT']}" in line, line
    assert "waiting" not in line and "waited" not in line, line


# --- against the database -----------------------------------------------------------------


def test_global_options_work_after_the_subcommand(env):
    ok(add(env, "p1"))
    before = ok(run_ingest(env, "--now", DAY, "report", "--days", "2", "--format", "csv"))
    after = ok(run_ingest(env, "report", "--days", "2", "--format", "csv", "--now", DAY))
    assert after.stdout == before.stdout and "2026-03-09" in after.stdout


def test_status_for_one_participant_shows_only_that_participant(env):
    ok(add(env, "p1"))
    ok(add(env, "p2"))
    shown = ok(run_ingest(env, "status", "--participant", "p2", "--now", DAY)).stdout
    first = [line.split("\t")[0] for line in shown.split("\n\n")[0].splitlines()
             if "\t" in line and not line.startswith("participant\t")]
    assert set(first) == {"p2"}, shown
    before = ok(run_ingest(env, "--participant", "p2", "--now", DAY, "status")).stdout
    assert before == shown


def test_status_of_an_unknown_participant_is_one_line(env):
    line = one_line(run_ingest(env, "status", "--participant", "nobody"), 2)
    assert "nobody" in line


def test_participant_list_has_a_header(env):
    ok(add(env, "p1"))
    lines = ok(run_ingest(env, "participant", "list")).stdout.splitlines()
    assert lines[0].split("\t") == ["participant", "source", "timezone", "start date", "seed"]
    assert lines[1].split("\t") == ["p1", "synthetic", "Europe/Berlin", "2026-03-09", "1"]


def test_adding_an_existing_id_is_one_clear_line(env):
    ok(add(env, "p1"))
    line = one_line(add(env, "p1", seed="2"), 2)
    assert "p1 is already enrolled" in line and "participant edit" in line, line
    assert "duplicate key" not in line and "constraint" not in line
    assert query(env, "SELECT seed FROM participants") == [(1,)]


def test_edit_changes_the_start_date(env):
    ok(add(env, "p1", start="2016-03-09"))  # the typo: 2016 for 2026
    done = ok(run_ingest(env, "participant", "edit", "p1", "--start-date", "2026-03-09"))
    assert "p1" in done.stdout and "2026-03-09" in done.stdout
    assert query(env, "SELECT start_date, timezone FROM participants") == [
        (date(2026, 3, 9), "Europe/Berlin")]
    ok(run_ingest(env, "--now", DAY))  # no longer held: the first load is a day and a half
    assert query(env, "SELECT count(*) > 0 FROM raw_data")[0][0]


def test_edit_of_the_zone_moves_daily_values_to_the_new_midnight(env):
    ok(add(env, "p1"))
    ok(run_ingest(env, "--now", DAY))
    daily_before = query(env, "SELECT metric_type, value FROM raw_data "
                              "WHERE metric_type = 'steps_daily' ORDER BY 1, 2")
    assert daily_before
    ok(run_ingest(env, "participant", "edit", "p1", "--timezone", "Asia/Tokyo"))
    stamps = query(env, """SELECT DISTINCT ("timestamp" AT TIME ZONE 'Asia/Tokyo')::time
                           FROM raw_data WHERE metric_type = 'steps_daily'""")
    assert stamps == [(datetime.min.time(),)]  # local midnight in Tokyo now
    assert query(env, "SELECT metric_type, value FROM raw_data "
                      "WHERE metric_type = 'steps_daily' ORDER BY 1, 2") == daily_before
    assert query(env, "SELECT timezone FROM participants") == [("Asia/Tokyo",)]


@pytest.mark.parametrize("args, phrase", [
    (("participant", "edit", "nobody", "--start-date", "2026-03-01"), "no participant 'nobody'"),
    (("participant", "edit", "p1"), "--timezone or --start-date"),
])
def test_a_bad_edit_is_one_line_and_changes_nothing(env, args, phrase):
    ok(add(env, "p1"))
    line = one_line(run_ingest(env, *args), 2)
    assert phrase in line, line
    assert query(env, "SELECT start_date, timezone FROM participants") == [
        (date(2026, 3, 9), "Europe/Berlin")]


def stored(env) -> int:
    return query(env, "SELECT count(*) FROM raw_data")[0][0]


def test_purge_without_a_terminal_needs_yes(env):
    ok(add(env, "p1"))
    ok(run_ingest(env, "--now", DAY))
    rows = stored(env)
    line = one_line(run_ingest(env, "participant", "remove", "p1", "--purge"), 2)
    assert "--yes" in line and str(rows) in line, line
    assert stored(env) == rows and query(env, "SELECT count(*) FROM participants") == [(1,)]
    done = ok(run_ingest(env, "participant", "remove", "p1", "--purge", "--yes"))
    assert f"{rows} rows deleted" in done.stdout
    assert stored(env) == 0


@pytest.mark.parametrize("answer, deleted", [("n\n", False), ("y\n", True)])
def test_purge_on_a_terminal_asks_first(env, answer, deleted):
    ok(add(env, "p1"))
    ok(run_ingest(env, "--now", DAY))
    rows = stored(env)
    controller, terminal = os.openpty()
    try:
        with subprocess.Popen([sys.executable, str(INGEST), "participant", "remove", "p1",
                               "--purge"], env=env, cwd=env["HOME"], stdin=terminal,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as process:
            os.write(controller, answer.encode())
            out, err = process.communicate(timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    assert f"delete {rows} rows" in err, err
    assert process.returncode == (0 if deleted else 1), (out, err)
    assert stored(env) == (0 if deleted else rows)


def test_status_marks_removed_participants_whose_data_is_stored(env):
    ok(add(env, "p1"))
    ok(add(env, "p2"))
    ok(run_ingest(env, "--now", DAY))
    ok(run_ingest(env, "participant", "remove", "p1"))
    shown = ok(run_ingest(env, "status")).stdout
    stored_table = shown.split("\n\n")[-1].splitlines()
    header = stored_table[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in stored_table[1:]]
    assert {r["participant"]: r["enrolled"] for r in rows} == {"p1": "removed", "p2": "yes"}
    assert re.search(r"^p1: removed from the cohort; \d+ rows still stored", shown, re.M), shown


# --- the CLI after `make run` -------------------------------------------------------------


FAKE_TSDB = """#!/bin/sh
# Stands in for scripts/timescaledb.sh: the test's own database on the shared server.
[ "$1" = start ] || exit 2
printf 'DB_HOST=%s\\nDB_PORT=%s\\nDB_NAME=%s\\nDB_USER=%s\\n' {host} {port} {name} {user}
"""


def test_the_cli_reaches_the_database_that_make_started(db, tmp_path):
    """`make db-start` (and `make run`, which starts the database the same way) leaves
    .tsdb.env behind; a command from the same directory with nothing set uses it."""
    fake = tmp_path / "fake-tsdb.sh"
    fake.write_text(FAKE_TSDB.format(host=db.env["DB_HOST"], port=db.env["DB_PORT"],
                                     name=db.env["DB_NAME"], user=db.env["DB_USER"]))
    fake.chmod(0o755)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    made = subprocess.run(["make", "-C", str(checkout), "-f", str(INGEST.parents[1] / "Makefile"),
                           "db-start", f"TSDB={fake}"], capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    assert (checkout / ".tsdb.env").is_file()
    nothing_set = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(checkout),
                   "STATE_FILE": str(checkout / "state" / "last_run.json")}
    ok(run_ingest(nothing_set, "participant", "add", "p1", "--timezone", "UTC", "--seed", "1",
                  "--start-date", "2026-03-09"))
    shown = ok(run_ingest(nothing_set, "status")).stdout
    assert "p1\tsynthetic" in shown
    # A .env of the user's wins over it (the Docker path's settings, say).
    (checkout / ".env").write_text(f"DB_PORT={unused_port()}\nDB_WAIT_SECONDS=0\n")
    assert run_ingest(nothing_set, "status").returncode == 3


def test_an_edit_start_date_must_not_lie_in_the_future(env):
    ok(add(env, "p1"))
    later = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    line = one_line(run_ingest(env, "participant", "edit", "p1", "--start-date", later), 2)
    assert "--start-date" in line


def test_rejected_points_are_counted_in_a_sentence(env):
    ok(add(env, "p1", start="2026-03-07"))
    log = ok(run_ingest(env, "--now", DAY)).stderr
    line = next(line for line in log.splitlines() if " p1 ok [" in line)
    total, sentence = re.search(r", (\d+) rejected \((.*)\) in ", line).groups()
    counted = {reason: int(n) for n, reason in (part.split(" ", 1)
                                                for part in sentence.split("; "))}
    assert sum(counted.values()) == int(total), line
    # The demo's nights overlap, and wearipedia's sleep stages run past their night's end.
    assert {"sleep minutes inside the night before's sleep, which is kept",
            "sleep stages after their session's end"} <= set(counted), line
    assert "{" not in line and "_" not in line.split("rejected")[1], line
