"""The paired devices and the delivery bound they give the watermarks
(sources/google_health/devices.py), pure and against the fake API.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from fake_google_health import paired_device
from google_support import P1, T0, MemoryStore, settings_for
from ingester.model import DeliveryBound
from ingester.sources.google_health import devices as devices_module
from ingester.sources.google_health.source import GoogleHealthSource
from ingester.sources.google_health.transform import SETTINGS
from support import utc

HORIZON = timedelta(days=7)


def test_without_the_settings_scope_the_horizon_bounds_the_watermarks(fake):
    store = MemoryStore(fake.refresh_token)  # the fake's grant lacks settings.readonly
    source = GoogleHealthSource(settings_for(fake), store)
    assert source.delivered_until(P1, T0) == DeliveryBound(T0 - HORIZON, "horizon")
    assert store.missing_scopes == {SETTINGS}
    assert len(fake.device_requests()) == 1


def test_the_tracker_in_use_bounds_the_watermarks(fake):
    fake.granted_scopes.add(SETTINGS)
    fake.devices = [
        paired_device("old", last_sync=T0 - timedelta(days=40)),  # retired, still paired
        paired_device("scale", "SCALE", last_sync=T0 - timedelta(hours=1)),  # never bounds
        paired_device("new", last_sync=T0 - timedelta(hours=5), battery_level=42),
    ] + [paired_device(f"spare{i}", "TRACKER") for i in range(5)]  # 2 pages, no sync time
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    bound = source.delivered_until(P1, T0)
    assert bound == DeliveryBound(T0 - timedelta(hours=5), "device sync")
    assert store.missing_scopes == set()
    assert {d.device_id: d.battery_level for d in store.devices}["users/me/pairedDevices/new"] == 42
    assert len(store.devices) == 8 and len(fake.device_requests()) == 1  # pageSize 100


@pytest.mark.parametrize(
    ("syncs", "expected"),
    [
        ([], ("horizon", T0 - HORIZON)),  # no device, or no sync time: the horizon
        ([("SCALE", T0 - timedelta(hours=1))], ("horizon", T0 - HORIZON)),
        ([("TRACKER", T0 - timedelta(days=8))], ("horizon", T0 - HORIZON)),  # retired
        ([("TRACKER", T0 - timedelta(days=2))], ("device sync", T0 - timedelta(days=2))),
        (  # two trackers in use: each has delivered only up to its own sync
            [("TRACKER", T0 - timedelta(days=2)), ("TRACKER", T0 - timedelta(days=1))],
            ("device sync", T0 - timedelta(days=2)),
        ),
        (  # a tracker silent for longer than the horizon is retired
            [("TRACKER", T0 - timedelta(days=9)), ("TRACKER", T0 - timedelta(days=1))],
            ("device sync", T0 - timedelta(days=1)),
        ),
        ([("TRACKER", T0 + timedelta(days=1))], ("device sync", T0)),  # never after now
    ],
)
def test_which_device_bounds_the_data(syncs, expected):
    devices = [
        devices_module.PairedDevice(f"d{i}", kind, at, None, None, None)
        for i, (kind, at) in enumerate(syncs)
    ]
    bound = devices_module.delivery_bound(devices, T0, HORIZON)
    assert (bound.rule, bound.until) == expected


def test_a_device_list_that_fails_takes_the_horizon(fake, fast_retries):
    fake.granted_scopes.add(SETTINGS)
    fake.fail("devices", status=503, times=10)
    store = MemoryStore(fake.refresh_token)
    source = GoogleHealthSource(settings_for(fake), store)
    assert source.delivered_until(P1, T0) == DeliveryBound(T0 - HORIZON, "horizon")
    assert store.missing_scopes == set()  # an outage is not a missing scope


def test_without_a_device_sync_the_watermark_stays_a_horizon_behind_now(fake):
    # A Fitbit that syncs days late puts points before the start of later windows: the
    # watermark may not pass now - LATE_SYNC_HORIZON_DAYS, so every run re-reads that much.
    now = utc("2026-03-10T00:00:00")
    source = GoogleHealthSource(settings_for(fake), MemoryStore(fake.refresh_token))
    assert source.delivered_until(P1, now) == DeliveryBound(now - timedelta(days=7), "horizon")
    longer = dataclasses.replace(settings_for(fake), late_sync_horizon=timedelta(days=14))
    bound = GoogleHealthSource(longer, MemoryStore(fake.refresh_token)).delivered_until(P1, now)
    assert bound.until == now - timedelta(days=14)
