"""Servers that are up but cannot serve the exporter: no connection slot left, or slow reads."""

import contextlib
import secrets

import MySQLdb
import psycopg

from tests.faults.fleet import Fleet
from tests.support.process import wait_until


def test_postgres_max_connections_exhausted_by_other_clients(make_fleet, make_postgres) -> None:
    # 6 slots, 3 of them reserved for superusers: 3 for everyone else.
    server = make_postgres(max_connections=6, databases=("app",))
    password = server.create_role("crowd", grants=())
    fleet: Fleet = make_fleet(
        "crowded", server.django_settings("app", "monitor", server.monitor_password)
    )
    with contextlib.ExitStack() as crowd:
        for _ in range(3):
            crowd.enter_context(
                psycopg.connect(
                    host=server.host,
                    port=server.port,
                    dbname="app",
                    user="crowd",
                    password=password,
                )
            )
        down = fleet.expect_down("connection_limit")
        assert "reserved" in down.message
    fleet.expect_up()
    fleet.finish()


def test_postgres_kept_connection_survives_exhaustion(make_fleet, make_postgres) -> None:
    server = make_postgres(max_connections=6, databases=("app",))
    password = server.create_role("crowd", grants=())
    fleet: Fleet = make_fleet(
        "crowded", server.django_settings("app", "monitor", server.monitor_password)
    )
    fleet.scrape()
    with contextlib.ExitStack() as crowd:
        for _ in range(2):
            crowd.enter_context(
                psycopg.connect(
                    host=server.host,
                    port=server.port,
                    dbname="app",
                    user="crowd",
                    password=password,
                )
            )
        # The exporter holds the third slot from before: it keeps reporting, and sees the crowd.
        fleet.scrape()
        state = fleet.faulted_state()
        assert state.up
        assert sum(state.connections.values()) == 3
    fleet.finish()


def test_mariadb_max_connections_exhausted_by_other_clients(make_fleet, make_mariadb) -> None:
    # MariaDB raises anything lower to 10.
    server = make_mariadb(max_connections=10)
    watch = server.create_user("watch", grants=("PROCESS ON *.*", "SELECT ON legacy.*"))
    crowd_password = server.create_user("crowd", grants=("SELECT ON legacy.*",))
    fleet: Fleet = make_fleet("crowded", server.django_settings("legacy", "watch", watch))
    with contextlib.ExitStack() as crowd:
        for _ in range(10):
            connection = MySQLdb.connect(
                host=server.host, port=server.port, user="crowd", password=crowd_password
            )
            crowd.callback(connection.close)
        down = fleet.expect_down("connection_limit")
        assert "Too many connections" in down.message
    fleet.expect_up()
    fleet.finish()


def exporter_backend(server, dbname: str) -> list[tuple[int]]:
    return server.sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbhealth' AND datname = %s",
        params=[dbname],
    )


def test_a_locked_catalog_hits_the_server_side_statement_timeout(make_fleet, postgres):
    fleet: Fleet = make_fleet(
        "slow",
        postgres.django_settings("analytics", "monitor", postgres.monitor_password),
        refresh_interval=0.01,
    )
    fleet.scrape()
    collected = fleet.faulted_state().ids_at
    assert collected is not None
    backend = exporter_backend(postgres, "analytics")
    assert len(backend) == 1
    marker = f"lock-{secrets.token_hex(4)}"
    with psycopg.connect(
        host=str(postgres.tmpdir),
        port=postgres.port,
        dbname="analytics",
        user="postgres",
        application_name=marker,
    ) as holder:
        # The id headroom reads the database's own pg_sequence catalog.
        holder.execute("LOCK TABLE pg_sequence IN ACCESS EXCLUSIVE MODE")
        log_size = postgres.logfile.stat().st_size
        fleet.scrape()
        # The read began after the ping, so it may outlast the probe's deadline; the server
        # cancels it itself, at most one deadline after it began.
        cancelled = "monitor@analytics ERROR:  canceling statement due to statement timeout"
        assert wait_until(
            lambda: cancelled in postgres.logfile.read_bytes()[log_size:].decode(errors="replace"),
            timeout=10,
        )
        holder.rollback()

    state = fleet.faulted_state()
    # Up: it answered; only the ids part failed, and the failure is counted with its reason.
    assert state.up
    assert state.ids_at == collected
    assert "ids" in state.failing_parts
    failures = fleet.harness.value(
        "dbhealth_part_failures_total", alias="slow", part="ids", reason="timeout"
    )
    assert failures == 1
    # The server cancelled the wait itself: the exporter did not have to cut its connection.
    assert exporter_backend(postgres, "analytics") == backend

    fleet.scrape()
    assert fleet.faulted_state().ids_at > collected
    fleet.finish()


def test_mariadb_user_connection_limit_is_its_own_reason(make_fleet, make_mariadb) -> None:
    server = make_mariadb()
    password = server.create_user("capped", grants=("PROCESS ON *.*", "SELECT ON legacy.*"))
    server.sql("ALTER USER capped@'%' WITH MAX_USER_CONNECTIONS 1")
    fleet: Fleet = make_fleet("crowded", server.django_settings("legacy", "capped", password))
    holder = MySQLdb.connect(host=server.host, port=server.port, user="capped", password=password)
    try:
        down = fleet.expect_down("connection_limit")
        assert "max_user_connections" in down.message
    finally:
        holder.close()
    fleet.expect_up()
    fleet.finish()


def test_a_hung_server_with_more_databases_than_its_cap_harms_no_one_else(
    make_fleet, make_postgres
) -> None:
    names = [f"db{index}" for index in range(5)]
    server = make_postgres(databases=names)
    entries = {
        name: server.django_settings(name, "monitor", server.monitor_password) for name in names
    }
    # A cap of 2: db0 keeps a connection, the other four take turns on one slot, every round.
    fleet: Fleet = make_fleet(
        "db0",
        entries["db0"],
        extra={name: entries[name] for name in names[1:]},
        max_connections_per_server=2,
        rotation_interval=0.001,
    )
    state = fleet.scrape()
    assert all(state.aliases[name].up for name in names)
    server.pause()
    try:
        for _ in range(3):
            # Each scrape: the healthy aliases answered in this round, within the deadline.
            state = fleet.scrape()
            for name in names:
                alias = state.aliases[name]
                # Down only from its own probes' deadlines (a stuck connect is waited for by
                # the alias's next probe), never from waiting for the exporter's own slot.
                if not alias.up:
                    assert alias.reason == "timeout", alias.message
                    assert alias.message.startswith(
                        ("no answer within", "waited the whole 1.00 s deadline for the previous")
                    ), alias.message
        assert (state.aliases["db0"].up, state.aliases["db0"].reason) == (False, "timeout")
        waits = fleet.harness.value("dbhealth_probe_slot_waits_total", alias="db4")
        assert waits is not None and waits >= 1
    finally:
        server.resume()
    fleet.expect_up()
    fleet.finish()
