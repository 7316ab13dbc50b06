"""The Google Health source end to end: ingest.py against the fake API and the real
TimescaleDB."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fake_google_health import (
    PHONE,
    FakeGoogleHealth,
    daily_respiratory_rate,
    heart_rate,
    oxygen_saturation,
    paired_device,
    steps,
)
from google_support import heart_rate_every, stored_grant, with_source
from ingester import state
from ingester.sources.google_health.transform import ACTIVITY, SETTINGS
from support import ingest_env, query, rollup_mismatches, run_ingest, utc

NOW = "2026-03-03T00:00:00Z"


# Request limits no test of this file reaches: none of them is about pacing (that is
# tests/test_workers.py), and at an unverified app's default 150 a minute per user a run of
# a week's slices would sleep for most of its time.
UNPACED = {"GOOGLE_USER_REQUESTS_PER_MINUTE": "100000",
           "GOOGLE_PROJECT_REQUESTS_PER_MINUTE": "1000000"}


def fake_env(db, fake: FakeGoogleHealth, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of ingest.py against the fake."""
    return ingest_env(
        db.env,
        workdir,
        GOOGLE_HEALTH_URL=fake.url,
        GOOGLE_TOKEN_URL=fake.token_url,
        GOOGLE_CLIENT_ID=fake.client_id,
        GOOGLE_CLIENT_SECRET=fake.client_secret,
        **{**UNPACED, **extra},
    )


@pytest.fixture
def cli(db, fake, tmp_path):
    """Enrol p1 through the CLI, then run ingest.py against the fake."""
    env = fake_env(db, fake, tmp_path, HTTP_TIMEOUT="1")
    enrol = run_ingest(
        env,
        "participant",
        "enrol",
        "p1",
        "--timezone",
        "Europe/Berlin",
        "--start-date",
        "2026-03-02",
        "--token-file",
        "-",
        stdin=fake.refresh_token + "\n",
    )
    assert enrol.returncode == 0, enrol.stderr
    assert fake.refresh_token not in enrol.stdout + enrol.stderr

    @dataclass
    class Cli:
        env: dict[str, str]
        state_file: Path

        def run(self, *args: str):
            result = run_ingest(self.env, "--participant", "p1", "--now", NOW, *args, timeout=120)
            assert fake.refresh_token not in result.stdout + result.stderr
            return result

        def rows(self) -> list[tuple]:
            return query(
                db.env, 'SELECT metric_type, "timestamp", value FROM raw_data ORDER BY 1, 2'
            )

        def runs(self) -> list[tuple]:
            return query(db.env, "SELECT status, error FROM ingest_runs ORDER BY id")

        def watermarks(self) -> dict:
            return state.load(self.state_file).watermarks.get("p1", {})

    return Cli(env, Path(env["STATE_FILE"]))


def a_day_of_data(fake: FakeGoogleHealth) -> int:
    """Berlin's 2 March 2026 ([1 Mar 23:00, 2 Mar 23:00) UTC): returns the rows it makes."""
    day = utc("2026-03-01T23:00:00")
    fake.add("heart-rate", heart_rate_every(60, day, day + timedelta(hours=24)))  # 1440
    fake.add("steps", [steps(day + timedelta(hours=9, minutes=m), 20 + m) for m in range(30)])
    fake.add("oxygen-saturation", [oxygen_saturation(day + timedelta(hours=4), 96.0)])
    fake.add("daily-respiratory-rate", [daily_respiratory_rate(date(2026, 3, 2), 15.0)])
    return 1440 + 30 + 1 + 1


