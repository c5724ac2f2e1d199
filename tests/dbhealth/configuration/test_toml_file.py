"""The standalone TOML file: Django keys or URLs per alias, secrets kept out of the file."""

from pathlib import Path

import pytest
from dbhealth.configuration.toml_file import load_config_file, parse_database_url
from django.core.exceptions import ImproperlyConfigured

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "dbhealth.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dbhealth.toml"
    path.write_text(text)
    return path


def test_table_and_url_aliases_become_django_entries(tmp_path):
    config = load_config_file(
        write(
            tmp_path,
            """
[dbhealth]
deadline = 2

[databases.default]
ENGINE = "django.db.backends.postgresql"
NAME = "main"
HOST = "db1"
PORT = 5433
OPTIONS = { sslmode = "prefer" }
DBHEALTH = { critical = false, statement_top_n = 3 }

[databases]
users_db = "postgres://monitor:s%40cret@users-host:5432/users?connect_timeout=3"
legacy_db = "mysql://legacy@legacy-host/legacy_system"
cache_db = "sqlite:////var/lib/app/cache.sqlite3"
""",
        )
    )
    assert config.defaults == {"deadline": 2.0}
    default = config.databases["default"]
    assert default["PORT"] == "5433"
    assert default["OPTIONS"] == {"sslmode": "prefer"}
    assert default["DBHEALTH"] == {"critical": False, "statement_top_n": 3}
    users = config.databases["users_db"]
    assert users["ENGINE"] == "django.db.backends.postgresql"
    assert (users["USER"], users["PASSWORD"], users["HOST"]) == ("monitor", "s@cret", "users-host")
    assert users["OPTIONS"] == {"connect_timeout": 3}
    assert config.databases["legacy_db"]["ENGINE"] == "django.db.backends.mysql"
    assert config.databases["cache_db"]["NAME"] == "/var/lib/app/cache.sqlite3"


def test_password_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    (tmp_path / "secret").write_text("from-file\n")
    monkeypatch.setenv("LEGACY_PASSWORD", "from-env")
    config = load_config_file(
        write(
            tmp_path,
            """
[databases.default]
URL = "postgres://monitor@db/main"
PASSWORD_FILE = "secret"
[databases.legacy]
URL = "mysql://monitor@legacy/legacy"
PASSWORD_ENV = "LEGACY_PASSWORD"
""",
        )
    )
    assert config.databases["default"]["PASSWORD"] == "from-file"
    assert config.databases["legacy"]["PASSWORD"] == "from-env"


def test_an_unusable_alias_is_kept_with_its_problem_and_the_others_load(tmp_path):
    config = load_config_file(
        write(
            tmp_path,
            """
[databases.default]
URL = "postgres://monitor@db/main"
[databases.broken]
URL = "postgres://monitor@db/main"
PASSWORD_FILE = "does-not-exist"
[databases]
odd = "oracle://x@y/z"
""",
        )
    )
    assert config.databases["default"]["HOST"] == "db"
    assert "PASSWORD_FILE" in config.databases["broken"]["DBHEALTH"]["config_error"]
    assert "oracle" in config.databases["odd"]["DBHEALTH"]["config_error"]


def test_a_missing_default_alias_gets_djangos_empty_placeholder(tmp_path):
    config = load_config_file(write(tmp_path, '[databases]\nonly = "sqlite:///x.db"\n'))
    assert config.databases["default"] == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[databases\n", "not valid TOML"),
        ("[dbhealth]\ndeadlin = 3\n[databases]\na = 'sqlite:///a'\n", "deadlin"),
        ("[dbhealth]\ndeadline = -1\n[databases]\na = 'sqlite:///a'\n", "deadline"),
        ("[dbhealth]\n", "no [databases"),
    ],
)
def test_an_unusable_file_stops_start_up_with_one_line(tmp_path, text, message):
    with pytest.raises(ImproperlyConfigured) as raised:
        load_config_file(write(tmp_path, text))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_url_errors_never_repeat_the_password():
    with pytest.raises(ValueError) as raised:
        parse_database_url("postgres://user:hunter2@host:notaport/db")
    assert "hunter2" not in str(raised.value)


def test_a_user_name_that_ends_the_host_part_early_is_refused_without_the_password():
    # Unencoded, the '/' ends the host part: the password would have become the database name.
    with pytest.raises(ValueError) as raised:
        parse_database_url("postgres://ops/team:hunter2@db/main")
    assert "hunter2" not in str(raised.value)
    assert parse_database_url("postgres://ops%2Fteam:hunter2@db/main")["USER"] == "ops/team"
    assert parse_database_url("postgres://monitor@db/ma%40in")["NAME"] == "ma@in"


def test_the_shipped_example_mirrors_the_six_reference_aliases(monkeypatch):
    for name in ("DEFAULT", "USERS", "ANALYTICS", "REPLICA", "LEGACY"):
        monkeypatch.setenv(f"DBHEALTH_{name}_PASSWORD", "x")
    config = load_config_file(EXAMPLE)
    assert set(config.databases) == {
        "default",
        "users_db",
        "analytics_db",
        "read_replica",
        "legacy_db",
        "cache_db",
    }
    assert config.databases["read_replica"]["DBHEALTH"]["replica"] is True
    assert all(
        "config_error" not in entry.get("DBHEALTH", {}) for entry in config.databases.values()
    )


def test_an_sqlite_uri_in_a_url_keeps_its_own_encoding_and_parameters():
    entry = parse_database_url("sqlite:///file:/var/lib/app/my%20cache.sqlite3?cache=shared")
    # SQLite decodes the URI itself: decoding it here too would turn %2520 into a space.
    assert entry["NAME"] == "file:/var/lib/app/my%20cache.sqlite3?cache=shared"
    assert entry["OPTIONS"] == {}
    assert parse_database_url("sqlite:////var/lib/app/my%20cache.sqlite3")["NAME"] == (
        "/var/lib/app/my cache.sqlite3"
    )


def test_the_dbhealth_table_takes_migrations_and_monitoring_credentials(tmp_path):
    config = load_config_file(
        write(
            tmp_path,
            """
[databases.legacy]
URL = "mysql://legacy_app@legacy-host/legacy_system"
DBHEALTH = { migrations = false, user = "monitor", password_env = "LEGACY_MONITOR" }
[databases.odd]
URL = "mysql://legacy_app@legacy-host/legacy_system"
DBHEALTH = { migrations = "no" }
""",
        )
    )
    assert config.databases["legacy"]["DBHEALTH"] == {
        "migrations": False,
        "user": "monitor",
        "password_env": "LEGACY_MONITOR",
    }
    problem = config.databases["odd"]["DBHEALTH"]["config_error"]
    assert problem == "DBHEALTH migrations must be true or false, got 'no'"
