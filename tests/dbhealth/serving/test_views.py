"""HTTP endpoints through Django's test client, probing real servers."""

import base64
import json

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import REGISTRY, generate_latest

from tests.dbhealth_fixtures import promtool_check_metrics, refused_postgres_entry

ENDPOINTS = ["/", "/metrics", "/probe?alias=default", "/healthz", "/sd"]
NEVER_CACHED = "max-age=0, no-cache, no-store, must-revalidate, private"
# What prometheus_client's default registry holds in this process: the process collector and
# django-prometheus's families (the standalone settings install its middleware).
PROCESS_FAMILIES = ("process_", "python_", "django_http_")

CONTRACT = [
    "dbhealth_up",
    "dbhealth_probe_duration_seconds",
    "dbhealth_connect_duration_seconds",
    "dbhealth_ping_duration_seconds",
    "dbhealth_probe_failures_total",
    "dbhealth_last_success_timestamp_seconds",
    "dbhealth_info",
    "dbhealth_database_size_bytes",
    "dbhealth_connections",
    "dbhealth_connections_max",
    "dbhealth_replica",
    "dbhealth_replication_lag_seconds",
    "dbhealth_statement_calls_total",
    "dbhealth_statement_seconds_total",
    "dbhealth_statement_mean_seconds",
    "dbhealth_statement_rows_total",
    "dbhealth_statement_info",
]


@pytest.fixture
def reference_stack(postgres, postgres_replica, mariadb, exporter_settings, tmp_path):
    import sqlite3

    cache = tmp_path / "cache.sqlite3"
    sqlite3.connect(cache).close()
    password = postgres.monitor_password
    postgres.sql("SELECT pg_sleep(0.05)", dbname="app")
    exporter_settings(
        {
            "default": postgres.django_settings("app", "monitor", password),
            "users_db": postgres.django_settings("users", "monitor", password),
            "analytics_db": postgres.django_settings("analytics", "monitor", password)
            | {"DBHEALTH": {"critical": False}},
            "read_replica": postgres_replica.django_settings("app", "monitor", password),
            "legacy_db": mariadb.django_settings("legacy", "monitor", mariadb.monitor_password),
            "cache_db": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(cache)},
        }
    )
    return Client()


def metric_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_metrics_has_the_whole_contract_and_passes_promtool(reference_stack):
    response = reference_stack.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert set(CONTRACT) <= metric_names(text)
    for alias in ("default", "users_db", "analytics_db", "read_replica", "legacy_db", "cache_db"):
        assert f'dbhealth_up{{alias="{alias}"' in text
        assert f'dbhealth_database_size_bytes{{alias="{alias}"}}' in text
    assert 'dbhealth_replication_lag_seconds{alias="read_replica"}' in text
    assert "process_resident_memory_bytes" in text
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stderr


def test_openmetrics_is_negotiated(reference_stack):
    response = reference_stack.get(
        "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_probe_returns_one_alias_alone(reference_stack):
    response = reference_stack.get("/probe", {"alias": "legacy_db"})
    assert response.status_code == 200
    text = response.content.decode()
    assert 'dbhealth_up{alias="legacy_db",vendor="mysql"} 1.0' in text
    assert 'alias="default"' not in text
    assert "process_resident_memory_bytes" not in text


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 400), ("?alias=", 400), ("?alias=a&alias=b", 400), ("?alias=nope", 404)],
)
def test_probe_rejects_bad_alias_parameters_with_a_one_line_reason(reference_stack, query, status):
    response = reference_stack.get("/probe" + query)
    assert response.status_code == status
    body = response.content.decode()
    assert body.count("\n") == 1 and "Traceback" not in body


def test_healthz_is_ok_while_critical_aliases_are_up(reference_stack):
    response = reference_stack.get("/healthz")
    body = json.loads(response.content)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["aliases"]["read_replica"]["replica"] is True


def test_healthz_fails_when_a_critical_alias_is_down(exporter_settings, postgres):
    exporter_settings(
        {
            "default": postgres.django_settings("app", "monitor", postgres.monitor_password),
            "gone": refused_postgres_entry(password="never-shown"),
        }
    )
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["aliases"]["gone"]["reason"] == "refused"
    assert body["aliases"]["default"]["up"] is True
    assert "never-shown" not in response.content.decode()


def test_the_scrape_timeout_header_bounds_the_wait_and_never_becomes_a_failure(
    exporter_settings, make_postgres
):
    import time

    hung = make_postgres()
    exporter_settings(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=10
    )
    client = Client()
    assert client.get("/metrics").status_code == 200
    hung.pause()
    try:
        started = time.monotonic()
        response = client.get("/metrics", HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS="1.5")
        elapsed = time.monotonic() - started
    finally:
        hung.resume()
    assert response.status_code == 200
    # Answered long before the alias's own 10 s deadline, with what was known: still up, and
    # this scraper's short budget is nobody's failure.
    assert elapsed < 10
    body = response.content.decode()
    assert 'dbhealth_up{alias="hung",vendor="postgresql"} 1.0' in body
    assert 'dbhealth_probe_failures_total{alias="hung",reason="timeout"} 0.0' in body


