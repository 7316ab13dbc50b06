"""A Google Health participant's paired devices: what they tell about late data, and storage.

`users.pairedDevices.list` (scope googlehealth.settings.readonly) gives each paired
Fitbit's type (TRACKER or SCALE), its last sync with the Fitbit app, and its battery.
A tracker's points reach Google only when it syncs, so nothing it measured after its last
sync can be there yet; before it, everything is. That is what bounds a stream's watermark
(DeliveryBound, "device sync"). Without the scope, or when the list fails, the bound is the
late-sync horizon: the tracker's own memory (LATE_SYNC_HORIZON_DAYS, "horizon").

Which device bounds which data, with several devices:
- Every stream we load (heart rate, steps, SpO2, HRV, AZM, breathing rates) is measured by
  a tracker, so only TRACKER syncs count. A scale (weight, body fat) never bounds them.
- The oldest sync of the trackers still in use bounds them: each tracker delivers only up
  to its own last sync, so with two trackers worn (day and night, say) the one that syncs
  less often still holds data after the other's sync; a bound at the newest sync would let
  the watermark pass it, and its points would land before every later window.
- A tracker that has not synced for longer than the horizon is retired (a participant who
  moves to a new tracker keeps the old one paired): what it still holds is at most the last
  `horizon` of data, which the horizon re-reads anyway. So an old tracker holds the
  watermarks back for at most the horizon, never for good. A bound never lies before
  now - horizon, and never after now.

Parsing is pure (plain dicts in, values out); save_devices writes in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg2.extensions

from ...errors import PayloadError
from ...model import DeliveryBound
from .transform import PointError, parse_timestamp

TRACKER = "TRACKER"
SCALE = "SCALE"
DEVICE_SYNC = "device sync"
HORIZON = "horizon"
# The documented maximum page size of users.pairedDevices.list (the default is 5).
DEVICE_PAGE_SIZE = 100
# More pages than this is a server that keeps handing out tokens (a person has a handful).
MAX_DEVICE_PAGES = 10


@dataclass(frozen=True)
class PairedDevice:
    device_id: str  # the resource name, users/{user}/pairedDevices/{id}
    device_type: str  # TRACKER, SCALE, or what Google adds later
    last_sync: datetime | None  # aware UTC; None if Google does not say
    battery_level: int | None
    battery_status: str | None  # High | Medium | Low | Empty
    device_version: str | None  # the product name, e.g. "Charge 6"


def devices_from_page(page: object) -> tuple[list[PairedDevice], str | None]:
    """The devices of one list page and the next page token; PayloadError if malformed.

    A device without a usable name is skipped (it cannot be stored under a key); a device
    whose lastSyncTime cannot be read is kept without one (it bounds nothing).
    """
    if not isinstance(page, Mapping):
        raise PayloadError("a pairedDevices page must be a JSON object")
    entries = page.get("pairedDevices", [])
    token = page.get("nextPageToken")
    if not isinstance(entries, list) or (token is not None and not isinstance(token, str)):
        raise PayloadError("a pairedDevices page of the wrong shape")
    devices = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        devices.append(
            PairedDevice(
                device_id=entry["name"],
                device_type=_text(entry.get("deviceType")) or "DEVICE_TYPE_UNSPECIFIED",
                last_sync=_instant(entry.get("lastSyncTime")),
                battery_level=_integer(entry.get("batteryLevel")),
                battery_status=_text(entry.get("batteryStatus")),
                device_version=_text(entry.get("deviceVersion")),
            )
        )
    return devices, token or None


def delivery_bound(
    devices: Iterable[PairedDevice], now: datetime, horizon: timedelta
) -> DeliveryBound:
    """The rule of the module docstring: the oldest sync of the trackers in use (synced
    within the horizon), within [now - horizon, now]."""
    floor = now - horizon
    in_use = [d.last_sync for d in devices
              if d.device_type == TRACKER and d.last_sync and d.last_sync > floor]
    if not in_use:
        return DeliveryBound(floor, HORIZON)
    return DeliveryBound(min(*in_use, now), DEVICE_SYNC)


def save_devices(
    cursor: psycopg2.extensions.cursor,
    participant_id: str,
    devices: Iterable[PairedDevice],
    seen_at: datetime,
) -> None:
    """Upsert what Google said about each device (its latest state; older rows stay)."""
    for device in devices:
        cursor.execute(
            "INSERT INTO google_devices (participant_id, device_id, device_type, "
            "device_version, last_sync_time, battery_level, battery_status, seen_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (participant_id, device_id) DO UPDATE SET "
            "device_type = excluded.device_type, device_version = excluded.device_version, "
            "last_sync_time = coalesce(excluded.last_sync_time, google_devices.last_sync_time), "
            "battery_level = excluded.battery_level, battery_status = excluded.battery_status, "
            "seen_at = excluded.seen_at",
            (
                participant_id,
                device.device_id,
                device.device_type,
                device.device_version,
                device.last_sync,
                device.battery_level,
                device.battery_status,
                seen_at,
            ),
        )


def _text(raw: object) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def _integer(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    return None


def _instant(raw: object) -> datetime | None:
    try:
        return parse_timestamp(raw, "lastSyncTime")
    except PointError:
        return None
