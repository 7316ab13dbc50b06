"""The metric vocabulary: every metric_type stored in raw_data, with its unit and meaning.

Both sources emit only names listed here (their tests check it), and the docs describe the
metrics from it. A daily metric is stamped at the start of its participant's local day
(local midnight, unless a DST jump skips it), converted to UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

# The active-zone-minutes rule every source follows: a minute in a zone earns this score in
# `active_zone_minutes`, and 1 in the zone's own metric.
AZM_SCORE = {"fat_burn": 1, "cardio": 2, "peak": 2}


@dataclass(frozen=True)
class Metric:
    unit: str
    description: str


METRICS: dict[str, Metric] = {
    "heart_rate": Metric("bpm", "Heart rate, one sample per second."),
    # One rule in every source (AZM_RULE): the score is what the Fitbit app shows, the zone
    # metrics are minutes spent in the zone.
    "active_zone_minutes": Metric(
        "min/min",
        "Active zone minutes score of the minute starting at the timestamp, as the Fitbit app "
        "counts it: 1 for a fat-burn minute, 2 for a cardio or peak minute.",
    ),
    "fat_burn_active_zone_minutes": Metric(
        "min/min", "Minutes of that minute spent in the fat-burn heart-rate zone (0 or 1)."
    ),
    "cardio_active_zone_minutes": Metric(
        "min/min", "Minutes of that minute spent in the cardio heart-rate zone (0 or 1)."
    ),
    "peak_active_zone_minutes": Metric(
        "min/min", "Minutes of that minute spent in the peak heart-rate zone (0 or 1)."
    ),
    "hrv_rmssd": Metric(
        "ms", "Heart rate variability during sleep: RMSSD of beat-to-beat intervals, per minute."
    ),
    "hrv_hf": Metric("ms²", "HRV high-frequency power (0.15-0.4 Hz) during sleep, per minute."),
    "hrv_lf": Metric("ms²", "HRV low-frequency power (0.04-0.15 Hz) during sleep, per minute."),
    "hrv_coverage": Metric(
        "fraction", "Share (0-1) of the minute with usable beat-to-beat data for the HRV values."
    ),
    "spo2": Metric("%", "Blood oxygen saturation during sleep, per minute."),
    "breathing_rate": Metric("breaths/min", "Average breathing rate over the night's sleep."),
    "breathing_rate_deep": Metric("breaths/min", "Average breathing rate in deep sleep."),
    "breathing_rate_light": Metric("breaths/min", "Average breathing rate in light sleep."),
    "breathing_rate_rem": Metric("breaths/min", "Average breathing rate in REM sleep."),
    "steps_daily": Metric("steps", "Steps taken over the local day."),
    "distance_daily": Metric("km", "Distance covered over the local day."),
    "very_active_minutes_daily": Metric("min", "Minutes of vigorous activity in the local day."),
    "fairly_active_minutes_daily": Metric("min", "Minutes of moderate activity in the local day."),
    "lightly_active_minutes_daily": Metric("min", "Minutes of light activity in the local day."),
    "sedentary_minutes_daily": Metric("min", "Minutes without activity in the local day."),
    "resting_heart_rate": Metric("bpm", "Resting heart rate of the local day (daily)."),
    "hrv_rmssd_daily": Metric(
        "ms", "Heart rate variability of the local day's main sleep: its RMSSD (daily)."
    ),
    # Google Health only (sources/google_health/), summed over the wearables only:
    "steps": Metric("steps", "Steps counted in the interval starting at the timestamp (1 min)."),
    "distance": Metric("m", "Distance covered in the minute starting at the timestamp."),
    "calories": Metric("kcal", "Energy burnt (total, with BMR) in the minute starting at the "
                       "timestamp."),
    "floors": Metric("floors", "Floors climbed in the minute starting at the timestamp."),
    "breathing_rate_sleep": Metric(
        "breaths/min", "Average breathing rate over one sleep, stamped at its sample time."
    ),
}
