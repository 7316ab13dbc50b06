"""`ingest.py dashboard`: the study team's morning view in a browser (docs/dashboard.md).

Flask renders the pages on the server, waitress serves them, matplotlib draws the charts as
inline SVG: no JavaScript, nothing fetched from another host. Every page reads the database
as the read-only role (access.py), through the same functions as `ingest.py report`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import sys
from datetime import datetime

from ..config import Settings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
# Requests served at once; each holds one database connection while it reads.
THREADS = 4


def is_loopback(host: str) -> bool:
    """Only this machine can reach the address: 127.0.0.0/8, ::1, or the name localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name may resolve to anything


def serve(settings: Settings, host: str, port: int, now: datetime | None) -> int:
    """Serve until stopped; exit 2 at once where a password would be needed and none is set."""
    if not settings.dashboard_password and not is_loopback(host):
        print(f"dashboard: DASHBOARD_PASSWORD must be set to serve on {host}, which is not a "
              "loopback address (or use --host 127.0.0.1)", file=sys.stderr)
        return EXIT_CONFIG
    import waitress

    from .app import create_app

    try:
        server = waitress.create_server(create_app(settings, now), host=host, port=port,
                                        threads=THREADS, ident="wearables-dashboard")
    except OSError as error:
        print(f"dashboard: cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    # Said once the socket is bound (port 0 picks a free one): the address to open.
    log.info("dashboard on http://%s:%s/ (%s), reading the database as %s",
             host if ":" not in host else f"[{host}]", server.effective_port,
             "password required" if settings.dashboard_password
             else "no password: loopback only",
             settings.dashboard_db_user)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C at a terminal: a normal end
        server.run()
    return 0
