"""MySQL/MariaDB health signals read by the least-privilege `monitor` user on the session MariaDB:
server counters shared by the server's aliases, and the alias's own transactions and lock waits."""

import MySQLdb
import pytest


@pytest.fixture
def legacy(mariadb, make_harness):
    settings = mariadb.django_settings("legacy", "monitor", mariadb.monitor_password)
    return make_harness({"legacy": settings})


def commit_once(mariadb) -> None:
    """One explicit COMMIT (Com_commit counts the statement), as another client."""
    conn = MySQLdb.connect(unix_socket=str(mariadb.socket), user="root", db="legacy")
    try:
        conn.query("BEGIN")
        conn.query("COMMIT")
    finally:
        conn.close()


def test_server_facts_are_present_and_plausible(mariadb, legacy):
    alias = legacy.round().aliases["legacy"]
    assert alias.up, alias.message
    # Derived on the server, as the probe does: UNIX_TIMESTAMP() and Uptime of one statement are
    # whole seconds, so two statements may differ by one, however long anything took.
    ((expected,),) = mariadb.sql(
        "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
        " WHERE VARIABLE_NAME = 'UPTIME'"
    )
    started = legacy.value("dbhealth_server_start_time_seconds", alias="legacy")
    assert abs(started - float(expected)) <= 1
    # The probe's own statement is running while it reads the counter.
    assert legacy.value("dbhealth_threads_running", alias="legacy") >= 1
    for kind in ("connect", "client"):
        assert legacy.value("dbhealth_aborted_connections_total", alias="legacy", kind=kind) >= 0
    assert legacy.value("dbhealth_deadlocks_total", alias="legacy") >= 0
    assert legacy.value("dbhealth_undo_history_length", alias="legacy") >= 0
    before = {
        outcome: legacy.value("dbhealth_transactions_total", alias="legacy", outcome=outcome)
        for outcome in ("commit", "rollback")
    }
    assert None not in before.values(), before

    commit_once(mariadb)
    legacy.round()
    assert legacy.value("dbhealth_transactions_total", alias="legacy", outcome="commit") >= (
        before["commit"] + 1
    )
    assert (
        legacy.value("dbhealth_transactions_total", alias="legacy", outcome="rollback")
        >= before["rollback"]
    )
    # A primary has no replica metrics.
    assert legacy.value("dbhealth_replica", alias="legacy") == 0
    assert legacy.value("dbhealth_replica_last_error", alias="legacy", thread="sql") is None


def test_no_open_transaction_reads_zero(legacy):
    alias = legacy.round().aliases["legacy"]
    assert alias.up, alias.message
    assert alias.oldest_transaction_seconds == 0
    assert alias.oldest_idle_in_transaction_seconds == 0
    assert alias.blocked_sessions == 0
    assert alias.longest_lock_wait_seconds == 0
    assert legacy.value("dbhealth_blocked_sessions", alias="legacy") == 0


def test_without_process_the_activity_is_unknown_and_the_alias_up(mariadb, make_harness):
    # The README's grants less PROCESS: information_schema.INNODB_TRX refuses (error 1227).
    password = mariadb.create_user(
        "noprocess",
        grants=(
            "REPLICATION CLIENT, REPLICA MONITOR ON *.*",
            "SELECT ON performance_schema.*",
            "SHOW VIEW ON legacy.*",
        ),
    )
    harness = make_harness({"legacy": mariadb.django_settings("legacy", "noprocess", password)})
    alias = harness.round().aliases["legacy"]
    assert alias.up, alias.message
    assert "activity" not in alias.failing_parts
    for signal in (
        "oldest_transaction_seconds",
        "oldest_idle_in_transaction_seconds",
        "blocked_sessions",
        "longest_lock_wait_seconds",
    ):
        assert getattr(alias, signal) is None, signal
    assert harness.value("dbhealth_blocked_sessions", alias="legacy") is None
    assert harness.value("dbhealth_oldest_transaction_seconds", alias="legacy") is None
    # MariaDB's status counters need no privilege at all.
    assert harness.value("dbhealth_threads_running", alias="legacy") >= 1
    assert harness.value("dbhealth_deadlocks_total", alias="legacy") >= 0
    assert harness.value("dbhealth_undo_history_length", alias="legacy") >= 0


def transaction_counts(harness) -> dict[str, float]:
    return {
        outcome: harness.value("dbhealth_transactions_total", alias="legacy", outcome=outcome)
        for outcome in ("commit", "rollback")
    }


def test_transactions_count_commit_statements_of_the_server_as_the_help_says(
    make_mariadb, make_harness
):
    """Com_commit counts COMMIT statements, not autocommitted ones: the help says so, and says
    the value is the server's, repeated on every alias of it."""
    server = make_mariadb(databases=("legacy", "other"))
    server.sql("CREATE TABLE t (v INT) ENGINE=InnoDB", db="legacy")
    harness = make_harness(
        {
            name: server.django_settings(name, "monitor", server.monitor_password)
            for name in ("legacy", "other")
        }
    )
    harness.round()
    before = transaction_counts(harness)
    for _ in range(3):
        server.sql("INSERT INTO t VALUES (1)", db="legacy")  # autocommitted
    harness.round()
    assert transaction_counts(harness) == before
    commit_once(server)
    harness.round()
    assert transaction_counts(harness) == {**before, "commit": before["commit"] + 1}
    # Server-wide: the other alias repeats the same value.
    assert harness.value("dbhealth_transactions_total", alias="other", outcome="commit") == (
        before["commit"] + 1
    )
    help_text = next(
        line
        for line in harness.exposition().splitlines()
        if line.startswith("# HELP dbhealth_transactions_total ")
    )
    assert "COMMIT and ROLLBACK statements" in help_text
    assert "autocommitted statements are not counted" in help_text
    assert "do not sum over aliases" in help_text
