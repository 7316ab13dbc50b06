"""One archive file's text -> rows. Pure: no zip, no database (docs/takeout.md).

Time: the CSVs of Physical Activity_GoogleData stamp ISO instants in UTC; the classic JSON
stamps "MM/DD/YY HH:MM:SS" that is UTC too, with no marker (each file is bounded by the
local day, which is why the source reads a day on each side). The Active Zone Minutes CSVs
stamp naive local time, converted with the participant's zone. The daily CSVs stamp each
day at 00:00 UTC as a label: the value belongs to that date, stored at its local midnight
like every daily metric.

Recorders: a CSV's `data source` names who recorded each row. Only the wearable's rows load,
as the API's google-wearables family: the phone (MobileTrack) records steps and distance at
offset instants beside the tracker, and rows that Health Connect synced into Fitbit from
other apps are round trips. Both are counted as dropped, never stored.

Sleep: sleep-YYYY-MM-DD.json is a list of Fitbit sleep logs (device-local times), read by
sleep_log like wearipedia's: sessions and their stages, not rows.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ...metrics import AZM_SCORE
from ...model import EARLIEST_START_DATE, ReadReport, Row
from ...sleep import SleepSession
from ...sleep_log import session_from_log
from ...windows import local_midnight


@dataclass(frozen=True)
class Value:
    """Where a stream's value is and which values can be a measurement."""

    metric: str
    column: str  # CSV header (lower case) or JSON path joined by "."
    low: float  # inclusive; the same ranges as the Google Health transform (a test checks)
    high: float
    scale: float = 1.0  # the file's unit into ours


# The ranges only keep out what cannot be a measurement; they are not clinical limits.
CSV_VALUES = {
    "heart_rate": Value("heart_rate", "beats per minute", 1, 300),
    "steps": Value("steps", "steps", 0, 100_000),
    "distance": Value("distance", "distance", 0, 10_000),  # metres, as the API's
    "calories": Value("calories", "calories", 0, 1_000),
    "floors": Value("floors", "floors", 0, 1_000),
    "spo2": Value("spo2", "oxygen saturation percentage", 0, 100),
    "hrv": Value("hrv_rmssd", "root mean square of successive differences milliseconds",
                 0, 2_000),
    # The header says milli breaths, the values are breaths per minute (peers measured it);
    # a file that really held millibreaths would be rejected by the range.
    "breathing_rate_sleep": Value("breathing_rate_sleep",
                                  "full sleep stats - milli breaths per minute", 0, 100),
    "resting_heart_rate": Value("resting_heart_rate", "beats per minute", 1, 300),
    "hrv_daily": Value("hrv_rmssd_daily", "average heart rate variability milliseconds",
                       0, 2_000),
}
JSON_VALUES = {
    "heart_rate": Value("heart_rate", "value.bpm", 1, 300),
    "steps": Value("steps", "value", 0, 100_000),
    "distance": Value("distance", "value", 0, 10_000, scale=0.01),  # centimetres in JSON
    "calories": Value("calories", "value", 0, 1_000),
    "floors": Value("floors", "value", 0, 1_000),
}
AZM = Value("active_zone_minutes", "total_minutes", 0, 1_440)
# The metrics an archive stamps in naive local time: their instants follow the zone.
LOCAL_METRICS = (AZM.metric, *(f"{name}_active_zone_minutes" for name in AZM_SCORE))

# Row(...) goes through NamedTuple's generated __new__, a Python call per point: a fifth of
# parsing a CSV row. tuple.__new__ makes the same Row without it.
new_row = tuple.__new__
EVER, END = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
UNKNOWN = "?"  # a recorder not seen before in this file

PHONE = "rows the phone recorded (MobileTrack), not the wearable"
ROUND_TRIP = "rows Health Connect synced in from other apps (round trips)"
EMPTY = "empty cells"
# No wearable's row is older than the earliest start date; in any zone, its local day begins
# after this instant. Earlier rows are rejected (a row from 1900 would make the import's span,
# and its slices, reach back to 1900; one from year 1 overflows datetime in a zone east of UTC).
EARLIEST = datetime.combine(EARLIEST_START_DATE, datetime.min.time(), UTC) - timedelta(days=1)
TOO_EARLY = f"dates before {EARLIEST_START_DATE}, the earliest start date"


class MalformedFile(ValueError):
    """The file cannot be read as its kind: it is reported and skipped whole."""


@dataclass
class FileRows:
    rows: list[Row] = field(default_factory=list)  # those within the file's reach
    dropped: Counter[str] = field(default_factory=Counter)  # by rule, never stored
    empty: bool = False  # "no data", a header only, or an empty list
    outside: int = 0  # rows outside the file's reach (its dates): counted, not kept


