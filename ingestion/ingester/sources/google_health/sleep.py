"""Google Health `sleep` pages -> SleepSession values: pure, tested with plain dicts.

A sleep data point (discovery document v4, schema `Sleep`) is one session:
`interval.startTime/endTime`, `type` CLASSIC or STAGES, `stages[]` (non-overlapping,
contiguous: `startTime`, `endTime`, `type` AWAKE, LIGHT, DEEP, REM, ASLEEP or RESTLESS),
`summary` (minutesAsleep, minutesAwake, ...: Google's sums of the same stages) and `metadata`
(`mainSleep`, `nap`, `processed`: false while the stages are still being computed). proto3
JSON leaves out a false bool, so a missing `processed` is false. `shortAwakenings` and
`outOfBedSegments` may overlap the stages; they are not stages of the hypnogram and are not
stored. docs/google-health-notes.md, "Sleep", says what is documented and what we guessed.

A session that cannot be read is counted in the ReadReport and skipped; a page that is not
a page fails the slice (PayloadError, from parse_page).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...model import ReadReport
from ...sleep import CLASSIC, STAGED, SleepSession, SleepStage
from .transform import SLEEP, DataType, PointError, parse_page, parse_timestamp

# Not in transform.DATA_TYPES: sleep is sessions, not rows of raw_data. The fields a request
# needs (name, scope); a session's span is filtered on its end, as the API insists.
SLEEP_TYPE = DataType("sleep", "session", "", (), 0, 0, SLEEP)
FILTER_FIELD = "sleep.interval.end_time"
# The documented maximum for sleep (and exercise): larger page sizes are refused.
SLEEP_PAGE_SIZE = 25
KINDS = {"STAGES": STAGED, "CLASSIC": CLASSIC}
STAGES = {"AWAKE": "awake", "LIGHT": "light", "DEEP": "deep", "REM": "rem",
          "ASLEEP": "asleep", "RESTLESS": "restless"}


def sessions_from_page(page: object, report: ReadReport, examples: dict[str, str]
                       ) -> tuple[list[SleepSession], str | None]:
    """The readable sessions of one page and the next page token; an unreadable session is
    counted under its reason (one example value per reason goes into `examples`)."""
    points, token = parse_page(page)
    sessions = []
    for point in points:
        try:
            sessions.append(session_from_point(point))
        except PointError as error:
            report.reject(error.reason)
            if error.example is not None:
                examples.setdefault(error.reason, error.example)
    return sessions, token


def session_from_point(point: object) -> SleepSession:
    if not isinstance(point, Mapping):
        raise PointError("sleep: a point not an object")
    body = point.get("sleep")
    if not isinstance(body, Mapping):
        raise PointError("sleep: a point without its sleep member")
    interval = body.get("interval")
    if not isinstance(interval, Mapping):
        raise PointError("sleep: a session without its interval")
    kind = KINDS.get(str(body.get("type")))
    if kind is None:
        raise PointError("sleep: type neither STAGES nor CLASSIC", str(body.get("type")))
    metadata = body.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise PointError("sleep: metadata not an object")
    raw_stages = body.get("stages", [])
    if not isinstance(raw_stages, list):
        raise PointError("sleep: stages not a list")
    return SleepSession(
        start=parse_timestamp(interval.get("startTime"), "sleep.interval.startTime"),
        end=parse_timestamp(interval.get("endTime"), "sleep.interval.endTime"),
        is_main_sleep=metadata.get("mainSleep") is True,
        kind=kind,
        stages=tuple(sorted((stage_from(raw) for raw in raw_stages), key=lambda s: s.start)),
        processed=metadata.get("processed") is True,
        device=device_of(point),
    )


def stage_from(raw: object) -> SleepStage:
    if not isinstance(raw, Mapping):
        raise PointError("sleep: a stage not an object")
    stage = STAGES.get(str(raw.get("type")))
    if stage is None:
        raise PointError("sleep: unknown stage type", str(raw.get("type")))
    return SleepStage(parse_timestamp(raw.get("startTime"), "sleep.stages.startTime"),
                      parse_timestamp(raw.get("endTime"), "sleep.stages.endTime"), stage)


def device_of(point: Mapping) -> str | None:
    """The recording device's display name, where the point's dataSource names one."""
    source = point.get("dataSource")
    device = source.get("device") if isinstance(source, Mapping) else None
    name = device.get("displayName") if isinstance(device, Mapping) else None
    return name if isinstance(name, str) else None

