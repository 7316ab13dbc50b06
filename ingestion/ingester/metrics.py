"""The metric vocabulary: every metric_type stored in raw_data, with its unit and meaning.

Both sources emit only names listed here (their tests check it), and the docs and the
export's data dictionary describe the metrics from it. A daily metric is stamped at the
start of its participant's local day (local midnight, unless a DST jump skips it), converted
to UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .model import GOOGLE_HEALTH, SYNTHETIC, TAKEOUT

# The active-zone-minutes rule every source follows: a minute in a zone earns this score in
# `active_zone_minutes`, and 1 in the zone's own metric.
AZM_SCORE = {"fat_burn": 1, "cardio": 2, "peak": 2}


@dataclass(frozen=True)
class Metric:
    unit: str
    description: str
    # How often the source records it, in an analyst's words (the data dictionary's column).
    resolution: str = ""
    # The source kinds that provide it (participants.source); tests/test_export.py checks
    # these against what each source's transform can emit.
    sources: tuple[str, ...] = ()

    @property
    def daily(self) -> bool:
        """One value per local day, stamped at local midnight: a change of the participant's
        zone moves it to the new zone's midnight of the same date (db.restamp_daily_values)."""
        return self.resolution in (DAY, NIGHT)


BOTH = (SYNTHETIC, GOOGLE_HEALTH)
MINUTE = "1 min"
SLEEP_MINUTE = "1 min, during sleep"
NIGHT = "1 day (the night's main sleep)"
DAY = "1 day"

METRICS: dict[str, Metric] = {
    "heart_rate": Metric(
        "bpm", "Heart rate, one sample per second.",
        "1 s (synthetic); as the device records, seconds apart (Google Health)", BOTH,
    ),
    "active_zone_minutes": Metric(
        "min/min",
        "Active zone minutes score of the minute starting at the timestamp, as the Fitbit app "
        "counts it: 1 for a fat-burn minute, 2 for a cardio or peak minute.",
        MINUTE, BOTH,
    ),
    "fat_burn_active_zone_minutes": Metric(
        "min/min", "Minutes of that minute spent in the fat-burn heart-rate zone (0 or 1).",
        MINUTE, BOTH,
    ),
    "cardio_active_zone_minutes": Metric(
        "min/min", "Minutes of that minute spent in the cardio heart-rate zone (0 or 1).",
        MINUTE, BOTH,
    ),
    "peak_active_zone_minutes": Metric(
        "min/min", "Minutes of that minute spent in the peak heart-rate zone (0 or 1).",
        MINUTE, BOTH,
    ),
    "hrv_rmssd": Metric(
        "ms", "Heart rate variability during sleep: RMSSD of beat-to-beat intervals, per minute.",
        SLEEP_MINUTE, BOTH,
    ),
    "hrv_hf": Metric(
        "ms²", "HRV high-frequency power (0.15-0.4 Hz) during sleep, per minute.",
        SLEEP_MINUTE, (SYNTHETIC,),
    ),
    "hrv_lf": Metric(
        "ms²", "HRV low-frequency power (0.04-0.15 Hz) during sleep, per minute.",
        SLEEP_MINUTE, (SYNTHETIC,),
    ),
    "hrv_coverage": Metric(
        "fraction", "Share (0-1) of the minute with usable beat-to-beat data for the HRV values.",
        SLEEP_MINUTE, (SYNTHETIC,),
    ),
    "spo2": Metric(
        "%", "Blood oxygen saturation during sleep, per minute.", SLEEP_MINUTE, BOTH,
    ),
    "breathing_rate": Metric(
        "breaths/min", "Average breathing rate over the night's sleep.", NIGHT, BOTH,
    ),
    "breathing_rate_deep": Metric(
        "breaths/min", "Average breathing rate in deep sleep.", NIGHT, (SYNTHETIC,),
    ),
    "breathing_rate_light": Metric(
        "breaths/min", "Average breathing rate in light sleep.", NIGHT, (SYNTHETIC,),
    ),
    "breathing_rate_rem": Metric(
        "breaths/min", "Average breathing rate in REM sleep.", NIGHT, (SYNTHETIC,),
    ),
    "steps_daily": Metric("steps", "Steps taken over the local day.", DAY, (SYNTHETIC,)),
    "distance_daily": Metric("km", "Distance covered over the local day.", DAY, (SYNTHETIC,)),
    "very_active_minutes_daily": Metric(
        "min", "Minutes of vigorous activity in the local day.", DAY, (SYNTHETIC,),
    ),
    "fairly_active_minutes_daily": Metric(
        "min", "Minutes of moderate activity in the local day.", DAY, (SYNTHETIC,),
    ),
    "lightly_active_minutes_daily": Metric(
        "min", "Minutes of light activity in the local day.", DAY, (SYNTHETIC,),
    ),
    "sedentary_minutes_daily": Metric(
        "min", "Minutes without activity in the local day.", DAY, (SYNTHETIC,),
    ),
    "resting_heart_rate": Metric(
        "bpm", "Resting heart rate of the local day (daily).", DAY, (SYNTHETIC, GOOGLE_HEALTH),
    ),
    "hrv_rmssd_daily": Metric(
        "ms", "Heart rate variability of the local day's main sleep: its RMSSD (daily).",
        DAY, (SYNTHETIC, GOOGLE_HEALTH),
    ),
    # Google Health only (sources/google_health/), summed over the wearables only:
    "steps": Metric(
        "steps", "Steps counted in the interval starting at the timestamp (1 min).",
        MINUTE, (GOOGLE_HEALTH,),
    ),
    "distance": Metric(
        "m", "Distance covered in the minute starting at the timestamp.",
        MINUTE, (GOOGLE_HEALTH,),
    ),
    "calories": Metric(
        "kcal", "Energy burnt (total, with BMR) in the minute starting at the timestamp.",
        MINUTE, (GOOGLE_HEALTH,),
    ),
    "floors": Metric(
        "floors", "Floors climbed in the minute starting at the timestamp.",
        MINUTE, (GOOGLE_HEALTH,),
    ),
    "breathing_rate_sleep": Metric(
        "breaths/min", "Average breathing rate over one sleep, stamped at its sample time.",
        "one per sleep", (GOOGLE_HEALTH,),
    ),
}

# A donated Takeout archive (sources/takeout/) holds what the API gives, but breathing_rate:
# its daily respiratory rate file is a summary of breathing_rate_sleep (docs/takeout.md).
METRICS.update({
    name: replace(metric, sources=(*metric.sources, TAKEOUT))
    for name, metric in METRICS.items()
    if GOOGLE_HEALTH in metric.sources and name != "breathing_rate"
})

# The metrics a zone change moves (Metric.daily).
DAILY_METRICS = sorted(name for name, metric in METRICS.items() if metric.daily)
