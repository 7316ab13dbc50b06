"""A participant's export as one zip, for the participant page's download button.

The files are those `ingest.py export --participant ID` writes: export.run itself writes
them, through the dashboard's read-only connection, into a scratch directory; this module
only reads the query string and packs the directory (docs/dashboard.md, "The export").
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .. import export
from ..db import Connection

# What a date field of the form sends; strptime would take 2026-3-6, and fromisoformat
# 2026-W10-5 or 20260306.
DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class BadQuery(ValueError):
    """A query value the export does not take; its text is the one line the answer says."""


class UnknownParticipant(LookupError):
    pass


@dataclass(frozen=True)
class Wanted:
    """What the form asked for: the export's --format, --resolution, --since and --until."""

    fmt: str = "parquet"
    resolution: str = "raw"
    since: date | None = None  # the participant's local days, as export's date bounds
    until: date | None = None  # exclusive

    def stem(self, participant_id: str) -> str:
        """The zip's name, and the folder it unpacks into: whom, how fine, which days."""
        days = [f"{d:%Y-%m-%d}" for d in (self.since, self.until) if d is not None]
        return "-".join([participant_id, self.resolution, *days, self.fmt])


def wanted(query: Mapping[str, str]) -> Wanted:
    """The query string's choices; BadQuery names the first value that is not one."""
    fmt = _choice(query, "format", export.FORMATS)
    resolution = _choice(query, "resolution", export.RESOLUTIONS)
    since, until = _day(query, "since"), _day(query, "until")
    problem = export.check(since, until)
    if problem:
        raise BadQuery(problem)
    return Wanted(fmt or "parquet", resolution or "raw", since, until)


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    given = query.get(name) or None
    if given is not None and given not in allowed:
        raise BadQuery(f"{name}: expected one of {', '.join(allowed)}, got {given!r}")
    return given


def _day(query: Mapping[str, str], name: str) -> date | None:
    given = query.get(name) or None  # an empty date field of the form: no bound
    if given is None:
        return None
    if DAY.fullmatch(given):
        with contextlib.suppress(ValueError):  # 2026-02-30
            return date.fromisoformat(given)
    raise BadQuery(f"{name}: expected a date YYYY-MM-DD, got {given!r}")


def write_zip(connection: Connection, participant_id: str, chosen: Wanted,
              scratch: Path) -> Path:
    """Export the participant into `scratch` as the command would, and zip it there.

    OSError where a file cannot be written (the server's disk); UnknownParticipant."""
    stem = chosen.stem(participant_id)
    out = scratch / stem
    arguments = export.arguments(out, [participant_id], chosen.since, chosen.until,
                                 resolution=chosen.resolution, fmt=chosen.fmt)
    status = export.run(connection, arguments, progress=False)
    if status == export.EXIT_ARGUMENTS:  # our own arguments are checked: only the id remains
        raise UnknownParticipant(participant_id)
    if status != export.EXIT_OK:
        raise OSError(f"the export of {participant_id} could not be written (see the log)")
    target = scratch / f"{stem}.zip"
    pack(out, target, stem)
    return target


def pack(out: Path, target: Path, folder: str) -> None:
    """The files the manifest names and the manifest, under one folder: unpacked, the folder
    is the export's DIR, and the manifest's hashes check as they do there."""
    listed = json.loads((out / export.MANIFEST).read_text(encoding="utf-8"))["files"]
    with zipfile.ZipFile(target, "w") as archive:
        for name in [entry["name"] for entry in listed] + [export.MANIFEST]:
            # Parquet is compressed already; deflating it again costs time and saves nothing.
            method = zipfile.ZIP_STORED if name.endswith(".parquet") else zipfile.ZIP_DEFLATED
            archive.write(out / name, f"{folder}/{name}", compress_type=method)
