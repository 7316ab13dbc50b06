"""ingest.py with one part of the pipeline taken out, so that the benchmark can measure
what that part costs side by side with the real command, in one run (bench/run.py). For
scratch databases only: the variants load data the real service would load differently.

    python bench/variant.py one-transaction|no-rollups [ingest.py arguments]

- one-transaction: every participant's window is one slice, committed once, as before
  windows were sliced (the cost of slices);
- no-rollups: data_1m, data_1h and data_1d are not kept (the cost of the rollups).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingestion"))

from ingester import cli, pipeline, rollups  # noqa: E402


def whole_window(_start: datetime, end: datetime, _zone: ZoneInfo, _days: int) -> datetime:
    return end


def no_refresh(*_arguments: object) -> None:
    return None


VARIANTS: dict[str, Callable[[], None]] = {
    "one-transaction": lambda: setattr(pipeline, "slice_end", whole_window),
    "no-rollups": lambda: setattr(rollups, "refresh", no_refresh),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        print(f"usage: variant.py {'|'.join(VARIANTS)} [ingest.py arguments]", file=sys.stderr)
        sys.exit(2)
    VARIANTS[sys.argv[1]]()
    sys.exit(cli.main(sys.argv[2:]))
