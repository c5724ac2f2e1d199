"""End to end: a real Prometheus scrapes the real service probing real databases.

The generated dashboards and the alert rules are only worth something if Prometheus can answer
them with what the exporter actually serves: every dashboard expression runs through the HTTP API
and returns data wherever the alias's vendor and role provide it, and a stopped database makes
DbhealthDatabaseDown pending for that alias alone.
"""

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dbhealth.configuration.targets import build_target
from dbhealth.configuration.toml_file import load_config_file
from dbhealth.generators.dashboards import DashboardAlias, build_dashboards, dashboard_queries

from tests.serving import serve, write_reference_config
from tests.support.prometheus import PrometheusServer

RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus" / "rules.yml"
SCRAPES_FOR_RATES = 5  # rate() over the 1m $__rate_interval needs two samples; a margin on top
WAIT = 30.0
# A 1 s scrape timeout leaves probes 0.5 s with the default margin: tight for a first round
# (connect, size, statements) on a busy CI machine, and a timeout would count as a failure.
DEFAULTS = "scrape_timeout_margin = 0.2"

SCRAPE_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: dbhealth
    static_configs:
      - targets: ["{address}"]
        labels:
          env: e2e
"""

# Expressions that are empty by design while every alias is healthy, whatever the alias.
EMPTY_WHILE_HEALTHY = {
    "ALERTS{": "alerts must hold for 2 minutes before they fire",
    "dbhealth_probe_failures_total": "no probe has failed (the panel keeps increases > 0)",
    "max by (job, instance, alias, reason) (dbhealth_down_reason": "no alias is down",
    "dbhealth_route_info": "no alias is down, and a standalone service has no routed models",
}
# Metrics that only some aliases have, and which aliases.
SERVER_ONLY = (
    "dbhealth_connections",
    "dbhealth_statement",
    "dbhealth_oldest_transaction_seconds",
    "dbhealth_oldest_idle_in_transaction_seconds",
    "dbhealth_blocked_sessions",
    "dbhealth_longest_lock_wait_seconds",
    "dbhealth_transactions_total",
    "dbhealth_deadlocks_total",
    "dbhealth_server_start_time_seconds",
    "alias:dbhealth_server_uptime_seconds",
    "dbhealth_table_size_bytes",
)
POSTGRESQL_ONLY = (
    "dbhealth_transaction_id_age",
    "dbhealth_multixact_id_age",
    "alias:dbhealth_transaction_id_age",
    "alias:dbhealth_multixact_id_age",
    "dbhealth_replication_slot",
    "dbhealth_table_dead_rows",
    "dbhealth_table_live_rows",
)
REPLICA_ONLY = (
    "dbhealth_replication_lag_seconds",
    "dbhealth_replica_connected",
    "dbhealth_replica_last_error",
)
MYSQL_ONLY = (
    "dbhealth_threads_running",
    "dbhealth_undo_history_length",
    "dbhealth_aborted_connections_total",
    "dbhealth_replica_last_error",
    "dbhealth_table_free_bytes",
)
SQLITE_ONLY = (
    "dbhealth_sqlite_wal_bytes",
    "dbhealth_integrity_ok",
    "dbhealth_integrity_checked_timestamp_seconds",
    "dbhealth_sqlite_freelist_bytes",
)
# When a table was last vacuumed or analyzed is absent until it was (autovacuum decides when):
# those panels run through Prometheus, which must accept them, without asserting data.
UNTIL_VACUUMED = ("dbhealth_table_last_vacuum_", "dbhealth_table_last_analyze_")
# A slot on the primary and a table with an id sequence in every database, so that those panels
# have something to show (see with_ids_and_a_slot).
SLOT = "e2e_slot"


def dashboard_aliases(config: Path) -> list[DashboardAlias]:
    """The aliases as `manage.py dashboards` sees them for this config."""
    aliases = []
    for alias, entry in load_config_file(config).databases.items():
        target = build_target(alias, entry, {})
        assert target.problem is None, (alias, target.problem)
        aliases.append(DashboardAlias(alias, target.vendor, target.replica))
    return aliases


def expected_empty(query: str, alias: DashboardAlias) -> str | None:
    """Why `query` filtered on `alias` returns nothing on a healthy service, or None."""
    for marker, reason in EMPTY_WHILE_HEALTHY.items():
        if marker in query:
            return reason
    if not alias.has_server and any(metric in query for metric in SERVER_ONLY):
        return f"{alias.vendor} has no server connections or statement statistics"
    if not alias.replica and any(metric in query for metric in REPLICA_ONLY):
        return "a primary has no replication lag"
    if alias.vendor != "postgresql" and any(metric in query for metric in POSTGRESQL_ONLY):
        return f"{alias.vendor} has no transaction id ages or replication slots"
    if alias.vendor != "mysql" and any(metric in query for metric in MYSQL_ONLY):
        return "MySQL/MariaDB only (the templated alias dashboard shows every vendor's panels)"
    if alias.vendor != "sqlite" and any(metric in query for metric in SQLITE_ONLY):
        return "SQLite only (the templated alias dashboard shows every vendor's panels)"
    if alias.replica and "dbhealth_replication_slot" in query:
        return "slots are shown for primaries only"
    if alias.replica and "dbhealth_table_live_rows" in query:
        return "a standby counts no live or dead rows: the dead row share has no denominator"
    return None


@contextmanager
def with_ids_and_a_slot(postgres, mariadb, cache: Path) -> Iterator[None]:
    """A table with an id in every database of the reference config, and an inactive physical
    slot on the primary (dropped again: it would keep WAL for the whole session)."""
    for dbname in ("app", "users", "analytics"):
        postgres.sql("CREATE TABLE IF NOT EXISTS e2e_ids (id serial PRIMARY KEY)", dbname=dbname)
        postgres.sql("INSERT INTO e2e_ids DEFAULT VALUES", dbname=dbname)
        postgres.sql("GRANT SELECT ON SEQUENCE e2e_ids_id_seq TO monitor", dbname=dbname)
    mariadb.sql("CREATE TABLE IF NOT EXISTS legacy.e2e_ids (id INT AUTO_INCREMENT PRIMARY KEY)")
    mariadb.sql("INSERT INTO legacy.e2e_ids () VALUES ()")
    with sqlite3.connect(cache) as connection:
        connection.execute("CREATE TABLE e2e_ids (id INTEGER PRIMARY KEY AUTOINCREMENT)")
        connection.execute("INSERT INTO e2e_ids DEFAULT VALUES")
    connection.close()
    postgres.sql(f"SELECT pg_create_physical_replication_slot('{SLOT}', true)")
    try:
        yield
    finally:
        postgres.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")


def variable_queries(
    dashboard: dict, alias: DashboardAlias, instance: str
) -> list[tuple[str, str]]:
    """(label, series selector) of each label_values() variable, with `alias` of the exporter
    at `instance` selected."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        selector, label = re.fullmatch(
            r"label_values\((.+), (\w+)\)", variable["query"]["query"]
        ).groups()
        # The same substitution as the panels get, through a one-target dashboard.
        [selector] = dashboard_queries(
            {"panels": [{"targets": [{"expr": selector}]}], "annotations": {"list": []}},
            alias.alias,
            alias.vendor,
            instance=instance,
        )
        found.append((label, selector))
    return found


