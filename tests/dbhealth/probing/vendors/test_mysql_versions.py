"""Which replica status statement goes to which server, and how its answer is read: against the
answers of servers that cannot run here (recorded in mysql_recorded.py, provenance there) and
against the real MariaDB the suite starts."""

from dataclasses import dataclass

import MySQLdb
import pytest
from dbhealth.probing.state import Observations
from dbhealth.probing.vendors.mysql import (
    CONNECTIONS_QUERY,
    MYSQL_INNODB_METRICS_QUERY,
    MYSQL_STATUS_QUERY,
    VERSION_QUERY,
    MySQLProbe,
    activity_statement,
    is_own_statement,
    read_replication,
    replica_status_statement,
)

from tests.dbhealth.probing.vendors.mysql_recorded import (
    MARIADB_10_4,
    MARIADB_10_11,
    MARIADB_10_11_COLUMNS,
    MYSQL_5_7,
    MYSQL_8_0_21,
    MYSQL_8_0_22,
    MYSQL_8_4,
    SERVERS,
    RecordedServer,
    ReplayCursor,
)

EXPECTED = {
    # server: (replica_connected, lag, last errors)
    MARIADB_10_11.name: (True, 0.0, {"io": 0, "sql": 0}),
    MARIADB_10_4.name: (True, None, {"io": 0, "sql": 1062}),
    MYSQL_5_7.name: (True, 7.0, {"io": 0, "sql": 0}),
    MYSQL_8_0_21.name: (True, 7.0, {"io": 0, "sql": 0}),
    MYSQL_8_0_22.name: (True, 7.0, {"io": 0, "sql": 0}),
    MYSQL_8_4.name: (True, 7.0, {"io": 0, "sql": 0}),
}


@pytest.mark.parametrize("server", SERVERS, ids=lambda server: server.name)
def test_each_server_is_sent_the_statement_it_knows_and_read_by_column_name(
    server: RecordedServer,
):
    cursor = ReplayCursor(server)
    observations = Observations()
    read_replication(server.is_mariadb, server.version, cursor, observations)
    assert len(cursor.sent) == 1 and cursor.sent[0] in server.answers, cursor.sent
    connected, lag, errors = EXPECTED[server.name]
    assert observations.replica is True
    assert observations.replica_connected is connected
    assert observations.replication_lag_seconds == lag
    assert observations.replica_last_errors == errors


