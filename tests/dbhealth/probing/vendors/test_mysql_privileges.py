"""Values that need a privilege are right or absent: a MariaDB user without PROCESS sees only its
own sessions in PROCESSLIST, so connections are counted from Threads_connected (no privilege)
and the per-state breakdown and the InnoDB transaction signals are absent; and the probe names
what each user lacks (`MySQLProbe.missing_grants`)."""

import MySQLdb
import pytest
from dbhealth.probing.vendors.mysql import MySQLProbe

from tests.dbhealth_fixtures import promtool_check_metrics

OPEN_SESSIONS = 12
PROCESS_SIGNALS = {
    "connections by state",
    "oldest transaction",
    "oldest idle in transaction",
    "blocked sessions",
    "longest lock wait",
}


@pytest.fixture
def server(make_mariadb):
    """A server of its own, so that every connection to it is one of this test's."""
    server = make_mariadb()
    server.sql("CREATE TABLE counted (id INT AUTO_INCREMENT PRIMARY KEY)", db="legacy")
    # As Django's migrate makes it: a user without SELECT on it cannot read pending migrations.
    server.sql("CREATE TABLE django_migrations (id INT AUTO_INCREMENT PRIMARY KEY)", db="legacy")
    server.create_user(
        "noprocess",
        grants=(
            "REPLICATION CLIENT, REPLICA MONITOR ON *.*",
            "SELECT ON performance_schema.*",
            "SHOW VIEW, REFERENCES ON legacy.*",
        ),
    )
    server.create_user("bare", grants=("SHOW VIEW ON legacy.*",))
    for user in ("monitor", "noprocess"):
        server.sql(f"GRANT SELECT ON legacy.django_migrations TO {user}@'%'")
    return server


@pytest.fixture
def open_sessions(server):
    """Twelve idle sessions of another user, as an application's pool holds them."""
    sessions = [
        MySQLdb.connect(unix_socket=str(server.socket), user="root", db="legacy")
        for _ in range(OPEN_SESSIONS)
    ]
    yield sessions
    for session in sessions:
        session.close()


def connection_series(harness) -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for (name, labels), value in harness.samples().items()
        if name == "dbhealth_connections"
    }


def lacking(harness, alias: str) -> dict[str, str]:
    wrapper = harness.service._probers[alias]._wrapper  # the connection the probes keep
    with wrapper.cursor() as cursor:
        return MySQLProbe().missing_grants(wrapper, cursor)


def test_without_process_every_connection_is_counted_and_none_by_state(
    server, open_sessions, make_harness
):
    settings = server.django_settings("legacy", "noprocess", server.passwords["noprocess"])
    harness = make_harness({"legacy": settings})
    alias = harness.round().aliases["legacy"]
    assert alias.up, alias.message
    # The twelve sessions and the probe's own; PROCESSLIST would have shown the probe's alone.
    assert connection_series(harness) == {"unknown": OPEN_SESSIONS + 1}
    for signal in ("oldest_transaction_seconds", "blocked_sessions", "longest_lock_wait_seconds"):
        assert getattr(alias, signal) is None, signal
    assert set(lacking(harness, "legacy")) == PROCESS_SIGNALS
    assert set(lacking(harness, "legacy").values()) == {"PROCESS ON *.*"}
    checked = promtool_check_metrics(harness.exposition())
    assert checked.returncode == 0 and not checked.stdout + checked.stderr, checked


def test_with_process_the_connections_are_counted_by_state(server, open_sessions, make_harness):
    settings = server.django_settings("legacy", "monitor", server.monitor_password)
    harness = make_harness({"legacy": settings})
    alias = harness.round().aliases["legacy"]
    assert alias.up, alias.message
    by_state = connection_series(harness)
    assert "unknown" not in by_state
    assert by_state["idle"] == OPEN_SESSIONS
    assert sum(by_state.values()) == OPEN_SESSIONS + 1
    assert alias.blocked_sessions == 0
    assert lacking(harness, "legacy") == {}


def test_a_user_with_no_monitoring_grant_is_told_every_grant_it_lacks(server, make_harness):
    harness = make_harness(
        {"legacy": server.django_settings("legacy", "bare", server.passwords["bare"])}
    )
    alias = harness.round().aliases["legacy"]
    assert alias.up, alias.message
    assert alias.replica is None  # unknown, not "primary"
    assert harness.value("dbhealth_replica", alias="legacy") is None
    missing = lacking(harness, "legacy")
    assert missing == {
        **dict.fromkeys(PROCESS_SIGNALS, "PROCESS ON *.*"),
        **dict.fromkeys(
            ("replica", "replica connected", "replication lag", "replica last errors"),
            "REPLICA MONITOR ON *.*",
        ),
        "statements": "SELECT ON performance_schema.*",
        "transactions by table": "SELECT ON performance_schema.*",
        "id headroom": "REFERENCES ON `legacy`.*",
        "pending migrations": "SELECT ON `legacy`.`django_migrations`",
    }


def test_process_held_through_a_mariadb_role_counts_as_held(server, open_sessions, make_harness):
    """A MariaDB role granted as the user's default role: its PROCESS is the user's."""
    server.sql("CREATE ROLE monitoring_role")
    server.sql("GRANT PROCESS ON *.* TO monitoring_role")
    server.create_user("through_role", grants=("SHOW VIEW ON legacy.*", "monitoring_role"))
    server.sql("SET DEFAULT ROLE monitoring_role FOR through_role@'%'")
    settings = server.django_settings("legacy", "through_role", server.passwords["through_role"])
    harness = make_harness({"legacy": settings})
    alias = harness.round().aliases["legacy"]
    assert alias.up, alias.message
    by_state = connection_series(harness)
    assert by_state["idle"] == OPEN_SESSIONS and "unknown" not in by_state
    assert alias.blocked_sessions == 0
    assert not PROCESS_SIGNALS & set(lacking(harness, "legacy"))
