"""Prove the server fixtures behave as the rest of the suite relies on."""

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import MySQLdb
import psycopg
import pytest

from . import process as process_module
from .mariadb import MariaDBServer
from .ports import free_port
from .postgres import PostgresReplica, PostgresServer
from .process import (
    OWNER_FILE,
    TEMPDIR_PREFIX,
    ServerError,
    ServerProcess,
    alive,
    make_tempdir,
    sweep_stale,
    wait_until,
)
from .prometheus import PrometheusServer


def _monitor_query(
    server: PostgresServer, query: str, dbname: str = "app"
) -> list[tuple[Any, ...]]:
    """Query over TCP as ``monitor`` the way the exporter will (2 s client timeout)."""
    settings = server.django_settings(dbname, "monitor", server.monitor_password)
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        connect_timeout=2,
    ) as conn:
        return conn.execute(query).fetchall()


def test_primary_has_pg_stat_statements(postgres: PostgresServer) -> None:
    assert postgres.sql("SHOW shared_preload_libraries") == [("pg_stat_statements",)]
    for dbname in ("app", "users", "analytics"):
        assert postgres.sql(
            "SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'", dbname
        ) == [("pg_stat_statements",)]
    # pg_monitor lets the monitor role see every role's query texts.
    rows = _monitor_query(
        postgres, "SELECT query FROM pg_stat_statements WHERE query <> '<insufficient privilege>'"
    )
    assert rows


def _replay_lag(replica: PostgresReplica) -> float:
    """Seconds since the commit the replica applied last: what lag alerts use."""
    return replica.sql(
        "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
    )[0][0]


