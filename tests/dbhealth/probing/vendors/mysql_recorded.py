"""Replica status answers of servers this suite cannot run, and of the one it runs, for testing
which statement the MySQL probe sends to which server and how it reads the answer.

Provenance (say it, since these stand in for servers):
- MariaDB 10.11.19 (Debian 12's, the suite's own server): recorded from a real binlog replica of a
  real primary by `SHOW ALL REPLICAS STATUS` (and `SHOW ALL SLAVES STATUS`, same columns);
  test_mysql_versions.py checks on the running server that the column set has not drifted.
- MariaDB 10.4, MySQL 5.7, 8.0.21, 8.0.22 and 8.4 cannot be installed here: their column names
  are transcribed from the vendors' reference manuals (SHOW SLAVE STATUS before MySQL 8.0.22,
  SHOW REPLICA STATUS from it, MariaDB's SHOW REPLICA STATUS page), their values are made up in
  the shape those manuals show, and a statement a version does not know is answered with the
  server's syntax error, 1064, as the parser of that version gives it.
"""

from dataclasses import dataclass, field
from typing import Any

import MySQLdb

# Recorded verbatim from MariaDB 10.11.19 (a replica in sync with its primary); hosts, ports and
# positions are those of the throwaway servers.
MARIADB_10_11_COLUMNS = (
    "Connection_name",
    "Slave_SQL_State",
    "Slave_IO_State",
    "Master_Host",
    "Master_User",
    "Master_Port",
    "Connect_Retry",
    "Master_Log_File",
    "Read_Master_Log_Pos",
    "Relay_Log_File",
    "Relay_Log_Pos",
    "Relay_Master_Log_File",
    "Slave_IO_Running",
    "Slave_SQL_Running",
    "Replicate_Do_DB",
    "Replicate_Ignore_DB",
    "Replicate_Do_Table",
    "Replicate_Ignore_Table",
    "Replicate_Wild_Do_Table",
    "Replicate_Wild_Ignore_Table",
    "Last_Errno",
    "Last_Error",
    "Skip_Counter",
    "Exec_Master_Log_Pos",
    "Relay_Log_Space",
    "Until_Condition",
    "Until_Log_File",
    "Until_Log_Pos",
    "Master_SSL_Allowed",
    "Master_SSL_CA_File",
    "Master_SSL_CA_Path",
    "Master_SSL_Cert",
    "Master_SSL_Cipher",
    "Master_SSL_Key",
    "Seconds_Behind_Master",
    "Master_SSL_Verify_Server_Cert",
    "Last_IO_Errno",
    "Last_IO_Error",
    "Last_SQL_Errno",
    "Last_SQL_Error",
    "Replicate_Ignore_Server_Ids",
    "Master_Server_Id",
    "Master_SSL_Crl",
    "Master_SSL_Crlpath",
    "Using_Gtid",
    "Gtid_IO_Pos",
    "Replicate_Do_Domain_Ids",
    "Replicate_Ignore_Domain_Ids",
    "Parallel_Mode",
    "SQL_Delay",
    "SQL_Remaining_Delay",
    "Slave_SQL_Running_State",
    "Slave_DDL_Groups",
    "Slave_Non_Transactional_Groups",
    "Slave_Transactional_Groups",
    "Replicate_Rewrite_DB",
    "Retried_transactions",
    "Max_relay_log_size",
    "Executed_log_entries",
    "Slave_received_heartbeats",
    "Slave_heartbeat_period",
    "Gtid_Slave_Pos",
)
MARIADB_10_11_REPLICA_ROW = {
    "Connection_name": "",
    "Slave_SQL_State": "Slave has read all relay log; waiting for more updates",
    "Slave_IO_State": "Waiting for master to send event",
    "Master_Host": "127.0.0.1",
    "Master_User": "replicator",
    "Master_Port": "23446",
    "Connect_Retry": "1",
    "Master_Log_File": "binlog.000001",
    "Read_Master_Log_Pos": "1341",
    "Relay_Log_File": "relay.000002",
    "Relay_Log_Pos": "552",
    "Relay_Master_Log_File": "binlog.000001",
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Replicate_Do_DB": "",
    "Replicate_Ignore_DB": "",
    "Replicate_Do_Table": "",
    "Replicate_Ignore_Table": "",
    "Replicate_Wild_Do_Table": "",
    "Replicate_Wild_Ignore_Table": "",
    "Last_Errno": "0",
    "Last_Error": "",
    "Skip_Counter": "0",
    "Exec_Master_Log_Pos": "1341",
    "Relay_Log_Space": "851",
    "Until_Condition": "None",
    "Until_Log_File": "",
    "Until_Log_Pos": "0",
    "Master_SSL_Allowed": "No",
    "Master_SSL_CA_File": "",
    "Master_SSL_CA_Path": "",
    "Master_SSL_Cert": "",
    "Master_SSL_Cipher": "",
    "Master_SSL_Key": "",
    "Seconds_Behind_Master": "0",
    "Master_SSL_Verify_Server_Cert": "No",
    "Last_IO_Errno": "0",
    "Last_IO_Error": "",
    "Last_SQL_Errno": "0",
    "Last_SQL_Error": "",
    "Replicate_Ignore_Server_Ids": "",
    "Master_Server_Id": "1",
    "Master_SSL_Crl": "",
    "Master_SSL_Crlpath": "",
    "Using_Gtid": "No",
    "Gtid_IO_Pos": "",
    "Replicate_Do_Domain_Ids": "",
    "Replicate_Ignore_Domain_Ids": "",
    "Parallel_Mode": "optimistic",
    "SQL_Delay": "0",
    "SQL_Remaining_Delay": None,
    "Slave_SQL_Running_State": "Slave has read all relay log; waiting for more updates",
    "Slave_DDL_Groups": "0",
    "Slave_Non_Transactional_Groups": "0",
    "Slave_Transactional_Groups": "0",
    "Replicate_Rewrite_DB": "",
    "Retried_transactions": "0",
    "Max_relay_log_size": "1073741824",
    "Executed_log_entries": "5",
    "Slave_received_heartbeats": "0",
    "Slave_heartbeat_period": "30.0",
    "Gtid_Slave_Pos": "0-1-6",
}