def assert_loaded(cli, expected_rows: int) -> None:
    assert len(cli.rows()) == expected_rows
    assert cli.runs()[-1] == ("ok", None)
    # The participant started a day before NOW, inside the late-sync horizon (7 days): all
    # of it may still change, so no watermark moves yet and the next run re-reads it.
    assert cli.watermarks() == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario",
    [
        "plain",
        "429",
        "500 then success",
        "401 then refresh",
        "rotated refresh token",
        "slow once",
        "numbers as strings",
    ],
)
def test_the_command_loads_a_google_participant(cli, fake, db, scenario):
    fake.max_page_size = 500  # heart rate comes in 3 pages
    expected = a_day_of_data(fake)
    if scenario == "429":
        fake.fail("api", status=429, retry_after="1")
    elif scenario == "500 then success":
        fake.fail("api", status=500)
    elif scenario == "401 then refresh":
        fake.fail("api", status=401)  # the fresh access token is refused once
    elif scenario == "rotated refresh token":
        fake.rotate_refresh_token = True
    elif scenario == "slow once":
        fake.fail("api", delay=3.0)
    elif scenario == "numbers as strings":
        fake.numbers_as_strings = True
    result = cli.run()
    assert result.returncode == 0, result.stderr
    assert_loaded(cli, expected)
    if scenario == "rotated refresh token":
        assert stored_grant(db)[0] == next(iter(fake.refresh_tokens))
    again = cli.run()  # a replay inserts nothing new
    assert again.returncode == 0 and len(cli.rows()) == expected


@pytest.mark.slow
def test_the_command_reports_an_empty_day_as_ok(cli, fake):
    result = cli.run()
    assert result.returncode == 0, result.stderr
    assert_loaded(cli, 0)


@pytest.mark.slow
def test_the_command_fails_the_participant_on_malformed_json(cli, fake):
    a_day_of_data(fake)
    fake.fail("api", raw_body=b"<html>oops</html>")
    result = cli.run()
    assert result.returncode == 1
    assert cli.rows() == []  # all or nothing: no stream of the participant is kept
    status, error = cli.runs()[-1]
    assert status == "failed" and "PayloadError" in error
    assert cli.watermarks() == {}


@pytest.mark.slow
def test_the_command_marks_a_revoked_grant_as_needing_consent(cli, fake, db):
    a_day_of_data(fake)
    fake.revoke_grant()
    result = cli.run()
    assert result.returncode == 1
    assert cli.rows() == [] and cli.watermarks() == {}
    status, error = cli.runs()[-1]
    assert status == "needs_consent" and "NeedsConsent" in error
    assert stored_grant(db)[1] is not None
    listed = run_ingest(cli.env, "participant", "needs-consent")
    assert listed.returncode == 0 and "p1" in listed.stdout
    # The participant consents again: re-enrolment with the new grant clears the mark.
    fake.new_grant("1//after-new-consent")
    enrol = ("participant", "enrol", "p1", "--timezone", "Europe/Berlin")
    again = run_ingest(
        cli.env,
        *enrol,
        "--start-date",
        "2026-03-02",
        "--token-file",
        "-",
        stdin="1//after-new-consent\n",
    )
    assert again.returncode == 0, again.stderr
    final = cli.run()
    assert final.returncode == 0, final.stderr
    assert cli.runs()[-1] == ("ok", None), (cli.runs(), final.stderr)
    assert len(cli.rows()) == 1472