def test_replica_lag_grows_while_replay_paused(
    postgres: PostgresServer, postgres_replica: PostgresReplica
) -> None:
    postgres.sql("CREATE TABLE IF NOT EXISTS replay_probe (at timestamptz DEFAULT now())", "app")
    postgres.sql("INSERT INTO replay_probe DEFAULT VALUES", "app")
    postgres_replica.wait_caught_up()
    assert postgres_replica.sql("SELECT pg_is_in_recovery()") == [(True,)]
    (rows_before,) = postgres_replica.sql("SELECT count(*) FROM replay_probe", "app")[0]

    postgres_replica.pause_replay()
    try:
        time.sleep(0.5)
        ((written_at,),) = postgres.sql(
            "INSERT INTO replay_probe DEFAULT VALUES RETURNING at", "app"
        )
        # The write is streamed to the replica but not applied.
        assert wait_until(
            lambda: (
                postgres_replica.sql("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
                == [(True,)]
            ),
            timeout=10,
        )
        first = _replay_lag(postgres_replica)
        time.sleep(0.5)
        assert first >= 0.5
        assert _replay_lag(postgres_replica) >= first + 0.4
        assert postgres_replica.sql("SELECT count(*) FROM replay_probe", "app") == [(rows_before,)]
    finally:
        postgres_replica.resume_replay()

    postgres_replica.wait_caught_up()
    assert postgres_replica.sql("SELECT count(*) FROM replay_probe", "app") == [(rows_before + 1,)]
    assert postgres_replica.sql("SELECT pg_last_xact_replay_timestamp()")[0][0] >= written_at


def test_pause_hangs_clients_until_resume(make_postgres: Any) -> None:
    server = make_postgres(databases=("app",))
    server.pause()
    try:
        # The kernel still completes the TCP handshake, but nobody answers.
        socket.create_connection((server.host, server.port), timeout=2).close()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            _monitor_query(server, "SELECT 1")
        assert time.monotonic() - started < 5
    finally:
        server.resume()
    assert _monitor_query(server, "SELECT 1") == [(1,)]


def test_kill_then_restart_on_same_port(make_postgres: Any) -> None:
    server = make_postgres(databases=("app",))
    port, pids = server.port, server.pids()
    assert len(pids) > 1  # postmaster and its background workers

    server.kill()
    assert not any(map(alive, pids))
    with pytest.raises(psycopg.OperationalError):
        _monitor_query(server, "SELECT 1")

    server.restart()
    assert server.port == port
    assert _monitor_query(server, "SELECT 1") == [(1,)]


def test_close_leaves_nothing_behind_even_when_paused() -> None:
    server = PostgresServer()
    server.start()
    pids = server.pids()
    server.pause()
    server.close()
    assert not server.tmpdir.exists()
    assert not any(map(alive, pids))


def test_mariadb_monitor_has_least_privileges(mariadb: MariaDBServer) -> None:
    assert mariadb.sql("SELECT @@performance_schema") == [(1,)]
    mariadb.sql("SELECT COUNT(*) FROM mysql.user")  # something for the digest table
    conn = MySQLdb.connect(
        host=mariadb.host,
        port=mariadb.port,
        user="monitor",
        password=mariadb.monitor_password,
        connect_timeout=2,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT digest_text FROM performance_schema.events_statements_summary_by_digest"
            )
            assert cursor.fetchall()
            with pytest.raises(MySQLdb.OperationalError) as denied:
                cursor.execute("CREATE TABLE legacy.probe (id INT)")
            assert denied.value.args[0] == 1142  # ER_TABLEACCESS_DENIED_ERROR
    finally:
        conn.close()


def test_mariadb_pause_kill_restart(make_mariadb: Any) -> None:
    server = make_mariadb()

    def login() -> None:
        MySQLdb.connect(
            host=server.host,
            port=server.port,
            user="monitor",
            password=server.monitor_password,
            connect_timeout=2,
            read_timeout=2,
        ).close()

    server.pause()
    with pytest.raises(MySQLdb.OperationalError):
        login()
    server.resume()
    login()

    port = server.port
    server.kill()
    with pytest.raises(MySQLdb.OperationalError):
        login()
    server.restart()
    assert server.port == port
    login()


def test_prometheus_answers_up(make_prometheus: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n"
        "  - name: probe\n"
        "    rules:\n"
        "      - alert: AlwaysFiring\n"
        "        expr: vector(1)\n"
    )
    port = free_port()
    config = (
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: self\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
    )
    prometheus: PrometheusServer = make_prometheus(config, [rules], port=port)
    # Prometheus 2.x applies discovered targets only every 5 s: the first
    # scrape lands about 5 s after start-up.
    up = prometheus.wait_for(lambda: prometheus.query("up")["result"], timeout=15)
    assert up[0]["value"][1] == "1"
    assert prometheus.targets()[0]["health"] == "up"
    assert (
        prometheus.wait_for(prometheus.alerts, timeout=15)[0]["labels"]["alertname"]
        == "AlwaysFiring"
    )


def test_sweep_kills_and_deletes_leftovers_of_dead_runs(tmp_path: Path) -> None:
    leftover = tmp_path / f"{TEMPDIR_PREFIX}pg-dead"
    (leftover / "data").mkdir(parents=True)
    (leftover / OWNER_FILE).write_text("999999999 0")  # no such pid
    orphan = subprocess.Popen(["sleep", "60"], cwd=leftover / "data")
    mine = make_tempdir("pg-", user=None)
    try:
        sweep_stale(tmp_path)
        sweep_stale(mine.parent)
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert not leftover.exists()
        assert mine.exists()  # its owner (this process) is alive
    finally:
        orphan.kill()
        shutil.rmtree(mine)


class ShutdownIgnoringServer(ServerProcess):
    """Listens, and ignores SIGTERM: a server kept alive by what a test left behind."""

    name = "stubborn"

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import signal, socket, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"s = socket.create_server(('127.0.0.1', {self.port}))\n"
            "time.sleep(600)\n",
        ]

    def _ready(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
        except OSError:
            return False
        return True


def test_a_server_ignoring_its_shutdown_fails_the_teardown(monkeypatch) -> None:
    monkeypatch.setattr(process_module, "STOP_TIMEOUT", 1.0)
    server = ShutdownIgnoringServer(prefix="dbhealth-stubborn-", user=None)
    server.start()
    pid = server.pids()[0]
    with pytest.raises(ServerError, match="ignored the shutdown") as refused:
        server.close()
    # It says what was still running, to find what kept it.
    assert f"{pid} {sys.executable}" in str(refused.value)
    # Killed and cleaned up all the same.
    assert wait_until(lambda: not alive(pid), timeout=10)
    assert not server.tmpdir.exists()
