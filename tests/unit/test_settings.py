"""Settings from the environment, and the --help that documents them."""

from __future__ import annotations

import pytest

from stockade.entrypoints.cli import main
from stockade.entrypoints.settings import SETTINGS, Settings, SettingsError

LONG_SECRET = "s" * 32


def test_every_setting_defaults_when_nothing_is_set():
    assert Settings.from_env({}) == Settings()


def test_a_value_may_come_from_the_file_named_by_its_FILE_variable(tmp_path):
    token = tmp_path / "admin_token"
    token.write_text(LONG_SECRET + "\n")

    settings = Settings.from_env({"STOCKADE_ADMIN_TOKEN_FILE": str(token)})

    assert settings.admin_token == LONG_SECRET


def test_a_variable_and_its_FILE_variable_together_are_refused(tmp_path):
    (tmp_path / "t").write_text("x")
    with pytest.raises(SettingsError, match="both STOCKADE_ADMIN_TOKEN and STOCKADE_ADMIN_TOKEN_FILE"):
        Settings.from_env({"STOCKADE_ADMIN_TOKEN": "x", "STOCKADE_ADMIN_TOKEN_FILE": str(tmp_path / "t")})


def test_an_unreadable_FILE_is_named(tmp_path):
    with pytest.raises(SettingsError, match="STOCKADE_WEBHOOK_SECRET_FILE=.*cannot read it"):
        Settings.from_env({"STOCKADE_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})


def test_the_database_password_replaces_the_urls_and_needs_no_escaping():
    settings = Settings.from_env(
        {"STOCKADE_DATABASE_URL": "mysql+pymysql://app:old@db:3306/shop", "STOCKADE_DATABASE_PASSWORD": "p@ss/w:rd#"}
    )

    assert settings.database_url == "mysql+pymysql://app:p%40ss%2Fw%3Ard%23@db:3306/shop"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STOCKADE_DATABASE_URL", "://nothing"),
        ("STOCKADE_DATABASE_URL", "oracle://db/x"),
        ("STOCKADE_REDIS_URL", "localhost:6379"),
        ("STOCKADE_BROKER_URL", "http://broker"),
        ("STOCKADE_STARTUP_TIMEOUT_SECONDS", "-1"),
        ("STOCKADE_MAX_QUANTITY", "0"),
        ("STOCKADE_SWEEP_INTERVAL_SECONDS", "nan"),
        ("STOCKADE_ENV", "staging"),
    ],
)
def test_an_unusable_value_is_refused_naming_its_variable(variable, value):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})

    assert str(refused.value).startswith(variable)


@pytest.mark.parametrize(
    ("token", "secret", "problem"),
    [
        (None, LONG_SECRET, "without STOCKADE_ADMIN_TOKEN"),
        (LONG_SECRET, "ab", "STOCKADE_WEBHOOK_SECRET has 2 characters"),
        ("x" * 31, LONG_SECRET, "STOCKADE_ADMIN_TOKEN has 31 characters"),
    ],
)
def test_production_needs_both_secrets_of_at_least_32_characters(token, secret, problem):
    settings = Settings(env="production", admin_token=token, webhook_secret=secret)

    with pytest.raises(SettingsError, match=problem):
        settings.require_public_api_secrets()


def test_production_accepts_secrets_of_32_characters():
    Settings(env="production", admin_token=LONG_SECRET, webhook_secret=LONG_SECRET).require_public_api_secrets()


@pytest.mark.parametrize(
    "command",
    [["serve"], ["serve-tasks"], ["worker"], ["beat"], ["migrate"], ["seed"], ["holds", "release-expired"], ["check"]],
)
def test_each_subcommands_help_describes_it_and_gives_every_variable_with_its_default(capsys, command):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out

    description = text.split("\n\n")[1]
    assert len(description) > 10, text
    for setting in SETTINGS:
        assert f"{setting.variable} (default: {setting.default})" in text
    assert "_FILE" in text


def test_options_show_their_defaults(capsys):
    main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert "--port PORT TCP port to listen on (default: 8000)" in text
    assert "--workers WORKERS worker processes (default: 1)" in text


def test_a_bad_argument_exits_2(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "not a TCP port" in capsys.readouterr().err
