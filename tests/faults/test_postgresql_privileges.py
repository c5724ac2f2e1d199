"""A PostgreSQL role without pg_monitor: every value it reports is right or absent, and the probe
names what the role may not read."""

import secrets

import pytest
from dbhealth.probing.vendors.postgresql import STATS_SIGNALS, PostgreSQLProbe


@pytest.fixture
def database(postgres) -> str:
    name = f"grants_{secrets.token_hex(4)}"
    postgres.create_database(name)
    return name


@pytest.fixture
def plain_role(postgres) -> str:
    role = f"plain_{secrets.token_hex(4)}"
    postgres.create_role(role, grants=())
    return role


def test_connections_are_counted_whole_without_their_states(
    postgres, database, plain_role, make_harness
):
    harness = make_harness(
        {
            "plain": postgres.django_settings(database, plain_role, postgres.passwords[plain_role]),
            "monitored": postgres.django_settings(database, "monitor", postgres.monitor_password),
        }
    )
    # Other roles' sessions, idle and in a transaction: the plain role sees their rows but not
    # their state.
    with postgres.connect(database) as busy, postgres.connect(database, autocommit=True):
        busy.execute("SELECT 1")
        harness.round()  # both aliases connect; from the next round on both connections exist
        state = harness.round()
        busy.rollback()
    plain, monitored = state.aliases["plain"], state.aliases["monitored"]
    assert plain.up and monitored.up
    assert monitored.connections.get("idle_in_transaction", 0) >= 1
    assert list(plain.connections) == ["unknown"]
    assert plain.connections["unknown"] == sum(monitored.connections.values())
    assert harness.value("dbhealth_connections", alias="plain", state="unknown") >= 4
    assert harness.value("dbhealth_connections", alias="plain", state="idle") is None
    assert harness.value("dbhealth_connections", alias="plain", state="active") is None


def test_statements_are_unavailable_to_a_role_that_cannot_see_other_roles(
    postgres, database, plain_role, make_harness
):
    postgres.sql("SELECT count(*) FROM pg_class WHERE relname = 'x'", dbname=database)
    harness = make_harness(
        {"plain": postgres.django_settings(database, plain_role, postgres.passwords[plain_role])},
        refresh_interval=0.0,
    )
    for _ in range(2):
        plain = harness.round().aliases["plain"]
    assert plain.up, plain.message
    assert "statements" not in plain.failing_parts
    assert plain.statements_available is False
    assert "pg_read_all_stats" in plain.statements_problem
    assert harness.value("dbhealth_statements_available", alias="plain") == 0
    assert not [key for key in harness.samples() if key[0].startswith("dbhealth_statement_")]


def test_the_probe_names_the_grants_a_role_lacks(postgres, database, plain_role, make_harness):
    postgres.sql(
        "CREATE TABLE django_migrations (id serial PRIMARY KEY, app text, name text,"
        " applied timestamptz); CREATE TABLE orders (id bigserial PRIMARY KEY)",
        dbname=database,
    )
    harness = make_harness(
        {
            "plain": postgres.django_settings(database, plain_role, postgres.passwords[plain_role]),
            "monitored": postgres.django_settings(database, "monitor", postgres.monitor_password),
        }
    )
    harness.round()

    def missing(alias: str) -> dict[str, str]:
        wrapper = harness.service._probers[alias]._wrapper
        with wrapper.cursor() as cursor:
            return PostgreSQLProbe().missing_grants(wrapper, cursor)

    plain = missing("plain")
    assert {signal for signal in plain if "pg_read_all_stats" in plain[signal]} == set(
        STATS_SIGNALS
    )
    assert "2 sequence" in plain["id headroom"]
    assert plain["pending migrations"] == "SELECT on django_migrations"

    monitored = missing("monitored")
    assert set(monitored) == {"id headroom", "pending migrations"}
    postgres.sql(
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO monitor;"
        " GRANT SELECT ON django_migrations TO monitor",
        dbname=database,
    )
    assert missing("monitored") == {}
