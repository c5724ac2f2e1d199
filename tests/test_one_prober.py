"""The served process as Prometheus sees it: counters that only grow whatever the interleaving of
endpoints and scrapers, and one connection per alias whatever the number of scrapes."""

import concurrent.futures
import itertools
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serving import serve, write_reference_config
from tests.support.mariadb import MariaDBServer

ENDPOINTS = ("/metrics", "/probe?alias=flapping", "/probe?alias=hung", "/healthz", "/")
BUDGETS = (None, "0.6", "10")


def totals(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a counter, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def pg_sessions(server, dbname: str | None = None) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbhealth'"
    if dbname is not None:
        query += f" AND datname = '{dbname}'"
    return server.sql(query)[0][0]


def mariadb_sessions(server: MariaDBServer, user: str) -> int:
    rows = server.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", params=[user]
    )
    return int(rows[0][0])


@pytest.fixture
def fleet_config(postgres, postgres_replica, mariadb, make_postgres, tmp_path):
    flapping = make_postgres(databases=("app",))
    hung = make_postgres(databases=("app",))
    extra = ""
    for name, server in (("flapping", flapping), ("hung", hung)):
        (tmp_path / f"{name}-password").write_text(server.monitor_password)
        extra += f"""
[databases.{name}]
URL = "postgres://monitor@127.0.0.1:{server.port}/app"
PASSWORD_FILE = "{name}-password"
DBHEALTH = {{ deadline = 1, critical = false }}
"""
    config = write_reference_config(
        tmp_path, postgres, postgres_replica, mariadb, extra=extra, defaults="min_interval = 0"
    )
    return config, flapping, hung


def test_no_counter_goes_backwards_across_endpoints_scrapers_and_faults(fleet_config, tmp_path):
    config, flapping, hung = fleet_config
    env = {"DBHEALTH_CONFIG": str(config)}
    with serve(env, tmp_path / "service.log", "/sd") as served:
        assert served.get("/metrics")[0] == 200
        hung.pause()
        stop = threading.Event()
        decreases: list[str] = []
        reads = 0

        def sequential_client(offset: int) -> None:
            """One client's loop: what it reads must never go backwards."""
            nonlocal reads
            seen: dict = {}
            steps = itertools.islice(itertools.cycle(ENDPOINTS), offset, None)
            for number, path in enumerate(steps):
                if stop.is_set() or number > 2000:
                    return
                budget = BUDGETS[number % len(BUDGETS)]
                headers = {"X-Prometheus-Scrape-Timeout-Seconds": budget} if budget else {}
                status, body = served.get(path, timeout=30, headers=headers)
                reads += 1
                if not path.startswith(("/metrics", "/probe")):
                    continue
                assert status == 200, (path, status, body[:200])
                for key, value in totals(body).items():
                    if value < seen.get(key, value):
                        decreases.append(f"{path}: {key}: {seen[key]} -> {value}")
                    seen[key] = value

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(sequential_client, offset) for offset in range(4)]
            try:
                for _ in range(3):
                    flapping.stop()
                    time.sleep(1.5)
                    flapping.restart()
                    time.sleep(1.5)
            finally:
                stop.set()
                hung.resume()
            for client in clients:
                client.result()
        assert reads > 40
        assert not decreases, decreases[:20]
        text = served.get("/metrics")[1]
        assert 'dbhealth_probe_failures_total{alias="flapping",reason="refused"}' in text
        assert 'dbhealth_probe_failures_total{alias="hung",reason="timeout"}' in text


def test_one_connection_per_alias_whatever_the_number_of_scrapes(
    postgres, postgres_replica, mariadb, tmp_path
):
    config = write_reference_config(
        tmp_path, postgres, postgres_replica, mariadb, defaults="min_interval = 0"
    )
    before = {
        "primary": pg_sessions(postgres),
        "replica": pg_sessions(postgres_replica),
        "mariadb": mariadb_sessions(mariadb, "monitor"),
    }
    with serve({"DBHEALTH_CONFIG": str(config)}, tmp_path / "service.log", "/sd") as served:
        paths = [
            "/metrics",
            "/healthz",
            "/",
            *(f"/probe?alias={a}" for a in ("default", "users_db", "legacy_db", "read_replica")),
        ]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: served.get(paths[i % len(paths)])[0], range(200)))
        assert set(statuses) <= {200, 503}
        # default, users_db and analytics_db on the primary; one each on the replica and MariaDB.
        assert pg_sessions(postgres) - before["primary"] == 3
        for dbname in ("app", "users", "analytics"):
            assert pg_sessions(postgres, dbname) >= 1
        assert pg_sessions(postgres_replica) - before["replica"] == 1
        assert mariadb_sessions(mariadb, "monitor") - before["mariadb"] == 1
    # The service closed them when it stopped.
    assert pg_sessions(postgres) == before["primary"]
