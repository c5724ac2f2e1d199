"""The service as users run it: gunicorn with several worker processes and a TOML config."""

import concurrent.futures
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exporter_fixtures import promtool_check_metrics
from tests.serving import write_reference_config
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


class Service:
    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "config.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--threads",
                "4",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start: {self.output()}")

    def get(self, path: str, timeout: float = 15.0, headers: dict | None = None) -> str:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read().decode()
        except urllib.error.HTTPError as error:
            return error.read().decode()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def output(self) -> str:
        return self.process.stdout.read().decode() if self.process.poll() is not None else ""


def sample(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.fixture
def reference_config(postgres, postgres_replica, mariadb, tmp_path) -> Path:
    return write_reference_config(tmp_path, postgres, postgres_replica, mariadb)


@pytest.fixture
def service(tmp_path) -> Iterator:
    started: list[Service] = []

    def start(env: dict[str, str], workers: int = 3) -> Service:
        running = Service({"DBHEALTH_STATE_DIR": str(tmp_path / "state"), **env}, workers)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def test_default_serves_the_embedded_sqlite_database(service, tmp_path):
    running = service({"DBHEALTH_DATA_DIR": str(tmp_path / "data")}, workers=1)
    text = running.get("/metrics")
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in text
    assert (tmp_path / "data" / "demo.sqlite3").exists()


def test_reference_aliases_in_one_scrape_pass_promtool(service, reference_config):
    running = service({"DBHEALTH_CONFIG": str(reference_config)})
    text = running.get("/metrics")
    for alias in ("default", "users_db", "analytics_db", "read_replica", "legacy_db", "cache_db"):
        assert re.search(rf'^dbhealth_up{{alias="{alias}",vendor="\w+"}} 1.0$', text, re.M), alias
    assert sample(text, "dbhealth_replica", '{alias="read_replica"}') == 1.0
    assert sample(text, "dbhealth_connections_max", '{alias="legacy_db"}') == 50.0
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stderr


def test_worker_processes_share_probe_rounds(service, reference_config):
    running = service({"DBHEALTH_CONFIG": str(reference_config)}, workers=3)
    first = sample(running.get("/metrics"), "dbhealth_probe_rounds_total")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda _: running.get("/metrics"), range(24)))
    last = max(sample(text, "dbhealth_probe_rounds_total") for text in texts)
    # 24 scrapes over three worker processes within about a second: with the default
    # min_interval of 1 s they cost a couple of rounds, never one round per scrape or per worker.
    assert last - first <= 3
    assert all('alias="cache_db"' in text for text in texts)
