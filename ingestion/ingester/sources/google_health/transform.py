"""Google Health API pages -> rows: pure functions, no I/O, tested with plain dicts.

A page of `users.dataTypes.dataPoints.list` is `{"dataPoints": [...], "nextPageToken": "..."}`
(both omitted when empty: proto3 JSON leaves out empty and zero fields). Each data point holds
one member named after its data type in camelCase (`heartRate`, `steps`, ...). Instants come
from the point's physical time (RFC 3339, UTC); only daily types carry a civil `date`, which
becomes local midnight in the participant's zone. int64 fields arrive as JSON strings.

A page that is not of that shape raises PayloadError; a single point that cannot be read is
counted in the ReadReport and skipped, never stored. Its reason comes from a fixed set
("heart-rate: beatsPerMinute not a number"), never with the value in it: the report counts
reasons over a whole window, and must not grow a key per distinct bad value. The caller may
ask for one example value per reason (for a DEBUG line). docs/google-health-notes.md lists
which parts of this mapping the reference states and which are our choices.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import repeat
from typing import Any, NamedTuple

from ...errors import PayloadError
from ...model import Participant, ReadReport, Row
from ...windows import local_midnight

SAMPLE = "sample"  # one instant: {type}.sampleTime.physicalTime
INTERVAL = "interval"  # a span: {type}.interval.startTime is the row's instant
DAILY = "daily"  # a civil day: {type}.date, in the user's zone
# Read with `dataPoints:rollUp` at 60 s windows from the google-wearables family: a window's
# rollupDataPoint has startTime/endTime and the type's member with its sum. `list` returns
# no wearable points for steps and distance and refuses calories and floors (the peer
# project's live findings; docs/google-health-notes.md, "Activity by roll-up").
ROLLUP = "rollup"
# A roll-up window names no recorder: it sums every recorder of the google-wearables family
# (no phone). Its rows' device says that much (raw_data_sourced.device).
ROLLUP_DEVICE = "google-wearables"

# What a point whose value field is missing means.
REJECT = "reject"  # a required field: the point is unreadable
ZERO = "zero"  # an int64 that proto3 JSON leaves out because it is 0
SKIP = "skip"  # an optional field: a valid point that has nothing for our metric

# The read scopes (developers.google.com/health/data-types; docs/google-health-notes.md
# says which of these the reference states and which we guessed).
SCOPE_PREFIX = "https://www.googleapis.com/auth/googlehealth."
ACTIVITY = SCOPE_PREFIX + "activity_and_fitness.readonly"
HEALTH_METRICS = SCOPE_PREFIX + "health_metrics_and_measurements.readonly"
SLEEP = SCOPE_PREFIX + "sleep.readonly"
SETTINGS = SCOPE_PREFIX + "settings.readonly"  # users.pairedDevices: last sync, battery


@dataclass(frozen=True)
class DataType:
    """One Google Health data type we load, and the metric it becomes."""

    name: str  # kebab-case, as in the URL: "heart-rate"
    kind: str  # SAMPLE, INTERVAL or DAILY
    metric_type: str  # our vocabulary (ingester/metrics.py)
    value_path: tuple[str, ...]  # inside the type's member, e.g. ("beatsPerMinute",)
    low: float  # plausible range, inclusive; outside it a value is garbage
    high: float
    scope: str  # the OAuth scope that grants reading it
    when_absent: str = REJECT  # the value field missing: REJECT, ZERO or SKIP
    # Also store the minutes in the zone under a second metric chosen by the point's
    # heartRateZone (zone_weights: the score one minute in that zone earns).
    zone_metrics: tuple[tuple[str, str], ...] = ()
    scale: float = 1.0  # the source's unit into ours (millimetres -> metres: 0.001)
    range_days: int = 90  # ROLLUP: the longest range one rollUp request may span

    @property
    def member(self) -> str:
        """The data point's JSON member: camelCase of the name ("heartRate")."""
        head, *rest = self.name.split("-")
        return head + "".join(word.capitalize() for word in rest)

    @property
    def filter_name(self) -> str:
        """The name in filter expressions: snake_case ("heart_rate")."""
        return self.name.replace("-", "_")


