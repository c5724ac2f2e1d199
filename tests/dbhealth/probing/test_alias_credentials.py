"""Monitoring credentials per alias: the probe logs in as a pg_monitor role, not as the app."""

import secrets
from pathlib import Path

import pytest
from dbhealth.configuration.targets import ServiceOptions, build_target, load_targets
from dbhealth.configuration.toml_file import load_config_file
from dbhealth.probing.redaction import secrets_of
from dbhealth.probing.service import ProbeService
from django.test import override_settings

from tests.dbhealth_fixtures import Harness

VARIABLE = "DBHEALTH_TEST_MONITOR_PASSWORD"
OPTIONS = ServiceOptions(
    refresh_interval=60.0, min_interval=0.0, scrape_timeout_margin=0.5, max_connections_per_server=4
)


def test_embedded_alias_probes_with_the_monitoring_role(postgres, monkeypatch):
    monkeypatch.setenv(VARIABLE, postgres.monitor_password)
    application_name = f"dbhealth-{secrets.token_hex(4)}"
    # The application's own role, with a password that would fail: only the override logs in.
    entry = postgres.django_settings("app", postgres.superuser, "not-the-password")
    entry["OPTIONS"] = {"application_name": application_name}
    with override_settings(
        DATABASES={"default": entry},
        DBHEALTH_ALIASES=["default"],
        DBHEALTH_ALIAS_OPTIONS={"default": {"user": "monitor", "password_env": VARIABLE}},
    ):
        targets = load_targets()
    harness = Harness(targets=targets, service=ProbeService(targets, OPTIONS))
    try:
        alias = harness.round().aliases["default"]
        assert alias.up, alias.message
        sessions = postgres.sql(
            "SELECT usename FROM pg_stat_activity WHERE application_name = %s",
            params=[application_name],
        )
        assert sessions == [("monitor",)]
    finally:
        harness.service.close()
    assert postgres.monitor_password in secrets_of(targets[0].settings)
    assert "not-the-password" not in str(targets[0].settings)


def test_the_password_may_come_from_a_file_and_replaces_driver_options(tmp_path):
    secret = tmp_path / "monitor-password"
    secret.write_text("from-file\n")
    entry = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "legacy",
        "USER": "app",
        "PASSWORD": "app-password",
        "OPTIONS": {"passwd": "app-password", "user": "app", "charset": "utf8mb4"},
    }
    target = build_target("legacy", entry, {"user": "monitor", "password_file": secret})
    assert target.problem is None
    assert (target.settings["USER"], target.settings["PASSWORD"]) == ("monitor", "from-file")
    # mysqlclient lets OPTIONS win over USER and PASSWORD: the application's would be used.
    assert target.settings["OPTIONS"] == {"charset": "utf8mb4"}


def test_a_monitoring_user_without_a_password_drops_the_applications():
    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "PASSWORD": "app-secret"}
    target = build_target("default", entry, {"user": "monitor"})
    assert (target.settings["USER"], target.settings["PASSWORD"]) == ("monitor", "")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"password_env": "DBHEALTH_TEST_UNSET"}, "password_env DBHEALTH_TEST_UNSET: environment"),
        ({"password_file": "/nonexistent/secret"}, "password_file /nonexistent/secret: cannot"),
        ({"password_file": "relative/secret"}, "must be an absolute path"),
        ({"password_env": VARIABLE, "password_file": "/x"}, "exclude each other"),
        ({"user": ""}, "DBHEALTH user must be a non-empty string"),
        ({"user": "mon\nitor"}, "DBHEALTH user must be a non-empty string"),
        ({"password_file": 3}, "DBHEALTH password_file must be a file path"),
    ],
)
def test_unusable_monitoring_credentials_are_config(options, words, monkeypatch):
    monkeypatch.delenv("DBHEALTH_TEST_UNSET", raising=False)
    monkeypatch.setenv(VARIABLE, "s3cret")
    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "PASSWORD": "app-secret"}
    problem = build_target("default", entry, {"user": "monitor", **options}).problem
    assert problem is not None and words in problem, problem
    assert "s3cret" not in problem and "app-secret" not in problem and "\n" not in problem


def test_a_control_character_in_the_monitoring_password_names_its_source(monkeypatch, tmp_path):
    # A line break inside a secret (only trailing ones are stripped); the environment cannot
    # even hold a NUL.
    monkeypatch.setenv(VARIABLE, "s3cret\ntail")
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret\x00tail\n")
    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": "app"}
    from_env = build_target("default", entry, {"password_env": VARIABLE}).problem
    assert (
        from_env
        == f"DBHEALTH password_env {VARIABLE}: the password contains a control character (U+000A)"
    )
    from_file = build_target("default", entry, {"password_file": secret}).problem
    assert (
        from_file
        == f"DBHEALTH password_file {secret}: the password contains a control character (U+0000)"
    )


def test_the_toml_dbhealth_table_takes_them_relative_to_the_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "monitor").write_text("from-file\n")
    path = tmp_path / "dbhealth.toml"
    path.write_text(
        """
[databases.default]
URL = "postgres://app:app-secret@db/main"
DBHEALTH = { user = "monitor", password_file = "secrets/monitor" }
"""
    )
    entry = load_config_file(path).databases["default"]
    assert Path(entry["DBHEALTH"]["password_file"]) == tmp_path / "secrets" / "monitor"
    target = build_target("default", entry, {})
    assert target.problem is None
    assert (target.settings["USER"], target.settings["PASSWORD"]) == ("monitor", "from-file")