@pytest.mark.slow
def test_eight_years_of_sparse_history_load_under_default_lock_settings(db, fake, tmp_path):
    # The point of the test: the server keeps PostgreSQL's default lock table, which one
    # transaction over thousands of daily chunks overflows ("out of shared memory").
    assert query(db.env, "SHOW max_locks_per_transaction") == [("64",)]
    # Thousands of requests for one participant, unpaced (fake_env): at an unverified app's
    # default pace they alone would take half an hour; this test is about locks.
    env = fake_env(db, fake, tmp_path, HTTP_TIMEOUT="5")
    first = date(2018, 3, 3)
    enrol = run_ingest(env, "participant", "enrol", "p1", "--timezone", "Europe/Berlin",
                       "--start-date", first.isoformat(), "--token-file", "-",
                       stdin=fake.refresh_token + "\n")
    assert enrol.returncode == 0, enrol.stderr
    days = (date(2026, 3, 2) - first).days + 1  # up to the day before NOW
    fake.add("daily-respiratory-rate",
             [daily_respiratory_rate(first + timedelta(days=n), 15.0) for n in range(days)])
    noon = datetime.combine(first, datetime.min.time(), UTC) + timedelta(hours=12)
    fake.add("heart-rate",
             [heart_rate(noon + timedelta(days=n), 60 + n % 30) for n in range(0, days, 3)])
    expected = days + len(range(0, days, 3))
    # A first load of 8 years is held until asked for: it says so, and how.
    held = run_ingest(env, "--now", NOW, timeout=120)
    assert held.returncode == 1 and "MAX_BACKFILL_DAYS" in held.stderr, held.stderr
    assert query(db.env, "SELECT count(*) FROM raw_data") == [(0,)]
    words = held.stderr.split()
    since = words[words.index("--since") + 1].strip("`")  # the local midnight of the start
    loaded = run_ingest(env, "--now", NOW, "--participant", "p1", "--since", since, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert query(db.env, "SELECT count(*) FROM raw_data") == [(expected,)]
    slices, failed = query(db.env, "SELECT count(*), count(*) FILTER (WHERE status <> 'ok') "
                                   "FROM ingest_runs WHERE run_id = (SELECT run_id FROM "
                                   "ingest_runs ORDER BY id DESC LIMIT 1)")[0]
    # Sparse days are loaded several at a time: far fewer slices (and requests) than days.
    assert failed == 0 and days / 20 < slices < days / 5, slices
    assert len(fake.api_requests()) < 7 * days / 5
    again = run_ingest(env, "--now", NOW, timeout=120)  # a nightly run after it: a delta
    assert again.returncode == 0, again.stderr[-2000:]
    assert query(db.env, "SELECT count(*) FROM raw_data") == [(expected,)]


# --- issue 9: late syncs, one value per key, a missing scope, end to end -----------------


@pytest.fixture
def google_env(db, fake, tmp_path) -> dict[str, str]:
    """The environment of ingest.py against the fake, nobody enrolled yet."""
    return fake_env(db, fake, tmp_path, HTTP_TIMEOUT="2", DEMO_COHORT="false")


def enrol_p1(env: dict[str, str], fake: FakeGoogleHealth, zone: str, start: str) -> None:
    enrol = run_ingest(env, "participant", "enrol", "p1", "--timezone", zone, "--start-date",
                       start, "--token-file", "-", stdin=next(iter(fake.refresh_tokens)) + "\n")
    assert enrol.returncode == 0, enrol.stderr


def run_at(env: dict[str, str], now: datetime):
    return run_ingest(env, "--now", now.isoformat(), timeout=120)


def stored(env: dict[str, str], metric: str) -> dict[datetime, float]:
    rows = query(env, 'SELECT "timestamp", value FROM raw_data WHERE metric_type = %s', (metric,))
    return dict(rows)


@pytest.mark.slow
@pytest.mark.parametrize("grant", ["settings scope (device sync)", "no settings scope (horizon)"])
def test_a_tracker_that_syncs_six_days_late_loses_nothing(google_env, fake, grant):
    # The tracker holds its data from Nov 3 12:00 to Nov 9 12:00 and syncs on Nov 9 12:00;
    # before and after, it syncs every half hour. A run every night at 01:00.
    if grant.startswith("settings"):
        fake.granted_scopes.add(SETTINGS)
    enrol_p1(google_env, fake, "UTC", "2026-11-01")
    measured = heart_rate_every(60, utc("2026-11-01T00:00:00"), utc("2026-11-12T00:00:00"))
    offline = (utc("2026-11-03T12:00:00"), utc("2026-11-09T12:00:00"))

    def synced_at(now: datetime) -> datetime:
        recent = now - timedelta(minutes=30)
        return offline[0] if offline[0] <= recent < offline[1] else recent

    served = set()
    for night in range(2, 13):
        now = utc(f"2026-11-{night:02d}T01:00:00")
        sync = synced_at(now)
        fake.points["heart-rate"] = [p for p in measured if utc_of(p) < sync]
        fake.devices = [paired_device("tracker", last_sync=sync)]
        served = {utc_of(p) for p in fake.points["heart-rate"]}
        result = run_at(google_env, now)
        assert result.returncode == 0, (night, result.stderr)
    assert set(stored(google_env, "heart_rate")) == served  # every point the fake serves
    assert len(served) > 15_000


def utc_of(point: dict) -> datetime:
    return datetime.fromisoformat(point["heartRate"]["sampleTime"]["physicalTime"])


@pytest.mark.slow
def test_a_duplicate_split_across_pages_keeps_one_value_over_three_runs(google_env, fake):
    fake.max_page_size = 3
    fake.flip_ties = True  # the order of the pair changes from one query to the next
    enrol_p1(google_env, fake, "UTC", "2026-11-01")
    at = utc("2026-11-02T10:00:00")
    watch = {"device": {"displayName": "Charge 6"}, "platform": "FITBIT"}
    phone = {"platform": "HEALTH_CONNECT", "recordingMethod": "MANUAL"}
    fake.add("heart-rate", [
        heart_rate(at - timedelta(minutes=2), 60),
        heart_rate(at - timedelta(minutes=1), 61),
        with_source(heart_rate(at, 70), phone),
        with_source(heart_rate(at, 200), watch),  # newest first: pages [+2, +1, at] [at, -1, -2]
        heart_rate(at + timedelta(minutes=1), 62),
        heart_rate(at + timedelta(minutes=2), 63),
    ])
    values = []
    for _ in range(3):
        result = run_at(google_env, utc("2026-11-03T01:00:00"))
        assert result.returncode == 0, result.stderr
        values.append(stored(google_env, "heart_rate")[at])
    assert values == [200.0, 200.0, 200.0]  # the wearable's own point, every run


@pytest.mark.slow
def test_re_enrolment_with_another_zone_keeps_one_daily_value_per_date(google_env, fake):
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-11-01")
    days = [date(2026, 11, day) for day in (2, 3, 4)]
    fake.add("daily-respiratory-rate", [daily_respiratory_rate(d, 14.0 + d.day) for d in days])
    assert run_at(google_env, utc("2026-11-05T01:00:00")).returncode == 0
    enrol_p1(google_env, fake, "America/Chicago", "2026-11-01")  # the README's re-consent
    assert rollup_mismatches(google_env) == {}  # the moved values' buckets, old and new
    assert run_at(google_env, utc("2026-11-06T01:00:00")).returncode == 0
    assert rollup_mismatches(google_env) == {}
    chicago = ZoneInfo("America/Chicago")
    assert stored(google_env, "breathing_rate") == {
        datetime.combine(d, datetime.min.time(), tzinfo=chicago): 14.0 + d.day for d in days
    }


@pytest.mark.slow
def test_a_missing_scope_blocks_only_its_streams_and_is_named(google_env, fake):
    fake.granted_scopes.discard(ACTIVITY)  # the participant unticked "activity and fitness"
    fake.granted_scopes.add(SETTINGS)  # (so that only the data scope is missing)
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-03-02")
    expected = a_day_of_data(fake)
    result = run_at(google_env, datetime.fromisoformat(NOW))
    assert result.returncode == 0, result.stderr
    metrics = {m for (m,) in query(google_env, "SELECT DISTINCT metric_type FROM raw_data")}
    assert metrics == {"heart_rate", "spo2", "breathing_rate"}  # no steps: no scope
    listed = run_ingest(google_env, "participant", "needs-consent")
    assert "p1\tgrant lacks" in listed.stdout
    assert "googlehealth.activity_and_fitness.readonly" in listed.stdout
    status = run_ingest(google_env, "status")
    assert "googlehealth.activity_and_fitness.readonly" in status.stdout, status.stdout
    # The participant consents again with the scope: steps load from their start date.
    fake.granted_scopes.add(ACTIVITY)
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-03-02")
    assert run_at(google_env, datetime.fromisoformat(NOW)).returncode == 0
    assert len(query(google_env, "SELECT 1 FROM raw_data")) == expected
    assert "grant lacks" not in run_ingest(google_env, "participant", "needs-consent").stdout


def test_a_missing_scope_does_not_make_every_night_reread_the_whole_history(google_env, fake):
    fake.granted_scopes.discard(ACTIVITY)
    enrol_p1(google_env, fake, "Europe/Berlin", "2026-02-01")
    assert run_at(google_env, utc("2026-03-01T01:00:00")).returncode == 0
    fake.seen.clear()
    assert run_at(google_env, utc("2026-03-02T01:00:00")).returncode == 0
    heart_rate_filters = [s.query["filter"] for s in fake.api_requests("heart-rate")]
    # The second night re-reads the horizon (7 days) and the overlap, not from 1 February.
    assert heart_rate_filters and all("2026-02-0" not in f for f in heart_rate_filters), (
        heart_rate_filters)


# --- each participant's own data --------------------------------------------------------


def a_day_of_their_own(fake: FakeGoogleHealth, user: str, base: int) -> dict:
    """Berlin's 2 March for one user, with values no other user has (from `base`); returns
    (metric, instant) -> value as it must be stored."""
    day = utc("2026-03-01T23:00:00")
    fake.add("heart-rate", [heart_rate(day + timedelta(minutes=m), base + m) for m in range(30)],
             user=user)
    fake.add("steps", [steps(day + timedelta(hours=9, minutes=m), base + 2 * m)
                       for m in range(10)], user=user)
    fake.add("steps", [steps(day + timedelta(hours=9), 999, recorder=PHONE)], user=user)
    expected = {("heart_rate", day + timedelta(minutes=m)): float(base + m) for m in range(30)}
    expected |= {("steps", day + timedelta(hours=9, minutes=m)): float(base + 2 * m)
                 for m in range(10)}
    return expected


def stored_of(env: dict[str, str], participant: str) -> dict:
    return {(metric, at): value for metric, at, value in query(
        env, "SELECT metric_type, timestamp, value FROM raw_data WHERE participant_id = %s",
        (participant,))}


def enrol(env: dict[str, str], participant: str, token: str) -> None:
    result = run_ingest(env, "participant", "enrol", participant, "--timezone", "Europe/Berlin",
                        "--start-date", "2026-03-02", "--token-file", "-", stdin=token + "\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("swapped", [False, True])
def test_each_participant_gets_their_own_data(google_env, fake, swapped):
    """Loading stores each participant's own, distinct values. Enrolled with each other's
    tokens (a client that reads one participant with another's grant looks the same), the
    same check fails: the fake tells users apart by the access token."""
    fake.empty_first_page = True
    own = {"a": a_day_of_their_own(fake, "a", 60), "b": a_day_of_their_own(fake, "b", 120)}
    tokens = {"a": fake.add_user("a"), "b": fake.add_user("b")}
    if swapped:
        tokens = {"a": tokens["b"], "b": tokens["a"]}
    for participant, token in tokens.items():
        enrol(google_env, participant, token)
    result = run_at(google_env, datetime.fromisoformat(NOW))
    assert result.returncode == 0, result.stderr
    stored = {participant: stored_of(google_env, participant) for participant in own}
    if swapped:
        assert stored == {"a": own["b"], "b": own["a"]}  # the check below would catch it
        assert stored != own
    else:
        assert stored == own  # the phone's 999 steps are stored nowhere
