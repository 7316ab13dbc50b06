"""Takeout archives built from the documented format (docs/takeout.md), for the tests and the
benchmark. The data is drawn first as (UTC instant, value) series and then written out in the
archive's encodings, so a test compares what is stored with the series, not with a second
copy of the importer's conversions."""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = "Takeout/Google Health/"
CSV_DIR = ROOT + "Physical Activity_GoogleData/"
JSON_DIR = ROOT + "Global Export Data/"
WEARABLE = "Charge 6"

Series = list[tuple[datetime, float]]


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def classic(instant: datetime) -> str:
    """The classic JSON's "MM/DD/YY HH:MM:SS", which is UTC without saying so."""
    return instant.astimezone(UTC).strftime("%m/%d/%y %H:%M:%S")


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=n) for n in range(count)]


def utc_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def heart_rate(day: date, step_seconds: int) -> Series:
    start = utc_day(day)
    return [(start + timedelta(seconds=s), float(60 + int(20 * (1 + math.sin(s / 900)))))
            for s in range(0, 86_400, step_seconds)]


def per_minute(day: date, every: int, scale: float) -> Series:
    """Active minutes of a UTC day: one every `every` minutes, 12:00-20:00 UTC."""
    start = utc_day(day) + timedelta(hours=12)
    return [(start + timedelta(minutes=m), round(scale * (1 + m % 7), 3))
            for m in range(0, 480, every)]


@dataclass
class Archive:
    """Entries by name; `write` zips them (deflated, as Takeout does)."""

    entries: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        self.entries[name] = text

    def csv(self, name: str, header: str, lines: list[str]) -> None:
        self.add(CSV_DIR + name, "\n".join([header, *lines]) + "\n")

    def write(self, path: Path) -> Path:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in self.entries.items():
                archive.writestr(name, text)
        return path


def sample_lines(series: Series, source: str = WEARABLE) -> list[str]:
    return [f"{iso(t)},{v:g},{source}" for t, v in series]


def month_files(series_by_day: dict[date, Series]) -> Iterator[tuple[date, Series]]:
    """The per-minute CSVs are monthly files named by the month's first day."""
    months: dict[date, Series] = {}
    for day, series in sorted(series_by_day.items()):
        months.setdefault(day.replace(day=1), []).extend(series)
    yield from months.items()


def intraday_archive(first: date, count: int, hr_step: int = 60) -> tuple[Archive, dict]:
    """Heart rate (daily CSVs), steps and distance (monthly CSVs): the bulk of a real one.
    Returns the archive and the expected rows {metric: series}."""
    archive = Archive()
    expected: dict[str, Series] = {"heart_rate": [], "steps": [], "distance": []}
    steps: dict[date, Series] = {}
    distance: dict[date, Series] = {}
    for day in days(first, count):
        hr = heart_rate(day, hr_step)
        expected["heart_rate"] += hr
        archive.csv(f"heart_rate_{day}.csv", "timestamp,beats per minute,data source",
                    sample_lines(hr))
        steps[day] = per_minute(day, 3, 10)
        distance[day] = per_minute(day, 3, 7.5)
    for month, series in month_files(steps):
        expected["steps"] += series
        archive.csv(f"steps_{month}.csv", "timestamp,steps,data source", sample_lines(series))
    for month, series in month_files(distance):
        expected["distance"] += series
        archive.csv(f"distance_{month}.csv", "timestamp,distance,data source",
                    sample_lines(series))
    return archive, expected


@dataclass(frozen=True)
class Night:
    """A sleep log drawn in UTC: its stages follow one another, named as Fitbit does (wake,
    light, deep, rem; or asleep, restless, awake)."""

    kind: str  # "stages" or "classic"
    main: bool
    stages: list[tuple[datetime, datetime, str]]

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.stages[0][0], self.stages[-1][1]


def sleep_log(night: Night, zone: ZoneInfo, log_id: int) -> dict:
    """The night as Fitbit's sleep log: device-local clock times, `duration` elapsed ms."""
    def local(instant: datetime) -> str:
        return instant.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S.000")

    start, end = night.span
    return {"logId": log_id, "dateOfSleep": str(end.astimezone(zone).date()),
            "startTime": local(start), "endTime": local(end),
            "duration": int((end - start).total_seconds()) * 1000,
            "isMainSleep": night.main, "type": night.kind,
            "levels": {"data": [{"dateTime": local(a), "level": level,
                                 "seconds": int((b - a).total_seconds())}
                                for a, b, level in night.stages],
                       "shortData": [], "summary": {}}}


def sleep_json(nights: list[Night], zone: ZoneInfo) -> str:
    return json.dumps([sleep_log(n, zone, 1000 + i) for i, n in enumerate(nights)])
