"""A donated Takeout zip, read safely: entries are streamed, never extracted.

The archive comes from outside the lab. Before anything is read, every entry's name and
declared sizes are checked (`open_archive`); an archive that fails is refused whole
(UnsafeArchive, exit 2) before a row is written. While an entry is read, the bytes it
really inflates to are counted against what it declared: zipfile would silently cut a
liar at its declared size and report a CRC error, which reads as a damaged file rather
than the attack it is.
"""

from __future__ import annotations

import copy
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ...errors import ConfigError

# A real Fitbit export is ~1.5 GB inflated, most of it in a few sensor dumps we never read
# (UserActivityProbabilities ~1 GB across files). These bounds are far above any honest
# archive and far below what would fill a disk or a day of CPU.
MAX_ENTRY_BYTES = 8 << 30
MAX_TOTAL_BYTES = 200 << 30
# CSV and JSON of sensor data deflate 5-30x; a zip bomb inflates 1000x and more. Small
# entries ("no data", a header) may compress better than any real file, so the ratio is
# only judged on entries that inflate past RATIO_FLOOR_BYTES.
MAX_RATIO = 200
RATIO_FLOOR_BYTES = 1 << 20


class UnsafeArchive(ConfigError):
    """The archive cannot be trusted (a name that escapes, a bomb): exit 2, nothing written."""


class DamagedEntry(ValueError):
    """One entry cannot be read (truncated, bad CRC): it is skipped, the rest loads."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int  # declared uncompressed bytes


def check_name(name: str) -> None:
    """Refuse a name that would leave an extraction directory: absolute, drive, or `..`."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive entry {name!r} has an absolute path: expected a "
                            "relative name under Takeout/")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise UnsafeArchive(f"archive entry {name!r} escapes the archive with '..': "
                            "expected a relative name under Takeout/")


def check_size(info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_ENTRY_BYTES:
        raise UnsafeArchive(f"archive entry {info.filename!r} declares {info.file_size} bytes: "
                            f"expected at most {MAX_ENTRY_BYTES} (a zip bomb?)")
    if (info.file_size > RATIO_FLOOR_BYTES
            and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
        raise UnsafeArchive(f"archive entry {info.filename!r} inflates "
                            f"{info.file_size / max(info.compress_size, 1):.0f}x: expected "
                            f"at most {MAX_RATIO}x (a zip bomb?)")


class TakeoutArchive:
    """An open, checked archive; `open(member)` streams one entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as error:
            raise UnsafeArchive(f"{path}: not a readable zip archive ({error}): expected "
                                "the .zip Google Takeout delivers") from None
        try:
            self._infos = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
            self._check()
        except UnsafeArchive:
            self._zip.close()
            raise

    def _check(self) -> None:
        total = 0
        for info in self._infos.values():
            check_name(info.filename)
            check_size(info)
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeArchive(f"{self.path}: declares {total} bytes in all: expected at "
                                f"most {MAX_TOTAL_BYTES} (a zip bomb?)")

    @property
    def members(self) -> list[Member]:
        return [Member(i.filename, i.file_size) for i in self._infos.values()]

    def open(self, name: str) -> IO[bytes]:
        return io.BufferedReader(_CountedEntry(self._zip, self._infos[name]), 1 << 16)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> TakeoutArchive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _CountedEntry(io.RawIOBase):
    """An entry's bytes, counted and checksummed here: more than declared is UnsafeArchive,
    fewer or a wrong CRC is DamagedEntry."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self._info = info
        lenient = copy.copy(info)
        # One byte more than declared lets a liar show itself; without a CRC zipfile does
        # not check (and cut) the data, this class does.
        lenient.file_size = info.file_size + 1
        del lenient.CRC
        try:
            self._stream = archive.open(lenient)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile) as error:
            # Encrypted, or compressed in a way zipfile cannot read (Deflate64 from Windows).
            raise DamagedEntry(f"cannot be read ({error})") from None
        self._count = 0
        self._crc = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._stream.read(len(buffer))
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
            raise DamagedEntry(f"damaged ({error})") from None
        self._count += len(data)
        if self._count > self._info.file_size:
            raise UnsafeArchive(f"archive entry {self._info.filename!r} inflates past the "
                                f"{self._info.file_size} bytes it declares (a zip bomb?)")
        self._crc = zlib.crc32(data, self._crc)
        if not data:
            self._at_end()
        buffer[: len(data)] = data
        return len(data)

    def _at_end(self) -> None:
        if self._count < self._info.file_size:
            raise DamagedEntry(f"truncated: {self._count} of {self._info.file_size} bytes")
        if self._crc != self._info.CRC:
            raise DamagedEntry("damaged (bad CRC-32)")

    def close(self) -> None:
        self._stream.close()
        super().close()