# The instants a file may hold rows for: a row outside is counted and let go as it is read,
# so a file's rows never pile up beyond its own dates (None: any instant).
Reach = tuple[datetime, datetime] | None
ANY: Reach = None


def recorder_rule(source: str) -> str | None:
    """Why a row of this recorder is dropped, or None for the wearable's."""
    text = source.strip().lower()
    if text.endswith("health connect"):
        return ROUND_TRIP
    if "mobiletrack" in text or text.startswith("phone"):
        return PHONE
    return None


def csv_rows(lines: Iterable[str], stream: str, pid: str, zone: ZoneInfo,
             report: ReadReport, daily: bool = False, reach: Reach = ANY) -> FileRows:
    """The file's rows within `reach`, streamed: a row is parsed, checked and kept or let
    go before the next line is read."""
    value = CSV_VALUES[stream]
    out = FileRows()
    reader, header = _reader(lines, out)
    if reader is None:
        return out
    at, col = _column(header, "timestamp"), _column(header, value.column)
    src = _optional(header, "data source")
    instant = _daily_instant if daily else _utc_instant
    metric, low, high, scale = value.metric, value.low, value.high, value.scale
    append = out.rows.append
    rules: dict[str, str | None] = {"": None}  # recorder name -> recorder_rule(name)
    parse, utc = datetime.fromisoformat, UTC
    low_at, high_at = reach or (EVER, END)
    outside = 0
    # This loop runs once per point of the archive: the common row (the wearable's, a valid
    # UTC instant and number) takes no function call of ours; anything else the slow path.
    for cells in reader:
        try:
            source = cells[src] if src is not None else ""
            text, stamp_text = cells[col], cells[at]
        except IndexError:
            report.reject("short rows (a truncated line?)")
            continue
        rule = rules.get(source, UNKNOWN)
        if rule is UNKNOWN:
            rule = rules[source] = recorder_rule(source)
        if rule is not None:
            out.dropped[rule] += 1
            continue
        if not text:
            out.dropped[EMPTY] += 1
            continue
        try:
            number = float(text)
            stamp = parse(stamp_text)
        except ValueError:
            number, stamp = None, None
        if (daily or stamp is None or stamp.tzinfo is not utc or number is None
                or not low <= number <= high):
            number = _number(text, metric, low, high, report)
            stamp = instant(stamp_text, zone, report)
        if number is not None and stamp is not None:
            if not low_at <= stamp < high_at:
                if stamp < EARLIEST:
                    report.reject(TOO_EARLY)
                else:
                    outside += 1
                continue
            # The recorder the row names is its device (raw_data_sourced.device).
            append(new_row(Row, (stamp, pid, metric, number * scale, source or None)))
    out.outside = outside
    return out


def azm_rows(lines: Iterable[str], pid: str, zone: ZoneInfo, report: ReadReport,
             reach: Reach = ANY) -> FileRows:
    """Active Zone Minutes: the score into active_zone_minutes (a cardio or peak minute
    counts AZM_SCORE's 2) and the minutes into the zone's own metric (docs/metrics.md)."""
    out = FileRows()
    reader, header = _reader(lines, out)
    if reader is None:
        return out
    at, zone_col, col = (_column(header, "date_time"), _column(header, "heart_zone_id"),
                         _column(header, AZM.column))
    local = LocalClock(zone)
    for cells in reader:
        if len(cells) <= max(at, zone_col, col):
            report.reject("short rows (a truncated line?)")
            continue
        name = cells[zone_col].strip().lower()
        if name not in AZM_SCORE:
            report.reject("unknown heart-rate zones")
            continue
        minutes = _number(cells[col], AZM.metric, AZM.low, AZM.high, report)
        stamp = local.instant(cells[at], report)
        if minutes is not None and stamp is not None and _kept(stamp, reach, report, out, 2):
            out.rows.append(Row(stamp, pid, AZM.metric, minutes * AZM_SCORE[name]))
            out.rows.append(Row(stamp, pid, f"{name}_active_zone_minutes", minutes))
    return out


def json_rows(data: Any, stream: str, pid: str, report: ReadReport, reach: Reach = ANY
              ) -> FileRows:
    """Classic JSON: a list of {"dateTime": "MM/DD/YY HH:MM:SS" (UTC), "value": ...}."""
    value = JSON_VALUES[stream]
    if not isinstance(data, list):
        raise MalformedFile(f"expected a JSON list, got {type(data).__name__}")
    out = FileRows(empty=not data)
    path = value.column.split(".")
    for point in data:
        raw: Any = point
        for key in path:
            raw = raw.get(key) if isinstance(raw, dict) else None
        stamp = _classic_instant(point.get("dateTime") if isinstance(point, dict) else None,
                                 report)
        number = _number(str(raw) if raw is not None else "", value.metric, value.low,
                         value.high, report)
        if stamp is not None and number is not None and _kept(stamp, reach, report, out):
            out.rows.append(Row(stamp, pid, value.metric, number * value.scale))
    return out