# MySQL before 8.0.22 (5.7 and 8.0.0-8.0.21): SHOW SLAVE STATUS, Slave/Master words.
MYSQL_5_7_COLUMNS = (
    "Slave_IO_State", "Master_Host", "Master_User", "Master_Port", "Connect_Retry",
    "Master_Log_File", "Read_Master_Log_Pos", "Relay_Log_File", "Relay_Log_Pos",
    "Relay_Master_Log_File", "Slave_IO_Running", "Slave_SQL_Running", "Replicate_Do_DB",
    "Replicate_Ignore_DB", "Replicate_Do_Table", "Replicate_Ignore_Table",
    "Replicate_Wild_Do_Table", "Replicate_Wild_Ignore_Table", "Last_Errno", "Last_Error",
    "Skip_Counter", "Exec_Master_Log_Pos", "Relay_Log_Space", "Until_Condition",
    "Until_Log_File", "Until_Log_Pos", "Master_SSL_Allowed", "Master_SSL_CA_File",
    "Master_SSL_CA_Path", "Master_SSL_Cert", "Master_SSL_Cipher", "Master_SSL_Key",
    "Seconds_Behind_Master", "Master_SSL_Verify_Server_Cert", "Last_IO_Errno", "Last_IO_Error",
    "Last_SQL_Errno", "Last_SQL_Error", "Replicate_Ignore_Server_Ids", "Master_Server_Id",
    "Master_UUID", "Master_Info_File", "SQL_Delay", "SQL_Remaining_Delay",
    "Slave_SQL_Running_State", "Master_Retry_Count", "Master_Bind", "Last_IO_Error_Timestamp",
    "Last_SQL_Error_Timestamp", "Master_SSL_Crl", "Master_SSL_Crlpath", "Retrieved_Gtid_Set",
    "Executed_Gtid_Set", "Auto_Position", "Replicate_Rewrite_DB", "Channel_Name",
    "Master_TLS_Version",
)  # fmt: skip
MYSQL_8_0_21_COLUMNS = (
    *MYSQL_5_7_COLUMNS,
    "Master_public_key_path",
    "Get_master_public_key",
    "Network_Namespace",
)
# MySQL 8.0.22 and later: SHOW REPLICA STATUS, Replica/Source words.
MYSQL_8_0_22_COLUMNS = tuple(
    name.replace("Slave", "Replica").replace("Master", "Source").replace("master", "source")
    for name in MYSQL_8_0_21_COLUMNS
)


def syntax_error(near: str) -> tuple[int, str]:
    return (
        1064,
        "You have an error in your SQL syntax; check the manual that corresponds to your "
        f"server version for the right syntax to use near '{near}' at line 1",
    )


@dataclass
class RecordedServer:
    """What one server answers to the replica status statements: statement -> (columns, rows)
    for those it knows, statement -> (error number, message) for those it refuses."""

    name: str
    is_mariadb: bool
    version: tuple[int, ...]
    answers: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]
    refusals: dict[str, tuple[int, str]] = field(default_factory=dict)


