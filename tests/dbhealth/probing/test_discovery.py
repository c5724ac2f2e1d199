"""Discovery on real servers: a database created appears in /metrics, /sd and the status page
without a reload; a dropped one leaves; the listing stays within the server's connection cap."""

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from dbhealth.configuration.targets import load_targets
from dbhealth.configuration.toml_file import config_from_document
from dbhealth.probing.service import current_state
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from tests.support.peak import Peak, open_connections_to
from tests.support.process import wait_until

# Listed again this often here; the default is a minute.
REFRESH = 0.2


@pytest.fixture
def discover() -> Iterator:
    """Configure the app with DBHEALTH_DISCOVER (and optional DATABASES) for one test."""
    overrides: list[override_settings] = []

    def configure(tables: dict[str, dict], databases: dict | None = None, **defaults) -> Client:
        override = override_settings(
            DATABASES={"default": {}, **(databases or {})},
            DBHEALTH_DISCOVER=tables,
            DBHEALTH_DEFAULTS={"min_interval": 0.0, **defaults},
            DBHEALTH_ALIASES=None,
            ALLOWED_HOSTS=["testserver"],
        )
        override.enable()
        overrides.append(override)
        return Client()

    yield configure
    for override in reversed(overrides):
        override.disable()


def aliases() -> set[str]:
    return {target.alias for target in load_targets()}


def seen_everywhere(client: Client, alias: str) -> bool:
    """In /metrics (up), /sd and the status page."""
    metrics = client.get("/metrics").content.decode()
    sd = json.loads(client.get("/sd").content)
    status = client.get("/").content.decode()
    return (
        (
            (
                f'dbhealth_up{{alias="{alias}",vendor=' in metrics
                and f'dbhealth_up{{alias="{alias}",vendor="postgresql"}} 1' in metrics
            )
            or f'dbhealth_up{{alias="{alias}",vendor="mysql"}} 1' in metrics
            or f'dbhealth_up{{alias="{alias}",vendor="sqlite"}} 1' in metrics
        )
        and any(group["labels"]["alias"] == alias for group in sd)
        and alias in status
    )


def gone_everywhere(client: Client, alias: str) -> bool:
    metrics = client.get("/metrics").content.decode()
    sd = json.loads(client.get("/sd").content)
    return f'alias="{alias}"' not in metrics and all(g["labels"]["alias"] != alias for g in sd)


def postgres_table(server, **extra: Any) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": server.host,
        "PORT": server.port,
        "USER": "monitor",
        "PASSWORD": server.monitor_password,
        "databases": "tenant_*",
        "refresh_interval": REFRESH,
        **extra,
    }


def test_a_created_postgresql_database_appears_and_a_dropped_one_leaves(make_postgres, discover):
    server = make_postgres(databases=("tenant_a", "other"))
    client = discover({"tenants": postgres_table(server, exclude=["tenant_skip*"])})
    assert aliases() == {"tenant_a"}
    assert seen_everywhere(client, "tenant_a")
    server.create_database("tenant_b")
    server.create_database("tenant_skip_me")
    assert wait_until(lambda: "tenant_b" in aliases(), timeout=30)
    assert seen_everywhere(client, "tenant_b")
    assert "tenant_skip_me" not in aliases() and "other" not in aliases()
    # The exporter's own connection to it must not keep it: a forced drop ends it.
    server.sql("DROP DATABASE tenant_a WITH (FORCE)")
    assert wait_until(lambda: "tenant_a" not in aliases(), timeout=30)
    assert gone_everywhere(client, "tenant_a")
    metrics = client.get("/metrics").content.decode()
    assert 'dbhealth_discovery_aliases{discovery="tenants"} 1.0' in metrics
    assert 'dbhealth_discovery_up{discovery="tenants"} 1.0' in metrics
    assert 'dbhealth_discovery_capped{discovery="tenants"} 0.0' in metrics


def test_discovery_from_a_configured_alias(postgres, discover):
    entry = postgres.django_settings("app", "monitor", postgres.monitor_password)
    discover(
        {"same": {"from": "main", "databases": "[au]*", "refresh_interval": REFRESH}},
        databases={"main": entry},
    )
    # The configured alias keeps its name; app and users are discovered beside it.
    assert {"main", "app", "users"} <= aliases()
    _, state = current_state()
    assert state.aliases["app"].up and state.aliases["users"].up


