"""Grants that will expire (issue 24, section 6): `status` and `participant needs-consent`
warn 2 days ahead, through the real command, the real database and the fake token endpoint."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fake_google_health import FakeGoogleHealth
from ingester.sources.google_health.credentials import grant_expiry
from ingester.sources.google_health.oauth import refresh_lifetime
from support import ingest_env, query, run_ingest

WARNING = "g1\tgrant expires"
T = datetime(2026, 3, 1, tzinfo=UTC)


def env_for(db, fake: FakeGoogleHealth, workdir, status: str) -> dict[str, str]:
    return ingest_env(
        db.env, workdir, GOOGLE_HEALTH_URL=fake.url, GOOGLE_TOKEN_URL=fake.token_url,
        GOOGLE_CLIENT_ID=fake.client_id, GOOGLE_CLIENT_SECRET=fake.client_secret,
        GOOGLE_USER_REQUESTS_PER_MINUTE="100000", GOOGLE_PROJECT_REQUESTS_PER_MINUTE="1000000",
        HTTP_TIMEOUT="2", DEMO_COHORT="false", GOOGLE_OAUTH_APP_STATUS=status)


def enrolled(db, fake, workdir, status: str) -> dict[str, str]:
    env = env_for(db, fake, workdir, status)
    done = run_ingest(env, "participant", "enrol", "g1", "--timezone", "UTC", "--start-date",
                      "2026-03-02", "--token-file", "-", stdin=fake.refresh_token + "\n")
    assert done.returncode == 0, done.stderr
    return env


def warnings(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The expiry lines of `participant needs-consent` (on stderr) and of `status`."""
    listed = run_ingest(env, "participant", "needs-consent")
    status = run_ingest(env, "status")
    assert listed.returncode == 0 and status.returncode == 0, listed.stderr + status.stderr
    return ([line for line in listed.stderr.splitlines() if "\tgrant expire" in line],
            [line for line in status.stdout.splitlines() if "\tgrant expire" in line])


def same_warnings(listed: list[str], status: list[str]) -> bool:
    """The two commands print the same warnings. `status` may refresh a token (it previews
    the next run) and so restate a lifetime a minute later: the minutes may differ by one."""
    def parts(line: str) -> tuple[str, datetime]:
        when = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d)Z", line)
        assert when, line
        stamp = datetime.strptime(when[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        return line.replace(when[0], "WHEN"), stamp
    return len(listed) == len(status) and all(
        a[0] == b[0] and abs(a[1] - b[1]) <= timedelta(minutes=1)
        for a, b in zip(map(parts, listed), map(parts, status), strict=True))


def test_a_refresh_token_lifetime_in_the_token_reply_is_stored_and_warned_of(db, fake,
                                                                              tmp_path):
    env = enrolled(db, fake, tmp_path, "production")
    assert warnings(env) == ([], [])
    fake.refresh_token_lifetime = 36 * 3600  # Google: 36 hours left
    done = run_ingest(env, "--now", "2026-03-02T06:00:00Z", timeout=120)
    assert done.returncode == 0, done.stderr
    [(left,)] = query(env, "SELECT refresh_token_expires_at - now() FROM google_credentials")
    assert timedelta(hours=35) < left <= timedelta(hours=36)
    listed, status = warnings(env)
    assert len(listed) == 1 and listed[0].startswith(WARNING), listed
    assert "lifetime" in listed[0] and "publish the app" in listed[0]
    assert same_warnings(listed, status), (listed, status)


def test_a_testing_mode_grant_older_than_5_days_is_warned_of(db, fake, tmp_path):
    env = enrolled(db, fake, tmp_path, "testing")
    assert warnings(env) == ([], [])  # consented just now: 7 days left
    query(env, "UPDATE google_credentials SET granted_at = now() - interval '5 days 1 hour'")
    listed, status = warnings(env)
    assert len(listed) == 1 and listed[0].startswith(WARNING), listed
    assert "GOOGLE_OAUTH_APP_STATUS=testing" in listed[0]
    assert same_warnings(listed, status), (listed, status)
    # Consent again (enrol with the new grant): 7 days from now, no warning.
    enrolled(db, fake, tmp_path, "testing")
    assert warnings(env) == ([], [])


def test_needs_consent_prints_only_the_participants_who_need_it_on_stdout(db, fake, tmp_path):
    """A script reads stdout as the list of participants to ask again: a grant that merely
    expires soon is a warning on stderr, never a line of that list."""
    env = enrolled(db, fake, tmp_path, "testing")
    done = run_ingest(env, "participant", "enrol", "g2", "--timezone", "UTC", "--start-date",
                      "2026-03-02", "--token-file", "-", stdin=fake.refresh_token + "\n")
    assert done.returncode == 0, done.stderr
    query(env, "UPDATE google_credentials SET granted_at = now() - interval '6 days'")
    query(env, "UPDATE google_credentials SET needs_consent_since = '2026-03-03T04:00:00Z' "
               "WHERE participant_id = 'g2'")
    listed = run_ingest(env, "participant", "needs-consent")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["g2\tneeds consent since 2026-03-03T04:00:00+00:00"]
    warned = [line for line in listed.stderr.splitlines() if "\tgrant expire" in line]
    assert [line.split("\t")[0] for line in warned] == ["g1"]  # g2 already needs consent


def test_a_grant_of_a_published_app_is_not_warned_of(db, fake, tmp_path):
    env = enrolled(db, fake, tmp_path, "production")
    query(env, "UPDATE google_credentials SET granted_at = now() - interval '300 days'")
    assert warnings(env) == ([], [])


@pytest.mark.parametrize(("stated", "status", "expected"), [
    (None, "testing", (T + timedelta(days=7), "testing")),
    (None, "production", None),
    (T + timedelta(days=1), "production", (T + timedelta(days=1), "lifetime")),
    (T + timedelta(days=1), "testing", (T + timedelta(days=1), "lifetime")),  # Google's word
])
def test_grant_expiry(stated, status, expected):
    found = grant_expiry(T, stated, status)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == expected[0] and expected[1] in found[1]


@pytest.mark.parametrize(("value", "seconds"), [
    (604799, 604799.0), ("3600", 3600.0), (None, None), (0, None), (-5, None), (True, None),
    ("soon", None), (float("nan"), None), (10**30, None),
])
def test_refresh_lifetime_reads_only_a_sane_number(value, seconds):
    assert refresh_lifetime({"refresh_token_expires_in": value}) == seconds