# The ranges only keep out what cannot be a measurement (negative counts, SpO2 over 100 %);
# they are not clinical limits.
DATA_TYPES: dict[str, DataType] = {
    t.name: t
    for t in (
        DataType("heart-rate", SAMPLE, "heart_rate", ("beatsPerMinute",), 1, 300, HEALTH_METRICS),
        # A minute's sums; the ranges are per minute (a sprinter's 300 steps, 1 km, ...).
        DataType("steps", ROLLUP, "steps", ("countSum",), 0, 100_000, ACTIVITY,
                 when_absent=ZERO),
        DataType("distance", ROLLUP, "distance", ("millimetersSum",), 0, 10_000, ACTIVITY,
                 when_absent=ZERO, scale=0.001),
        DataType("total-calories", ROLLUP, "calories", ("kcalSum",), 0, 1_000, ACTIVITY,
                 when_absent=ZERO, range_days=14),
        DataType("floors", ROLLUP, "floors", ("countSum",), 0, 1_000, ACTIVITY,
                 when_absent=ZERO),
        DataType("oxygen-saturation", SAMPLE, "spo2", ("percentage",), 0, 100, HEALTH_METRICS),
        DataType(
            "heart-rate-variability",
            SAMPLE,
            "hrv_rmssd",
            ("rootMeanSquareOfSuccessiveDifferencesMilliseconds",),
            0,
            2_000,
            HEALTH_METRICS,
            when_absent=SKIP,  # RMSSD is optional; a point may carry only SDNN
        ),
        DataType(
            "active-zone-minutes",
            INTERVAL,
            "active_zone_minutes",
            ("activeZoneMinutes",),
            0,
            1_440,
            ACTIVITY,
            when_absent=ZERO,
            zone_metrics=(
                ("FAT_BURN", "fat_burn_active_zone_minutes"),
                ("CARDIO", "cardio_active_zone_minutes"),
                ("PEAK", "peak_active_zone_minutes"),
            ),
        ),
        DataType(
            "respiratory-rate-sleep-summary",
            SAMPLE,
            "breathing_rate_sleep",
            ("fullSleepStats", "breathsPerMinute"),
            0,
            100,
            HEALTH_METRICS,
        ),
        DataType("daily-resting-heart-rate", DAILY, "resting_heart_rate", ("beatsPerMinute",),
                 1, 300, HEALTH_METRICS),
        DataType(
            "daily-heart-rate-variability",
            DAILY,
            "hrv_rmssd_daily",
            ("averageHeartRateVariabilityMilliseconds",),
            0,
            2_000,
            HEALTH_METRICS,
        ),
        DataType(
            "daily-respiratory-rate",
            DAILY,
            "breathing_rate",
            ("breathsPerMinute",),
            0,
            100,
            HEALTH_METRICS,
        ),
    )
}

# The score one minute in a heart-rate zone earns: Google's activeZoneMinutes is the
# Fitbit app's weighted score (a cardio or peak minute counts 2), while our zone metrics
# hold minutes spent in the zone (ingester/metrics.py states the rule for every source).
ZONE_WEIGHTS = {"FAT_BURN": 1, "CARDIO": 2, "PEAK": 2}

# A plain decimal number, as JSON writes one or as proto3 writes an int64 ("72"). Python's
# float() alone would also take "nan", "inf", " 7 " and "1_000".
NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")
# An example value is cut to this many characters: enough to see what went wrong.
EXAMPLE_CHARS = 40


class PointError(ValueError):
    """One data point that cannot be read: a reason from a fixed set, and what was there."""

    def __init__(self, reason: str, example: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # never holds the value: it is counted per distinct reason
        self.example = example


def shown(raw: object) -> str:
    """A value as an example: its repr, cut short."""
    return repr(raw)[:EXAMPLE_CHARS]


class NoValue(Exception):
    """A readable point without the optional field we store (HRV with SDNN only)."""


def parse_page(page: object, member: str = "dataPoints") -> tuple[list[object], str | None]:
    """The points of a page (a list's dataPoints, a rollUp's rollupDataPoints) and the next
    page token (None on the last page)."""
    if not isinstance(page, Mapping):
        raise PayloadError(f"a {member} page must be a JSON object, got {type(page).__name__}")
    points = page.get(member, [])
    if not isinstance(points, list):
        raise PayloadError(f"{member} must be a JSON array")
    token = page.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise PayloadError("nextPageToken must be a string")
    return points, token or None


class Candidate(NamedTuple):
    """The rows of one data point, and the point, which ranks it against another point at
    its instant."""

    instant: datetime
    point: Mapping
    rows: list[Row]

    @property
    def rank(self) -> tuple[object, ...]:
        """Lower wins: source_rank(point), then the values. Computed only for two points at
        one instant: for every point it was most of a page's cost (the sorted JSON)."""
        return (*source_rank(self.point), tuple(row.value for row in self.rows))


@dataclass(frozen=True)
class PageCandidates:
    """The readable points of one page, column by column: point i is at instants[i], and its
    rows are rows[i] when every point has one row (widths None), else widths[i] rows from
    sum(widths[:i]). No object per point: on a 10,000-point page, a tuple and a list per
    point cost more than the rest of the transform (the garbage collector walks them, and
    the parsed page with them)."""

    instants: list[datetime]
    points: list[Mapping]
    rows: list[Row]
    widths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.instants)

    def __iter__(self) -> Iterator[Candidate]:
        """One Candidate per point, for the pages that need them (two points at one
        instant)."""
        if self.widths is None:
            yield from map(Candidate, self.instants, self.points, ([row] for row in self.rows))
            return
        start = 0
        for instant, point, width in zip(self.instants, self.points, self.widths, strict=True):
            yield Candidate(instant, point, self.rows[start:start + width])
            start += width

    def candidate(self, index: int) -> Candidate:
        """Point `index` as a Candidate."""
        if self.widths is None:
            return Candidate(self.instants[index], self.points[index], [self.rows[index]])
        start = sum(self.widths[:index])
        return Candidate(self.instants[index], self.points[index],
                         self.rows[start:start + self.widths[index]])


