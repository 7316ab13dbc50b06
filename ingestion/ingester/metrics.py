"""The metric vocabulary: every metric_type stored in raw_data, with its unit and meaning.

Both sources emit only names listed here (their tests check it), and the docs describe the
metrics from it. A daily metric is stamped at the start of its participant's local day
(local midnight, unless a DST jump skips it), converted to UTC.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    unit: str
    description: str
    # One value per local day, stamped at local midnight: a change of the participant's zone
    # moves it to the new zone's midnight of the same date (db.restamp_daily_values).
    daily: bool = False


METRICS: dict[str, Metric] = {
    "heart_rate": Metric("bpm", "Heart rate, one sample per second."),
    "active_zone_minutes": Metric(
        "min/min", "Active zone minutes earned in the minute starting at the timestamp."
    ),
    "fat_burn_active_zone_minutes": Metric(
        "min/min", "Active zone minutes of that minute earned in the fat-burn heart-rate zone."
    ),
    "cardio_active_zone_minutes": Metric(
        "min/min", "Active zone minutes of that minute earned in the cardio heart-rate zone."
    ),
    "peak_active_zone_minutes": Metric(
        "min/min", "Active zone minutes of that minute earned in the peak heart-rate zone."
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
    "breathing_rate": Metric(
        "breaths/min", "Average breathing rate over the night's sleep.", daily=True
    ),
    "breathing_rate_deep": Metric(
        "breaths/min", "Average breathing rate in deep sleep.", daily=True
    ),
    "breathing_rate_light": Metric(
        "breaths/min", "Average breathing rate in light sleep.", daily=True
    ),
    "breathing_rate_rem": Metric("breaths/min", "Average breathing rate in REM sleep.", daily=True),
    "steps_daily": Metric("steps", "Steps taken over the local day.", daily=True),
    "distance_daily": Metric("km", "Distance covered over the local day.", daily=True),
    "very_active_minutes_daily": Metric(
        "min", "Minutes of vigorous activity in the local day.", daily=True
    ),
    "fairly_active_minutes_daily": Metric(
        "min", "Minutes of moderate activity in the local day.", daily=True
    ),
    "lightly_active_minutes_daily": Metric(
        "min", "Minutes of light activity in the local day.", daily=True
    ),
    "sedentary_minutes_daily": Metric(
        "min", "Minutes without activity in the local day.", daily=True
    ),
    # Google Health only (sources/google_health/):
    "steps": Metric("steps", "Steps counted in the interval starting at the timestamp (1 min)."),
    "breathing_rate_sleep": Metric(
        "breaths/min", "Average breathing rate over one sleep, stamped at its sample time."
    ),
}

# The metrics a zone change moves (Metric.daily).
DAILY_METRICS = sorted(name for name, metric in METRICS.items() if metric.daily)
