"""Synthetic participants: Fitbit Charge 6 data made by wearipedia 0.1.7's generator.

wearipedia's device object generates every type for its whole date range at once and keeps
it in memory (about 27 MB a day), and it ignores its seed. So this source calls the
generator's own per-day functions instead, only for the types it stores, one day at a time,
and seeds Python's `random` and numpy itself before each call: a participant's local day is
then a pure function of (seed, date), whatever window it is read in. Those functions are
internals, which is why wearipedia is pinned and its version checked at load time.
docs/wearipedia-notes.md has the measurements behind this.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import cache, partial
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import ParticipantError
from ...model import DeliveryBound, Participant, ReadReport, Row, Window
from ...sleep import SLEEP_STREAM, SleepSession
from ...sleep_log import session_from_log
from . import transform

log = logging.getLogger(__name__)

WEARIPEDIA_VERSION = "0.1.7"
# The Charge 6 device class delegates to the Fitbit Sense generator module, which needs only
# the standard library and numpy. wearipedia's package __init__ imports every device it knows
# (scipy.stats, sympy, pandas, myfitnesspal: about 7 s and 3.5 s of CPU here, and its dreem
# module creates a directory in /tmp), so the generator is loaded from its file alone.
GENERATOR_NAME = "wearipedia.devices.fitbit.fitbit_sense_gen"
GENERATOR_FILE = Path("devices", "fitbit", "fitbit_sense_gen.py")

STREAMS = ("heart", "hrv", "spo2", "breathing", "activity", SLEEP_STREAM)

# The order of the tuple wearipedia's get_activity returns.
_ACTIVITY_ORDER = (
    "steps",
    "minutesVeryActive",
    "minutesFairlyActive",
    "minutesLightlyActive",
    "distance",
    "minutesSedentary",
)

# wearipedia draws from the process-wide `random` and `numpy.random`: two threads generating
# at once would interleave their draws and make a day's values depend on timing.
_RNG_LOCK = threading.Lock()


class WearipediaUnavailable(ParticipantError):
    """wearipedia cannot be used here: missing, another version, or its import fails."""


def day_seed(participant: Participant, day: date, part: str) -> bytes:
    """Fixes one part of one local day of a participant (sha256: Python's hash() is salted).

    Parts drawn separately (the sleep window, heart rate, ...) get their own seeds, so a
    stream's values do not depend on which other streams were read before it.
    """
    key = participant.seed if participant.seed is not None else f"id:{participant.participant_id}"
    return hashlib.sha256(f"{key}|{day.isoformat()}|{part}".encode()).digest()


class _Wearipedia:
    """The loaded generator module, used only through `seeded`."""

    def __init__(self, generator: ModuleType, numpy_random: Any) -> None:
        self._generator = generator
        self._numpy_random = numpy_random

    @contextmanager
    def seeded(self, seed: bytes) -> Iterator[ModuleType]:
        """The generator, with both global RNGs seeded; their previous states come back after."""
        with _RNG_LOCK:
            saved = random.getstate(), self._numpy_random.get_state()
            random.seed(int.from_bytes(seed[:8], "big"))
            self._numpy_random.seed(int.from_bytes(seed[8:12], "big"))  # legacy seed: 32 bits
            try:
                yield self._generator
            finally:
                random.setstate(saved[0])
                self._numpy_random.set_state(saved[1])


def load_wearipedia() -> _Wearipedia:
    """Load wearipedia's generator module, once per process and only on use."""
    try:
        installed = metadata.version("wearipedia")
    except metadata.PackageNotFoundError as error:
        raise WearipediaUnavailable("wearipedia is not installed") from error
    if installed != WEARIPEDIA_VERSION:
        raise WearipediaUnavailable(
            f"wearipedia {installed} is installed; this source calls internals of "
            f"{WEARIPEDIA_VERSION}, whose output it was checked against"
        )
    started = time.monotonic()
    generator = _generator_module()
    import numpy

    log.info("loaded wearipedia %s's generator in %.1f s", installed,
             time.monotonic() - started)
    return _Wearipedia(generator, numpy.random)


@cache
def _generator_module() -> ModuleType:
    """The generator module, executed from its file without the package's __init__; once
    per process, however many sources (thread workers) load it."""
    package = importlib.util.find_spec("wearipedia")  # finds; does not import
    if package is None or package.origin is None:
        raise WearipediaUnavailable("wearipedia is installed but cannot be found on sys.path")
    path = Path(package.origin).parent / GENERATOR_FILE
    spec = importlib.util.spec_from_file_location(GENERATOR_NAME, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise WearipediaUnavailable(f"wearipedia {WEARIPEDIA_VERSION} has no generator {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any failure of a third-party import is "unavailable"
        raise WearipediaUnavailable(f"loading wearipedia's generator failed: {error}") from error
    return module


class SyntheticSource:
    """Streams of a synthetic participant; each generates whole local days.

    heart: heart_rate and active_zone_minutes (+ per zone); one stream because the library
      derives zone minutes from the day's heart rate, by far the costliest thing it makes;
      and the day's resting_heart_rate, which comes in the same payload.
    hrv: hrv_rmssd, hrv_hf, hrv_lf, hrv_coverage; hrv_rmssd_daily.   spo2: spo2.
    breathing: breathing_rate (+ per sleep stage).  activity: the daily totals.
    """

    streams = STREAMS

    def __init__(self) -> None:
        self._library: _Wearipedia | None = None

    def close(self) -> None:
        """Nothing to release: the generator keeps no connection."""

    def delivered_until(self, participant: Participant, now: datetime) -> DeliveryBound:
        # Generated, never synced: every point before now exists the moment it is asked for.
        return DeliveryBound(now, "generated")

    def read_sleep(
        self, participant: Participant, window: Window, report: ReadReport
    ) -> list[SleepSession]:
        """The sleep logs that end in the window: a log of day D starts on D's evening and
        ends on D or D + 1, so the window's days and the one before are generated."""
        days = transform.local_dates(window, participant.zone)
        if not days:
            return []
        if self._library is None:
            self._library = load_wearipedia()
        sessions = []
        for day in [days[0] - timedelta(days=1), *days]:
            with self._library.seeded(day_seed(participant, day, "sleep log")) as gen:
                log = gen.get_sleep(day.isoformat())
            session = session_from_log(log, participant.zone, report)
            if session is not None and session.end in window:
                sessions.append(session)
        return sessions

    def read(
        self, participant: Participant, stream: str, window: Window, report: ReadReport
    ) -> Iterator[Row]:
        if stream == SLEEP_STREAM:  # sessions, not rows: the pipeline calls read_sleep
            return iter(())
        if stream not in _READERS:
            raise ValueError(f"unknown synthetic stream {stream!r}; known: {STREAMS}")
        days = transform.local_dates(window, participant.zone)
        if not days:
            return iter(())
        if self._library is None:
            self._library = load_wearipedia()
        return _READERS[stream](self._library, participant, days, window, report)


def _heart(
    lib: _Wearipedia, who: Participant, days: list[date], window: Window, report: ReadReport
) -> Iterator[Row]:
    for day in days:
        with lib.seeded(day_seed(who, day, "heart")) as gen:
            heart = gen.get_heart_rate(day.isoformat(), intraday=True)
        # Zone minutes come from that same series and draw no random numbers.
        zone_minutes = gen.get_intraday_azm(day.isoformat(), heart)
        yield from transform.heart_rate_rows(heart, who.participant_id, who.zone, window, report)
        yield from transform.active_zone_minutes_rows(
            zone_minutes, who.participant_id, who.zone, window, report
        )
        yield from transform.resting_heart_rate_rows(
            heart, who.participant_id, who.zone, window, report
        )


def _nights(lib: _Wearipedia, who: Participant, days: list[date], kind: str) -> Iterator[Any]:
    """One night per day, from two days before the first: a night runs into the next day,
    and where it may begin depends on the night before it."""
    for day in [days[0] - timedelta(days=2), days[0] - timedelta(days=1), *days]:
        # HRV and SpO2 share each night's start and length, as in the library.
        with lib.seeded(day_seed(who, day, "sleep")) as gen:
            hour, minute, second, minutes = gen.get_random_sleep_start_time()
        with lib.seeded(day_seed(who, day, kind)) as gen:
            make = gen.get_intraday_hrv if kind == "hrv" else gen.get_intraday_spo2
            yield make(day.isoformat(), hour, minute, second, minutes)


def _sleep(
    kind: str,
    lib: _Wearipedia,
    who: Participant,
    days: list[date],
    window: Window,
    report: ReadReport,
) -> Iterator[Row]:
    nights = _nights(lib, who, days, kind)
    return transform.sleep_rows(kind, nights, who.participant_id, who.zone, window, report)


def _breathing(
    lib: _Wearipedia, who: Participant, days: list[date], window: Window, report: ReadReport
) -> Iterator[Row]:
    for day in days:
        with lib.seeded(day_seed(who, day, "breathing")) as gen:
            payload = gen.get_intraday_breath_rate(day.isoformat())
        yield from transform.breathing_rate_rows(
            payload, who.participant_id, who.zone, window, report
        )


def _activity(
    lib: _Wearipedia, who: Participant, days: list[date], window: Window, report: ReadReport
) -> Iterator[Row]:
    for day in days:
        with lib.seeded(day_seed(who, day, "activity")) as gen:
            totals = gen.get_activity(day.isoformat())
        payload = dict(zip(_ACTIVITY_ORDER, totals, strict=True))
        yield from transform.activity_rows(payload, who.participant_id, who.zone, window, report)


def _hrv(
    lib: _Wearipedia, who: Participant, days: list[date], window: Window, report: ReadReport
) -> Iterator[Row]:
    """The nights' per-minute HRV, then each day's daily RMSSD (`get_hrv`, drawn from its
    own seed: the per-minute values and every other stream stay as they were)."""
    yield from _sleep("hrv", lib, who, days, window, report)
    for day in days:
        with lib.seeded(day_seed(who, day, "hrv daily")) as gen:
            payload = gen.get_hrv(day.isoformat())
        yield from transform.daily_hrv_rows(payload, who.participant_id, who.zone, window,
                                            report)


_READERS: dict[str, Callable[..., Iterator[Row]]] = {
    "heart": _heart,
    "hrv": _hrv,
    "spo2": partial(_sleep, "spo2"),
    "breathing": _breathing,
    "activity": _activity,
}
