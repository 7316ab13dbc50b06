"""participant_status: each participant's last run, summed over its slices (issue 23).

A run commits a participant's window in slices, one run-log row each; the view showed only
the newest slice (19,856 rows written where the run wrote 301,756).
"""

from __future__ import annotations

from support import ok, query, run_ingest

FIRST = "2026-03-09T12:00:00+00:00"
SECOND = "2026-03-10T12:00:00+00:00"


def test_the_view_shows_the_last_run_summed_over_its_slices(env):
    ok(run_ingest(env, "participant", "add", "p1", "--timezone", "Europe/Berlin", "--seed", "1",
                  "--start-date", "2026-03-03"))
    ok(run_ingest(env, "participant", "add", "p2", "--timezone", "Asia/Tokyo", "--seed", "2",
                  "--start-date", "2026-03-08"))
    ok(run_ingest(env, "--now", FIRST))
    ok(run_ingest(env, "--now", SECOND))
    for pid in ("p1", "p2"):
        runs = query(env, """
            SELECT run_id, count(*), sum(rows_read), sum(rows_written), sum(rows_rejected),
                   min(window_start), max(window_end), min(started_at), max(finished_at)
            FROM ingest_runs WHERE participant_id = %s
            GROUP BY run_id ORDER BY max(finished_at)""", (pid,))
        assert len(runs) == 2, runs
        _run_id, _slices, _read, written, rejected, start, end, began, ended = runs[-1]
        shown = query(env, """
            SELECT status, window_start, window_end, rows_written, rows_rejected, error,
                   finished_at, duration
            FROM participant_status WHERE participant_id = %s""", (pid,))
        assert shown == [("ok", start, end, written, rejected, None, ended, ended - began)], (
            pid, runs)
    # The first run of p1 took more than one slice: the view must not be its newest alone.
    first_run = query(env, """
        SELECT count(*), sum(rows_written), (array_agg(rows_written ORDER BY id DESC))[1]
        FROM ingest_runs WHERE participant_id = 'p1'
        GROUP BY run_id ORDER BY min(id) LIMIT 1""")[0]
    assert first_run[0] > 1 and first_run[1] > first_run[2], first_run
    assert query(env, "SELECT count(*) FROM participant_status") == [(2,)]


def test_a_failed_slice_makes_the_run_failed(env, db):
    ok(run_ingest(env, "participant", "add", "p1", "--timezone", "Europe/Berlin", "--seed", "1",
                  "--start-date", "2026-03-08"))
    ok(run_ingest(env, "--now", FIRST))
    run_id = query(env, "SELECT run_id FROM ingest_runs LIMIT 1")[0][0]
    # A run whose first slice committed and whose second failed.
    query(env, """INSERT INTO ingest_runs (run_id, participant_id, window_start, window_end,
                      rows_read, rows_written, status, error, started_at, finished_at)
                  VALUES (%s, 'p1', now(), now(), 7, 0, 'failed', 'boom',
                          now(), now() + interval '1 second')""", (run_id,))
    (status, error, written), = query(
        env, "SELECT status, error, rows_written FROM participant_status")
    assert (status, error) == ("failed", "boom")
    assert written == query(env, "SELECT sum(rows_written) FROM ingest_runs")[0][0]
