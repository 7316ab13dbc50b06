"""`ingest.py report`: the participant x day adherence grid as a table, CSV or PNG heatmap.

Pure functions of what adherence.days() and adherence.flags() read (`read` reads them).
The PNG is drawn with matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from . import adherence
from .adherence import INGESTION_STATES, Day, Flags
from .db import Connection

FORMATS = ("table", "csv", "png")
CSV_COLUMNS = (
    "participant_id", "day", "complete", "day_minutes", "wear_minutes", "wear_fraction",
    "valid_day", "has_data", "first_sample", "last_sample", "last_sync", "battery",
    "no_upload", "low_wear", "needs_consent",
    # Ours, not the participant's: was the day loaded, and how the ingestion stands.
    "loaded", "ingestion_state", "ingestion_error", "last_successful_load",
)
# The heatmap's geometry, in inches at DPI: a cell per day and participant, margins for the
# names, the title and the colour bar. A fixed size (no tight bbox) keeps it predictable.
DPI = 100
CELL_WIDTH, CELL_HEIGHT = 0.55, 0.4
LEFT_MARGIN, RIGHT_MARGIN, TOP_MARGIN, BOTTOM_MARGIN = 2.6, 1.3, 0.7, 1.0
# Right of the colour bar: each row's ingestion state and flags in words.
NOTES_WIDTH = 4.6
NOTE_CHARACTERS = 80  # a longer note (a held run's advice) is cut with an ellipsis
MISSING_COLOUR = "#9e9e9e"  # a day with no data at all: grey, outside the colour map
NOT_ENROLLED_COLOUR = "#ffffff"  # before the participant's start date
FLAG_COLOUR = "#c62828"
NOT_LOADED_COLOUR = "#c5d5e8"  # a day we failed to load: ours, not the participant's
OURS_COLOUR = "#1f4e96"
LEGEND = ("wear % of the day's minutes; ! not a valid day, ~ day not over, "
          "? not loaded (our failure, not theirs), - no data, blank: not enrolled yet")


@dataclass(frozen=True)
class Grid:
    """The report's participants (rows) and dates (columns), and each cell's day if any."""

    dates: tuple[date, ...]
    participants: tuple[str, ...]
    cells: dict[tuple[str, date], Day]
    flags: dict[str, Flags]

    def cell(self, participant_id: str, day: date) -> Day | None:
        return self.cells.get((participant_id, day))


def report_dates(today: date, days: int) -> tuple[date, ...]:
    """The `days` dates up to yesterday: the report shows whole days, oldest first."""
    return tuple(today - timedelta(days=n) for n in range(days, 0, -1))


def read(connection: Connection, now: datetime, days: int) -> Grid:
    """The report of the `days` whole days before `now`, as `ingest.py report` and the
    dashboard's CSV show it (the module's one read)."""
    dates = report_dates(now.astimezone(UTC).date(), days)
    return grid(dates, adherence.days(connection, now, dates[0]),
                adherence.flags(connection, now))


def grid(dates: Sequence[date], days: Iterable[Day], flags: Iterable[Flags]) -> Grid:
    by_participant = {f.participant_id: f for f in flags}
    wanted = set(dates)
    cells = {(d.participant_id, d.day): d for d in days if d.day in wanted}
    return Grid(tuple(dates), tuple(sorted(by_participant)), cells, by_participant)


def table(report: Grid, no_upload_hours: int) -> str:
    """Per participant: the ingestion's state, wear % per day ('-' no data, '!' not a valid
    day, '~' day not over, '?' not loaded, blank before the start date), then the flags and
    the error of a run that failed."""
    name_width = max([len("participant"), *(len(p) for p in report.participants)])
    state_width = max(len(words) for words in INGESTION_STATES.values())
    header = ["participant".ljust(name_width), "ingestion".ljust(state_width),
              *(f"{d:%m-%d}".rjust(6) for d in report.dates), "flags"]
    lines = [" ".join(header)]
    for pid in report.participants:
        flags = report.flags[pid]
        cells = [_table_cell(report.cell(pid, day)).rjust(6) for day in report.dates]
        tail = "; ".join(text for text in (flags.describe(no_upload_hours),
                                           flags.ingestion_error) if text)
        lines.append(" ".join([pid.ljust(name_width),
                               INGESTION_STATES[flags.ingestion_state].ljust(state_width),
                               *cells, tail]).rstrip())
    lines.append(LEGEND)
    return "\n".join(lines) + "\n"


def cell_text(day: Day) -> str:
    """A day's wear in a cell: '12%!~', '?' for a day not loaded, '-' for no data."""
    if not day.has_data:
        return "-" if day.loaded else "?"
    mark = "" if day.valid_day else "!"
    if not day.loaded:
        mark = "?"  # not judged: we may have only part of it
    mark += "" if day.complete else "~"
    return f"{round(day.wear_fraction * 100)}%{mark}"


