from datetime import timedelta

import pytest
from ingester.config import ConfigError, Settings, load_settings


def test_defaults_need_no_environment():
    assert load_settings({}) == Settings()


def test_values_are_parsed_and_typed():
    settings = load_settings({"DB_PORT": "6543", "OVERLAP_HOURS": "36", "SEED": "7",
                              "LOG_LEVEL": "debug"})
    assert settings.db_port == 6543
    assert settings.overlap == timedelta(hours=36)
    assert settings.seed == 7 and settings.log_level == "DEBUG"


@pytest.mark.parametrize("variable, value, message", [
    ("DB_PORT", "abc", "DB_PORT must be an integer 1-65535, got 'abc'"),
    ("DB_PORT", "70000", "DB_PORT must be an integer 1-65535, got '70000'"),
    ("SEED", "-1", "SEED must be an integer 0-2147483647, got '-1'"),
    ("OVERLAP_HOURS", "1.5", "OVERLAP_HOURS must be a whole number of hours 0-8760, got '1.5'"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'loud'"),
    ("GOOGLE_TOKEN_URL", "ftp://x", "GOOGLE_TOKEN_URL must be an http(s) URL, got 'ftp://x'"),
])
def test_a_bad_value_names_the_variable_and_the_form(variable, value, message):
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert str(raised.value) == message


def test_secrets_are_never_echoed():
    settings = load_settings({"DB_PASSWORD": "hunter2", "GOOGLE_CLIENT_SECRET": "s3cret"})
    assert "hunter2" not in repr(settings) and "s3cret" not in repr(settings)


def test_the_retired_fitbit_token_gets_one_clear_line():
    with pytest.raises(ConfigError) as raised:
        load_settings({"FITBIT_ACCESS_TOKEN": "abc"})
    text = str(raised.value)
    assert "Fitbit Web API was turned off" in text and "enrol" in text and "abc" not in text


def test_tsdb_env_only_fills_what_the_environment_and_env_leave_unset(tmp_path, monkeypatch):
    from ingester.config import read_environment

    (tmp_path / ".tsdb.env").write_text("DB_HOST=127.0.0.1\nDB_PORT=55432\nDB_NAME=from-make\n")
    (tmp_path / ".env").write_text("DB_PORT=5433\nDB_USER=from-dotenv\n")
    for name in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DB_NAME", "from-environment")
    merged = read_environment(tmp_path / ".env")
    assert {k: merged[k] for k in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER")} == {
        "DB_HOST": "127.0.0.1", "DB_PORT": "5433", "DB_NAME": "from-environment",
        "DB_USER": "from-dotenv"}
