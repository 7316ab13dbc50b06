"""The dashboard's read-only database role (migration 10): its password and its connection.

The role `dashboard_reader` is created by the schema without a password. Every ingester
command, which connects as the owner, gives it DASHBOARD_DB_PASSWORD as a SCRAM verifier
computed here, so the password itself never reaches the server's statement log. The
dashboard connects with these credentials only: it never needs DB_PASSWORD.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from .config import Settings
from .db import Connection

log = logging.getLogger(__name__)

READER_ROLE = "dashboard_reader"
# Commands that start together must not alter the role at once (PostgreSQL answers "tuple
# concurrently updated"): they take turns. Not equal to any other advisory key of ours.
PASSWORD_LOCK_KEY = 7_201_311_026


def publish_reader_password(connection: Connection, settings: Settings) -> None:
    """Give dashboard_reader the password DASHBOARD_DB_PASSWORD, when it is set.

    Only that role: a DASHBOARD_DB_USER naming another role (one a DBA manages) is left
    alone, so that a typo can never change the password of the owner. A DB_USER that may not
    alter roles gets a warning; the command goes on.
    """
    if not settings.dashboard_db_password or settings.dashboard_db_user != READER_ROLE:
        return
    verifier = psycopg2.extensions.encrypt_password(
        settings.dashboard_db_password, READER_ROLE, connection, "scram-sha-256")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,))
            if cursor.fetchone() is None:
                log.warning("no role %s in this cluster (its migration was skipped: %s may "
                            "not create roles); the dashboard cannot connect "
                            "(docs/dashboard.md)", READER_ROLE, settings.db_user)
                connection.rollback()
                return
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (PASSWORD_LOCK_KEY,))
            cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(
                sql.Identifier(READER_ROLE)), (verifier,))
        connection.commit()
    except psycopg2.errors.InsufficientPrivilege as error:
        connection.rollback()
        log.warning("cannot set the password of %s (DASHBOARD_DB_PASSWORD): %s", READER_ROLE,
                    str(error).strip().splitlines()[0])


def reader_params(settings: Settings) -> dict[str, Any]:
    """psycopg2.connect's arguments for the dashboard: the owner's server and database, the
    reader's credentials, and read-only transactions once more."""
    params = settings.db_params()
    params.update({
        "user": settings.dashboard_db_user,
        "password": settings.dashboard_db_password,
        "application_name": "wearable-dashboard",
        "connect_timeout": 5,
        "options": "-c default_transaction_read_only=on",
    })
    return params