def source_rank(point: Mapping) -> tuple[object, ...]:
    """The documented rule for two data sources with a point at the same instant.

    `list` returns the points of every data source. We keep, in this order:
    1. the wearable's own data: a `dataSource.device` ("data points written on device
       sync") before data without one (a phone app, manual entries);
    2. platform FITBIT before the others (Health Connect, HealthKit, ...);
    3. then a stable order that depends on nothing but the point itself: the data source
       as JSON with sorted keys, then the point's resource name.
    The same pair of points therefore gives the same winner on every page split and run.
    """
    source = point.get("dataSource")
    source = source if isinstance(source, Mapping) else {}
    name = point.get("name")
    return (
        0 if isinstance(source.get("device"), Mapping) else 1,
        0 if source.get("platform") == "FITBIT" else 1,
        json.dumps(source, sort_keys=True, default=str),
        name if isinstance(name, str) else "",
    )


def candidates_from_page(
    page: object,
    data_type: DataType,
    participant: Participant,
    report: ReadReport,
    examples: dict[str, str] | None = None,
) -> tuple[PageCandidates, str | None]:
    """The readable points of one page and its next page token; unreadable points go to
    the report. `examples`, if given, gets the first offending value of each reason."""
    points, token = parse_page(page)
    fast = sample_candidates(points, data_type, participant)
    if fast is not None:
        return fast, token
    instants: list[datetime] = []
    readable: list[Mapping] = []
    rows: list[Row] = []
    widths: list[int] = []
    for point in points:
        try:
            point_rows = rows_from_point(point, data_type, participant)
        except PointError as error:
            reason = f"{data_type.name}: {error.reason}"
            report.reject(reason)
            if examples is not None and error.example is not None:
                examples.setdefault(reason, error.example)
            continue
        except NoValue:
            continue
        assert isinstance(point, Mapping)  # rows_from_point rejects anything else
        instants.append(point_rows[0].timestamp)
        readable.append(point)
        rows += point_rows
        widths.append(len(point_rows))
    return PageCandidates(instants, readable, rows, widths), token


# A page of 1 Hz heart rate is 10,000 points, read whole (sample_candidates): every point's
# time in one form, checked for the whole page by one match of the times joined by "\n",
# then parsed by fromisoformat, which gives the same aware UTC instant as parse_timestamp.
PAGE_TIMES = re.compile(
    r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n)*\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII
)
STAMP_CHARS = len("2026-03-04T10:00:00Z")
# The int64 strings a type's values arrived as, checked once each ("72" -> 72.0): a page of
# heart rate holds a few dozen. Per type, replaced whole (threads may share it), bounded.
KNOWN_VALUES: dict[str, dict[str, float]] = {}
KNOWN_VALUES_MAX = 4096


def sample_candidates(
    points: list[Any], data_type: DataType, participant: Participant
) -> PageCandidates | None:
    """The candidates of a page whose points are all readable and plain, the same as
    rows_from_point makes them, column by column; None for any other page, which the caller
    then reads point by point (with the rejects counted as ever).

    Plain: a sample type without zone metrics whose value is one key, every time whole
    seconds in UTC ("2026-03-04T10:00:00Z"), every value a string (as int64s are)."""
    if (data_type.kind != SAMPLE or data_type.zone_metrics or len(data_type.value_path) != 1
            or not points):
        return None
    member = data_type.member
    try:
        bodies = [point[member] for point in points]
        stamps = [body["sampleTime"]["physicalTime"] for body in bodies]
        raws = [body[data_type.value_path[0]] for body in bodies]
        times = "\n".join(stamps)
    except (KeyError, TypeError, IndexError):  # not dicts, a field missing, not strings
        return None
    # Every time exactly STAMP_CHARS long: none holds a "\n" that the match would split on.
    if len(times) != len(points) * (STAMP_CHARS + 1) - 1 or not PAGE_TIMES.fullmatch(times):
        return None
    try:
        instants = list(map(datetime.fromisoformat, stamps))
    except ValueError:  # not a calendar date or time
        return None
    values = known_values(raws, data_type)
    if values is None:
        return None
    pid, metric = participant.participant_id, data_type.metric_type
    # The same Row as rows_from_point's, its recorder included (tests/test_google_pages.py
    # compares the two paths).
    rows = [Row(instant, pid, metric, value, device)
            for instant, value, device in zip(instants, values, page_devices(points),
                                              strict=True)]
    return PageCandidates(instants, points, rows)