@pytest.mark.parametrize("header", ["1e10", "inf", "-1", "nan", "abc", "1e309", "0"])
def test_absurd_scrape_timeout_headers_are_clamped(exporter_settings, tmp_path, header):
    import sqlite3

    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    exporter_settings({"lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}})
    response = Client().get("/metrics", HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS=header)
    assert response.status_code == 200


@pytest.fixture
def sqlite_alias(exporter_settings, tmp_path):
    import sqlite3

    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    exporter_settings({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}})


def family_prefixes(text: str) -> set[str]:
    return {prefix for prefix in PROCESS_FAMILIES if f"\n# TYPE {prefix}" in "\n" + text}


def test_embedded_metrics_leave_the_process_registry_to_the_host(sqlite_alias):
    """Without DBHEALTH_EXPORT_PROCESS_METRICS the registry is the host's: not exported twice."""
    Client().get("/healthz")  # django-prometheus has counted a request by now
    assert family_prefixes(generate_latest(REGISTRY).decode()) == set(PROCESS_FAMILIES)
    with override_settings():
        del settings.DBHEALTH_EXPORT_PROCESS_METRICS  # absent, as from a host's settings
        text = Client().get("/metrics").content.decode()
    assert family_prefixes(text) == set()
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in text


def test_the_service_exports_its_process_registry_too(sqlite_alias):
    """The standalone settings (dbhealth.settings) say dbhealth is a process of its own."""
    text = Client().get("/metrics").content.decode()
    assert family_prefixes(text) == set(PROCESS_FAMILIES)
    assert "dbhealth_up{" in text


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_answer_may_be_cached(sqlite_alias, path):
    response = Client().get(path)
    assert response.status_code == 200
    assert response["Cache-Control"] == NEVER_CACHED
    assert "Expires" in response


@pytest.mark.parametrize("path", ENDPOINTS)
def test_the_views_ask_for_the_token_without_the_middleware(sqlite_alias, path):
    """Wherever the URLs are included, with no dbhealth middleware at all."""
    with override_settings(MIDDLEWARE=[], DBHEALTH_AUTH_TOKEN="views-token"):
        refused = Client().get(path)
        bearer = Client(headers={"Authorization": "Bearer views-token"}).get(path)
        basic = "Basic " + base64.b64encode(b"prometheus:views-token").decode()
        basic_auth = Client(headers={"Authorization": basic}).get(path)
        wrong = Client(headers={"Authorization": "Bearer views-token-not"}).get(path)
    assert refused.status_code == 401 and refused.content == b"authentication required\n"
    assert refused["WWW-Authenticate"] == 'Bearer realm="dbhealth", Basic realm="dbhealth"'
    assert refused["Cache-Control"] == NEVER_CACHED
    assert (bearer.status_code, basic_auth.status_code, wrong.status_code) == (200, 200, 401)


def test_the_token_file_is_read_once(sqlite_alias, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")

    def status(token: str) -> int:
        return Client(headers={"Authorization": f"Bearer {token}"}).get("/sd").status_code

    with override_settings(MIDDLEWARE=[], DBHEALTH_AUTH_TOKEN_FILE=str(token_file)):
        assert status("first-token") == 200
        token_file.write_text("second-token\n")
        assert (status("first-token"), status("second-token")) == (200, 401)


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_liveness_and_readiness_answer_without_a_token_and_without_probing(exporter_settings, path):
    from dbhealth.probing.service import probe_service

    exporter_settings({"gone": refused_postgres_entry("never-shown")})
    with override_settings(DBHEALTH_AUTH_TOKEN="health-token"):
        response = Client().get(path)
    assert response.status_code == 200
    assert response.content.decode().startswith("ok")
    assert response["Cache-Control"] == NEVER_CACHED
    # Not even the refused alias was probed: liveness never depends on a database.
    assert probe_service().snapshot((), budget=0).rounds == 0


def test_build_info_names_the_versions(sqlite_alias):
    import django

    text = Client().get("/metrics").content.decode()
    [line] = [row for row in text.splitlines() if row.startswith("dbhealth_build_info{")]
    assert f'django="{django.get_version()}"' in line
    assert 'version="' in line and 'revision="' in line and 'python="' in line
    assert line.endswith(" 1.0")


def test_a_503_from_healthz_is_neither_mailed_to_admins_nor_logged_as_a_server_error(
    exporter_settings, caplog
):
    """As in a host project with ADMINS and DEBUG off: Django mails every 5xx it logs on
    django.request (AdminEmailHandler); healthz's 503 is its answer, not a failure. (This
    process has Django's default logging, so the "django" logger has that handler.)"""
    import logging

    from django.core import mail

    exporter_settings({"default": refused_postgres_entry("never-mailed")})
    caplog.set_level(logging.INFO, logger="django.request")
    with override_settings(
        ADMINS=[("Ops", "ops@example.com")],
        DEBUG=False,
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    ):
        mail.outbox = []
        response = Client().get("/healthz")
        assert response.status_code == 503
        assert mail.outbox == []
    assert [r for r in caplog.records if r.name == "django.request"] == []
