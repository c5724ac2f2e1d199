"""The exporter embedded in a multi-database host project.

The host adds `exporter` to INSTALLED_APPS and includes `dbhealth.urls`, nothing else, and is
served by its own gunicorn. Its operators made the classic mistake: `migrate` was run on some
aliases and not on others. The same host settings also run `python -m django serve`, the dbhealth
service in a process of its own: dbhealth's URLs and middleware, never the host's.
"""

import sqlite3
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hostproject.conftest import manage
from tests.serving import REPO, Served, gunicorn, serve
from tests.support.ports import free_port

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
    with gunicorn(
        "tests.hostproject.wsgi",
        host_environment,
        runtime / "gunicorn.log",
        ready_path="/dbhealth/sd",
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
        # No router answers for contenttypes: the code decides (default unless .using()).
        ("contenttypes", "ContentType", "not routed", "not routed"),
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


@pytest.fixture(scope="module")
def service(host, host_environment, tmp_path_factory) -> Iterator[Served]:
    """`python -m django serve` with the host's settings, after the host's migrations."""
    runtime = tmp_path_factory.mktemp("hostproject-serve")
    with serve(
        host_environment,
        runtime / "service.log",
        ready_path="/sd",
        settings_module="tests.hostproject.settings",
    ) as served:
        yield served


def test_serve_with_the_host_settings_exports_every_alias_and_the_route_map(service):
    status, text = service.get("/metrics")
    assert status == 200, text
    found = samples(text)
    assert by_labels(found["dbhealth_up"], "alias", "vendor") == {
        (alias, vendor): 1.0 for alias, vendor in ALIASES.items()
    }
    assert ("blog", "Post", "read_replica", "default") in by_labels(
        found["dbhealth_route_info"], "app_label", "model", "read_alias", "write_alias"
    )
    assert by_labels(found["dbhealth_migrations_pending"], "alias")[("default",)] == 1.0
    # dbhealth's middleware, not the host's (CommonMiddleware only): django-prometheus counts.
    assert "django_http_requests_before_middlewares_total" in found


def test_serve_with_the_host_settings_serves_dbhealths_urls_not_the_hosts(service):
    status, page = service.get("/")
    assert status == 200
    assert page != "the host project's home page\n" and 'data-alias="default"' in page
    assert service.get("/dbhealth/metrics")[0] == 404
    status, body = service.get("/probe?alias=cache_db")
    assert status == 200 and 'dbhealth_up{alias="cache_db",vendor="sqlite"} 1.0' in body


def test_serve_answers_the_hosts_named_in_dbhealth_allowed_hosts(host_environment, tmp_path):
    """DBHEALTH_ALLOWED_HOSTS in the host's settings replaces ALLOWED_HOSTS for the service."""
    package = tmp_path / "hostwithhosts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "from tests.hostproject.settings import *  # noqa: F403\n"
        'DBHEALTH_ALLOWED_HOSTS = ["dbhealth.internal"]\n'
    )
    environment = {**host_environment, "PYTHONPATH": f"{tmp_path}:{REPO}"}
    with serve(
        environment,
        tmp_path / "service.log",
        ready_path="/sd",
        settings_module="hostwithhosts.settings",
    ) as served:
        assert served.get("/sd", headers={"Host": "dbhealth.internal"})[0] == 200
        # 127.0.0.1 is among the host's ALLOWED_HOSTS, not among DBHEALTH_ALLOWED_HOSTS.
        assert served.get("/sd")[0] == 400


def test_serve_with_the_host_settings_starts_while_its_servers_are_down(host_environment, tmp_path):
    """The system checks that `serve` runs connect to no alias, so down servers are served as
    down. Django 6.1 runs the model checks on every alias unless told which, and its MySQL
    backend connects for them: `serve` would stop on the legacy MariaDB alias."""
    closed = {
        **host_environment,
        "HOSTPROJECT_PG_PORT": str(free_port()),
        "HOSTPROJECT_REPLICA_PORT": str(free_port()),
        "HOSTPROJECT_MARIADB_PORT": str(free_port()),
    }
    with serve(
        closed,
        tmp_path / "service.log",
        ready_path="/sd",
        settings_module="tests.hostproject.settings",
    ) as served:
        status, text = served.get("/metrics")
    assert status == 200, text
    up = by_labels(samples(text)["dbhealth_up"], "alias")
    assert {alias: up[(alias,)] for alias in ("default", "read_replica", "legacy_db")} == {
        "default": 0.0,
        "read_replica": 0.0,
        "legacy_db": 0.0,
    }
