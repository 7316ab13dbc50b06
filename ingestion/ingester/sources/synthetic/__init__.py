"""Synthetic participants: wearipedia's Fitbit Charge 6 generator (source.py), its
payloads turned into rows (transform.py). docs/wearipedia-notes.md lists the generator's
bugs and how the transform works around them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .source import SyntheticSource

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["SyntheticSource", "build"]


def build(settings: Settings) -> SyntheticSource:
    return SyntheticSource()