def sleep_sessions(data: Any, zone: ZoneInfo, report: ReadReport) -> list[SleepSession]:
    """A sleep file's logs as sessions in the participant's zone; a log that cannot be read
    is counted and left out, the rest of the file loads."""
    if not isinstance(data, list):
        raise MalformedFile(f"expected a JSON list, got {type(data).__name__}")
    sessions = (session_from_log(log, zone, report, end_clock=True) for log in data)
    return [s for s in sessions if s is not None]


def load_json(text: str) -> Any:
    if text.strip().lower() == "no data":
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedFile(f"not JSON ({error.msg} at line {error.lineno})") from None


class LocalClock:
    """Naive local times of one file, in file order, to UTC. In the hour a fall-back change
    repeats, a time that goes backwards starts the second pass (fold=1) until it ends."""

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self._previous: datetime | None = None
        self._second_pass = False

    def instant(self, text: str, report: ReadReport) -> datetime | None:
        try:
            naive = datetime.fromisoformat(text)
        except ValueError:
            report.reject("unreadable timestamps")
            return None
        if naive.date() < EARLIEST_START_DATE:
            report.reject(TOO_EARLY)
            return None
        if naive.tzinfo is not None:  # marked after all: take it as it is
            return naive.astimezone(UTC)
        repeated = self._repeated(naive)
        went_back = self._previous is not None and naive <= self._previous
        self._second_pass = repeated and (self._second_pass or went_back)
        self._previous = naive
        return naive.replace(tzinfo=self._zone, fold=int(self._second_pass)).astimezone(UTC)

    def _repeated(self, naive: datetime) -> bool:
        first = naive.replace(tzinfo=self._zone, fold=0).utcoffset()
        second = naive.replace(tzinfo=self._zone, fold=1).utcoffset()
        return first is not None and second is not None and first > second


def _kept(stamp: datetime, reach: Reach, report: ReadReport, out: FileRows, rows: int = 1
          ) -> bool:
    """Whether `rows` read at `stamp` are the file's to keep: inside its reach. Before the
    earliest start date they are rejects; elsewhere another window's, counted as outside."""
    if reach is None or reach[0] <= stamp < reach[1]:
        return True
    if stamp < EARLIEST:
        report.reject(TOO_EARLY)
    else:
        out.outside += rows
    return False


def _reader(lines: Iterable[str], out: FileRows) -> tuple[Iterator[list[str]] | None, list[str]]:
    reader = csv.reader(lines)
    first = next(reader, None)
    if first is None or [c.strip().lower() for c in first] in ([], ["no data"]):
        out.empty = True
        return None, []
    header = [c.strip().lower().lstrip("\ufeff") for c in first]
    return reader, header


def _column(header: list[str], name: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise MalformedFile(f"no column {name!r} in its header {','.join(header)!r}") from None


def _optional(header: list[str], name: str) -> int | None:
    return header.index(name) if name in header else None


def _number(text: str, metric: str, low: float, high: float, report: ReadReport
            ) -> float | None:
    try:
        number = float(text)
    except ValueError:
        report.reject("values that are not numbers")
        return None
    if not low <= number <= high:  # NaN fails this too
        report.reject(f"{metric} values out of range")
        return None
    return number


def _utc_instant(text: str, zone: ZoneInfo, report: ReadReport) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        report.reject("unreadable timestamps")
        return None
    if stamp.tzinfo is None:
        report.reject("timestamps without their UTC offset")
        return None
    if stamp.date() < EARLIEST_START_DATE:  # before astimezone, which year 1 overflows
        report.reject(TOO_EARLY)
        return None
    return stamp if stamp.tzinfo is UTC else stamp.astimezone(UTC)


def _daily_instant(text: str, zone: ZoneInfo, report: ReadReport) -> datetime | None:
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        report.reject("unreadable timestamps")
        return None
    if day < EARLIEST_START_DATE:
        report.reject(TOO_EARLY)
        return None
    return local_midnight(day, zone).astimezone(UTC)


def _classic_instant(text: object, report: ReadReport) -> datetime | None:
    """"05/01/24 07:00:07" as UTC (sliced: strptime costs ten times more per point)."""
    if not (isinstance(text, str) and len(text) == 17 and text[2] == text[5] == "/"):
        report.reject("unreadable timestamps")
        return None
    try:
        return datetime(2000 + int(text[6:8]), int(text[0:2]), int(text[3:5]),
                        int(text[9:11]), int(text[12:14]), int(text[15:17]), tzinfo=UTC)
    except ValueError:
        report.reject("unreadable timestamps")
        return None
