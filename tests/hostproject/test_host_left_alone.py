"""Embedded, the exporter leaves the host alone: its caches, its metrics, its pins, its pages.

The host is tests/hostproject/settings_production.py: the sample host with a site-wide cache,
django-prometheus, a second read replica behind a load-balancing router and a dbhealth token.
Its databases are migrated as in test_embedded.py (the same commands, so either module may run
first): blog 0002 is not applied on default, analytics_db was never migrated.
"""

import base64
import importlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser

import django
import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.hostproject.conftest import manage
from tests.serving import REPO, Served, gunicorn
from tests.support.ports import free_port

PRODUCTION = "tests.hostproject.settings_production"
TOKEN = "hostproject-scrape-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()}
ENDPOINTS = [
    "/dbhealth/",
    "/dbhealth/metrics",
    "/dbhealth/probe?alias=default",
    "/dbhealth/healthz",
    "/dbhealth/sd",
]
NEVER_CACHED = "max-age=0, no-cache, no-store, must-revalidate, private"
BLOG_ROUTES = {("read_replica", "default"), ("read_replica_2", "default")}


def fetch(
    served: Served, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """Status, headers (lower-case names) and body: Served.get gives no headers."""
    request = urllib.request.Request(served.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        answer, body = error, error.read().decode()
    return answer.status, {k.lower(): v for k, v in answer.headers.items()}, body


def families(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


# ------------------------------------------------------------------ in-process, test client


@pytest.fixture
def production(host_environment, monkeypatch):
    """The production settings module; its base reads HOSTPROJECT_* when first imported."""
    for name, value in host_environment.items():
        if name != "DJANGO_SETTINGS_MODULE":
            monkeypatch.setenv(name, value)
    return importlib.import_module(PRODUCTION)


def test_a_site_wide_cache_never_keeps_an_exporter_answer(production, make_postgres):
    """A database stopped between two requests to /healthz: the second one says so."""
    server = make_postgres()
    with override_settings(
        MIDDLEWARE=production.MIDDLEWARE,
        CACHES=production.CACHES,
        CACHE_MIDDLEWARE_SECONDS=production.CACHE_MIDDLEWARE_SECONDS,
        ROOT_URLCONF=production.ROOT_URLCONF,
        DBHEALTH_AUTH_TOKEN=production.DBHEALTH_AUTH_TOKEN,
        DATABASES={"default": server.django_settings("app", "monitor", server.monitor_password)},
        DBHEALTH_ALIASES=["default"],
        DBHEALTH_DEFAULTS={"min_interval": 0.0},
        ALLOWED_HOSTS=["testserver"],
    ):
        client = Client(headers=BEARER)
        # The cache is on: the host's own page is cached for 30 s.
        assert client.get("/")["Cache-Control"] == "max-age=30"
        before = client.get("/dbhealth/healthz")
        server.stop()
        after = client.get("/dbhealth/healthz")
        answers = {path: client.get(path) for path in ENDPOINTS}
        refused = Client().get("/dbhealth/healthz")
    assert before.status_code == 200 and json.loads(before.content)["status"] == "ok"
    assert after.status_code == 503, after.content
    assert json.loads(after.content)["aliases"]["default"]["up"] is False
    for response in (before, after, *answers.values(), refused):
        assert response["Cache-Control"] == NEVER_CACHED
    assert {path: r.status_code for path, r in answers.items()} == {
        path: 503 if path.endswith("healthz") else 200 for path in ENDPOINTS
    }
    assert refused.status_code == 401


# ------------------------------------------------------------------ the host under gunicorn


@pytest.fixture(scope="module")
def host(host_environment, tmp_path_factory) -> Iterator[Served]:
    manage(host_environment, "migrate", "--database", "default", "blog", "0001")
    manage(host_environment, "migrate", "--database", "default", "contenttypes")
    manage(host_environment, "migrate", "--database", "users_db")
    manage(host_environment, "migrate", "--database", "cache_db")
    runtime = tmp_path_factory.mktemp("hostproject-production")
    environment = {**host_environment, "DJANGO_SETTINGS_MODULE": PRODUCTION}
    with gunicorn(
        "tests.hostproject.wsgi", environment, runtime / "gunicorn.log", ready_path="/dbhealth/sd"
    ) as served:
        yield served


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_wants_the_token_the_hosts_pages_do_not(host, path):
    status, headers, body = fetch(host, path)
    assert (status, body) == (401, "authentication required\n")
    assert headers["www-authenticate"] == 'Bearer realm="dbhealth", Basic realm="dbhealth"'
    assert fetch(host, path, BEARER)[0] in (200, 503)
    assert fetch(host, path, BASIC)[0] in (200, 503)
    assert fetch(host, "/")[::2] == (200, "the host project's home page\n")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_endpoint_answer_is_cached_while_the_hosts_pages_are(host, path):
    for headers in ({}, BEARER):
        assert fetch(host, path, headers)[1]["cache-control"] == NEVER_CACHED
    assert fetch(host, "/")[1]["cache-control"] == "max-age=30"


def test_metrics_are_dbhealths_families_not_the_hosts_registry(host):
    """The host's django-prometheus and process families are the host's to export."""
    status, _, text = fetch(host, "/dbhealth/metrics", BEARER)
    assert status == 200, text
    names = set(families(text))
    assert "dbhealth_up" in names
    assert {name for name in names if not name.startswith("dbhealth_")} == set()


def test_reads_spread_over_two_replicas_route_to_both(host):
    _, _, text = fetch(host, "/dbhealth/metrics", BEARER)
    routes = {
        (s.labels["read_alias"], s.labels["write_alias"])
        for s in families(text)["dbhealth_route_info"]
        if s.labels["model"] == "Post"
    }
    assert routes == BLOG_ROUTES
    _, _, text = fetch(host, "/dbhealth/probe?alias=read_replica_2", BEARER)
    assert [
        (s.labels["model"], s.labels["read_alias"]) for s in families(text)["dbhealth_route_info"]
    ] == [("Post", "read_replica_2")]


class DjangoColumn(HTMLParser):
    """The text of the status page's Django cell of each <tr data-alias> row."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self._alias: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "tr":
            self._alias = attributes.get("data-alias")
        elif tag == "td" and attributes.get("class") == "django" and self._alias:
            self._text = []
        elif tag == "br" and self._text is not None:
            self._text.append(" | ")

    def handle_endtag(self, tag):
        if tag == "td" and self._text is not None:
            self.cells[self._alias] = "".join(self._text)
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


EXPECTED_FINDINGS = {
    "default": "1 migration not applied",
    "users_db": "up to date",
    "analytics_db": "1 migration not applied"
    " | table analytics_daily_summary of analytics.DailySummary missing",
    "legacy_db": "up to date",
    "cache_db": "up to date",
    "read_replica": "up to date",
    "read_replica_2": "up to date",
}


def test_findings_are_on_the_status_page_and_in_healthz(host):
    status, _, page = fetch(host, "/dbhealth/", BEARER)
    assert status == 200
    assert "<th>Django</th>" in page
    column = DjangoColumn()
    column.feed(page)
    assert column.cells == EXPECTED_FINDINGS

    _, _, body = fetch(host, "/dbhealth/healthz", BEARER)
    aliases = json.loads(body)["aliases"]
    assert {alias: row["migrations_pending"] for alias, row in aliases.items()} == {
        alias: 1 if alias in ("default", "analytics_db") else 0 for alias in EXPECTED_FINDINGS
    }
    assert aliases["analytics_db"]["unmanaged_tables_missing"] == [
        {"app_label": "analytics", "model": "DailySummary", "table": "analytics_daily_summary"}
    ]
    assert aliases["legacy_db"]["unmanaged_tables_missing"] == []


def test_findings_in_the_command_line(host, host_environment):
    rows = {line.split()[0]: line for line in manage(host_environment, "dbhealth").splitlines()}
    assert "DJANGO" in rows["ALIAS"]
    assert "1 migration not applied" in rows["default"]
    assert "table analytics_daily_summary of analytics.DailySummary missing" in rows["analytics_db"]
    assert "up to date" in rows["users_db"]
    body = json.loads(manage(host_environment, "dbhealth", "--json", "--alias", "analytics_db"))
    assert body["aliases"]["analytics_db"]["migrations_pending"] == 1


# ------------------------------------------------------------------ manage.py check


def check(environment: dict[str, str], *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "django", "check", *arguments],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_check_with_database_reports_the_findings_of_those_aliases(host, host_environment):
    databases = ("default", "users_db", "analytics_db", "legacy_db")
    output = check(host_environment, "--deploy", *(f"--database={alias}" for alias in databases))
    findings = sorted(line for line in output.splitlines() if "dbhealth.W1" in line)
    pending = "1 migration that the routers allow there is not applied"
    assert findings[:2] == [
        f"?: (dbhealth.W101) database alias 'analytics_db': {pending}",
        f"?: (dbhealth.W101) database alias 'default': {pending}",
    ], output
    assert len(findings) == 3, output
    assert findings[2].startswith("analytics.DailySummary: (dbhealth.W102) database alias")
    assert "'analytics_db': table 'analytics_daily_summary'" in findings[2]


def test_plain_check_never_connects(host_environment):
    """Nothing listens on the configured ports: only --database makes the check connect.

    Django 6.1 runs its own model checks on every alias when none is named, and its MySQL backend
    connects for them (to learn the server's version): there the MariaDB alias stays reachable
    for the plain check, which is then shown to leave the PostgreSQL aliases alone.
    """
    closed = {
        **host_environment,
        "HOSTPROJECT_PG_PORT": str(free_port()),
        "HOSTPROJECT_MARIADB_PORT": str(free_port()),
    }
    plain = (
        closed
        if django.VERSION < (6, 1)
        else {**closed, "HOSTPROJECT_MARIADB_PORT": host_environment["HOSTPROJECT_MARIADB_PORT"]}
    )
    assert "System check identified no issues" in check(plain)
    # Database checks run by migrate --database or a test run do not probe either.
    assert "dbhealth.W103" not in check(closed, "--database=default")
    output = check(closed, "--deploy", "--database=default")
    assert "(dbhealth.W103) database alias 'default' could not be checked" in output
    assert "refused" in output


# ------------------------------------------------------------------ routes, in new processes

# Enough for the settings to load: computing routes connects to nothing.
OFFLINE_ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": PRODUCTION,
    "HOSTPROJECT_PG_HOST": "127.0.0.1",
    "HOSTPROJECT_PG_PORT": "1",
    "HOSTPROJECT_REPLICA_PORT": "1",
    "HOSTPROJECT_PG_USER": "nobody",
    "HOSTPROJECT_PG_PASSWORD": "unused",
    "HOSTPROJECT_MARIADB_HOST": "127.0.0.1",
    "HOSTPROJECT_MARIADB_PORT": "1",
    "HOSTPROJECT_MARIADB_USER": "nobody",
    "HOSTPROJECT_MARIADB_PASSWORD": "unused",
    "HOSTPROJECT_CACHE_PATH": "/nonexistent/cache.sqlite3",
}
LAYOUT_SCRIPT = """
from dbhealth.project.insight import project_layout
from tests.hostproject.routers import pin_this_thread, this_thread_is_pinned
pin_this_thread()  # as for a request that carries the pin cookie, or after a write
for route in project_layout().routes:
    print(route.app_label, route.model, route.read_alias, route.write_alias)
print("still pinned:", this_thread_is_pinned())
"""


def layout_of_a_new_process() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", LAYOUT_SCRIPT],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **OFFLINE_ENVIRONMENT},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.splitlines()


def test_routes_of_a_load_balancing_router_are_the_same_in_every_process():
    first, second = layout_of_a_new_process(), layout_of_a_new_process()
    assert first == second
    assert [line for line in first if line.startswith("blog ")] == [
        "blog Post read_replica default",
        "blog Post read_replica_2 default",
    ]
    # Built in a thread of its own: the caller's pin neither shaped the map nor was lifted.
    assert first[-1] == "still pinned: True"
