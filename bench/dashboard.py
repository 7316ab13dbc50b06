"""The dashboard's cohort page at study size: server time for N participants x 14 days.

    python bench/dashboard.py [--participants 1000] [--repeat 5] [--dsn DSN]

Makes a scratch database (dropped at the end), fills what the page reads with synthetic
rows: participants, 14 days of wear (adherence_daily), hourly heart rate (data_1h) and one
raw point per hour (raw_data, for participant_flags' last data), and a run log of 14 nightly
runs, some failed. Then it asks the real Flask app for `/` through its test client, as the
read-only role, and prints the median time: the database reads plus the rendering, with no
network. Without --dsn it uses DB_HOST, DB_PORT, DB_USER and DB_PASSWORD (`make bench`'s).
Prints ratios and times only; nothing is asserted (docs/dashboard.md, "Size").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent),
                str(Path(__file__).resolve().parent.parent / "ingestion")]

from ingester.dashboard.app import create_app  # noqa: E402

from bench.databases import Scratch, Server  # noqa: E402

DAYS = 14
NOW = datetime(2026, 3, 15, 8, tzinfo=UTC)
FILL = """
INSERT INTO participants (participant_id, timezone, source, start_date, seed)
SELECT 'p' || lpad(n::text, 4, '0'),
       (ARRAY['Europe/Berlin', 'America/New_York', 'Asia/Tokyo'])[n %% 3 + 1], 'synthetic',
       %(start)s::date, n FROM generate_series(1, %(n)s) n;
INSERT INTO adherence_daily (participant_id, day, wear_minutes, first_sample, last_sample)
SELECT participant_id, d::date, (600 + (hashtext(participant_id || d::text) %% 800 + 800) %% 800),
       d, d + INTERVAL '23 hours'
FROM participants, generate_series(%(start)s::date, %(last)s::date, INTERVAL '1 day') d;
INSERT INTO data_1h (bucket, participant_id, metric_type, count, min, max, mean, sum)
SELECT h, participant_id, 'heart_rate', 3600, 55, 120, 72, 72 * 3600
FROM participants, generate_series(%(start)s::timestamptz, %(now)s::timestamptz
                                   - INTERVAL '1 hour', INTERVAL '1 hour') h;
INSERT INTO raw_data ("timestamp", participant_id, metric_type, value)
SELECT bucket, participant_id, 'heart_rate', 72 FROM data_1h;
INSERT INTO ingest_runs (run_id, participant_id, status, error, started_at, watermark,
                         window_start, window_end)
SELECT md5(d::text)::uuid, participant_id,
       CASE WHEN hashtext(participant_id || d::text) %% 50 = 0 THEN 'failed' ELSE 'ok' END,
       CASE WHEN hashtext(participant_id || d::text) %% 50 = 0 THEN 'PayloadError: bench' END,
       d, d, d - INTERVAL '1 day', d
FROM participants, generate_series(%(start)s::timestamptz + INTERVAL '1 day 2 hours',
                                   %(now)s::timestamptz, INTERVAL '1 day') d;
ANALYZE;
"""


def main() -> int:
    options = argparse.ArgumentParser(prog="bench/dashboard.py",
                                      description=__doc__.split("\n\n")[0])
    options.add_argument("--participants", type=int, default=1000)
    options.add_argument("--repeat", type=int, default=5)
    options.add_argument("--dsn", help="server to make the scratch database on (libpq DSN)")
    arguments = options.parse_args()
    server = Server.from_dsn(arguments.dsn) if arguments.dsn else Server.from_environment(
        os.environ)
    with Scratch(server) as scratch:
        name = scratch.fresh("dashboard")
        connection = server.connect(name)
        began = time.monotonic()
        with connection, connection.cursor() as cursor:
            cursor.execute(FILL, {"n": arguments.participants, "now": NOW,
                                  "start": (NOW - timedelta(days=DAYS)).date(),
                                  "last": NOW.date()})
        connection.close()
        print(f"filled {arguments.participants} participants x {DAYS} days in "
              f"{time.monotonic() - began:.1f} s")
        settings = server.settings(name, dashboard_db_user="dashboard_reader",
                                   dashboard_db_password=server.password)
        client = create_app(settings, NOW).test_client()
        times = []
        for _ in range(arguments.repeat + 1):  # the first warms the caches: not counted
            began = time.perf_counter()
            answer = client.get("/")
            times.append(time.perf_counter() - began)
            if answer.status_code != 200:
                print(f"cohort page: HTTP {answer.status_code}: {answer.text[:300]}")
                return 1
        rows = answer.text.count("data-participant=")
        median = statistics.median(times[1:])
        print(f"cohort_page_seconds {median:.3f} (median of {arguments.repeat}; "
              f"{rows} rows, {len(answer.data) / 1e6:.1f} MB of HTML)")
        print(f"cohort_page_ms_per_participant {median * 1000 / arguments.participants:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
