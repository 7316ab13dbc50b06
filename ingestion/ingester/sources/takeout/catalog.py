"""Which archive entries load, as which stream, and why every other one does not. Pure: it
sees names only (docs/takeout.md has the layout this encodes).

Most streams exist twice: classic JSON in `Global Export Data/` and newer CSVs in
`Physical Activity_GoogleData/`. Reading both would count everything twice, so where a
stream has any CSV the CSV wins and its JSON files are listed as skipped twins; the JSON
is read only for a stream the archive has no CSV of (older exports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from ...model import EARLIEST_START_DATE
from ...sleep import SLEEP_STREAM

ROOT = re.compile(r"^Takeout/(Google Health|Fitbit)/")
NEWER_ROOT = "Google Health"
CSV_DIR = "Physical Activity_GoogleData/"
JSON_DIR = "Global Export Data/"
DAY = r"(\d{4}-\d{2}-\d{2})"

SLEEP_SUMMARY = "sleep scores and summaries: the sessions load from Global Export Data"
TWIN = "JSON twin of a stream loaded from its CSV (the CSV wins)"
OLDER_ROOT = ("an older copy: the archive holds Takeout/Google Health/ too, the newer export "
              "of the same data, which loads (both would count everything twice)")
# No wearable's data is older than the earliest start date a participant may have; a file
# dated more than a month before it (a month file, a sleep file's 30 nights) holds none.
EARLY = f"dated before {EARLIEST_START_DATE}, the earliest start date: no wearable's data"
EARLIEST_FILE = EARLIEST_START_DATE - timedelta(days=32)


@dataclass(frozen=True)
class Entry:
    name: str
    stream: str  # one of STREAMS
    form: str  # how it is parsed: "csv", "daily_csv", "azm_csv", "json" or "sleep_json"
    day: date | None  # the date in its name; None for a file of the whole history


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


# (stream, form, pattern after the root); the first match wins.
LOADED: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (stream, form, re.compile(pattern)) for stream, form, pattern in (
        ("heart_rate", "csv", CSV_DIR + rf"heart_rate_{DAY}\.csv$"),
        ("steps", "csv", CSV_DIR + rf"steps_{DAY}\.csv$"),
        ("distance", "csv", CSV_DIR + rf"distance_{DAY}\.csv$"),
        ("calories", "csv", CSV_DIR + rf"calories_{DAY}\.csv$"),
        ("floors", "csv", CSV_DIR + rf"floors_{DAY}\.csv$"),
        ("spo2", "csv", CSV_DIR + rf"oxygen_saturation_{DAY}\.csv$"),
        ("hrv", "csv", CSV_DIR + rf"heart_rate_variability_{DAY}\.csv$"),
        ("breathing_rate_sleep", "csv", CSV_DIR + rf"respiratory_rate_sleep_summary_{DAY}\.csv$"),
        ("resting_heart_rate", "daily_csv", CSV_DIR + r"daily_resting_heart_rate\.csv$"),
        ("hrv_daily", "daily_csv", CSV_DIR + r"daily_heart_rate_variability\.csv$"),
        ("active_zone_minutes", "azm_csv",
         rf"Active Zone Minutes \(AZM\)/Active Zone Minutes - {DAY}\.csv$"),
        ("heart_rate", "json", JSON_DIR + rf"heart_rate-{DAY}\.json$"),
        ("steps", "json", JSON_DIR + rf"steps-{DAY}\.json$"),
        ("distance", "json", JSON_DIR + rf"distance-{DAY}\.json$"),
        ("calories", "json", JSON_DIR + rf"calories-{DAY}\.json$"),
        ("floors", "json", JSON_DIR + rf"floors-{DAY}\.json$"),
        # About 30 nights a file: sessions and stages, not rows (sleep_sessions, sleep_stages).
        (SLEEP_STREAM, "sleep_json", JSON_DIR + rf"sleep-{DAY}\.json$"),
    )
)
STREAMS: tuple[str, ...] = tuple(dict.fromkeys(stream for stream, _, _ in LOADED))

NOT_LOADED: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), reason) for pattern, reason in (
        (r"(^|/)Sleep( Score)?/", SLEEP_SUMMARY),
        (r"UserSensorCompressionToken|UserActivityProbabilities|micro_stillness",
         "Fitbit's internal sensor data, not a measurement"),
        (JSON_DIR + r"resting_heart_rate-", "daily values come from daily_resting_heart_rate.csv"),
        (r"Heart Rate Variability/|Oxygen Saturation \(SpO2\)/|Heart Rate/",
         "another copy of a stream loaded from Physical Activity_GoogleData"),
        (CSV_DIR + r"daily_(respiratory_rate|oxygen_saturation|heart_rate_zones)",
         "a daily summary of a stream loaded per minute or per sleep"),
        (r"(gps_location|live_pace|\.tcx$)", "location data: not collected by this study"),
        (r"(weight|body_fat|height|Your Profile|Biometrics|Menstrual|Stress|Readiness|"
         r"Mindfulness|Atrial Fibrillation|Temperature|vo2|VO2|cardio_load|"
         r"cardio_acute_chronic_workload|exercise|swim|altitude|badge|moods|activity_level|"
         r"sedentary|active_minutes|time_in_heart_rate_zone|calories_in_heart_rate_zone|"
         r"active_energy|speed|demographic|estimated_oxygen_variation|glucose|Glucose)",
         "not in the metric vocabulary (docs/metrics.md)"),
        (r"(Paired Devices|Account|Social|Commerce|Notification|Goals|Friends|Premium|"
         r"Discover|Guided Programs|Privacy|Security)", "account data, not a measurement"),
        (r"(?i)readme|\.txt$|\.(png|jpe?g|pdf|html)$", "documentation, not data"),
    )
)


def classify(names: list[str]) -> tuple[list[Entry], list[Skipped]]:
    """The entries that load (sorted by stream, then date) and the others with a reason."""
    found: list[Entry] = []
    skipped: list[Skipped] = []
    roots = {match.group(1) for name in names if (match := ROOT.match(name))}
    for name in names:
        match = ROOT.match(name)
        if match is None:
            skipped.append(Skipped(name, "outside Takeout/Google Health/ and Takeout/Fitbit/"))
            continue
        if len(roots) > 1 and match.group(1) != NEWER_ROOT:
            skipped.append(Skipped(name, OLDER_ROOT))
            continue
        rest = name[match.end():]
        entry = _loaded(name, rest)
        if entry is not None and entry.day is not None and entry.day < EARLIEST_FILE:
            skipped.append(Skipped(name, EARLY))
        elif entry is not None:
            found.append(entry)
        else:
            skipped.append(Skipped(name, _reason(rest)))
    with_csv = {e.stream for e in found if e.form != "json"}
    entries = [e for e in found if e.form != "json" or e.stream not in with_csv]
    skipped += [Skipped(e.name, TWIN) for e in found if e.form == "json" and e.stream in with_csv]
    entries.sort(key=lambda e: (e.stream, e.day or date.min, e.name))
    return entries, skipped


def _loaded(name: str, rest: str) -> Entry | None:
    for stream, form, pattern in LOADED:
        if match := pattern.search(rest):
            try:
                day = date.fromisoformat(match.group(1)) if pattern.groups else None
            except ValueError:  # 2024-13-45: a name that only looks like ours
                return None
            return Entry(name, stream, form, day)
    return None


def _reason(rest: str) -> str:
    for pattern, reason in NOT_LOADED:
        if pattern.search(rest):
            return reason
    return "not recognised (a file this importer does not know)"
