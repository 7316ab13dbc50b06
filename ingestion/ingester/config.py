"""One typed, validated settings object, built once at start from the environment.

Nothing else in the service reads os.environ. A bad value raises ConfigError with one line
that names the variable and the expected form.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import ConfigError

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WORKER_KINDS = ("process", "thread")
# The publishing status of the study's OAuth app on Google's consent screen. An app in
# Testing hands out refresh tokens that expire 7 days after consent.
OAUTH_APP_STATUSES = ("testing", "production")


@dataclass(frozen=True)
class ValidDay:
    """When a day counts as worn: at least `minutes` of wear, or `percent` of the day's real
    minutes (1,380 or 1,500 on DST days). Exactly one of the two is set."""

    minutes: int | None = 600  # 10 h: the common research convention
    percent: float | None = None

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.minutes)


@dataclass(frozen=True)
class Endpoint:
    """An http(s) URL without its `user:password@` part, and the HTTP basic-auth credentials
    that part gave (percent-decoded): the URL can be logged, the password never travels in it."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a secret


@dataclass(frozen=True)
class Settings:
    db_host: str = "localhost"
    db_port: int = 5432
    db_name: str = "wearables"
    db_user: str = "postgres"
    db_password: str = field(default="", repr=False)  # a secret: never in repr or logs
    seed: int = 42
    demo_cohort: bool = True
    state_file: Path = Path("state/last_run.json")
    overlap: timedelta = timedelta(hours=24)
    backfill_days: int = 3
    # A Fitbit tracker keeps about 7 days of minute data before it overwrites it, so a sync
    # can deliver points up to 7 days old and never older (see the Google source).
    late_sync_horizon: timedelta = timedelta(days=7)
    # A first load longer than this is held until asked for with --since: a typo'd start
    # date must not silently take the night (docs/operations.md, "What a run does").
    max_backfill_days: int = 92
    batch_rows: int = 50_000
    log_level: str = "INFO"
    google_client_id: str = ""
    google_client_secret: str = field(default="", repr=False)
    google_health_url: str = "https://health.googleapis.com"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    http_timeout: float = 30.0
    metrics_file: Path | None = None  # off unless set: node_exporter's textfile collector
    pushgateway: Endpoint | None = None  # off unless set
    # How long a run waits for a database that refuses connections or is starting up (a
    # `docker compose restart` restarts both containers at once) before it exits 3.
    db_wait: timedelta = timedelta(seconds=120)
    # Seconds libpq waits for one address to answer. Not a variable: the command line
    # shortens it for commands a person waits for (cli.INTERACTIVE_CONNECT_TIMEOUT).
    db_connect_timeout: int = 10
    # The longest Retry-After a run waits out; a longer one fails the stream
    # (sources/google_health/http.py).
    http_max_retry_after: float = 60.0
    valid_day: ValidDay = ValidDay()
    no_upload_hours: int = 48
    low_wear_days: int = 3  # flag at this many invalid days among the last 7
    # Google's limits for the study's app (docs/google-health-notes.md, "Before you plan"):
    # an unverified app gets 150 a minute per user and 15,000 (250 a second) for the
    # project; a verified one 300 and 120,000. The defaults are the unverified ones, which
    # every app starts with.
    google_user_requests_per_minute: int = 150
    google_project_requests_per_minute: int = 15_000
    # Testing by default, as Google creates every app: `status` warns of its grants 2 days
    # before they expire, until the app is published and this says so.
    google_oauth_app_status: str = "testing"
    workers: int = 1
    worker_kind: str = "process"  # or "thread" (ingestion/ingester/workers.py)
    # The dashboard (docs/dashboard.md): its HTTP password, and the read-only role it reads
    # the database as (created by migration 10; the ingester gives it this password).
    dashboard_password: str = field(default="", repr=False)
    dashboard_db_user: str = "dashboard_reader"
    dashboard_db_password: str = field(default="", repr=False)

    @property
    def pushgateway_url(self) -> str:
        """The Pushgateway's URL without credentials (safe to log); "" when it is off."""
        return self.pushgateway.url if self.pushgateway else ""

    def db_params(self) -> dict[str, Any]:
        """Keyword arguments for psycopg2.connect."""
        return {
            "host": self.db_host,
            "port": self.db_port,
            "dbname": self.db_name,
            "user": self.db_user,
            "password": self.db_password,
            "connect_timeout": self.db_connect_timeout,
            "application_name": "wearable-ingester",
            # A database host that vanishes mid-query must end the run, not hang it: TCP
            # keepalives notice a dead peer within about two minutes.
            "keepalives": 1,
            "keepalives_idle": 60,
            "keepalives_interval": 10,
            "keepalives_count": 6,
        }


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError
    return value


