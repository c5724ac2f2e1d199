"""Trouble before an outage on MariaDB, each on servers of its own: a transaction left open holding
a lock with a session waiting on it, a deadlock, an id column near its end, and a replica whose
SQL thread stopped on an error."""

import threading

import MySQLdb
import pytest

from tests.support.process import wait_until

INT_MAX = 2**31 - 1
WAIT_TIMEOUT = 10.0
# InnoDB refreshes its copy behind information_schema.INNODB_TRX only when it was last read more
# than 0.1 s ago: polling it faster would read the same copy forever.
POLL = 0.2


def session(server, db: str = "legacy") -> MySQLdb.Connection:
    """Another client of the server: root over the unix socket, transactions by hand."""
    return MySQLdb.connect(unix_socket=str(server.socket), user="root", db=db, autocommit=False)


def run(conn: MySQLdb.Connection, statement: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(statement)
        if cursor.description:
            cursor.fetchall()


def in_background(conn: MySQLdb.Connection, statement: str) -> tuple[threading.Thread, list]:
    """Run a statement that blocks in a thread; the list receives its error, if any."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(conn, statement)
        except MySQLdb.Error as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def lock_waits(server, seconds: int) -> int:
    """Sessions waiting for a lock for at least `seconds`, as root sees them. PROCESSLIST.TIME is
    whole seconds elapsed, where INNODB_TRX's times are cut to the second (a difference of them
    can read 1 after a few milliseconds)."""
    rows = server.sql(
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX AS t"
        " JOIN information_schema.PROCESSLIST AS p ON p.ID = t.trx_mysql_thread_id"
        " WHERE t.trx_state = 'LOCK WAIT' AND p.TIME >= %s",
        params=[seconds],
    )
    return int(rows[0][0])


def test_an_idle_transaction_holding_a_lock_and_a_session_waiting_for_it(
    make_mariadb, make_harness
):
    server = make_mariadb(databases=("legacy", "other"))
    server.sql("CREATE TABLE items (id INT PRIMARY KEY, v INT) ENGINE=InnoDB", db="legacy")
    server.sql("INSERT INTO items VALUES (1, 0)", db="legacy")
    harness = make_harness(
        {
            name: server.django_settings(name, "monitor", server.monitor_password)
            for name in ("legacy", "other")
        }
    )
    holder, waiter = session(server), session(server)
    waiting, errors = None, []
    try:
        run(holder, "SELECT v FROM items WHERE id = 1 FOR UPDATE")  # then idle, lock held
        run(waiter, "SET SESSION innodb_lock_wait_timeout = 60")
        waiting, errors = in_background(waiter, "UPDATE items SET v = 1 WHERE id = 1")
        # Signals are whole seconds: wait until the wait (and so the idle holder) is 1 s old.
        assert wait_until(lambda: lock_waits(server, 1) == 1, WAIT_TIMEOUT, POLL)

        state = harness.round()
        alias = state.aliases["legacy"]
        assert alias.up, alias.message
        assert alias.oldest_transaction_seconds >= 1
        assert alias.oldest_idle_in_transaction_seconds >= 1
        assert alias.blocked_sessions == 1
        assert alias.longest_lock_wait_seconds >= 1
        assert harness.value("dbhealth_blocked_sessions", alias="legacy") == 1
        assert harness.value("dbhealth_oldest_idle_in_transaction_seconds", alias="legacy") >= 1
        # Per alias: sessions on another schema of the same server are not the other alias's.
        other = state.aliases["other"]
        assert (other.oldest_transaction_seconds, other.blocked_sessions) == (0, 0)
    finally:
        holder.rollback()
        if waiting is not None:
            waiting.join(WAIT_TIMEOUT)
        waiter.rollback()
        holder.close()
        waiter.close()
    assert not errors, errors

    def settled() -> bool:
        alias = harness.round().aliases["legacy"]
        return (alias.oldest_transaction_seconds, alias.blocked_sessions) == (0, 0)

    assert wait_until(settled, WAIT_TIMEOUT, POLL)


def test_a_deadlock_is_counted(make_mariadb, make_harness):
    server = make_mariadb()
    server.sql("CREATE TABLE pair (id INT PRIMARY KEY, v INT) ENGINE=InnoDB", db="legacy")
    server.sql("INSERT INTO pair VALUES (1, 0), (2, 0)", db="legacy")
    harness = make_harness(
        {"legacy": server.django_settings("legacy", "monitor", server.monitor_password)}
    )
    harness.round()
    before = harness.value("dbhealth_deadlocks_total", alias="legacy")
    assert before is not None

    first, second = session(server), session(server)
    waiting, first_errors, second_errors = None, [], []
    try:
        run(first, "UPDATE pair SET v = 1 WHERE id = 1")
        run(second, "UPDATE pair SET v = 2 WHERE id = 2")
        waiting, first_errors = in_background(first, "UPDATE pair SET v = 1 WHERE id = 2")
        assert wait_until(lambda: lock_waits(server, 0) == 1, WAIT_TIMEOUT, POLL)
        try:
            run(second, "UPDATE pair SET v = 2 WHERE id = 1")  # closes the cycle
        except MySQLdb.OperationalError as exc:
            second_errors.append(exc)
    finally:
        second.rollback()  # lets the first one go on if it was not the victim
        if waiting is not None:
            waiting.join(WAIT_TIMEOUT)
        first.rollback()
        first.close()
        second.close()
    victims = [exc.args[0] for exc in first_errors + second_errors]
    assert victims == [1213], victims  # ER_LOCK_DEADLOCK, to exactly one of them

    harness.round()
    assert harness.value("dbhealth_deadlocks_total", alias="legacy") == before + 1


def test_id_headroom_of_an_int_column_near_its_end(make_mariadb, make_harness):
    server = make_mariadb()
    server.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)", db="legacy")
    server.sql("ALTER TABLE t AUTO_INCREMENT = 2147483000", db="legacy")
    server.sql("INSERT INTO t (v) VALUES (1)", db="legacy")  # id 2147483000; next 2147483001
    server.sql("CREATE TABLE roomy (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY)", db="legacy")
    server.sql("CREATE TABLE plain (v INT)", db="legacy")
    settings = server.django_settings("legacy", "monitor", server.monitor_password)

    # Without REFERENCES information_schema.COLUMNS hides every column (SHOW VIEW is no column
    # privilege): the types, and so the headroom, are unknown, never "all is well".
    server.sql("REVOKE REFERENCES ON legacy.* FROM monitor@'%'")
    hidden = make_harness({"legacy": settings})
    alias = hidden.round().aliases["legacy"]
    assert alias.up, alias.message
    assert alias.ids_at is not None and "ids" not in alias.failing_parts  # read: unknown
    assert alias.id_headroom is None
    assert not [name for name, _ in hidden.samples() if name == "dbhealth_id_headroom_ratio"]

    # REFERENCES shows column metadata and reads no row (SELECT stays refused).
    server.sql("GRANT REFERENCES ON legacy.* TO monitor@'%'")
    granted = make_harness({"legacy": settings})  # a new connection sees the new grant
    alias = granted.round().aliases["legacy"]
    assert alias.up, alias.message
    assert [item.table for item in alias.id_headroom] == ["t", "roomy"]
    # (limit - (AUTO_INCREMENT - 1)) / limit: 647 ids of 2147483647 left.
    expected = (INT_MAX - 2147483000) / INT_MAX
    assert expected == pytest.approx(3.0128e-7, rel=1e-4)
    ratio = granted.value("dbhealth_id_headroom_ratio", alias="legacy", table="t", model="")
    assert ratio == pytest.approx(expected, rel=1e-12)
    assert granted.value("dbhealth_id_headroom_ratio", alias="legacy", table="roomy", model="") == 1

    with pytest.raises(MySQLdb.OperationalError) as refused:
        reader = MySQLdb.connect(
            host=server.host,
            port=server.port,
            user="monitor",
            password=server.monitor_password,
            db="legacy",
        )
        try:
            run(reader, "SELECT v FROM t")
        finally:
            reader.close()
    assert refused.value.args[0] == 1142


def test_a_replica_whose_sql_thread_stopped_on_an_error(make_mariadb_pair, make_harness):
    primary, replica = make_mariadb_pair()
    harness = make_harness(
        {
            "primary": primary.django_settings("legacy", "monitor", primary.monitor_password),
            "replica": replica.django_settings("legacy", "monitor", replica.monitor_password),
        }
    )
    harness.round()
    assert harness.value("dbhealth_replica", alias="replica") == 1
    assert harness.value("dbhealth_replica_connected", alias="replica") == 1
    assert harness.value("dbhealth_replication_lag_seconds", alias="replica") == 0
    for thread in ("io", "sql"):
        assert harness.value("dbhealth_replica_last_error", alias="replica", thread=thread) == 0

    # A row written on the replica directly, then the same row on the primary: replaying it fails
    # on the duplicate key. (A table created on both would not: MariaDB replicas replay DDL
    # idempotently by default, slave_ddl_exec_mode.)
    primary.sql("CREATE TABLE clash (id INT PRIMARY KEY)", db="legacy")
    assert wait_until(lambda: replica.sql("SHOW TABLES LIKE 'clash'", db="legacy"), WAIT_TIMEOUT)
    replica.sql("INSERT INTO clash VALUES (1)", db="legacy")
    primary.sql("INSERT INTO clash VALUES (1)", db="legacy")
    assert wait_until(
        lambda: replica.replica_status()["Slave_SQL_Running"] == "No", timeout=WAIT_TIMEOUT
    )
    harness.round()
    assert harness.value("dbhealth_replica_last_error", alias="replica", thread="sql") == 1062
    assert harness.value("dbhealth_replica_last_error", alias="replica", thread="io") == 0
    # Still receiving from its primary; how far behind it is cannot be known.
    assert harness.value("dbhealth_replica_connected", alias="replica") == 1
    assert harness.value("dbhealth_replication_lag_seconds", alias="replica") is None
    # The primary has none of the replica metrics.
    assert harness.value("dbhealth_replica", alias="primary") == 0
    samples = harness.samples()
    assert not [
        (name, labels)
        for name, labels in samples
        if ("alias", "primary") in labels
        and name.startswith(("dbhealth_replica_", "dbhealth_replication_lag"))
    ]


def session_without_default(server, db: str | None = None) -> MySQLdb.Connection:
    """Another client that reaches tables by qualified names: default schema `db`, or none."""
    options = {"db": db} if db else {}
    return MySQLdb.connect(unix_socket=str(server.socket), user="root", autocommit=False, **options)


def transactions_older_than(server, seconds: int) -> int:
    """Open transactions at least `seconds` old, by the server's clock."""
    rows = server.sql(
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX"
        " WHERE trx_started <= NOW() - INTERVAL %s SECOND",
        params=[seconds],
    )
    return int(rows[0][0])