@contextmanager
def monitored(
    config: Path, tmp_path: Path, make_prometheus: Callable[..., PrometheusServer]
) -> Iterator[tuple[PrometheusServer, str]]:
    """The service serving `config`, scraped every second by Prometheus, and its address."""
    env = {"DBHEALTH_CONFIG": str(config)}
    with serve(env, tmp_path / "service.log", "/sd") as served:
        prometheus = make_prometheus(SCRAPE_CONFIG.format(address=served.address), [RULES])
        prometheus.wait_for(
            lambda: [t for t in prometheus.targets() if t["health"] == "up"], timeout=WAIT
        )
        yield prometheus, served.address


def samples_in_last_minute(prometheus: PrometheusServer) -> int:
    result = prometheus.query("count_over_time(dbhealth_probe_rounds_total[1m])")["result"]
    return int(float(result[0]["value"][1])) if result else 0


def pending_down(prometheus: PrometheusServer) -> set[str]:
    return {
        alert["labels"]["alias"]
        for alert in prometheus.alerts()
        if alert["labels"]["alertname"] == "DbhealthDatabaseDown"
    }


def test_every_dashboard_query_answers_with_data_where_the_alias_has_it(
    postgres, postgres_replica, mariadb, make_prometheus, tmp_path
):
    config = write_reference_config(
        tmp_path, postgres, postgres_replica, mariadb, defaults=DEFAULTS
    )
    aliases = dashboard_aliases(config)
    assert {(a.vendor, a.replica) for a in aliases} == {
        ("postgresql", False),
        ("postgresql", True),
        ("mysql", False),
        ("sqlite", False),
    }
    dashboards = build_dashboards(aliases)
    with (
        with_ids_and_a_slot(postgres, mariadb, tmp_path / "cache.sqlite3"),
        monitored(config, tmp_path, make_prometheus) as (prometheus, instance),
    ):
        prometheus.wait_for(
            lambda: samples_in_last_minute(prometheus) >= SCRAPES_FOR_RATES, timeout=WAIT
        )
        up = prometheus.query("dbhealth_up")["result"]
        assert {s["metric"]["alias"]: s["value"][1] for s in up} == {a.alias: "1" for a in aliases}

        answered, empty, unexpected = 0, {}, []
        for alias in aliases:
            for name in ("overview.json", "alias.json", f"alias-{alias.alias}.json"):
                dashboard = dashboards[name]
                for label, selector in variable_queries(dashboard, alias, instance):
                    assert prometheus.label_values(label, selector), (name, label, selector)
                    answered += 1
                queries = dashboard_queries(dashboard, alias.alias, alias.vendor, instance=instance)
                for query in queries:
                    # Raises PrometheusError on any query Prometheus rejects.
                    has_data = bool(prometheus.query(query)["result"])
                    answered += 1
                    if any(metric in query for metric in UNTIL_VACUUMED):
                        continue
                    reason = expected_empty(query, alias)
                    if reason:
                        empty[(alias.alias, query)] = reason
                    if has_data == bool(reason):
                        unexpected.append((alias.alias, name, query, has_data))
    print(f"{answered} queries answered, {len(empty)} empty as expected")
    for (alias_name, query), reason in sorted(empty.items()):
        print(f"  {alias_name}: {reason}: {query}")
    assert unexpected == []


