"""The rollups data_1m, data_1h and data_1d, and adherence_daily, kept with the raw rows.

The work is SQL in the schema (`rollups_refresh` in timescaledb/init.sql, migration 6): it
recomputes every bucket that meets a window from the level below, so it runs in the open
transaction of the slice that wrote the rows and commits, or rolls back, with them.
"""

from __future__ import annotations

from psycopg2.extensions import connection as Connection

from .model import Window


def refresh(connection: Connection, participant_id: str, window: Window) -> None:
    """Recompute the participant's rollups for the buckets that meet the window.

    Call it in the transaction that wrote rows into the window, before the commit; every row
    of a slice lies in its window (guard.guarded), so no other bucket can have changed.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rollups_refresh(%s, %s, %s)", (participant_id, window.start, window.end)
        )


ROLLUP_TABLES = ("data_1m", "data_1h", "data_1d", "adherence_daily")


def forget(connection: Connection, participant_id: str) -> None:
    """Delete the participant's rollups in the caller's transaction (participant remove --purge)."""
    with connection.cursor() as cursor:
        for table in ROLLUP_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE participant_id = %s", (participant_id,))
