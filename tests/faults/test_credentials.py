"""Logins that fail and logins that succeed with fewer privileges than the probes would like."""

import secrets

import psycopg

from tests.faults.fleet import Fleet


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
    # Other roles' sessions are invisible to it (state and backend type hidden): only its own.
    assert state.connections == {"active": 1}
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
    assert state.replica is None
    assert fleet.harness.value("dbhealth_replica", alias="plain") is None
    assert state.statements_available is False
    assert fleet.harness.value("dbhealth_statements_available", alias="plain") == 0
    # PROCESSLIST without PROCESS shows only the user's own session.
    assert sum(state.connections.values()) == 1
    fleet.finish()


def test_mariadb_user_without_access_to_the_database_is_permission(make_fleet, mariadb) -> None:
    user = f"outsider_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=("PROCESS ON *.*",))
    fleet: Fleet = make_fleet("no_db_access", mariadb.django_settings("legacy", user, password))
    down = fleet.expect_down("permission")
    assert "legacy" in down.message
    fleet.finish()