def aliases_of(server, make_harness, *names: str):
    return make_harness(
        {name: server.django_settings(name, "monitor", server.monitor_password) for name in names}
    )


@pytest.fixture
def items_server(make_mariadb):
    server = make_mariadb(databases=("legacy", "other"))
    server.sql("CREATE TABLE items (id INT PRIMARY KEY, v INT) ENGINE=InnoDB", db="legacy")
    server.sql("INSERT INTO items VALUES (1, 0)", db="legacy")
    return server


def test_sessions_of_another_schema_touching_the_aliass_tables_count_for_it(
    items_server, make_harness
):
    """A holder whose default schema is `other` and a waiter with none, both on legacy.items
    by qualified name: legacy's transactions, blocked sessions and lock wait include them."""
    server = items_server
    harness = aliases_of(server, make_harness, "legacy", "other")
    holder, waiter = session_without_default(server, "other"), session_without_default(server)
    waiting, errors = None, []
    try:
        run(holder, "SELECT v FROM legacy.items WHERE id = 1 FOR UPDATE")  # then idle
        run(waiter, "SET SESSION innodb_lock_wait_timeout = 60")
        waiting, errors = in_background(waiter, "UPDATE legacy.items SET v = 1 WHERE id = 1")
        assert wait_until(lambda: lock_waits(server, 1) == 1, WAIT_TIMEOUT, POLL)

        state = harness.round()
        legacy = state.aliases["legacy"]
        assert legacy.up, legacy.message
        assert legacy.oldest_transaction_seconds >= 1
        assert legacy.oldest_idle_in_transaction_seconds >= 1
        assert legacy.blocked_sessions == 1
        assert legacy.longest_lock_wait_seconds >= 1
        # `other` is the holder's default schema, so its transaction is other's too; nobody
        # waits there.
        other = state.aliases["other"]
        assert other.oldest_transaction_seconds >= 1
        assert other.blocked_sessions == 0
    finally:
        holder.rollback()
        if waiting is not None:
            waiting.join(WAIT_TIMEOUT)
        waiter.rollback()
        holder.close()
        waiter.close()
    assert not errors, errors