def page_devices(points: list[Any]) -> Iterable[str | None]:
    """Each point's device_of. A page from one recorder repeats one dataSource: comparing
    them (in C) and reading it once costs a third of a function call per point."""
    sources = [point.get("dataSource") for point in points]
    if sources.count(sources[0]) == len(sources):
        return repeat(device_of(points[0]), len(points))
    return map(device_of, points)


def known_values(raws: list[Any], data_type: DataType) -> list[float] | None:
    """The values of these raw int64 strings as point_value reads them; None if any is not
    a string or not a valid value."""
    known = KNOWN_VALUES.get(data_type.name, {})
    try:
        return [known[raw] for raw in raws]
    except (KeyError, TypeError):
        pass
    table = dict(known) if len(known) < KNOWN_VALUES_MAX else {}
    body: dict[str, object] = {}
    key = data_type.value_path[0]
    for raw in raws:
        try:
            if raw in table:
                continue
        except TypeError:  # unhashable: a list or an object
            return None
        if type(raw) is not str:  # a JSON number (True == 1) takes the point-by-point path
            return None
        body[key] = raw
        try:
            table[raw] = point_value(body, data_type)
        except PointError:
            return None
    KNOWN_VALUES[data_type.name] = table
    return [table[raw] for raw in raws]


def rows_from_page(
    page: object,
    data_type: DataType,
    participant: Participant,
    report: ReadReport,
    examples: dict[str, str] | None = None,
) -> tuple[list[Row], str | None]:
    """Rows of one page and its next page token; unreadable points go to the report."""
    candidates, token = candidates_from_page(page, data_type, participant, report, examples)
    return candidates.rows, token


def rows_from_point(point: object, data_type: DataType, participant: Participant) -> list[Row]:
    """The row of one data point (two for a type with zone metrics); PointError if unreadable."""
    if not isinstance(point, Mapping):
        raise PointError("point not an object", shown(point))
    body = point.get(data_type.member)
    if not isinstance(body, Mapping):
        raise PointError(f"{data_type.member} object missing", shown(sorted(point)))
    instant = point_instant(body, data_type, participant)
    value = point_value(body, data_type)
    device = device_of(point)
    rows = [Row(instant, participant.participant_id, data_type.metric_type, value, device)]
    zone = body.get("heartRateZone")
    zone_metric = dict(data_type.zone_metrics).get(zone) if isinstance(zone, str) else None
    if zone_metric is not None:
        minutes = value / ZONE_WEIGHTS[zone]  # type: ignore[index]
        rows.append(Row(instant, participant.participant_id, zone_metric, minutes, device))
    return rows


def device_of(point: Mapping) -> str | None:
    """The recorder a point names (dataSource.device.displayName), or None: a phone app's
    or a manual entry's point names none."""
    source = point.get("dataSource")
    device = source.get("device") if isinstance(source, Mapping) else None
    name = device.get("displayName") if isinstance(device, Mapping) else None
    return name if isinstance(name, str) and name else None


def rows_from_rollup_page(
    page: object,
    data_type: DataType,
    participant: Participant,
    report: ReadReport,
    examples: dict[str, str] | None = None,
) -> tuple[list[Row], str | None]:
    """The rows of one rollUp page (one per window with data) and its next page token.

    A window without the type's member has no data (nothing stored: a minute off the wrist
    is not a minute of 0 steps); a member without its sum is a sum of 0, which proto3 JSON
    leaves out."""
    points, token = parse_page(page, "rollupDataPoints")
    rows = []
    for point in points:
        try:
            row = row_from_rollup(point, data_type, participant)
        except PointError as error:
            reason = f"{data_type.name}: {error.reason}"
            report.reject(reason)
            if examples is not None and error.example is not None:
                examples.setdefault(reason, error.example)
            continue
        if row is not None:
            rows.append(row)
    return rows, token


