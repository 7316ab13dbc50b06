"""The dashboard's Flask application: three pages, a CSV, and the password check."""

from __future__ import annotations

import hmac
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from flask import Flask, Response, abort, render_template, request, send_file

from .. import export, report
from ..access import reader_params
from ..config import Settings
from ..db import Connection
from ..model import PARTICIPANT_ID
from . import charts, download, pages

REALM = 'Basic realm="wearables dashboard", charset="UTF-8"'
# Health data: never cached, never framed, never sent on as a referrer. Inline SVG needs
# inline styles (matplotlib writes a <style> element); no script runs at all.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: Settings, fixed_now: datetime | None = None) -> Flask:
    app = Flask(__name__)
    clock: Callable[[], datetime] = (lambda: fixed_now) if fixed_now else (
        lambda: datetime.now(UTC))

    @contextmanager
    def reading() -> Iterator[Connection]:
        try:
            connection = psycopg2.connect(**reader_params(settings))
        except psycopg2.OperationalError as error:
            text = str(error).strip()
            abort(Response(
                f"cannot read the database as {settings.dashboard_db_user}: "
                f"{text.splitlines()[0] if text else 'no answer'} (docs/dashboard.md)\n",
                503, mimetype="text/plain"))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET TIME ZONE 'UTC'")
            yield connection
        finally:
            connection.close()

    @app.before_request
    def require_password() -> Response | None:
        if not settings.dashboard_password:
            return None  # served on loopback only (serve() refuses anything else)
        given = request.authorization
        if given is not None and given.type == "basic" and hmac.compare_digest(
            (given.password or "").encode(), settings.dashboard_password.encode()
        ):
            return None
        return Response("password required\n", 401, {"WWW-Authenticate": REALM},
                        mimetype="text/plain")

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/")
    def cohort() -> str:
        now = clock()
        with reading() as connection:
            rows, dates = pages.cohort(connection, now)
            thresholds = pages.thresholds(connection)
        return render_template("cohort.html", rows=rows, dates=dates, now=now,
                               thresholds=thresholds, page="cohort")

    @app.get("/cohort.csv")
    def cohort_csv() -> Response:
        now = clock()
        with reading() as connection:
            text = report.csv_text(pages.report_grid(connection, now))
        return Response(text, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="cohort-{now:%Y-%m-%d}.csv"'})

    @app.get("/participant/<participant_id>")
    def participant(participant_id: str) -> str:
        if not PARTICIPANT_ID.fullmatch(participant_id):
            abort(404)
        now = clock()
        with reading() as connection:
            found = pages.participant(connection, participant_id, now)
        if found is None:
            abort(404)
        drawn = {
            "heart_rate": charts.heart_rate(found.heart_rate, now),
            "steps": charts.daily_bars(found.steps, "steps per day", "steps"),
            "wear": charts.wear(found.wear, found.valid_minutes),
            "hypnogram": charts.hypnogram(found.sleep) if found.sleep else None,
        }
        return render_template("participant.html", p=found, charts=drawn, now=now,
                               page="participant", formats=export.FORMATS,
                               resolutions=export.RESOLUTIONS)

    @app.get("/participant/<participant_id>/export")
    def participant_export(participant_id: str) -> Response:
        if not PARTICIPANT_ID.fullmatch(participant_id):
            abort(404)
        try:
            chosen = download.wanted(request.args)
        except download.BadQuery as error:
            return Response(f"{error}\n", 400, mimetype="text/plain")
        # Health data on the server's disk only while the request lasts: the scratch
        # directory (mode 0700) goes at once, the zip stays readable through its open file
        # until the server has sent it and closes it.
        with tempfile.TemporaryDirectory(prefix="dashboard-export-") as scratch:
            try:
                with reading() as connection:
                    archive = download.write_zip(connection, participant_id, chosen,
                                                 Path(scratch))
            except download.UnknownParticipant:
                abort(404)
            except OSError as error:
                return Response(f"{error}\n", 500, mimetype="text/plain")
            stream = archive.open("rb")
        return send_file(stream, mimetype="application/zip", as_attachment=True,
                         download_name=archive.name)

    @app.get("/ingestion")
    def ingestion() -> str:
        now = clock()
        with reading() as connection:
            found = pages.ingestion(connection, now)
        return render_template("ingestion.html", i=found, now=now, page="ingestion")

    app.jinja_env.filters["ago"] = pages.ago
    app.jinja_env.filters["when"] = pages.when
    return app
