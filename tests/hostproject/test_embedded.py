"""The exporter embedded in a multi-database host project, served by the host's own gunicorn.

The host adds `exporter` to INSTALLED_APPS and includes `exporter.urls`, nothing else. Its
operators made the classic mistake: `migrate` was run on some aliases and not on others.
"""

import sqlite3
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hostproject.conftest import manage
from tests.serving import Served, gunicorn

ALIASES = {
    "default": "postgresql",
    "users_db": "postgresql",
    "analytics_db": "postgresql",
    "read_replica": "postgresql",
    "legacy_db": "mysql",
    "cache_db": "sqlite",
}


@pytest.fixture(scope="module")
def host(host_environment, tmp_path_factory) -> Iterator[Served]:
    manage(host_environment, "migrate", "--database", "default", "blog", "0001")
    manage(host_environment, "migrate", "--database", "default", "contenttypes")
    manage(host_environment, "migrate", "--database", "users_db")
    manage(host_environment, "migrate", "--database", "cache_db")
    # analytics_db is never migrated: it has no django_migrations table at all.
    runtime = tmp_path_factory.mktemp("hostproject-gunicorn")
    # TMPDIR only isolates the exporter's default state directory from other test runs.
    environment = {**host_environment, "TMPDIR": str(runtime)}
    with gunicorn(
        "tests.hostproject.wsgi", environment, runtime / "gunicorn.log", ready_path="/dbhealth/sd"
    ) as served:
        yield served


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture(scope="module")
def metrics(host: Served) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, text = host.get("/dbhealth/metrics")
    assert status == 200, text
    return samples(text)


def by_labels(family: dict, *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(dict(labels)[name] for name in names): value for labels, value in family.items()}


def test_every_alias_of_the_host_is_probed_without_any_dbhealth_setting(metrics):
    assert by_labels(metrics["dbhealth_up"], "alias", "vendor") == {
        (alias, vendor): 1.0 for alias, vendor in ALIASES.items()
    }
    assert by_labels(metrics["dbhealth_replica"], "alias")[("read_replica",)] == 1.0


def test_pending_migrations_count_what_the_routers_send_to_each_alias(metrics):
    assert by_labels(metrics["dbhealth_migrations_pending"], "alias") == {
        ("default",): 1.0,  # blog 0002 not applied
        ("users_db",): 0.0,
        ("analytics_db",): 1.0,  # never migrated: no django_migrations table
        ("read_replica",): 0.0,  # the routers allow nothing there
        ("legacy_db",): 0.0,  # only an unmanaged model: `migrate` is never run there
        ("cache_db",): 0.0,
    }


def test_reading_pending_migrations_creates_no_table(metrics, host_environment, postgres):
    tables = postgres.sql(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'django_migrations'",
        dbname="analytics_database",
    )
    assert tables == [(0,)]


def test_route_map_names_the_read_and_write_alias_of_every_model(metrics):
    assert set(
        by_labels(metrics["dbhealth_route_info"], "app_label", "model", "read_alias", "write_alias")
    ) == {
        ("analytics", "AnalyticsEvent", "analytics_db", "analytics_db"),
        ("analytics", "DailySummary", "analytics_db", "analytics_db"),
        ("blog", "Post", "read_replica", "default"),
        ("cache", "CacheEntry", "cache_db", "cache_db"),
        ("contenttypes", "ContentType", "default", "default"),
        ("legacy", "LegacyCustomer", "legacy_db", "legacy_db"),
        ("users", "User", "users_db", "users_db"),
    }


def test_unmanaged_tables_are_looked_up_on_the_alias_their_model_is_routed_to(metrics):
    assert by_labels(
        metrics["dbhealth_unmanaged_table_missing"], "alias", "app_label", "model"
    ) == {
        ("analytics_db", "analytics", "DailySummary"): 1.0,
        ("legacy_db", "legacy", "LegacyCustomer"): 0.0,
    }


def test_probe_of_one_alias_carries_only_the_models_routed_to_it(host):
    status, text = host.get("/dbhealth/probe?alias=read_replica")
    assert status == 200, text
    found = samples(text)
    assert set(
        by_labels(found["dbhealth_route_info"], "app_label", "model", "read_alias", "write_alias")
    ) == {("blog", "Post", "read_replica", "default")}
    assert by_labels(found["dbhealth_migrations_pending"], "alias") == {("read_replica",): 0.0}


def test_host_keeps_its_own_urls(host):
    assert host.get("/") == (200, "the host project's home page\n")


def test_cache_database_file_was_made_by_migrate_not_by_the_probe(host_environment, metrics):
    with sqlite3.connect(host_environment["HOSTPROJECT_CACHE_PATH"]) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "cache_cacheentry" in tables