def row_from_rollup(point: object, data_type: DataType, participant: Participant) -> Row | None:
    if not isinstance(point, Mapping):
        raise PointError("point not an object", shown(point))
    body = point.get(data_type.member)
    if body is None:
        return None
    if not isinstance(body, Mapping):
        raise PointError(f"{data_type.member} not an object", shown(body))
    instant = parse_timestamp(point.get("startTime"), "startTime")
    return Row(instant, participant.participant_id, data_type.metric_type,
               point_value(body, data_type), ROLLUP_DEVICE)


def point_instant(body: Mapping, data_type: DataType, participant: Participant) -> datetime:
    if data_type.kind == SAMPLE:
        path = ("sampleTime", "physicalTime")
    elif data_type.kind == INTERVAL:
        path = ("interval", "startTime")
    else:
        civil_day = parse_date(body.get("date"))
        try:
            return local_midnight(civil_day, participant.zone).astimezone(UTC)
        except (ValueError, OverflowError):  # 0001-01-01 east of UTC, 9999-12-31 west
            raise PointError("date out of range", shown(civil_day.isoformat())) from None
    return parse_timestamp(dig(body, path), ".".join(path))


def point_value(body: Mapping, data_type: DataType) -> float:
    try:
        raw = dig(body, data_type.value_path)
    except PointError:
        if data_type.when_absent == REJECT or not only_last_key_missing(body, data_type):
            raise
        if data_type.when_absent == ZERO:
            return 0.0
        raise NoValue from None
    field = ".".join(data_type.value_path)
    value = parse_number(raw, field) * data_type.scale
    if not data_type.low <= value <= data_type.high:
        raise PointError(f"{field} out of range", f"{value:g}")
    return value


def only_last_key_missing(body: Mapping, data_type: DataType) -> bool:
    """True if the value's own key is absent, not a broken object around it."""
    path = data_type.value_path
    parent: object = body
    for key in path[:-1]:
        if not isinstance(parent, Mapping) or key not in parent:
            return False
        parent = parent[key]
    return isinstance(parent, Mapping) and path[-1] not in parent


def dig(body: Mapping, path: tuple[str, ...]) -> object:
    value: object = body
    for key in path:
        if not isinstance(value, Mapping) or value.get(key) is None:
            raise PointError(f"{'.'.join(path)} missing")
        value = value[key]
    return value


def parse_number(raw: object, field: str) -> float:
    """A JSON number, or a number written as a string (int64 fields always are)."""
    if isinstance(raw, bool):  # bool is an int to Python, never a measurement
        raise PointError(f"{field} not a number", shown(raw))
    if not (isinstance(raw, int | float) or isinstance(raw, str) and NUMBER.fullmatch(raw)):
        raise PointError(f"{field} not a number", shown(raw))
    try:
        value = float(raw)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise PointError(f"{field} not finite", shown(raw)) from None
    if not math.isfinite(value):
        raise PointError(f"{field} not finite", shown(raw))
    return value


def parse_timestamp(raw: object, field: str) -> datetime:
    """An RFC 3339 instant ("2026-03-04T10:00:00.123Z") as an aware UTC datetime."""
    reason = f"{field} not an RFC 3339 time"
    if not isinstance(raw, str):
        raise PointError(reason, shown(raw))
    # Python keeps microseconds; Google may send nanoseconds. Truncate, never round up
    # into the next second (or past a window's end).
    match = RFC3339.fullmatch(raw)
    if match is None:
        raise PointError(reason, shown(raw))
    head, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    try:
        instant = datetime.fromisoformat(head + fraction + ("+00:00" if offset == "Z" else offset))
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        raise PointError(reason, shown(raw)) from None


# An int32 written as a JSON string, as proto3 JSON parsers accept ("2026", "03").
INTEGER = re.compile(r"\d{1,4}")


def date_part(raw: object) -> int | None:
    """One of year/month/day: a JSON integer or a string of digits; None otherwise."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and INTEGER.fullmatch(raw):
        return int(raw)
    return None


def parse_date(raw: object) -> date:
    """A google.type.Date {year, month, day}, which must be a full date."""
    if raw is None:
        raise PointError("date missing")
    if not isinstance(raw, Mapping):
        raise PointError("date not a full date", shown(raw))
    parts = [date_part(raw.get(key)) for key in ("year", "month", "day")]
    if any(part is None for part in parts):
        raise PointError("date not a full date", shown(dict(raw)))
    try:
        return date(*parts)  # type: ignore[arg-type]
    except ValueError:
        raise PointError("date not a calendar date", shown(dict(raw))) from None
