"""The service as users run it: `manage.py serve`, one process, and a TOML config."""

import concurrent.futures
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.dbhealth_fixtures import promtool_check_metrics
from tests.security.http_client import request
from tests.serving import Served, manage, serve, served_process, write_reference_config
from tests.support.ports import free_port
from tests.support.process import wait_until


def sample(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.fixture
def reference_config(postgres, postgres_replica, mariadb, tmp_path) -> Path:
    return write_reference_config(tmp_path, postgres, postgres_replica, mariadb)


@pytest.fixture
def service(tmp_path) -> Iterator:
    with ExitStack() as stack:
        started = []

        def start(env: dict[str, str]) -> Served:
            log = tmp_path / f"service-{len(started)}.log"
            started.append(stack.enter_context(serve(env, log, "/sd")))
            return started[-1]

        yield start


def metrics(running: Served) -> str:
    status, text = running.get("/metrics")
    assert status == 200, text
    return text


def test_default_serves_the_embedded_sqlite_database(service, tmp_path):
    running = service({"DBHEALTH_DATA_DIR": str(tmp_path / "data")})
    text = metrics(running)
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in text
    assert (tmp_path / "data" / "demo.sqlite3").exists()


WITHOUT_DJANGO_PROMETHEUS = (
    "import runpy, sys; sys.modules['django_prometheus'] = None; "  # as if not installed
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_serves_without_django_prometheus_only_its_http_metrics_missing(tmp_path):
    """django-prometheus is the optional http-metrics extra (it caps Django below 6.1)."""
    env = {"DBHEALTH_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "service.log"
    python = [sys.executable, "-c", WITHOUT_DJANGO_PROMETHEUS]
    with serve(env, log, "/livez", python=python) as running:
        text = metrics(running)
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in text
    assert "\nprocess_cpu_seconds_total " in text
    assert "django_http_" not in text
    assert "django_prometheus" not in log.read_text()


def test_reference_aliases_in_one_scrape_pass_promtool(service, reference_config):
    running = service({"DBHEALTH_CONFIG": str(reference_config)})
    text = metrics(running)
    for alias in ("default", "users_db", "analytics_db", "read_replica", "legacy_db", "cache_db"):
        assert re.search(rf'^dbhealth_up{{alias="{alias}",vendor="\w+"}} 1.0$', text, re.M), alias
    assert sample(text, "dbhealth_replica", '{alias="read_replica"}') == 1.0
    assert sample(text, "dbhealth_connections_max", '{alias="legacy_db"}') == 50.0
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stderr


def test_concurrent_scrapes_share_probe_rounds(service, reference_config):
    running = service({"DBHEALTH_CONFIG": str(reference_config)})
    first = sample(metrics(running), "dbhealth_probe_rounds_total")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda _: metrics(running), range(24)))
    last = max(sample(text, "dbhealth_probe_rounds_total") for text in texts)
    # 24 scrapes, 8 at a time, within about a second: with the default min_interval of 1 s they
    # cost a couple of rounds, never one round per scrape.
    assert last - first <= 3
    assert all('alias="cache_db"' in text for text in texts)


def test_the_service_is_one_process_without_a_server_header(service, tmp_path):
    running = service({"DBHEALTH_DATA_DIR": str(tmp_path / "data")})
    pid = running.process.pid
    assert Path(f"/proc/{pid}/task/{pid}/children").read_text().split() == []
    reply = request(running.address, "GET", "/healthz")
    assert reply.status == 200
    assert "server" not in reply.headers


def test_serves_on_an_ipv6_address(tmp_path):
    address = f"[::1]:{free_port()}"
    command = [sys.executable, "manage.py", "serve", "--bind", address]
    env = {**os.environ, "DBHEALTH_DATA_DIR": str(tmp_path / "data")}
    with served_process("serve", command, env, tmp_path / "service.log", address, "/sd") as served:
        status, text = served.get("/metrics")
    assert status == 200
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in text


@pytest.mark.parametrize(
    ("bind", "reason"),
    [
        ("nonsense", "expected HOST:PORT or [IPV6]:PORT"),
        ("::1:10433", "write an IPv6 address in brackets"),
        ("[not-v6]:10433", "'not-v6' is not an IPv6 address"),
        ("127.0.0.1:99999", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:http", "the port must be a number from 1 to 65535"),
    ],
)
def test_a_bad_bind_address_is_one_line(tmp_path, bind, reason):
    env = {"PATH": "/usr/bin:/bin", "DBHEALTH_DATA_DIR": str(tmp_path / "data")}
    result = manage(["serve", "--bind", bind], env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"CommandError: bind address {bind!r}: {reason}")
    assert result.stderr.count("\n") == 1, result.stderr


def test_databases_discovered_from_the_toml_file_come_and_go(service, make_postgres, tmp_path):
    server = make_postgres(databases=("tenant_a",))
    (tmp_path / "tenants-password").write_text(server.monitor_password)
    config = tmp_path / "discover.toml"
    config.write_text(
        f"""
[dbhealth]
min_interval = 0

[discover.tenants]
ENGINE = "django.db.backends.postgresql"
HOST = "127.0.0.1"
PORT = {server.port}
USER = "monitor"
PASSWORD_FILE = "tenants-password"
databases = "tenant_*"
refresh_interval = 0.2
"""
    )
    running = service({"DBHEALTH_CONFIG": str(config)})

    def discovered() -> set[str]:
        status, body = running.get("/sd")
        assert status == 200, body
        return {group["labels"]["alias"] for group in json.loads(body)}

    assert discovered() == {"tenant_a"}
    assert sample(metrics(running), "dbhealth_up", '{alias="tenant_a",vendor="postgresql"}') == 1
    server.create_database("tenant_b")
    assert wait_until(lambda: discovered() == {"tenant_a", "tenant_b"}, timeout=30)
    assert sample(metrics(running), "dbhealth_up", '{alias="tenant_b",vendor="postgresql"}') == 1
    server.sql("DROP DATABASE tenant_a WITH (FORCE)")
    assert wait_until(lambda: discovered() == {"tenant_b"}, timeout=30)
    assert 'alias="tenant_a"' not in metrics(running)