# int() and float() also take "1_000", "١٢", "+7" and "inf": a typo must not pass for a
# number. Plain ASCII digits only (and one decimal point where a fraction makes sense).
PLAIN_INTEGER = re.compile(r"[0-9]+")
PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
# A request to Google that takes an hour has failed; socket timeouts also overflow on
# values like 1e300.
MAX_HTTP_TIMEOUT = 3600


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not PLAIN_INTEGER.fullmatch(value.strip()):
            raise ValueError
        number = int(value)
        if not low <= number <= high:
            raise ValueError
        return number

    return parse


def _seconds(value: str) -> float:
    if not PLAIN_DECIMAL.fullmatch(value.strip()):
        raise ValueError
    number = float(value)
    if not (math.isfinite(number) and 0 < number <= MAX_HTTP_TIMEOUT):
        raise ValueError
    return number


def _state_file(value: str) -> Path:
    # The run sets a bad state file aside by renaming it: a typo that names a directory
    # (STATE_FILE=state) must be refused here, never renamed.
    return _file_path(_text(value))


def _file_path(value: str) -> Path:
    """A path a file can be written at: not a directory, and not under a file."""
    path = Path(value)
    if path.is_dir() or (path.parent.exists() and not path.parent.is_dir()):
        raise ValueError
    return path
def _seconds_up_to_a_day(value: str) -> float:
    if not PLAIN_DECIMAL.fullmatch(value.strip()):
        raise ValueError
    number = float(value)
    if not 0 <= number <= 86_400:
        raise ValueError
    return number


def _hours(value: str) -> timedelta:
    return timedelta(hours=_int_in(0, 24 * 365)(value))


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError
    return lowered == "true"


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise ValueError
    return value.upper()


def _prom_file(value: str) -> Path:
    # node_exporter's textfile collector reads only *.prom files.
    # A directory would only fail at the run's end, after the data is loaded.
    if not value.strip().endswith(".prom"):
        raise ValueError
    return _file_path(value.strip())


def _worker_kind(value: str) -> str:
    if value.strip().lower() not in WORKER_KINDS:
        raise ValueError
    return value.strip().lower()


def _app_status(value: str) -> str:
    if value.strip().lower() not in OAUTH_APP_STATUSES:
        raise ValueError
    return value.strip().lower()


def _url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    _ = parts.port  # raises ValueError for a port that is not 0-65535
    return value.strip().rstrip("/")


def _endpoint(value: str) -> Endpoint:
    """An http(s) URL whose `user:password@` becomes basic-auth credentials: urllib (which
    prometheus_client pushes with) would take it for part of the host."""
    parts = urlsplit(_url(value))
    if parts.username is None and parts.password is None:
        return Endpoint(urlunsplit(parts))
    host = parts.netloc.rpartition("@")[2]
    return Endpoint(urlunsplit(parts._replace(netloc=host)), unquote(parts.username or ""),
                    unquote(parts.password or ""))