def test_a_row_lock_held_without_selecting_the_schema_counts_for_it(items_server, make_harness):
    """No default schema, no waiter: only the metadata lock the transaction holds on
    legacy.items until it ends says whose it is (performance_schema.metadata_locks)."""
    server = items_server
    harness = aliases_of(server, make_harness, "legacy", "other")
    holder = session_without_default(server)
    try:
        run(holder, "SELECT v FROM legacy.items WHERE id = 1 FOR UPDATE")
        # trx_started and NOW() are cut to the second: 2 apart is more than 1 s idle.
        assert wait_until(lambda: transactions_older_than(server, 2) == 1, WAIT_TIMEOUT, POLL)
        state = harness.round()
        legacy, other = state.aliases["legacy"], state.aliases["other"]
        assert legacy.up, legacy.message
        assert legacy.oldest_transaction_seconds >= 1
        assert legacy.oldest_idle_in_transaction_seconds >= 1
        assert legacy.blocked_sessions == 0
        assert (other.oldest_transaction_seconds, other.blocked_sessions) == (0, 0)
    finally:
        holder.rollback()
        holder.close()

    def settled() -> bool:
        return harness.round().aliases["legacy"].oldest_transaction_seconds == 0

    assert wait_until(settled, WAIT_TIMEOUT, POLL)


