"""Trouble before an outage, made for real on a PostgreSQL server of each test's own: a session
idle in a transaction holding a lock, a deadlock, a slot nobody consumes, a restart, ids running
out. Each shows in the signal made for it within one scrape."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from psycopg import errors

from tests.support.process import wait_until

INT4_MAX = 2**31 - 1


@pytest.fixture
def server(make_postgres):
    return make_postgres(databases=("app",))


@pytest.fixture
def harness(server, make_harness):
    settings = server.django_settings("app", "monitor", server.monitor_password)
    return make_harness({"app": settings}, refresh_interval=0.0)


def test_an_idle_transaction_holding_a_lock_and_the_session_it_blocks(server, harness):
    server.sql("CREATE TABLE queue (id int)", dbname="app")
    holder = server.connect("app")
    waiter = server.connect("app", autocommit=True)
    pool = ThreadPoolExecutor(max_workers=1)
    blocked = None
    try:
        holder.execute("LOCK TABLE queue IN ACCESS EXCLUSIVE MODE")  # then idle in transaction
        blocked = pool.submit(lambda: waiter.execute("SELECT count(*) FROM queue").fetchone())
        assert wait_until(
            lambda: (
                server.sql(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = 'app' AND wait_event_type = 'Lock'"
                )
                == [(1,)]
            ),
            timeout=10,
        )
        time.sleep(0.2)
        harness.round()
        idle = harness.value("dbhealth_oldest_idle_in_transaction_seconds", alias="app")
        oldest = harness.value("dbhealth_oldest_transaction_seconds", alias="app")
        assert idle >= 0.2
        assert oldest >= idle  # the holder's transaction began before it went idle
        assert harness.value("dbhealth_blocked_sessions", alias="app") == 1
        assert harness.value("dbhealth_longest_lock_wait_seconds", alias="app") >= 0.2
    finally:
        holder.rollback()
        result = blocked.result(timeout=10) if blocked is not None else None
        pool.shutdown()
        holder.close()
        waiter.close()
    assert result == (0,)
    harness.round()
    for name in (
        "dbhealth_oldest_idle_in_transaction_seconds",
        "dbhealth_oldest_transaction_seconds",
        "dbhealth_blocked_sessions",
        "dbhealth_longest_lock_wait_seconds",
    ):
        assert harness.value(name, alias="app") == 0, name


def test_a_deadlock_is_counted(server, harness):
    server.sql(
        "CREATE TABLE pair (id int PRIMARY KEY, n int); INSERT INTO pair VALUES (1, 0), (2, 0)",
        dbname="app",
    )
    harness.round()
    before = harness.value("dbhealth_deadlocks_total", alias="app")
    both_hold_one = threading.Barrier(2)

    def cross(first: int, second: int) -> str:
        with server.connect("app") as session:
            session.execute("SET deadlock_timeout = '100ms'")
            session.execute("UPDATE pair SET n = n + 1 WHERE id = %s", [first])
            both_hold_one.wait(timeout=10)
            try:
                session.execute("UPDATE pair SET n = n + 1 WHERE id = %s", [second])
            except errors.DeadlockDetected:
                session.rollback()
                return "victim"
            return "survivor"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(cross, (1, 2), (2, 1)))
    assert outcomes == ["survivor", "victim"]
    assert harness.round_until(
        lambda: harness.value("dbhealth_deadlocks_total", alias="app") >= before + 1
    )


def test_an_inactive_slot_retains_more_and_more_wal(server, harness):
    server.sql("SELECT pg_create_physical_replication_slot('stuck', true)")
    try:
        harness.round()
        assert harness.value("dbhealth_replication_slot_active", alias="app", slot="stuck") == 0
        first = harness.value("dbhealth_replication_slot_retained_bytes", alias="app", slot="stuck")
        server.sql(
            "CREATE TABLE ballast AS SELECT g, repeat('x', 100) AS filler"
            " FROM generate_series(1, 20000) AS g",
            dbname="app",
        )
        harness.round()
        second = harness.value(
            "dbhealth_replication_slot_retained_bytes", alias="app", slot="stuck"
        )
    finally:
        server.sql("SELECT pg_drop_replication_slot('stuck')")
    assert first >= 0
    assert second >= first + 2_000_000  # 20000 rows of over 100 bytes
    harness.round()
    assert harness.alias("app").replication_slots == []
    assert harness.value("dbhealth_replication_slot_active", alias="app", slot="stuck") is None


def test_a_restart_moves_the_server_start_time(server, harness):
    harness.round()
    before = harness.value("dbhealth_server_start_time_seconds", alias="app")
    server.restart()
    state = harness.round().aliases["app"]
    assert state.up, state.message  # the kept connection is replaced within the probe
    after = harness.value("dbhealth_server_start_time_seconds", alias="app")
    assert after > before
    (started,) = server.sql("SELECT EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8")[0]
    assert after == pytest.approx(started, abs=1e-3)


def test_ids_running_out_show_for_the_sequences_the_role_may_read(server, make_harness):
    server.sql(
        # A serial column near 2^31: the sequence's own bound is the integer's.
        "CREATE TABLE t (id serial PRIMARY KEY);"
        "SELECT setval('t_id_seq', 2147483000);"
        # A bigint sequence behind an integer column runs out with the column, not at 2^63.
        "CREATE TABLE legacy (id integer NOT NULL);"
        "CREATE SEQUENCE legacy_id_seq AS bigint OWNED BY legacy.id;"
        "SELECT setval('legacy_id_seq', 2147482647);"
        # Django's BigAutoField, never used, outside the default schema.
        "CREATE SCHEMA billing;"
        "CREATE TABLE billing.invoice (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);"
        # The worst of all, but its sequence is never granted: left out, not guessed.
        "CREATE TABLE hidden (id serial PRIMARY KEY);"
        "SELECT setval('hidden_id_seq', 2147483600);",
        dbname="app",
    )
    settings = server.django_settings("app", "monitor", server.monitor_password)
    harness = make_harness({"app": settings}, refresh_interval=0.0)
    top_two = make_harness({"app": settings}, refresh_interval=0.0, id_headroom_top_n=2)

    # pg_monitor reads no sequence: unknown, so no series at all (never 0, never 1).
    state = harness.round().aliases["app"]
    assert state.up, state.message
    assert "ids" not in state.failing_parts
    assert state.id_headroom is None
    assert not [key for key in harness.samples() if key[0] == "dbhealth_id_headroom_ratio"]

    server.sql(
        "GRANT SELECT ON SEQUENCE t_id_seq, legacy_id_seq TO monitor;"
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA billing TO monitor",
        dbname="app",
    )
    harness.round()
    found = {
        dict(labels)["table"]: value
        for (name, labels), value in harness.samples().items()
        if name == "dbhealth_id_headroom_ratio"
    }
    assert found == {
        "t": pytest.approx((INT4_MAX - 2147483000) / INT4_MAX, rel=1e-9),
        "legacy": pytest.approx((INT4_MAX - 2147482647) / INT4_MAX, rel=1e-9),
        "billing.invoice": 1.0,
    }
    assert [item.table for item in harness.alias("app").id_headroom] == [
        "t",
        "legacy",
        "billing.invoice",
    ]
    assert harness.value("dbhealth_id_headroom_ratio", alias="app", table="t", model="") < 1e-6
    top_two.round()
    assert [item.table for item in top_two.alias("app").id_headroom] == ["t", "legacy"]
