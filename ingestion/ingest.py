"""Entry point: one delta ingestion run for the whole cohort (cron and `docker compose exec`).

See `python ingest.py --help` for backfills, dry runs, status and enrolment.
"""

import sys

from ingester.cli import main

if __name__ == "__main__":
    sys.exit(main())
