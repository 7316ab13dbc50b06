"""`ingest.py report` tells our failures from the participants': every row carries the state
of the ingestion, and the days we failed to load raise no compliance flag, in the table, the
CSV and the PNG, on the real database."""

from __future__ import annotations

import csv
import io
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg2
from ingester import adherence, report
from ingester.model import GOOGLE_HEALTH, SYNTHETIC, Participant, Row, Window
from support import ARTEFACTS, load_batch, ok, query, run_ingest

BERLIN = ZoneInfo("Europe/Berlin")
NOW = "2026-03-09T08:00:00Z"
START = date(2026, 3, 2)


def local_day(day: date) -> Window:
    start = datetime.combine(day, datetime.min.time(), BERLIN).astimezone(UTC)
    return Window(start, datetime.combine(day + timedelta(days=1), datetime.min.time(),
                                          BERLIN).astimezone(UTC))


def every_minute(pid: str, window: Window) -> list[Row]:
    minutes = int((window.end - window.start).total_seconds() // 60)
    return [Row(window.start + timedelta(minutes=n, seconds=10), pid, "heart_rate", 70.0)
            for n in range(minutes)]


def enrol(env, pid, start=START, source=SYNTHETIC):
    query(env, "INSERT INTO participants VALUES (%s, 'Europe/Berlin', %s, %s, %s)",
          (pid, source, start, 1 if source == SYNTHETIC else None))


def worn(db, pid, days: int) -> None:
    """Full wear on the first `days` days from START (the pipeline's slice transaction)."""
    participant = Participant(pid, "Europe/Berlin", SYNTHETIC, START, 1)
    for n in range(days):
        window = local_day(START + timedelta(days=n))
        assert load_batch(db, participant, window, every_minute(pid, window)).status == "ok"


def logged(env, pid, status, watermark, error=None):
    """A run-log row as the pipeline writes it at the end of a run."""
    query(env, "INSERT INTO ingest_runs (run_id, participant_id, status, error, started_at, "
               "watermark, window_start, window_end) VALUES (%s, %s, %s, %s, now(), %s, %s, %s)",
          (uuid.uuid4(), pid, status, error, watermark, watermark, watermark))


def cohort(db, env):
    """a-ok wears it every day; b-stopped stopped wearing it after 3 days although we load it
    every night (their flag); c-failed wore it for 3 days, and then our loads failed (our
    flag, not theirs); d-held is held (a typo'd start date) and e-google failed (no client
    id), both by a real run."""
    for pid in ("a-ok", "b-stopped", "c-failed"):
        enrol(env, pid)
    worn(db, "a-ok", 7)
    today = Window(local_day(date(2026, 3, 9)).start, datetime(2026, 3, 9, 8, tzinfo=UTC))
    load_batch(db, Participant("a-ok", "Europe/Berlin", SYNTHETIC, START, 1), today,
               every_minute("a-ok", today))
    worn(db, "b-stopped", 3)
    worn(db, "c-failed", 3)
    logged(env, "a-ok", "ok", "2026-03-09T07:00:00Z")
    logged(env, "b-stopped", "ok", "2026-03-09T07:00:00Z")
    logged(env, "c-failed", "ok", "2026-03-05T00:00:00Z")  # day 3 (03-04) loaded whole
    logged(env, "c-failed", "failed", None, "PayloadError: malformed payload")
    enrol(env, "d-held", date(2025, 1, 1))
    enrol(env, "e-google", source=GOOGLE_HEALTH)
    query(env, "INSERT INTO google_credentials (participant_id, refresh_token) VALUES "
               "('e-google', 'not-a-real-token')")
    done = run_ingest(env, "--now", NOW, "--participant", "d-held", "--participant", "e-google")
    assert done.returncode == 1, done.stderr


def test_the_table_shows_each_ingestion_state_and_flags_only_what_the_participant_did(db, env):
    cohort(db, env)
    table = ok(run_ingest(env, "--now", NOW, "report", "--days", "7")).stdout
    lines = {line.split()[0]: line for line in table.splitlines()[1:-1]}
    assert lines["a-ok"].split()[1:9] == ["ok", *["100%"] * 7]
    assert lines["a-ok"].split()[9:] == []  # no flag

    # Their flags: we loaded every night, they stopped.
    assert lines["b-stopped"].split()[1:9] == ["ok", "100%", "100%", "100%", "-", "-", "-",
                                               "-"]
    assert "low wear on 4 of the last 7 days" in lines["b-stopped"]
    assert "no upload for 48 h" in lines["b-stopped"]

    # Ours: the days after the last load are not loaded ('?'), and flag nothing.
    cells = lines["c-failed"].split()
    assert cells[1:9] == ["failed", "100%", "100%", "100%", "?", "?", "?", "?"]
    assert "PayloadError: malformed payload" in lines["c-failed"]
    assert "low wear" not in lines["c-failed"] and "no upload" not in lines["c-failed"]

    assert lines["d-held"].split()[1:9] == ["held", *["?"] * 7]
    assert "MAX_BACKFILL_DAYS (92)" in lines["d-held"]
    assert lines["e-google"].split()[1:9] == ["failed", *["?"] * 7]
    assert "GOOGLE_CLIENT_ID" in lines["e-google"]
    for pid in ("d-held", "e-google"):
        assert "low wear" not in lines[pid] and "no upload" not in lines[pid], lines[pid]
    assert "? not loaded" in table.splitlines()[-1]


def test_the_csv_carries_the_ingestion_state_on_every_line(db, env, tmp_path):
    cohort(db, env)
    out = tmp_path / "report.csv"
    ok(run_ingest(env, "--now", NOW, "report", "--days", "7", "--format", "csv",
                  "--out", str(out)))
    lines = list(csv.DictReader(io.StringIO(out.read_text())))
    by_participant: dict[str, list[dict[str, str]]] = {}
    for line in lines:
        by_participant.setdefault(line["participant_id"], []).append(line)
    assert {p: len(days) for p, days in by_participant.items()} == {
        "a-ok": 7, "b-stopped": 7, "c-failed": 7, "d-held": 7, "e-google": 7}
    states = {p: {(d["ingestion_state"], d["ingestion_error"][:12]) for d in days}
              for p, days in by_participant.items()}
    assert states == {
        "a-ok": {("ok", "")}, "b-stopped": {("ok", "")},
        "c-failed": {("failed", "PayloadError")}, "d-held": {("held", "a first load")},
        "e-google": {("failed", "ConfigError:")},
    }
    loaded = {p: [d["loaded"] for d in days] for p, days in by_participant.items()}
    assert loaded["c-failed"] == ["True"] * 3 + ["False"] * 4
    assert loaded["b-stopped"] == ["True"] * 7
    assert set(loaded["d-held"]) == {"False"}
    flagged = {p: {(d["no_upload"], d["low_wear"]) for d in days}
               for p, days in by_participant.items()}
    assert flagged["b-stopped"] == {("True", "True")}
    for pid in ("a-ok", "c-failed", "d-held", "e-google"):
        assert flagged[pid] == {("False", "False")}, pid
    assert by_participant["a-ok"][0]["last_successful_load"] != ""
    assert by_participant["d-held"][0]["last_successful_load"] == ""


def test_the_png_names_each_rows_state_and_flags_and_marks_days_not_yet_over(db, env,
                                                                              tmp_path):
    cohort(db, env)
    # At 08:00 UTC, Berlin's 03-09 is not over: a report of 7 days up to today shows it.
    shown = _grid(env, datetime(2026, 3, 9, 8, tzinfo=UTC), date(2026, 3, 3), 7)
    figure = report.heatmap(shown, 48)
    grid_axes = figure.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in grid_axes.texts}
    rows = list(shown.participants)
    today = len(shown.dates) - 1
    assert cells[(rows.index("a-ok"), today)].endswith("~")  # not over yet
    assert cells[(rows.index("a-ok"), 0)] == "100"
    assert cells[(rows.index("c-failed"), 3)] == "?"
    # Each row's note sits on its row, right of the grid.
    row_notes = [next(t.get_text() for t in grid_axes.texts
                      if t.get_position()[0] > today + 1 and t.get_position()[1] == r)
                 for r in range(len(rows))]
    notes = {t.get_text() for t in figure.texts}
    assert "low wear on 4 of the last 7 days" in row_notes[rows.index("b-stopped")]
    assert "no upload for 48 h" in row_notes[rows.index("b-stopped")]
    assert "failed" in row_notes[rows.index("c-failed")]
    assert "PayloadError" in row_notes[rows.index("c-failed")]
    assert "low wear" not in row_notes[rows.index("c-failed")]
    assert "held" in row_notes[rows.index("d-held")]
    assert row_notes[rows.index("a-ok")] == "ok"
    assert any("~ day not over" in n for n in notes)
    # Through the command too: a PNG of the promised size.
    png = tmp_path / "report.png"
    ok(run_ingest(env, "--now", NOW, "report", "--days", "7", "--format", "png",
                  "--out", str(png)))
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == report.heatmap_size(5, 7)
    ARTEFACTS.mkdir(exist_ok=True)
    shutil.copyfile(png, ARTEFACTS / "report.png")  # to look at


def _grid(env, as_of: datetime, first: date, days: int) -> report.Grid:
    connection = psycopg2.connect(host=env["DB_HOST"], port=env["DB_PORT"],
                                  dbname=env["DB_NAME"], user=env["DB_USER"])
    try:
        dates = tuple(first + timedelta(days=n) for n in range(days))
        return report.grid(dates, adherence.days(connection, as_of, dates[0]),
                           adherence.flags(connection, as_of))
    finally:
        connection.close()