@pytest.mark.parametrize(
    ("server", "statement"),
    [
        (MARIADB_10_4, "SHOW ALL SLAVES STATUS"),
        (MARIADB_10_11, "SHOW ALL REPLICAS STATUS"),
        (MYSQL_5_7, "SHOW SLAVE STATUS"),
        (MYSQL_8_0_21, "SHOW SLAVE STATUS"),
        (MYSQL_8_0_22, "SHOW REPLICA STATUS"),
        (MYSQL_8_4, "SHOW REPLICA STATUS"),
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_the_switch_is_at_mysql_8_0_22_and_mariadb_10_5_1(server, statement):
    assert replica_status_statement(server.is_mariadb, server.version) == statement
    assert statement in server.answers


@pytest.mark.parametrize(
    ("is_mariadb", "before", "since"),
    [(False, (8, 0, 21), (8, 0, 22)), (True, (10, 5, 0), (10, 5, 1))],
)
def test_the_boundary_versions(is_mariadb, before, since):
    assert "SLAVE" in replica_status_statement(is_mariadb, before)
    assert "REPLICA" in replica_status_statement(is_mariadb, since)


def test_the_statement_of_newer_servers_is_a_syntax_error_on_older_ones():
    """What the probe avoids: the replay refuses as the old server does, so a probe that sent
    SHOW REPLICA STATUS to MySQL 8.0.21 would fail its facts read."""
    cursor = ReplayCursor(MYSQL_8_0_21)
    with pytest.raises(MySQLdb.ProgrammingError) as refused:
        read_replication(False, (8, 0, 22), cursor, Observations())
    assert refused.value.args[0] == 1064


def test_a_primary_is_no_replica_and_a_refused_status_is_unknown():
    primary = RecordedServer(
        name="MySQL 8.0.21 primary",
        is_mariadb=False,
        version=(8, 0, 21),
        answers={"SHOW SLAVE STATUS": (MYSQL_5_7.answers["SHOW SLAVE STATUS"][0], [])},
    )
    observations = Observations()
    read_replication(False, primary.version, ReplayCursor(primary), observations)
    assert (observations.replica, observations.replica_connected) == (False, None)

    denied = RecordedServer(
        name="MySQL 5.7 without REPLICATION CLIENT",
        is_mariadb=False,
        version=(5, 7, 44),
        answers={},
        refusals={
            "SHOW SLAVE STATUS": (
                1227,
                "Access denied; you need (at least one of) the SUPER, REPLICATION CLIENT "
                "privilege(s) for this operation",
            )
        },
    )
    observations = Observations()
    read_replication(False, denied.version, ReplayCursor(denied), observations)
    assert observations.replica is None  # unknown, not "primary"


def test_the_real_mariadb_answers_the_chosen_statement_with_the_recorded_columns(mariadb):
    """The recording has not drifted from the server the suite runs, and the version switch
    picks a statement that server knows."""
    conn = MySQLdb.connect(unix_socket=str(mariadb.socket), user="root")
    try:
        version = tuple(int(part) for part in conn.get_server_info().split("-")[0].split("."))
        statement = replica_status_statement(True, version)
        with conn.cursor() as cursor:
            cursor.execute(statement)
            columns = tuple(column[0] for column in cursor.description)
            assert cursor.fetchall() == ()  # the session server is a primary
    finally:
        conn.close()
    assert version >= (10, 5, 1) and statement == "SHOW ALL REPLICAS STATUS"
    if version[:2] == (10, 11):
        assert columns == MARIADB_10_11_COLUMNS
    for needed in ("Slave_IO_Running", "Seconds_Behind_Master", "Last_IO_Errno", "Last_SQL_Errno"):
        assert needed in columns


@pytest.mark.parametrize(
    ("is_mariadb", "version", "lock_table"),
    [
        (True, (10, 11, 19), "information_schema.INNODB_LOCKS"),
        (False, (5, 7, 44), "information_schema.INNODB_LOCKS"),
        (False, (8, 0, 0), "performance_schema.data_locks"),
        (False, (8, 4, 3), "performance_schema.data_locks"),
    ],
)
def test_transactions_are_tied_to_the_schema_by_the_lock_table_of_the_version(
    is_mariadb, version, lock_table
):
    query, parameters = activity_statement(is_mariadb, version, "legacy`s", True)
    assert lock_table in query
    assert "performance_schema.metadata_locks" in query
    if lock_table.endswith("INNODB_LOCKS"):
        # As the lock table writes the schema: `legacy``s`.`items`
        assert parameters == ["`legacy``s`.", "`legacy``s`."]
    else:
        assert parameters is None

    # Without SELECT on performance_schema: no metadata locks, no data_locks.
    query, _ = activity_statement(is_mariadb, version, "legacy", False)
    assert "performance_schema" not in query
    assert ("INNODB_LOCKS" in query) == lock_table.endswith("INNODB_LOCKS")


# A MySQL 8.0.21 replica's answers to the rest of the facts read, in the shape its manual shows
# (made up values; the statements are the probe's own).
DENIED_PROCESS = (
    1227,
    "Access denied; you need (at least one of) the PROCESS privilege(s) for this operation",
)


def mysql_8_0_21_facts(process: bool) -> RecordedServer:
    answers = {
        **MYSQL_8_0_21.answers,
        VERSION_QUERY: (("VERSION()", "@@max_connections", "UNIX_TIMESTAMP()"), [
            ("8.0.21-log", 151, 1_796_600_000)
        ]),
        MYSQL_STATUS_QUERY: (("Variable_name", "Value"), [
            ("Aborted_clients", "4"), ("Aborted_connects", "2"), ("Com_commit", "90"),
            ("Com_rollback", "3"), ("Threads_connected", "12"), ("Threads_running", "2"),
            ("Uptime", "1000"),
        ]),
    }  # fmt: skip
    refusals = dict(MYSQL_8_0_21.refusals)
    if process:
        answers[MYSQL_INNODB_METRICS_QUERY] = (
            ("NAME", "COUNT"),
            [("lock_deadlocks", 5), ("trx_rseg_history_len", 40)],
        )
        answers[CONNECTIONS_QUERY] = (("COMMAND", "COUNT(*)"), [("Sleep", 10), ("Query", 2)])
    else:
        refusals[MYSQL_INNODB_METRICS_QUERY] = refusals[CONNECTIONS_QUERY] = DENIED_PROCESS
    return RecordedServer(
        name="MySQL 8.0.21 facts",
        is_mariadb=False,
        version=(8, 0, 21),
        answers=answers,
        refusals=refusals,
    )


@dataclass
class Wrapper:
    """What the facts read asks of Django's connection wrapper."""

    mysql_is_mariadb: bool
    mysql_version: tuple[int, ...]


@pytest.mark.parametrize("process", [True, False])
def test_the_whole_facts_read_of_a_mysql_8_0_21_replica(process):
    server = mysql_8_0_21_facts(process)
    cursor = ReplayCursor(server)
    observations = Observations()
    MySQLProbe().read_server(Wrapper(False, server.version), cursor, observations)
    assert "SHOW REPLICA STATUS" not in cursor.sent
    assert observations.version == "8.0.21"
    assert observations.server_start_time == 1_796_600_000 - 1000
    assert observations.transactions == {"commit": 90, "rollback": 3}
    assert (observations.replica, observations.replication_lag_seconds) == (True, 7.0)
    if process:
        assert observations.connections == {"idle": 10, "active": 2}
        assert (observations.deadlocks, observations.undo_history_length) == (5, 40)
    else:
        # Counted, not by state; the InnoDB counters unknown, never 0.
        assert observations.connections == {"unknown": 12}
        assert (observations.deadlocks, observations.undo_history_length) == (None, None)


def test_servers_without_metadata_locks_are_not_asked_for_them():
    """MariaDB before 10.5.2 has MySQL 5.6's performance_schema: no metadata_locks table."""
    query, _ = activity_statement(True, (10, 4, 34), "legacy", True)
    assert "metadata_locks" not in query and "INNODB_LOCKS" in query
    query, _ = activity_statement(True, (10, 5, 2), "legacy", True)
    assert "metadata_locks" in query


@pytest.mark.parametrize(
    ("is_mariadb", "version"),
    [(True, (10, 4, 34)), (True, (10, 11, 19)), (False, (5, 7, 44)), (False, (8, 4, 3))],
)
@pytest.mark.parametrize("performance_schema", [True, False])
def test_every_activity_statement_is_recognized_as_the_probes_own(
    is_mariadb, version, performance_schema
):
    query, _ = activity_statement(is_mariadb, version, "legacy", performance_schema)
    assert is_own_statement(query.replace("%s", "0"))