def _shown(variable: str, value: str) -> str:
    """A bad value as an error line may show it: a secret not at all, and a URL without the
    `user:password@` it may carry."""
    if variable in SECRET_VARIABLES:
        return "(hidden)"
    return repr(USERINFO.sub(r"\1(hidden)@", value))


# The `user:password@` of anything shaped like a URL, however malformed the rest.
USERINFO = re.compile(r"(://)[^/?#]*@")


PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]+)?)%")


def _valid_day(value: str) -> ValidDay:
    text = value.strip()
    if text.endswith("%"):
        match = PERCENT.fullmatch(text)
        if match is None or not 0 < float(match[1]) <= 100:
            raise ValueError
        return ValidDay(minutes=None, percent=float(match[1]))
    return ValidDay(minutes=_int_in(0, 1500)(text))


# variable -> (Settings field, parser, expected form shown in the error line)
VARIABLES: dict[str, tuple[str, Callable[[str], object], str]] = {
    "DB_HOST": ("db_host", _text, "a host name or address"),
    "DB_PORT": ("db_port", _int_in(1, 65535), "an integer 1-65535"),
    "DB_NAME": ("db_name", _text, "a database name"),
    "DB_USER": ("db_user", _text, "a user name"),
    "DB_PASSWORD": ("db_password", str, "a password"),
    "SEED": ("seed", _int_in(0, 2**31 - 1), "an integer 0-2147483647"),
    "DEMO_COHORT": ("demo_cohort", _boolean, "true or false"),
    "STATE_FILE": ("state_file", _state_file,
                   "the path of a file, not of a directory"),
    "OVERLAP_HOURS": ("overlap", _hours, "a whole number of hours 0-8760"),
    "BACKFILL_DAYS": ("backfill_days", _int_in(0, 3650), "a whole number of days 0-3650"),
    "LATE_SYNC_HORIZON_DAYS": ("late_sync_horizon", lambda v: timedelta(days=_int_in(0, 365)(v)),
                               "a whole number of days 0-365"),
    "MAX_BACKFILL_DAYS": ("max_backfill_days", _int_in(1, 36500),
                          "a whole number of days 1-36500"),
    "BATCH_ROWS": ("batch_rows", _int_in(1_000, 10_000_000), "an integer 1000-10000000"),
    "LOG_LEVEL": ("log_level", _log_level, "one of " + ", ".join(LOG_LEVELS)),
    "GOOGLE_CLIENT_ID": ("google_client_id", str, "an OAuth client id"),
    "GOOGLE_CLIENT_SECRET": ("google_client_secret", str, "an OAuth client secret"),
    "GOOGLE_HEALTH_URL": ("google_health_url", _url, "an http(s) URL"),
    "GOOGLE_TOKEN_URL": ("google_token_url", _url, "an http(s) URL"),
    "HTTP_TIMEOUT": ("http_timeout", _seconds,
                     f"a number of seconds over 0 and at most {MAX_HTTP_TIMEOUT}, like 30 or 2.5"),
    "METRICS_FILE": ("metrics_file", _prom_file, "a file path ending in .prom"),
    "PUSHGATEWAY_URL": ("pushgateway", _endpoint,
                        "an http(s) URL, with user:password@ for basic auth if it needs it"),
    "DB_WAIT_SECONDS": ("db_wait", lambda v: timedelta(seconds=_int_in(0, 3600)(v)),
                        "a whole number of seconds 0-3600"),
    "HTTP_MAX_RETRY_AFTER": (
        "http_max_retry_after",
        _seconds_up_to_a_day,
        "a number of seconds 0-86400",
    ),
    "VALID_DAY_WEAR": ("valid_day", _valid_day,
                       "wear minutes 0-1500 or a percentage of the day like 70%"),
    "NO_UPLOAD_HOURS": ("no_upload_hours", _int_in(1, 24 * 365), "a whole number of hours 1-8760"),
    "LOW_WEAR_DAYS": ("low_wear_days", _int_in(1, 7), "a whole number of days 1-7"),
    "GOOGLE_USER_REQUESTS_PER_MINUTE": (
        "google_user_requests_per_minute", _int_in(1, 1_000_000), "an integer 1-1000000"
    ),
    "GOOGLE_PROJECT_REQUESTS_PER_MINUTE": (
        "google_project_requests_per_minute", _int_in(1, 100_000_000), "an integer 1-100000000"
    ),
    "GOOGLE_OAUTH_APP_STATUS": ("google_oauth_app_status", _app_status,
                                "one of " + ", ".join(OAUTH_APP_STATUSES)),
    "WORKERS": ("workers", _int_in(1, 256), "an integer 1-256"),
    "WORKER_KIND": ("worker_kind", _worker_kind, "one of " + ", ".join(WORKER_KINDS)),
    "DASHBOARD_PASSWORD": ("dashboard_password", str, "a password"),
    "DASHBOARD_DB_USER": ("dashboard_db_user", _text, "a user name"),
    "DASHBOARD_DB_PASSWORD": ("dashboard_db_password", str, "a password"),
}