def test_a_created_mariadb_schema_appears_and_a_dropped_one_leaves(make_mariadb, discover):
    server = make_mariadb()
    server.create_database("shop_eu")
    user = server.create_user("lister", grants=("PROCESS, SELECT ON *.*",))
    client = discover(
        {
            "shops": {
                "ENGINE": "django.db.backends.mysql",
                "HOST": server.host,
                "PORT": server.port,
                "USER": "lister",
                "PASSWORD": user,
                "databases": "shop_*",
                "refresh_interval": REFRESH,
            }
        }
    )
    assert aliases() == {"shop_eu"}
    server.create_database("shop_us")
    assert wait_until(lambda: "shop_us" in aliases(), timeout=30)
    assert seen_everywhere(client, "shop_us")
    server.sql("DROP DATABASE shop_eu")
    assert wait_until(lambda: "shop_eu" not in aliases(), timeout=30)
    assert gone_everywhere(client, "shop_eu")


def test_sqlite_files_matching_a_glob_come_and_go(tmp_path, discover):
    def create(name: str) -> None:
        sqlite3.connect(tmp_path / name).close()

    create("tenant_1.sqlite3")
    create("notes.txt")
    client = discover(
        {
            "files": {
                "ENGINE": "django.db.backends.sqlite3",
                "databases": str(tmp_path / "*.sqlite3"),
                "refresh_interval": REFRESH,
            }
        }
    )
    assert aliases() == {"tenant_1"}
    create("tenant_2.sqlite3")
    assert wait_until(lambda: "tenant_2" in aliases(), timeout=30)
    assert seen_everywhere(client, "tenant_2")
    (tmp_path / "tenant_1.sqlite3").unlink()
    assert wait_until(lambda: "tenant_1" not in aliases(), timeout=30)
    assert gone_everywhere(client, "tenant_1")


def test_max_aliases_caps_discovery_and_says_so(make_postgres, discover):
    server = make_postgres(databases=("tenant_a", "tenant_b", "tenant_c"))
    client = discover({"tenants": postgres_table(server, max_aliases=2)})
    # The first by name.
    assert aliases() == {"tenant_a", "tenant_b"}
    metrics = client.get("/metrics").content.decode()
    assert 'dbhealth_discovery_capped{discovery="tenants"} 1.0' in metrics
    assert 'dbhealth_discovery_aliases{discovery="tenants"} 2.0' in metrics


def test_listing_and_probing_stay_within_the_connection_cap(make_postgres, discover):
    names = tuple(f"tenant_{index}" for index in range(5))
    server = make_postgres(databases=names)
    with Peak(lambda: open_connections_to(server.port)) as peak:
        discover({"tenants": postgres_table(server)}, max_connections_per_server=2)
        assert aliases() == set(names)
        for _ in range(10):
            _, state = current_state()
            assert all(state.aliases[name].up for name in names if name in state.aliases)
        assert wait_until(lambda: len(current_state()[1].aliases) == 5, timeout=30)
    assert 1 <= peak.most <= 2


def test_a_listing_that_fails_keeps_the_aliases_and_says_so(make_postgres, discover):
    server = make_postgres(databases=("tenant_a",))
    client = discover({"tenants": postgres_table(server)}, deadline=1.0)
    assert aliases() == {"tenant_a"}
    server.stop()
    assert wait_until(
        lambda: (
            'dbhealth_discovery_up{discovery="tenants"} 0.0'
            in client.get("/metrics").content.decode()
        ),
        timeout=30,
    )
    # A server that is down makes its aliases down, not absent.
    assert aliases() == {"tenant_a"}
    _, state = current_state()
    assert (state.aliases["tenant_a"].up, state.aliases["tenant_a"].reason) == (False, "refused")


def test_a_bad_discovery_table_is_one_clear_line(discover, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="discover 'x': databases must be a glob"):
        discover({"x": {"ENGINE": "django.db.backends.sqlite3"}})
        load_targets()
    document = {"discover": {"x": "postgres://somewhere"}}
    with pytest.raises(ImproperlyConfigured, match="discover 'x' must be a table"):
        config_from_document(document, source="test.toml", base_dir=tmp_path)
    loaded = config_from_document(
        {"discover": {"t": {"ENGINE": "django.db.backends.sqlite3", "databases": "*.db"}}},
        source="test.toml",
        base_dir=tmp_path,
    )
    assert loaded.discover == {"t": {"ENGINE": "django.db.backends.sqlite3", "databases": "*.db"}}
