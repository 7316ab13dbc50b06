"""The participant page's charts: matplotlib figures rendered as inline SVG (pure).

SVG keeps the page one self-contained document: no script, no image requests, and text
that stays sharp at any zoom. Fonts are left as text (svg.fonttype none): a tenth the size
of outlined glyphs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime

from ..adherence import Day

WIDTH, HEIGHT = 9.0, 2.4  # inches; the SVG scales to the page's width
# The hypnogram's rows, top to bottom (staged and classic nights).
STAGES = ("awake", "restless", "rem", "light", "asleep", "deep")
LINE, BAND, BAR, INVALID, UNJUDGED = "#1f4e96", "#c5d5e8", "#1a9850", "#d73027", "#9e9e9e"


def _figure():
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH, HEIGHT))
    FigureCanvasSVG(figure)
    axes = figure.add_axes((0.07, 0.2, 0.9, 0.68))
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color="#e0e0e0", linewidth=0.6)
    axes.set_axisbelow(True)
    return figure, axes


def _svg(figure) -> str:
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dashboard"}):
        figure.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prolog or doctype


def heart_rate(points: Sequence[tuple[datetime, float, float, float]], now: datetime
               ) -> str | None:
    """Hourly mean heart rate, with each hour's minimum to maximum as a band."""
    if not points:
        return None
    from matplotlib.dates import DateFormatter

    figure, axes = _figure()
    hours = [p[0] for p in points]
    axes.fill_between(hours, [p[1] for p in points], [p[3] for p in points], color=BAND,
                      step="post", linewidth=0, label="min-max of the hour", gid="hr-band")
    axes.step(hours, [p[2] for p in points], where="post", color=LINE, linewidth=1,
              label="hourly mean", gid="hr-mean")
    axes.set_ylabel("bpm")
    axes.set_title("Heart rate, hourly (UTC)", fontsize=10, loc="left")
    axes.xaxis.set_major_formatter(DateFormatter("%m-%d"))
    axes.legend(loc="upper right", fontsize=7, frameon=False, ncol=2)
    return _svg(figure)


def daily_bars(points: Sequence[tuple[date, float]], title: str, unit: str) -> str | None:
    if not points:
        return None
    figure, axes = _figure()
    labels = [f"{d:%m-%d}" for d, _ in points]
    axes.bar(labels, [v for _, v in points], color=BAR, gid="bars")
    axes.set_ylabel(unit)
    axes.set_title(title.capitalize() + " (local days)", fontsize=10, loc="left")
    axes.tick_params(axis="x", labelsize=8)
    return _svg(figure)


def wear(days: Sequence[Day], valid_minutes: float) -> str | None:
    """Wear hours per local day; days below the valid-day threshold in red, a day not over
    hatched, a day not loaded left empty and labelled '?'."""
    if not days:
        return None
    figure, axes = _figure()
    labels = [f"{d.day:%m-%d}" for d in days]
    hours = [d.wear_minutes / 60 if d.loaded else 0 for d in days]
    # Red only for a day that is over and loaded and not valid: the others are not judged.
    bars = axes.bar(labels, hours, gid="wear-bars", color=[
        BAR if d.valid_day else INVALID if d.complete and d.loaded else UNJUDGED
        for d in days])
    for bar, day in zip(bars, days, strict=True):
        if not day.complete:
            bar.set_hatch("///")
            bar.set_alpha(0.6)
        if not day.loaded:
            axes.annotate("?", (bar.get_x() + bar.get_width() / 2, 0.5), ha="center",
                          fontsize=9, color=LINE)
    axes.axhline(valid_minutes / 60, color="#555555", linestyle="--", linewidth=0.8,
                 label=f"valid day: {valid_minutes / 60:g} h")
    axes.set_ylim(0, 25)
    axes.set_ylabel("hours worn")
    axes.set_title("Wear per local day (hatched: not over; ?: not loaded)", fontsize=10,
                   loc="left")
    axes.legend(loc="upper right", fontsize=7, frameon=False)
    axes.tick_params(axis="x", labelsize=8)
    return _svg(figure)


def hypnogram(stages: Sequence[tuple[datetime, datetime, str]]) -> str | None:
    """Last night's sleep stages as horizontal bars, one row per stage."""
    if not stages:
        return None
    from matplotlib.dates import DateFormatter, date2num

    figure, axes = _figure()
    rows = [s for s in STAGES if any(stage == s for _, _, stage in stages)]
    for start, end, stage in stages:
        if stage in rows:
            axes.barh(rows.index(stage), date2num(end) - date2num(start),
                      left=date2num(start), height=0.8, color=LINE, gid="stage")
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.invert_yaxis()
    axes.xaxis_date()
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    axes.set_title("Last night's sleep stages (UTC)", fontsize=10, loc="left")
    return _svg(figure)
