"""Settings no application could use are `config` problems, found before any connection is made.

Control characters: libpq cuts a connection string at NUL, so a password holding one dropped HOST
and PORT and the probe went to whatever server listens on the local socket. A pool Django cannot
build fails every request of the application, so the alias must not read up either.
"""

import importlib.util
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbhealth.configuration.targets import build_target
from dbhealth.configuration.toml_file import AliasConfigError, database_entry, parse_database_url

SECRET = "hunter2"


@pytest.fixture
def decoy_socket(monkeypatch) -> Iterator[socket.socket]:
    """A listening PostgreSQL socket where libpq goes when HOST and PORT are cut off."""
    # Short: a socket path holds at most 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="dbh-", dir="/tmp"))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(directory / ".s.PGSQL.5432"))
    listener.listen()
    listener.setblocking(False)
    monkeypatch.setenv("PGHOST", str(directory))
    monkeypatch.setenv("PGPORT", "5432")
    yield listener
    listener.close()
    (directory / ".s.PGSQL.5432").unlink()
    directory.rmdir()


def assert_config_naming(alias, key: str) -> None:
    assert (alias.up, alias.reason) == (False, "config")
    assert key in alias.message and "control character" in alias.message, alias.message
    assert SECRET not in alias.message and "tail" not in alias.message
    assert "\n" not in alias.message


def test_a_nul_in_the_password_is_config_and_reaches_no_server(
    postgres, make_harness, decoy_socket
):
    entry = postgres.django_settings("app", "monitor", f"{SECRET}\x00tail")
    harness = make_harness({"nul": entry})
    assert_config_naming(harness.round().aliases["nul"], "PASSWORD")
    with pytest.raises(BlockingIOError):
        decoy_socket.accept()  # nobody knocked
    assert harness.value("dbhealth_down_reason", alias="nul", reason="config") == 1


def test_a_percent_encoded_nul_in_a_url_password_is_config(postgres, make_harness, decoy_socket):
    url = f"postgres://monitor:{SECRET}%00tail@{postgres.host}:{postgres.port}/app"
    harness = make_harness({"url": parse_database_url(url)})
    assert_config_naming(harness.round().aliases["url"], "PASSWORD")
    with pytest.raises(BlockingIOError):
        decoy_socket.accept()


def test_a_newline_in_the_host_is_config(postgres, make_harness):
    entry = {**postgres.django_settings("app", "monitor", SECRET), "HOST": f"{postgres.host}\n"}
    harness = make_harness({"host": entry})
    assert_config_naming(harness.round().aliases["host"], "HOST")


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"NAME": "app\x7f"}, "NAME"),
        ({"USER": "mon\x1bitor"}, "USER"),
        ({"PORT": "5432\n"}, "PORT"),
        # Strict on tab as well: a conninfo value holding one would need quoting.
        ({"OPTIONS": {"sslmode": "prefer\t"}}, "OPTIONS sslmode"),
        ({"OPTIONS": {"options\x00": "-c x=1"}}, "OPTIONS key"),
    ],
)
def test_any_control_character_in_a_connection_setting_is_config(entry, key):
    base = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "db"}
    target = build_target("odd", {**base, **entry}, {})
    assert target.problem is not None and target.problem.startswith(key), target.problem
    assert "control character" in target.problem and "\n" not in target.problem


def test_a_control_character_in_a_toml_password_is_config_too(tmp_path):
    (tmp_path / "secret").write_text(f"{SECRET}\x00tail\n")
    entry = database_entry(
        {"URL": "mysql://monitor@legacy/legacy", "PASSWORD_FILE": "secret"}, base_dir=tmp_path
    )
    problem = build_target("legacy", entry, {}).problem
    assert problem is not None and problem.startswith("PASSWORD")
    assert SECRET not in problem


@pytest.mark.skipif(
    importlib.util.find_spec("psycopg_pool") is not None, reason="psycopg_pool is installed"
)
@pytest.mark.parametrize("pool", [True, {"min_size": 1, "max_size": 2}])
def test_a_pool_without_psycopg_pool_is_config_in_djangos_words(postgres, make_harness, pool):
    entry = postgres.django_settings("app", "monitor", postgres.monitor_password)
    harness = make_harness({"pooled": {**entry, "OPTIONS": {"pool": pool}}})
    alias = harness.round().aliases["pooled"]
    assert (alias.up, alias.reason) == (False, "config")
    assert alias.message == (
        "OPTIONS pool: Error loading psycopg_pool module. Did you install psycopg[pool]?"
    )


def test_a_pool_with_persistent_connections_is_config_in_djangos_words(postgres, make_harness):
    entry = postgres.django_settings("app", "monitor", postgres.monitor_password)
    pooled = {**entry, "CONN_MAX_AGE": 60, "OPTIONS": {"pool": True}}
    harness = make_harness({"pooled": pooled, "plain": entry})
    state = harness.round()
    alias = state.aliases["pooled"]
    assert (alias.up, alias.reason) == (False, "config")
    assert alias.message == "OPTIONS pool: Pooling doesn't support persistent connections."
    assert state.aliases["plain"].up  # the misconfigured alias harms no other


@pytest.mark.parametrize("value", ["no", 0, None])
def test_the_migrations_option_must_be_a_boolean(value):
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/x.sqlite3"}
    target = build_target("legacy", entry, {"migrations": value})
    assert target.problem is not None
    assert target.problem.startswith("DBHEALTH migrations must be true or false")
    with pytest.raises(AliasConfigError, match="DBHEALTH migrations must be true or false"):
        database_entry({**entry, "DBHEALTH": {"migrations": value}}, base_dir=Path("/"))


def test_the_migrations_option_defaults_to_true_and_may_be_turned_off():
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/x.sqlite3"}
    assert build_target("app", entry, {}).migrations is True
    legacy = build_target("legacy", entry, {"migrations": False})
    assert (legacy.migrations, legacy.problem) == (False, None)
    loaded = database_entry({**entry, "DBHEALTH": {"migrations": False}}, base_dir=Path("/"))
    assert build_target("legacy", loaded, {}).migrations is False
