"""Generation alone, as a process of its own, the way the command is timed:

    python bench/generation.py PARTICIPANTS DAYS REPORT_FILE

Interpreter start, the service's imports, wearipedia's import on the first read and
SyntheticSource.read of every stream of every participant (workload.generate), nothing
written anywhere. bench/run.py starts it through peak_rss.py in turn with ingest.py, so that
end to end over generation compares two processes of the same minute: generation timed in
the benchmark's own process paid wearipedia's import once and then ran warm, while every
ingest.py pays it again. REPORT_FILE receives {"rows": N, "import_seconds": S,
"read_seconds": S}.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingestion"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import cohort, generate  # noqa: E402


def main(participants: int, days: float, report_file: str) -> int:
    generated = generate(cohort(participants, days), None)
    with open(report_file, "w", encoding="utf-8") as report:
        json.dump({"rows": generated.rows, "import_seconds": generated.import_seconds,
                   "read_seconds": generated.seconds}, report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]))
