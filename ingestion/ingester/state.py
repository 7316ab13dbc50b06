"""The last-run state file: one watermark per participant and stream.

The file is a cache of what the database already holds. It is written only after the data
is committed, atomically (temp file, fsync, rename), and merged under a file lock so that
two processes can only move a watermark forward. When it is missing or unreadable the
caller recovers the watermarks from the database.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

VERSION = 1

Watermarks = dict[str, dict[str, datetime]]  # participant_id -> stream -> instant


class StateCorrupt(ValueError):
    """The state file exists but is not a state this version can read."""


@dataclass(frozen=True)
class LoadedState:
    watermarks: Watermarks
    problem: str | None  # None when the file was read; else why it could not be


def parse_state(text: str) -> Watermarks:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateCorrupt(f"not JSON ({error.msg} at line {error.lineno})") from None
    except (ValueError, RecursionError) as error:
        # JSON, but not what Python's parser takes: nested deeper than its recursion limit,
        # or a number over its integer-digit limit. Either way no state this code wrote.
        raise StateCorrupt(f"not JSON this service wrote ({type(error).__name__})") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise StateCorrupt(f"not a version {VERSION} state document")
    participants = document.get("watermarks")
    if not isinstance(participants, dict):
        raise StateCorrupt("'watermarks' is not an object")
    watermarks: Watermarks = {}
    for participant_id, streams in participants.items():
        if not isinstance(streams, dict):
            raise StateCorrupt(f"watermarks of {participant_id!r} are not an object")
        watermarks[participant_id] = {
            stream: _instant(participant_id, stream, value) for stream, value in streams.items()
        }
    return watermarks


# The longest piece of a bad value an error line quotes: the file is not ours to print whole.
SHOWN_CHARS = 40


def _instant(participant_id: str, stream: str, value: object) -> datetime:
    try:
        if not isinstance(value, str):
            raise ValueError
        instant = datetime.fromisoformat(value)
    except ValueError:
        shown = repr(value) if isinstance(value, str) else f"a JSON {type(value).__name__}"
        raise StateCorrupt(f"{participant_id}/{stream}: {shown[:SHOWN_CHARS]} is not a "
                           "timestamp") from None
    if instant.tzinfo is None:
        raise StateCorrupt(f"{participant_id}/{stream}: {value!r} has no UTC offset")
    return instant


def render_state(watermarks: Watermarks) -> str:
    document = {
        "version": VERSION,
        "watermarks": {
            participant_id: {s: t.isoformat() for s, t in sorted(streams.items())}
            for participant_id, streams in sorted(watermarks.items())
        },
    }
    return json.dumps(document, indent=2) + "\n"


def merge(current: Watermarks, updates: Mapping[str, Mapping[str, datetime]]) -> Watermarks:
    """Current watermarks with updates applied; a watermark never moves backwards."""
    merged = {participant_id: dict(streams) for participant_id, streams in current.items()}
    for participant_id, streams in updates.items():
        target = merged.setdefault(participant_id, {})
        for stream, instant in streams.items():
            previous = target.get(stream)
            target[stream] = instant if previous is None else max(previous, instant)
    return merged


def load(path: Path) -> LoadedState:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedState({}, "missing")
    except (OSError, UnicodeDecodeError) as error:
        return LoadedState({}, f"unreadable ({error})")
    try:
        return LoadedState(parse_state(text), None)
    except StateCorrupt as error:
        return LoadedState({}, f"corrupt: {error}")


def save(path: Path, updates: Mapping[str, Mapping[str, datetime]]) -> None:
    """Merge updates into the file on disk, atomically and under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        on_disk = load(path)
        _write_atomically(path, render_state(merge(on_disk.watermarks, updates)))


def set_aside(path: Path, suffix: str) -> Path:
    """Keep an unreadable state file for inspection instead of overwriting it."""
    kept = path.with_name(f"{path.name}.{suffix}")
    os.replace(path, kept)
    return kept


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Read-only is enough for flock, and lets a run as another user (a `docker compose exec`
    # as root beside cron's unprivileged job) share a lock file the other one created.
    descriptor = os.open(path.with_name(path.name + ".lock"), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Readable by all (it holds no secret), replaceable by whoever may write the directory.
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w",
              encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a power cut
    finally:
        os.close(directory)