def test_a_stopped_database_makes_its_alias_alone_pending_down_until_restarted(
    postgres, postgres_replica, mariadb, make_postgres, make_prometheus, tmp_path
):
    dedicated = make_postgres()
    (tmp_path / "dedicated-password").write_text(dedicated.monitor_password)
    extra = f"""
[databases.orders_db]
URL = "postgres://monitor@127.0.0.1:{dedicated.port}/app"
PASSWORD_FILE = "dedicated-password"
"""
    config = write_reference_config(tmp_path, postgres, postgres_replica, mariadb, extra, DEFAULTS)
    with monitored(config, tmp_path, make_prometheus) as (prometheus, _):
        prometheus.wait_for(
            lambda: prometheus.query('alias:dbhealth_up:max{alias="orders_db"} == 1')["result"],
            timeout=WAIT,
        )
        assert pending_down(prometheus) == set()

        dedicated.stop()
        prometheus.wait_for(lambda: pending_down(prometheus), timeout=WAIT)
        [alert] = [
            a for a in prometheus.alerts() if a["labels"]["alertname"] == "DbhealthDatabaseDown"
        ]
        assert (alert["labels"]["alias"], alert["state"]) == ("orders_db", "pending")
        assert alert["labels"]["severity"] == "critical"

        dedicated.start()
        prometheus.wait_for(lambda: not pending_down(prometheus), timeout=WAIT)
        up = prometheus.query('alias:dbhealth_up:max{alias="orders_db"}')["result"]
        assert up[0]["value"][1] == "1"