def test_without_metadata_locks_a_lock_wait_still_names_the_schema(items_server, make_harness):
    """MariaDB's default: the metadata lock instrument off. The lock wait's both sides are in
    information_schema.INNODB_LOCKS with the table's schema."""
    server = items_server
    server.sql(
        "UPDATE performance_schema.setup_instruments SET ENABLED = 'NO'"
        " WHERE NAME = 'wait/lock/metadata/sql/mdl'"
    )
    harness = aliases_of(server, make_harness, "legacy")
    holder, waiter = session_without_default(server), session_without_default(server)
    waiting, errors = None, []
    try:
        run(holder, "SELECT v FROM legacy.items WHERE id = 1 FOR UPDATE")
        assert wait_until(lambda: transactions_older_than(server, 1) == 1, WAIT_TIMEOUT, POLL)
        # Nobody waits yet: without metadata locks nothing says whose the transaction is.
        assert harness.round().aliases["legacy"].oldest_transaction_seconds == 0

        run(waiter, "SET SESSION innodb_lock_wait_timeout = 60")
        waiting, errors = in_background(waiter, "UPDATE legacy.items SET v = 1 WHERE id = 1")
        assert wait_until(lambda: lock_waits(server, 1) == 1, WAIT_TIMEOUT, POLL)
        legacy = harness.round().aliases["legacy"]
        assert legacy.oldest_transaction_seconds >= 1
        assert legacy.blocked_sessions == 1
        assert legacy.longest_lock_wait_seconds >= 1
    finally:
        holder.rollback()
        if waiting is not None:
            waiting.join(WAIT_TIMEOUT)
        waiter.rollback()
        holder.close()
        waiter.close()
    assert not errors, errors
