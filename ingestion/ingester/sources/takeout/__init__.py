"""Participants who donate a Google Takeout archive (docs/takeout.md): archive.py reads the
zip safely, catalog.py sorts its entries, transform.py turns a file into rows, source.py
serves them by window. There is no nightly pull: `participant import-takeout` loads an
archive through the same slices and writer as a run (ingester/takeout_import.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .source import TakeoutSource

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["TakeoutSource", "build"]


def build(settings: Settings) -> TakeoutSource:
    return TakeoutSource()  # no archive: no streams, nothing for a nightly run to do