SECRET_VARIABLES = frozenset({"DB_PASSWORD", "GOOGLE_CLIENT_SECRET", "FITBIT_ACCESS_TOKEN",
                              "DASHBOARD_PASSWORD", "DASHBOARD_DB_PASSWORD"})

FITBIT_RETIRED = (
    "FITBIT_ACCESS_TOKEN is set, but the Fitbit Web API was turned off in autumn 2026: "
    "unset it and enrol the participant through the Google Health source "
    "(python ingest.py participant enrol ID --timezone ZONE --token-file FILE; "
    "docs/google-health-notes.md, 'Real participants')"
)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise ConfigError on the first bad value."""
    if environ.get("FITBIT_ACCESS_TOKEN"):
        raise ConfigError(FITBIT_RETIRED)
    values: dict[str, object] = {}
    for variable, (name, parse, expected) in VARIABLES.items():
        raw = environ.get(variable)
        if raw is None or (raw == "" and variable not in ("DB_PASSWORD",)):
            continue
        if not _is_text(raw):
            # os.environ decodes undecodable bytes to lone surrogates; libpq and the log
            # would fail on them far from here. Never shown: it may be a secret.
            raise ConfigError(f"{variable} must be {expected}, got a value that is not "
                              "UTF-8 text (not shown)")
        try:
            values[name] = parse(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be {expected}, got {_shown(variable, raw)}"
                              ) from None
    return Settings(**values)  # type: ignore[arg-type]


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


# Written by `make run` and `make db-start` (the Makefile): the connection settings of the
# local TimescaleDB they started, so that a command run afterwards from the same directory
# reaches it with nothing set by hand. Its own file, not .env: docker compose reads .env,
# and a port meant for the host's test server must not become the port Compose publishes.
LOCAL_DB_FILE = ".tsdb.env"


def read_environment(env_file: Path | None = None) -> dict[str, str]:
    """The process environment, over a .env file, over the .tsdb.env that `make run` wrote:
    the environment wins, then .env; .tsdb.env only fills what neither sets."""
    import os

    merged: dict[str, str] = {}
    path = env_file if env_file is not None else Path.cwd() / ".env"
    for layer in (path.with_name(LOCAL_DB_FILE), path):
        if layer.is_file():
            merged.update(_env_file_values(layer))
    merged.update(os.environ)
    return merged


def _env_file_values(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(_env_file_text(path)))
    return {k: v for k, v in values.items() if v is not None}


def _env_file_text(path: Path) -> str:
    """The .env file's text; a file in another encoding (Latin-1, UTF-16) is refused."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path} cannot be read ({error.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        # The bad bytes may be a password: name the line, not its content.
        raise ConfigError(f"{path} must be UTF-8 text, but line {line} is not (save the file "
                          "as UTF-8)") from None
