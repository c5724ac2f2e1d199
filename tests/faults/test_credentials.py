"""Logins that fail and logins that succeed with fewer privileges than the probes would like."""

import secrets

import psycopg

from tests.faults.fleet import Fleet
from tests.support.process import wait_until


def test_wrong_password_is_auth_and_recovers_when_fixed(make_fleet, postgres) -> None:
    role = f"rotating_{secrets.token_hex(4)}"
    postgres.create_role(role)
    entry = postgres.django_settings("app", role, "not-the-password")
    fleet: Fleet = make_fleet("wrong_password", entry)
    fleet.expect_down("auth")

    # The operator fixes the password on the server side instead: the next scrape logs in.
    postgres.sql(f"ALTER ROLE {role} PASSWORD 'not-the-password'")
    fleet.expect_up()
    fleet.finish()


def test_mariadb_wrong_password_is_auth(make_fleet, mariadb) -> None:
    entry = mariadb.django_settings("legacy", "monitor", "not-the-password")
    fleet: Fleet = make_fleet("wrong_password", entry)
    fleet.expect_down("auth")
    fleet.finish()


def test_postgres_role_without_pg_monitor_degrades(make_fleet, postgres) -> None:
    role = f"plain_{secrets.token_hex(4)}"
    password = postgres.create_role(role, grants=())
    fleet: Fleet = make_fleet("plain", postgres.django_settings("app", role, password))
    with psycopg.connect(
        host=str(postgres.tmpdir), port=postgres.port, dbname="app", user="postgres"
    ):
        fleet.scrape()
    state = fleet.faulted_state()
    # Up, with the facts any role can read.
    assert state.up
    assert state.connections_max == postgres.max_connections
    assert state.replica is False
    assert state.size_bytes > 0
    # Other roles' sessions show it neither state nor backend type: counted, in state unknown.
    assert list(state.connections) == ["unknown"]
    assert state.connections["unknown"] >= 1
    assert fleet.harness.value("dbhealth_up", alias="plain", vendor="postgresql") == 1
    fleet.finish()


def test_mariadb_user_with_database_access_only_degrades(make_fleet, mariadb) -> None:
    user = f"plain_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=("SELECT ON legacy.*",))
    fleet: Fleet = make_fleet("plain", mariadb.django_settings("legacy", user, password))
    fleet.scrape()
    state = fleet.faulted_state()
    assert state.up
    # No REPLICA MONITOR: the role is unknown rather than a failure; no performance_schema.
    assert (state.replica, state.replica_connected, state.replication_lag_seconds) == (None,) * 3
    for name in ("replica", "replica_connected", "replication_lag_seconds"):
        assert fleet.harness.value(f"dbhealth_{name}", alias="plain") is None
    assert state.statements_available is False
    assert fleet.harness.value("dbhealth_statements_available", alias="plain") == 0
    # PROCESSLIST without PROCESS shows only the user's own session: the count comes from
    # Threads_connected instead (the probe's and the healthy alias's sessions at least), its
    # states unknown rather than a partial breakdown.
    assert set(state.connections) == {"unknown"}
    assert sum(state.connections.values()) >= 2
    fleet.finish()


def test_mariadb_user_without_access_to_the_database_is_permission(make_fleet, mariadb) -> None:
    user = f"outsider_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=("PROCESS ON *.*",))
    fleet: Fleet = make_fleet("no_db_access", mariadb.django_settings("legacy", user, password))
    down = fleet.expect_down("permission")
    assert "legacy" in down.message
    fleet.finish()


def test_postgres_login_refusals_say_why(make_fleet, postgres) -> None:
    """psycopg gives a failed connection no SQLSTATE: the reason comes from the server's words."""
    closed = f"closed_{secrets.token_hex(4)}"
    postgres.create_database(closed)
    postgres.sql(f"REVOKE CONNECT ON DATABASE {closed} FROM PUBLIC")
    monitor = postgres.monitor_password
    socket_entry = {
        **postgres.django_settings("app", "ghost", "not-the-password"),
        "HOST": str(postgres.tmpdir),
    }
    fleet: Fleet = make_fleet(
        "missing_database",
        postgres.django_settings(f"missing_{secrets.token_hex(4)}", "monitor", monitor),
        extra={
            "no_connect": postgres.django_settings(closed, "monitor", monitor),
            # Over TCP the server does not say whether the role exists; over the socket
            # (trust) it does.
            "ghost_tcp": postgres.django_settings(
                "app", f"ghost_{secrets.token_hex(4)}", "not-the-password"
            ),
            "ghost_socket": socket_entry,
        },
    )
    down = fleet.expect_down("config")
    assert "does not exist" in down.message
    expected = {
        "no_connect": ("permission", "CONNECT privilege"),
        "ghost_tcp": ("auth", "password authentication failed"),
        "ghost_socket": ("auth", 'role "ghost" does not exist'),
    }
    for alias, (reason, words) in expected.items():
        state = fleet.harness.alias(alias)
        assert (state.up, state.reason) == (False, reason), (alias, state.message)
        assert words in state.message
        assert fleet.harness.value("dbhealth_down_reason", alias=alias, reason=reason) == 1
    fleet.finish()


def test_postgres_refused_by_pg_hba_is_permission(make_fleet, postgres) -> None:
    database = f"hba_{secrets.token_hex(4)}"
    hba = postgres.datadir / "pg_hba.conf"
    original = hba.read_text()
    entry = postgres.django_settings(database, "monitor", postgres.monitor_password)

    def refused() -> bool:
        try:
            psycopg.connect(
                host=postgres.host,
                port=postgres.port,
                dbname=database,
                user="monitor",
                password=postgres.monitor_password,
            ).close()
        except psycopg.OperationalError as exc:
            return "pg_hba.conf" in str(exc)
        return False

    hba.write_text(f"host {database} all 127.0.0.1/32 reject\n{original}")
    try:
        postgres.sql("SELECT pg_reload_conf()")
        assert wait_until(refused, timeout=10)
        fleet: Fleet = make_fleet("hba", entry)
        down = fleet.expect_down("permission")
        assert "pg_hba.conf rejects connection" in down.message
        fleet.finish()
    finally:
        hba.write_text(original)
        postgres.sql("SELECT pg_reload_conf()")
        assert wait_until(lambda: not refused(), timeout=10)


def test_mariadb_unknown_database_is_config(make_fleet, mariadb) -> None:
    # A database dropped under its grants: the user may see that it is gone (error 1049). One
    # with no rights there is told only that access is denied (1044), which is `permission`.
    user = f"orphan_{secrets.token_hex(4)}"
    gone = f"gone_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=(f"SELECT ON `{gone}`.*",))
    fleet: Fleet = make_fleet("gone", mariadb.django_settings(gone, user, password))
    down = fleet.expect_down("config")
    assert "Unknown database" in down.message
    fleet.finish()