def row_of(columns: tuple[str, ...], **values: Any) -> tuple[Any, ...]:
    """A row in the server's column order: the values given by name, '' elsewhere."""
    unknown = set(values) - set(columns)
    assert not unknown, unknown
    return tuple(values.get(column, "") for column in columns)


def lagging_replica(columns: tuple[str, ...], old_words: bool) -> tuple[Any, ...]:
    """Receiving and applying, 7 s behind, no errors."""
    io, sql, lag = (
        ("Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master")
        if old_words
        else ("Replica_IO_Running", "Replica_SQL_Running", "Seconds_Behind_Source")
    )
    return row_of(
        columns, **{io: "Yes", sql: "Yes", lag: 7, "Last_IO_Errno": 0, "Last_SQL_Errno": 0}
    )


MARIADB_10_11 = RecordedServer(
    name="MariaDB 10.11.19 (recorded)",
    is_mariadb=True,
    version=(10, 11, 19),
    answers={
        statement: (MARIADB_10_11_COLUMNS, [tuple(MARIADB_10_11_REPLICA_ROW.values())])
        for statement in ("SHOW ALL REPLICAS STATUS", "SHOW ALL SLAVES STATUS")
    },
)
MARIADB_10_4 = RecordedServer(
    name="MariaDB 10.4.34",
    is_mariadb=True,
    version=(10, 4, 34),
    answers={
        "SHOW ALL SLAVES STATUS": (
            MARIADB_10_11_COLUMNS,
            [
                row_of(
                    MARIADB_10_11_COLUMNS,
                    Connection_name="",
                    Slave_IO_Running="Yes",
                    Slave_SQL_Running="No",
                    Seconds_Behind_Master=None,  # a stopped SQL thread: lag unknown
                    Last_IO_Errno=0,
                    Last_SQL_Errno=1062,
                )
            ],
        )
    },
    refusals={"SHOW ALL REPLICAS STATUS": syntax_error("REPLICAS STATUS")},
)
MYSQL_5_7 = RecordedServer(
    name="MySQL 5.7.44",
    is_mariadb=False,
    version=(5, 7, 44),
    answers={"SHOW SLAVE STATUS": (MYSQL_5_7_COLUMNS, [lagging_replica(MYSQL_5_7_COLUMNS, True)])},
    refusals={"SHOW REPLICA STATUS": syntax_error("REPLICA STATUS")},
)
MYSQL_8_0_21 = RecordedServer(
    name="MySQL 8.0.21",
    is_mariadb=False,
    version=(8, 0, 21),
    answers={
        "SHOW SLAVE STATUS": (MYSQL_8_0_21_COLUMNS, [lagging_replica(MYSQL_8_0_21_COLUMNS, True)])
    },
    refusals={"SHOW REPLICA STATUS": syntax_error("REPLICA STATUS")},
)
MYSQL_8_0_22 = RecordedServer(
    name="MySQL 8.0.22",
    is_mariadb=False,
    version=(8, 0, 22),
    answers={
        "SHOW REPLICA STATUS": (
            MYSQL_8_0_22_COLUMNS,
            [lagging_replica(MYSQL_8_0_22_COLUMNS, False)],
        )
    },
)
MYSQL_8_4 = RecordedServer(
    name="MySQL 8.4.3",
    is_mariadb=False,
    version=(8, 4, 3),
    answers={
        "SHOW REPLICA STATUS": (
            MYSQL_8_0_22_COLUMNS,
            [lagging_replica(MYSQL_8_0_22_COLUMNS, False)],
        )
    },
    refusals={"SHOW SLAVE STATUS": syntax_error("SLAVE STATUS")},
)
SERVERS = (MARIADB_10_11, MARIADB_10_4, MYSQL_5_7, MYSQL_8_0_21, MYSQL_8_0_22, MYSQL_8_4)


class ReplayCursor:
    """A DB-API cursor answering as a RecordedServer does; any statement the recording does not
    cover fails the test (the probe sent something the server was never asked)."""

    def __init__(self, server: RecordedServer) -> None:
        self.server = server
        self.description: tuple[tuple[str, ...], ...] | None = None
        self._rows: list[tuple[Any, ...]] = []
        self.sent: list[str] = []

    def execute(self, statement: str, params: Any = None) -> None:
        self.sent.append(statement)
        if statement in self.server.refusals:
            raise MySQLdb.ProgrammingError(*self.server.refusals[statement])
        if statement not in self.server.answers:
            raise AssertionError(f"{self.server.name} was never asked {statement!r}")
        columns, rows = self.server.answers[statement]
        self.description = tuple((name,) for name in columns)
        self._rows = list(rows)

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None
