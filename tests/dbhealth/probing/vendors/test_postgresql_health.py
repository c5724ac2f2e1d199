"""PostgreSQL health signals on a quiet database: present, plausible and, where the role cannot see
other sessions, absent rather than 0."""

import secrets
import threading
import time

import pytest
from psycopg import errors

SESSION_SIGNALS = (
    "dbhealth_oldest_transaction_seconds",
    "dbhealth_oldest_idle_in_transaction_seconds",
    "dbhealth_blocked_sessions",
    "dbhealth_longest_lock_wait_seconds",
)


@pytest.fixture
def quiet_database(postgres) -> str:
    """A database of its own, so that no other test's sessions are in it."""
    name = f"health_{secrets.token_hex(4)}"
    postgres.create_database(name)
    return name


def test_a_quiet_database_reports_every_signal_at_rest(postgres, quiet_database, make_harness):
    settings = postgres.django_settings(quiet_database, "monitor", postgres.monitor_password)
    harness = make_harness({"quiet": settings}, refresh_interval=0.0)
    # Another exporter's session (named dbhealth too) inside a transaction is not the
    # application's: only the application's transactions count.
    with postgres.connect(quiet_database) as sibling:
        sibling.execute("SET application_name = 'dbhealth'")
        sibling.execute("SELECT 1")
        time.sleep(0.05)
        quiet = harness.round().aliases["quiet"]
        sibling.rollback()
    assert quiet.up, quiet.message
    assert quiet.failing_parts == {}
    for name in SESSION_SIGNALS:
        assert harness.value(name, alias="quiet") == 0, name

    commits = harness.value("dbhealth_transactions_total", alias="quiet", outcome="commit")
    rollbacks = harness.value("dbhealth_transactions_total", alias="quiet", outcome="rollback")
    assert commits > 0
    assert rollbacks >= 0
    assert harness.value("dbhealth_deadlocks_total", alias="quiet") == 0
    assert harness.value("dbhealth_transaction_id_age", alias="quiet") > 0
    assert harness.value("dbhealth_multixact_id_age", alias="quiet") >= 0
    (started,) = postgres.sql("SELECT EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8")[0]
    assert harness.value("dbhealth_server_start_time_seconds", alias="quiet") == pytest.approx(
        started, abs=1.0
    )
    # The session replica streams without a slot, so the primary normally has none; whatever
    # it has, it is reported as the server lists it, one series per slot.
    slots = postgres.sql("SELECT slot_name, active FROM pg_replication_slots ORDER BY 1")
    assert [(slot.name, slot.active) for slot in quiet.replication_slots] == slots
    exported = {
        labels: value
        for (name, labels), value in harness.samples().items()
        if name == "dbhealth_replication_slot_active"
    }
    assert len(exported) == len(slots)
    # No sequence in this database: known to be none, not unknown.
    assert quiet.id_headroom == []

    # Transactions of other sessions, one of them rolled back, reach the counters.
    for _ in range(3):
        postgres.sql("SELECT 1", dbname=quiet_database)
    with pytest.raises(errors.DivisionByZero):
        postgres.sql("SELECT 1 / 0", dbname=quiet_database)
    assert harness.round_until(
        lambda: (
            harness.value("dbhealth_transactions_total", alias="quiet", outcome="commit")
            >= commits + 3
            and harness.value("dbhealth_transactions_total", alias="quiet", outcome="rollback")
            >= rollbacks + 1
        ),
    )


def test_a_role_without_pg_monitor_gets_lock_waits_but_no_transaction_ages(
    postgres, quiet_database, make_harness
):
    role = f"plain_{secrets.token_hex(4)}"
    password = postgres.create_role(role, grants=())
    assert postgres.sql("SELECT pg_has_role(%s, 'pg_read_all_stats', 'USAGE')", params=[role]) == [
        (False,)
    ]
    harness = make_harness({"plain": postgres.django_settings(quiet_database, role, password)})
    postgres.sql("CREATE TABLE contended (id int)", dbname=quiet_database)
    quiet = harness.round().aliases["plain"]
    assert (quiet.blocked_sessions, quiet.longest_lock_wait_seconds) == (0, 0)
    # Another role's open transaction: this role would see its row without its xact_start, so a
    # 0 would be a lie. A third session waits for its lock: pg_locks shows that to every role.
    with postgres.connect(quiet_database) as holder, postgres.connect(quiet_database) as waiter:
        holder.execute("LOCK TABLE contended IN ACCESS EXCLUSIVE MODE")
        waiting = threading.Thread(
            target=lambda: waiter.execute("SELECT count(*) FROM contended"), daemon=True
        )
        waiting.start()
        try:
            assert harness.round_until(
                lambda: (harness.alias("plain").longest_lock_wait_seconds or 0) > 0
            )
        finally:
            holder.rollback()
            waiting.join()
            waiter.rollback()
    plain = harness.alias("plain")
    assert plain.up, plain.message
    assert "activity" not in plain.failing_parts
    assert plain.blocked_sessions == 1
    assert harness.value("dbhealth_blocked_sessions", alias="plain") == 1
    assert harness.value("dbhealth_longest_lock_wait_seconds", alias="plain") > 0
    for attribute in ("oldest_transaction_seconds", "oldest_idle_in_transaction_seconds"):
        assert getattr(plain, attribute) is None, attribute
    for name in SESSION_SIGNALS[:2]:
        assert harness.value(name, alias="plain") is None, name
    # pg_stat_database, pg_database, pg_postmaster_start_time() and pg_replication_slots are
    # readable by every role.
    assert harness.value("dbhealth_transactions_total", alias="plain", outcome="commit") > 0
    assert harness.value("dbhealth_deadlocks_total", alias="plain") == 0
    assert harness.value("dbhealth_transaction_id_age", alias="plain") > 0
    assert harness.value("dbhealth_multixact_id_age", alias="plain") >= 0
    [(started,)] = postgres.sql("SELECT EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8")
    assert harness.value("dbhealth_server_start_time_seconds", alias="plain") == started
    assert plain.replication_slots is not None


def test_a_slot_on_a_replica_is_read_without_error_and_not_exported(
    postgres, postgres_replica, make_harness
):
    # pg_current_wal_lsn() fails during recovery: the status query must not call it there.
    postgres_replica.sql("SELECT pg_create_physical_replication_slot('replica_side', true)")
    try:
        settings = postgres_replica.django_settings("app", "monitor", postgres.monitor_password)
        harness = make_harness({"replica": settings})
        replica = harness.round().aliases["replica"]
    finally:
        postgres_replica.sql("SELECT pg_drop_replication_slot('replica_side')")
    assert replica.up, replica.message
    assert replica.replica is True
    slots = {slot.name: slot for slot in replica.replication_slots}
    assert slots["replica_side"].retained_bytes is None
    assert (
        harness.value("dbhealth_replication_slot_active", alias="replica", slot="replica_side")
        is None
    )
    # The activity part reads a replica's database as it reads a primary's.
    assert harness.value("dbhealth_oldest_transaction_seconds", alias="replica") == 0
    assert harness.value("dbhealth_transaction_id_age", alias="replica") > 0