def _table_cell(day: Day | None) -> str:
    return "" if day is None else cell_text(day)


def row_note(flags: Flags, no_upload_hours: int) -> str:
    """A row's ingestion state, flags and error in one line of at most NOTE_CHARACTERS."""
    note = INGESTION_STATES[flags.ingestion_state]
    described = flags.describe(no_upload_hours)
    note += f"; {described}" if described else ""
    note += f": {flags.ingestion_error}" if flags.ingestion_error else ""
    return note if len(note) <= NOTE_CHARACTERS else note[: NOTE_CHARACTERS - 1] + "\u2026"


def csv_text(report: Grid) -> str:
    """One line per participant and day of the report (the view's numbers, unrounded)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for pid in report.participants:
        flag = report.flags[pid]
        for day_date in report.dates:
            day = report.cell(pid, day_date)
            if day is None:
                continue
            writer.writerow([
                pid, day.day.isoformat(), day.complete, day.day_minutes, day.wear_minutes,
                repr(day.wear_fraction), day.valid_day, day.has_data,
                _iso(day.first_sample), _iso(day.last_sample), _iso(day.last_sync),
                "" if day.battery is None else day.battery,
                flag.no_upload, flag.low_wear, flag.needs_consent,
                day.loaded, flag.ingestion_state, flag.ingestion_error or "",
                _iso(flag.last_ok_at),
            ])
    return out.getvalue()


def _iso(value) -> str:
    return "" if value is None else value.isoformat()


def heatmap_size(participants: int, days: int) -> tuple[int, int]:
    """Pixel width and height of the PNG for that many rows and columns."""
    width = LEFT_MARGIN + RIGHT_MARGIN + NOTES_WIDTH + CELL_WIDTH * days
    height = TOP_MARGIN + BOTTOM_MARGIN + CELL_HEIGHT * max(participants, 1)
    return round(width * DPI), round(height * DPI)


def heatmap(report: Grid, no_upload_hours: int):
    """The figure: a row per participant, a column per day, coloured by wear fraction."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows, columns = len(report.participants), len(report.dates)
    width, height = heatmap_size(rows, columns)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((
        LEFT_MARGIN * DPI / width, BOTTOM_MARGIN * DPI / height,
        CELL_WIDTH * columns * DPI / width, CELL_HEIGHT * max(rows, 1) * DPI / height,
    ))
    wear = np.full((max(rows, 1), columns), np.nan)
    background = np.zeros((max(rows, 1), columns, 4))
    background[:] = (1, 1, 1, 1)
    for r, pid in enumerate(report.participants):
        for c, day_date in enumerate(report.dates):
            day = report.cell(pid, day_date)
            if day is None:
                continue
            if not day.loaded:
                background[r, c] = _rgba(NOT_LOADED_COLOUR)
            elif day.has_data:
                wear[r, c] = day.wear_fraction
            else:
                background[r, c] = _rgba(MISSING_COLOUR)
    axes.imshow(background, aspect="auto", interpolation="nearest")
    colours = ListedColormap(
        ["#d73027", "#f46d43", "#fdae61", "#fee08b", "#d9ef8b", "#a6d96a", "#66bd63", "#1a9850"]
    )
    image = axes.imshow(np.ma.masked_invalid(wear), cmap=colours, vmin=0, vmax=1,
                        aspect="auto", interpolation="nearest")
    for r, pid in enumerate(report.participants):
        for c, day_date in enumerate(report.dates):
            day = report.cell(pid, day_date)
            if day is not None and (day.has_data or not day.loaded):
                text = cell_text(day).replace("%", "")
                axes.text(c, r, text, ha="center", va="center", fontsize=7,
                          fontstyle="normal" if day.complete else "italic")
    # The notes: in data coordinates, so that each sits on its row, right of the colour bar.
    notes_x = columns - 0.5 + (RIGHT_MARGIN - 0.1) / CELL_WIDTH
    axes.text(notes_x, -0.7, "ingestion; flags", ha="left", va="bottom", fontsize=8,
              fontweight="bold")
    for r, pid in enumerate(report.participants):
        flags = report.flags[pid]
        colour = FLAG_COLOUR if flags.flagged else OURS_COLOUR if flags.ours else "black"
        axes.text(notes_x, r, row_note(flags, no_upload_hours), ha="left", va="center",
                  fontsize=7, color=colour, clip_on=False)
    axes.set_xticks(range(columns), [f"{d:%m-%d}" for d in report.dates], rotation=90,
                    fontsize=8)
    labels = []
    for pid in report.participants:
        flagged = report.flags[pid].flagged
        labels.append(f"\u25b6 {pid}" if flagged else pid)
    axes.set_yticks(range(len(labels)), labels, fontsize=9)
    for label, pid in zip(axes.get_yticklabels(), report.participants, strict=True):
        if report.flags[pid].flagged:
            label.set_color(FLAG_COLOUR)
            label.set_fontweight("bold")
    axes.set_xticks(np.arange(-0.5, columns, 1), minor=True)
    axes.set_yticks(np.arange(-0.5, max(rows, 1), 1), minor=True)
    axes.grid(which="minor", color="white", linewidth=1)
    axes.tick_params(which="minor", length=0)
    first, last = (report.dates[0], report.dates[-1]) if report.dates else (None, None)
    axes.set_title(f"Wear time, % of each local day ({first} to {last})", fontsize=10)
    # Its own axes in the right margin, so the grid keeps the size heatmap_size() promises.
    bar_axes = figure.add_axes((
        (LEFT_MARGIN + CELL_WIDTH * columns + 0.25) * DPI / width, BOTTOM_MARGIN * DPI / height,
        0.15 * DPI / width, CELL_HEIGHT * max(rows, 1) * DPI / height,
    ))
    bar = figure.colorbar(image, cax=bar_axes)
    bar.set_label("wear fraction", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    figure.legend(
        handles=[Patch(color=MISSING_COLOUR, label="no data"),
                 Patch(facecolor=NOT_ENROLLED_COLOUR, edgecolor="#bbbbbb",
                       label="not enrolled"),
                 Patch(color=NOT_LOADED_COLOUR, label="? not loaded (ours)"),
                 Patch(color=FLAG_COLOUR, label=f"\u25b6 flagged (no upload {no_upload_hours} h, "
                                               "low wear, consent)")],
        loc="lower left", ncol=4, fontsize=7, frameon=False, bbox_to_anchor=(0.01, 0.0),
    )
    figure.text(0.99, 0.01, "! not a valid day, ~ day not over (italic)", ha="right",
                va="bottom", fontsize=7)
    return figure


def _rgba(colour: str) -> tuple[float, float, float, float]:
    from matplotlib.colors import to_rgba

    return to_rgba(colour)


def png_bytes(report: Grid, no_upload_hours: int) -> bytes:
    out = io.BytesIO()
    heatmap(report, no_upload_hours).savefig(out, format="png", dpi=DPI)
    return out.getvalue()
