"""MySQL and MariaDB: processlist, information_schema sizes, replica status, statement digests,
and the health signals (open transactions, lock waits, server counters, AUTO_INCREMENT headroom).

What each needs of the monitoring user (README, "Least privileges"; `missing_grants`
names what a user lacks):
- server status counters (Uptime, Threads_connected, Threads_running, Aborted_*,
  Com_commit/rollback, and on MariaDB Innodb_deadlocks and Innodb_history_list_length): no
  privilege at all. The connection count comes from Threads_connected for that reason;
- connections by state (information_schema.PROCESSLIST), MySQL's deadlocks and history list
  length (information_schema.INNODB_METRICS) and every alias's transactions and lock waits
  (information_schema.INNODB_TRX): PROCESS. Without it PROCESSLIST shows the user's own sessions
  only and the InnoDB tables refuse (error 1227): connections are counted under state `unknown`
  and the other signals stay None (unknown), never 0 and never a partial count;
- replica status: REPLICATION CLIENT (MySQL), REPLICA MONITOR (MariaDB 10.5.9+); without it the
  replica metrics are absent;
- which schema a transaction touches (performance_schema.data_locks on MySQL 8, metadata_locks)
  and statement digests: SELECT on performance_schema;
- AUTO_INCREMENT headroom: information_schema.COLUMNS lists a column only to a user holding a
  column privilege on it (SELECT, INSERT, UPDATE or REFERENCES); SHOW VIEW is not one, so without
  REFERENCES on the schema the headroom is unknown (None).
"""

import copy
import re
from typing import Any, ClassVar

from django.db.migrations.recorder import MigrationRecorder

from dbhealth.probing.state import (
    SERVER_FACTS,
    IdHeadroom,
    Observations,
    Statement,
    TableMaintenance,
)
from dbhealth.probing.statement_text import sanitize
from dbhealth.probing.vendors.base import (
    StatementsUnavailable,
    VendorProbe,
    driver_error,
    whole_seconds,
)

COMMAND_STATES = {"Sleep": "idle", "Query": "active", "Execute": "active"}
# Signal names as PostgreSQLProbe.missing_grants gives them, for `dbhealth check`.
PROCESS_SIGNALS = (
    "connections by state",
    "oldest transaction",
    "oldest idle in transaction",
    "blocked sessions",
    "longest lock wait",
)
REPLICA_SIGNALS = ("replica", "replica connected", "replication lag", "replica last errors")
# Connections whose state the user cannot see (no PROCESS): counted, but not by state.
UNKNOWN_STATE = "unknown"
# Error numbers: a global privilege missing (PROCESS for the InnoDB tables), a table refused
# (performance_schema without SELECT on it).
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_TABLEACCESS_DENIED = 1142
ER_NO_SUCH_TABLE = 1146
BACKGROUND_USERS = ("system user", "event_scheduler")

# Every session by command, for a user holding PROCESS only: the INNODB_TRX term makes the
# statement fail (1227) for any other user, whom PROCESSLIST would show its own sessions alone.
# One round trip either way.
CONNECTIONS_QUERY = """
SELECT COMMAND, COUNT(*) FROM information_schema.PROCESSLIST
WHERE USER NOT IN ('system user', 'event_scheduler') AND COMMAND <> 'Daemon'
  AND (SELECT COUNT(*) FROM information_schema.INNODB_TRX) >= 0
GROUP BY COMMAND
"""

SIZE_QUERY = """
SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES
WHERE TABLE_SCHEMA = DATABASE()
"""

# Timers are picoseconds. Digests are summed so that one digest is one series whatever the key.
# Texts are read whole (the server keeps at most performance_schema_max_digest_length tokens of
# them): a cut text would no longer be recognized as one of the probe's own.
STATEMENTS_QUERY = """
SELECT DIGEST, MIN(DIGEST_TEXT), SUM(COUNT_STAR), SUM(SUM_TIMER_WAIT) / 1e12,
       SUM(SUM_ROWS_SENT + SUM_ROWS_AFFECTED)
FROM performance_schema.events_statements_summary_by_digest
WHERE SCHEMA_NAME = DATABASE() AND DIGEST IS NOT NULL
GROUP BY DIGEST
ORDER BY SUM(SUM_TIMER_WAIT) DESC
LIMIT %s
"""
MARIADB_STATEMENTS_QUERY = (
    "SET STATEMENT max_statement_time = {seconds:.3f} FOR " + STATEMENTS_QUERY
)
MYSQL_STATEMENTS_QUERY = STATEMENTS_QUERY.replace(
    "SELECT", "SELECT /*+ MAX_EXECUTION_TIME({milliseconds}) */", 1
)
# Server status: counters since the server started, so server-wide (MySQL has no per-schema
# commit count). MariaDB reads them with the version in one round trip, and UNIX_TIMESTAMP() and
# Uptime come from the same statement's start time: the start time derived from them is exact.
# Every row repeats the version (Uptime is always there, so there is a row).
STATUS_VARIABLES = (
    "uptime",
    "threads_connected",
    "threads_running",
    "aborted_connects",
    "aborted_clients",
    "com_commit",
    "com_rollback",
    "innodb_deadlocks",
    "innodb_history_list_length",
)
_STATUS_LIST = ", ".join(f"'{name.upper()}'" for name in STATUS_VARIABLES)
MARIADB_SERVER_QUERY = f"""
SELECT VERSION(), @@max_connections, UNIX_TIMESTAMP(), VARIABLE_NAME, VARIABLE_VALUE
FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ({_STATUS_LIST})
"""
# MySQL 8 dropped information_schema.GLOBAL_STATUS, and performance_schema.global_status leaves
# the Com_ counters out: SHOW GLOBAL STATUS (no privilege needed) is a round trip of its own, so
# the start time derived from it may wobble by a second between probes.
VERSION_QUERY = "SELECT VERSION(), @@max_connections, UNIX_TIMESTAMP()"
MYSQL_STATUS_QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('Uptime', 'Threads_connected', 'Threads_running', 'Aborted_connects', 'Aborted_clients', "
    "'Com_commit', 'Com_rollback')"
)
# MySQL has no Innodb_deadlocks status; both counters are enabled by default, and a disabled
# one is left out (unknown). Needs PROCESS. MariaDB reads them here only when its status lacks
# them (older releases); its column is ENABLED where MySQL's is STATUS.
INNODB_METRICS = {
    "lock_deadlocks": "innodb_deadlocks",
    "trx_rseg_history_len": "innodb_history_list_length",
}
MYSQL_INNODB_METRICS_QUERY = """
SELECT NAME, COUNT FROM information_schema.INNODB_METRICS
WHERE NAME IN ('lock_deadlocks', 'trx_rseg_history_len') AND STATUS = 'enabled'
"""
MARIADB_INNODB_METRICS_QUERY = """
SELECT NAME, COUNT FROM information_schema.INNODB_METRICS
WHERE NAME IN ('lock_deadlocks', 'trx_rseg_history_len') AND ENABLED = 1
"""

# Whether the user holds PROCESS: INNODB_TRX refuses it with 1227 otherwise, where PROCESSLIST
# would answer with the user's own sessions only.
PROCESS_QUERY = "SELECT COUNT(*) FROM information_schema.INNODB_TRX"

# The alias's open transactions, less the probe's own: those of sessions whose current schema is
# the alias's, and those touching its tables from anywhere else (qualified names, another
# default schema, none). A transaction touches a table when InnoDB lists a lock of it on the
# table (MySQL 8: performance_schema.data_locks, every lock held or wanted; MySQL 5.7 and
# MariaDB: information_schema.INNODB_LOCKS, the locks of lock waits only, both sides), or when
# it holds a metadata lock on the table until it ends (performance_schema.metadata_locks: on by
# default in MySQL 8; MariaDB needs the `wait/lock/metadata/sql/mdl` instrument).
# UNIX_TIMESTAMP(trx_started) reads it in the session's time zone, as the server wrote it; TIME
# of a Sleep session is how long it has been idle, here with a transaction open. Whole seconds
# (trx_started has no more). No SECOND unit nor NULL literal: digests rename or replace them,
# and OWN_SHAPES must match the digest text.
ACTIVITY_QUERY = """
SELECT COALESCE(MAX(GREATEST(0, UNIX_TIMESTAMP() - UNIX_TIMESTAMP(t.trx_started))), 0),
       COALESCE(MAX(CASE WHEN p.COMMAND = 'Sleep' THEN p.TIME END), 0),
       COUNT(CASE WHEN t.trx_state = 'LOCK WAIT' THEN 1 END),
       COALESCE(MAX(GREATEST(0, UNIX_TIMESTAMP() - UNIX_TIMESTAMP(t.trx_wait_started))), 0)
FROM information_schema.INNODB_TRX AS t
LEFT JOIN information_schema.PROCESSLIST AS p ON p.ID = t.trx_mysql_thread_id
WHERE t.trx_mysql_thread_id <> CONNECTION_ID() AND (
  p.DB = DATABASE()
  OR t.trx_id IN ({lock_tables}){metadata_locks}
)
"""
# The lock tables name a table `schema`.`table` (backticks doubled inside names, a partition
# after it): the parameter is the quoted schema and its dot.
INNODB_LOCKS_OF_SCHEMA = """
    SELECT l.lock_trx_id FROM information_schema.INNODB_LOCKS AS l
    WHERE LEFT(l.lock_table, CHAR_LENGTH(%s)) = %s"""
DATA_LOCKS_OF_SCHEMA = """
    SELECT l.ENGINE_TRANSACTION_ID FROM performance_schema.data_locks AS l
    WHERE l.OBJECT_SCHEMA = DATABASE()"""
METADATA_LOCKS_OF_SCHEMA = """
  OR t.trx_mysql_thread_id IN (
    SELECT th.PROCESSLIST_ID FROM performance_schema.metadata_locks AS m
    JOIN performance_schema.threads AS th ON th.THREAD_ID = m.OWNER_THREAD_ID
    WHERE m.OBJECT_SCHEMA = DATABASE() AND m.LOCK_DURATION = 'TRANSACTION')"""

# AUTO_INCREMENT columns of the alias's schema, the fullest first: TABLES gives the next value
# (NULL for a table without one), COLUMNS the column's type and so its largest value (0 for a
# type without a limit here, such as FLOAT). A table whose column COLUMNS hides (no column
# privilege) comes first, with seen = 0. Two scans merged by GROUP BY rather than a join: with a
# join the server scanned COLUMNS of every schema the user can see. MySQL 8 answers
# TABLES.AUTO_INCREMENT from a cache unless information_schema_stats_expiry is 0 (see
# prepare_connection); MariaDB asks the storage engine every time.
IDS_QUERY = """
SELECT TABLE_NAME, MAX(max_id), MAX(next_id), MAX(visible) AS seen FROM (
  SELECT TABLE_NAME, 0 AS max_id, AUTO_INCREMENT AS next_id, 0 AS visible
  FROM information_schema.TABLES
  WHERE TABLE_SCHEMA = DATABASE() AND AUTO_INCREMENT IS NOT NULL
  UNION ALL
  SELECT TABLE_NAME,
         CASE WHEN COLUMN_TYPE LIKE '%%unsigned%%' THEN
              CASE DATA_TYPE WHEN 'tinyint' THEN 255 WHEN 'smallint' THEN 65535
                   WHEN 'mediumint' THEN 16777215 WHEN 'int' THEN 4294967295
                   WHEN 'bigint' THEN 18446744073709551615 ELSE 0 END
         ELSE CASE DATA_TYPE WHEN 'tinyint' THEN 127 WHEN 'smallint' THEN 32767
                   WHEN 'mediumint' THEN 8388607 WHEN 'int' THEN 2147483647
                   WHEN 'bigint' THEN 9223372036854775807 ELSE 0 END
         END,
         0, 1
  FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND EXTRA LIKE '%%auto_increment%%'
) AS found
GROUP BY TABLE_NAME
HAVING MAX(next_id) > 0 AND (MAX(max_id) > 0 OR MAX(visible) = 0)
ORDER BY seen, (MAX(next_id) - 1) / NULLIF(MAX(max_id) * 1e0, 0) DESC, TABLE_NAME
LIMIT %s
"""
# The largest tables of the alias's schema and their free space (DATA_FREE: space allocated to the
# table and unused, which OPTIMIZE TABLE gives back; for a table in a shared tablespace it is the
# shared tablespace's). Read at most once per refresh_interval; SHOW VIEW on the schema suffices.
MAINTENANCE_QUERY = """
SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH, DATA_FREE FROM information_schema.TABLES
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND DATA_LENGTH IS NOT NULL
ORDER BY DATA_LENGTH + INDEX_LENGTH DESC, TABLE_NAME
LIMIT %s
"""
# Around a custom query (dbhealth.probing.custom_queries), whose own text is the operator's.
CUSTOM_QUERY_STATEMENTS = ("START TRANSACTION READ ONLY", "ROLLBACK")
READ_ONLY = "SET SESSION TRANSACTION READ ONLY"
MARIADB_TIMEOUT = "SET SESSION max_statement_time = {seconds:.3f}"
MYSQL_TIMEOUT = "SET SESSION max_execution_time = {milliseconds}"
# MySQL 8.0.3+: information_schema.TABLES answers from statistics cached for up to a day by
# default; 0 reads them from the storage engine (and writes no cache), for this session only.
MYSQL_STATS_EXPIRY = "SET SESSION information_schema_stats_expiry = 0"
# Replica status, by server version: MySQL says REPLICA from 8.0.22 (8.4 no longer knows SLAVE),
# MariaDB from 10.5.1 (ALL: every connection of a multi-source replica). An older server answers
# the newer statement with a syntax error (1064), a newer one may refuse the older statement.
MARIADB_REPLICA_STATUS = "SHOW ALL REPLICAS STATUS"
MARIADB_SLAVE_STATUS = "SHOW ALL SLAVES STATUS"
MYSQL_REPLICA_STATUS = "SHOW REPLICA STATUS"
MYSQL_SLAVE_STATUS = "SHOW SLAVE STATUS"
MARIADB_REPLICA_SINCE = (10, 5, 1)
MYSQL_REPLICA_SINCE = (8, 0, 22)
# MySQL 8.0 dropped information_schema.INNODB_LOCKS for performance_schema.data_locks.
MYSQL_DATA_LOCKS_SINCE = (8, 0, 0)
# performance_schema.metadata_locks: MySQL 5.7, MariaDB from 10.5.2 (its performance_schema of
# MySQL 5.7); older servers have no such table.
MYSQL_METADATA_LOCKS_SINCE = (5, 7, 0)
MARIADB_METADATA_LOCKS_SINCE = (10, 5, 2)
# A cheap read that performance_schema refuses (1142) to a user without SELECT on it.
PERFORMANCE_SCHEMA_READABLE_QUERY = (
    "SELECT COUNT(*) FROM performance_schema.events_statements_summary_by_digest WHERE 1 = 0"
)
PERFORMANCE_SCHEMA_QUERY = "SELECT @@performance_schema"
# Whether the user may read Django's migrations table (reads no row).
MIGRATIONS_READABLE_QUERY = "SELECT 1 FROM `{table}` LIMIT 0"


def activity_statement(
    is_mariadb: bool, version: tuple[int, ...], schema: str, performance_schema: bool
) -> tuple[str, list[str] | None]:
    """The activity query for this server and its parameters: the lock table of its version,
    and the metadata locks where performance_schema is readable and has them. Without
    performance_schema, MySQL 8 knows which schema a transaction touches by the session's
    current schema only."""
    if not is_mariadb and version >= MYSQL_DATA_LOCKS_SINCE:
        lock_tables = DATA_LOCKS_OF_SCHEMA if performance_schema else "SELECT 0"
        parameters = None
    else:
        prefix = "`" + schema.replace("`", "``") + "`."
        lock_tables, parameters = INNODB_LOCKS_OF_SCHEMA, [prefix, prefix]
    since = MARIADB_METADATA_LOCKS_SINCE if is_mariadb else MYSQL_METADATA_LOCKS_SINCE
    metadata_locks = METADATA_LOCKS_OF_SCHEMA if performance_schema and version >= since else ""
    return ACTIVITY_QUERY.format(lock_tables=lock_tables, metadata_locks=metadata_locks), parameters


# What runs on the probe's own connection: VendorProbe.ping, the queries above, and what Django
# and mysqlclient send when they connect. performance_schema's digests have no user column, so
# these are recognized by their words; on a quiet schema they would be the top statements.
OWN_STATEMENTS = (
    "SELECT 1",
    MARIADB_SERVER_QUERY,
    VERSION_QUERY,
    MYSQL_STATUS_QUERY,
    MYSQL_INNODB_METRICS_QUERY,
    MARIADB_INNODB_METRICS_QUERY,
    CONNECTIONS_QUERY,
    PROCESS_QUERY,
    PERFORMANCE_SCHEMA_READABLE_QUERY,
    MIGRATIONS_READABLE_QUERY.format(table="django_migrations"),
    *(
        activity_statement(is_mariadb, version, "schema", readable)[0]
        for is_mariadb, version in ((True, (10, 11, 0)), (False, (5, 7, 0)), (False, (8, 0, 0)))
        for readable in (True, False)
    ),
    IDS_QUERY,
    SIZE_QUERY,
    MAINTENANCE_QUERY,
    *CUSTOM_QUERY_STATEMENTS,
    READ_ONLY,
    MARIADB_TIMEOUT.format(seconds=1),
    MYSQL_TIMEOUT.format(milliseconds=1),
    MYSQL_STATS_EXPIRY,
    MARIADB_REPLICA_STATUS,
    MARIADB_SLAVE_STATUS,
    MYSQL_REPLICA_STATUS,
    MYSQL_SLAVE_STATUS,
    PERFORMANCE_SCHEMA_QUERY,
    MARIADB_STATEMENTS_QUERY.format(seconds=1),
    MYSQL_STATEMENTS_QUERY.format(milliseconds=1),
    "SET NAMES utf8mb4",
    "SET autocommit = 0",
    "SET SQL_AUTO_IS_NULL = 0",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    """SELECT VERSION(), @@sql_mode, @@default_storage_engine, @@sql_auto_is_null,
       @@lower_case_table_names, CONVERT_TZ('2001-01-01 01:00:00', 'UTC', 'UTC') IS NOT NULL""",
)
_WORD = re.compile(r"[^\W\d][\w$]*")
# Digest texts name some keywords after a synonym (MariaDB writes USER as SYSTEM_USER).
_SYNONYMS = {"schema": "database", "system_user": "user"}


def statement_shape(text: str) -> tuple[str, ...]:
    """The words of a statement, which its source text and its digest text share: digests
    quote identifiers, space tokens and collapse value lists their own way."""
    return tuple(
        _SYNONYMS.get(word, word) for word in _WORD.findall(sanitize(text, "mysql").lower())
    )


# With numbers for the parameters, as the driver sends them.
OWN_SHAPES = frozenset(statement_shape(text.replace("%s", "0")) for text in OWN_STATEMENTS)
# The server cuts a long digest text mid-token, without a mark, where its token stream passes
# performance_schema_max_digest_length: a text that long whose words, less the last, begin one
# of ours is ours. No application statement shares this many first words with them.
CUT_TEXT_MIN_WORDS = 64


def is_own_statement(digest_text: str) -> bool:
    """Whether a digest text is one of the statements dbhealth itself sends (by what it is,
    whichever user sent it: the probe may share the application's user)."""
    shape = statement_shape(digest_text)
    if shape in OWN_SHAPES:
        return True
    head = shape[:-1]
    return len(head) >= CUT_TEXT_MIN_WORDS and any(own[: len(head)] == head for own in OWN_SHAPES)


ERRNO_REASONS = {
    1045: "auth",
    1698: "auth",
    1044: "permission",
    1142: "permission",
    1227: "permission",
    1370: "permission",
    1049: "config",
    2005: "dns",
    1040: "connection_limit",
    1203: "connection_limit",
    1226: "connection_limit",
    1969: "timeout",
    3024: "timeout",
}


class MySQLProbe(VendorProbe):
    vendor: ClassVar[str] = "mysql"
    # Status counters and the replica's errors describe the server: every alias on it shares them.
    server_facts: ClassVar[tuple[str, ...]] = (
        *SERVER_FACTS,
        "threads_running",
        "aborted_connections",
        "transactions",
        "deadlocks",
        "undo_history_length",
        "replica_last_errors",
    )

    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        result = copy.deepcopy(settings)
        options = result["OPTIONS"]
        seconds = whole_seconds(deadline)
        options["connect_timeout"] = seconds
        # Backstops only: the watchdog interrupts a blocked read at the deadline itself.
        options["read_timeout"] = seconds + 1
        options["write_timeout"] = seconds + 1
        result["CONN_MAX_AGE"] = None
        result["CONN_HEALTH_CHECKS"] = False
        return result

    def prepare_connection(self, wrapper: Any, deadline: float) -> None:
        with wrapper.cursor() as cursor:
            cursor.execute(READ_ONLY)
            if wrapper.mysql_is_mariadb:
                cursor.execute(MARIADB_TIMEOUT.format(seconds=max(0.1, deadline)))
            else:
                cursor.execute(MYSQL_TIMEOUT.format(milliseconds=max(100, int(deadline * 1000))))
                if wrapper.mysql_version >= (8, 0, 3):
                    cursor.execute(MYSQL_STATS_EXPIRY)

    def read_server(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        if wrapper.mysql_is_mariadb:
            cursor.execute(MARIADB_SERVER_QUERY)
            rows = cursor.fetchall()
            if not rows:  # no status row at all: never seen, but the version is still wanted
                cursor.execute(VERSION_QUERY)
                rows = [(*cursor.fetchone(), None, None)]
            version, max_connections, now = rows[0][:3]
            status = {name.lower(): value for *_, name, value in rows if name is not None}
        else:
            cursor.execute(VERSION_QUERY)
            version, max_connections, now = cursor.fetchone()
            cursor.execute(MYSQL_STATUS_QUERY)
            status = {name.lower(): value for name, value in cursor.fetchall()}
        observations.version = version.split("-log")[0]
        observations.connections_max = int(max_connections)
        if not set(INNODB_METRICS.values()).issubset(status):  # MySQL, or an older MariaDB
            status.update(self._read_innodb_metrics(wrapper, cursor))
        counters = {name: int(value) for name, value in status.items() if value is not None}
        self._read_status(int(now), counters, observations)
        observations.connections = self._read_connections(cursor, counters)
        read_replication(wrapper.mysql_is_mariadb, wrapper.mysql_version, cursor, observations)

    def _read_connections(self, cursor: Any, status: dict[str, int]) -> dict[str, int] | None:
        """Connections by state where the user sees every session (PROCESS), else all of them
        under `unknown`: PROCESSLIST would show the user's own sessions only."""
        try:
            cursor.execute(CONNECTIONS_QUERY)
        except Exception as exc:
            if error_number(exc) != ER_SPECIFIC_ACCESS_DENIED:
                raise
            if "threads_connected" not in status:
                return None
            return {UNKNOWN_STATE: status["threads_connected"]}
        connections: dict[str, int] = {}
        for command, count in cursor.fetchall():
            state = COMMAND_STATES.get(command, "other")
            connections[state] = connections.get(state, 0) + int(count)
        return connections

    def missing_grants(self, wrapper: Any, cursor: Any) -> dict[str, str]:
        """The signals this connection's user cannot read right, each with the grant it lacks
        (for `dbhealth check`); empty when nothing is missing. Each is absent from /metrics."""
        missing: dict[str, str] = {}
        if not holds_process(cursor):
            for signal in PROCESS_SIGNALS:
                missing[signal] = "PROCESS ON *.*"
            if not wrapper.mysql_is_mariadb:  # MariaDB has them as status variables
                missing["deadlocks"] = missing["undo history length"] = "PROCESS ON *.*"
        statement = replica_status_statement(wrapper.mysql_is_mariadb, wrapper.mysql_version)
        try:
            cursor.execute(statement)
            cursor.fetchall()
        except Exception as exc:
            if self.classify(exc) != "permission":
                raise
            grant = (
                "REPLICA MONITOR ON *.*"
                if wrapper.mysql_is_mariadb and wrapper.mysql_version >= (10, 5, 9)
                else "REPLICATION CLIENT ON *.*"
            )
            for signal in REPLICA_SIGNALS:
                missing[signal] = grant
        if not performance_schema_readable(cursor):
            # Statement digests, and which schema's tables a transaction touches.
            missing["statements"] = missing["transactions by table"] = (
                "SELECT ON performance_schema.*"
            )
        schema = wrapper.settings_dict["NAME"].replace("`", "``")
        if self.read_ids(wrapper, cursor, 1) is None:
            missing["id headroom"] = f"REFERENCES ON `{schema}`.*"
        table = MigrationRecorder.Migration._meta.db_table.replace("`", "``")
        # A schema without the table is not migrated: nothing is read there, nothing missing.
        query = MIGRATIONS_READABLE_QUERY.format(table=table)
        if refused(cursor, query, ER_TABLEACCESS_DENIED, absent=ER_NO_SUCH_TABLE):
            missing["pending migrations"] = f"SELECT ON `{schema}`.`{table}`"
        return missing

    def _read_innodb_metrics(self, wrapper: Any, cursor: Any) -> dict[str, int]:
        """Deadlocks and history list length from INNODB_METRICS, by their status names; nothing
        without PROCESS."""
        query = (
            MARIADB_INNODB_METRICS_QUERY if wrapper.mysql_is_mariadb else MYSQL_INNODB_METRICS_QUERY
        )
        try:
            cursor.execute(query)
        except Exception as exc:
            if self.classify(exc) == "permission":
                return {}
            raise
        return {INNODB_METRICS[name]: int(count) for name, count in cursor.fetchall()}

    @staticmethod
    def _read_status(now: int, status: dict[str, int], observations: Observations) -> None:
        if "uptime" in status:
            observations.server_start_time = float(now - status["uptime"])
        observations.threads_running = status.get("threads_running")
        if {"aborted_connects", "aborted_clients"}.issubset(status):
            observations.aborted_connections = {
                "connect": status["aborted_connects"],
                "client": status["aborted_clients"],
            }
        if {"com_commit", "com_rollback"}.issubset(status):
            observations.transactions = {
                "commit": status["com_commit"],
                "rollback": status["com_rollback"],
            }
        observations.deadlocks = status.get("innodb_deadlocks")
        observations.undo_history_length = status.get("innodb_history_list_length")

    def read_activity(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        # Known per connection: a grant takes effect on new connections.
        if getattr(wrapper, "dbhealth_performance_schema", None) is None:
            wrapper.dbhealth_performance_schema = performance_schema_readable(cursor)
        query, parameters = activity_statement(
            wrapper.mysql_is_mariadb,
            wrapper.mysql_version,
            wrapper.settings_dict["NAME"],
            wrapper.dbhealth_performance_schema,
        )
        try:
            cursor.execute(query, parameters)
        except Exception as exc:
            # INNODB_TRX needs PROCESS: without it the signals are unknown, not zero.
            if error_number(exc) == ER_SPECIFIC_ACCESS_DENIED:
                return
            raise
        oldest, idle, blocked, waited = cursor.fetchone()
        observations.oldest_transaction_seconds = float(oldest)
        observations.oldest_idle_in_transaction_seconds = float(idle)
        observations.blocked_sessions = int(blocked)
        observations.longest_lock_wait_seconds = float(waited)

    def read_ids(self, wrapper: Any, cursor: Any, top_n: int) -> list[IdHeadroom] | None:
        cursor.execute(IDS_QUERY, [top_n])
        found = []
        for table, max_id, next_id, visible in cursor.fetchall():
            if not visible:
                # A column privilege is missing: the tables listed may not be the fullest.
                return None
            limit, used = int(max_id), int(next_id) - 1
            found.append(IdHeadroom(table=table, ratio=min(1.0, max(0.0, (limit - used) / limit))))
        return found

    def read_maintenance(
        self, wrapper: Any, cursor: Any, observations: Observations, top_n: int
    ) -> None:
        cursor.execute(MAINTENANCE_QUERY, [top_n])
        observations.tables = [
            TableMaintenance(
                table=table,
                size_bytes=float(size),
                free_bytes=float(free) if free is not None else None,
            )
            for table, size, free in cursor.fetchall()
        ]

    def read_size(self, wrapper: Any, cursor: Any) -> float:
        cursor.execute(SIZE_QUERY)
        return float(cursor.fetchone()[0])

    def read_statements(
        self, wrapper: Any, cursor: Any, top_n: int, text_length: int, timeout: float
    ) -> list[Statement]:
        cursor.execute(PERFORMANCE_SCHEMA_QUERY)
        if not int(cursor.fetchone()[0]):
            raise StatementsUnavailable("performance_schema is off")
        if wrapper.mysql_is_mariadb:
            query = MARIADB_STATEMENTS_QUERY.format(seconds=max(0.01, timeout))
        else:
            query = MYSQL_STATEMENTS_QUERY.format(milliseconds=int(timeout * 1000))
        try:
            # Enough rows that top_n remain once the probe's own statements are left out.
            cursor.execute(query, [top_n + len(OWN_SHAPES)])
            rows = cursor.fetchall()
        except Exception as exc:
            if self.classify(exc) == "permission":
                raise StatementsUnavailable("no SELECT privilege on performance_schema") from None
            raise
        others = [row for row in rows if not is_own_statement(row[1] or "")]
        return [
            Statement(
                queryid=str(digest),
                query=sanitize(text or "", "mysql")[:text_length],
                calls=int(calls),
                total_seconds=float(total_seconds),
                mean_seconds=float(total_seconds) / int(calls) if calls else 0.0,
                rows=int(rows_count or 0),
            )
            for digest, text, calls, total_seconds, rows_count in others[:top_n]
        ]

    def classify(self, error: BaseException) -> str | None:
        cause = driver_error(error)
        code = error_number(error)
        if code in ERRNO_REASONS:
            return ERRNO_REASONS[code]
        text = str(cause).lower()
        if code in (2002, 2003):
            return "timeout" if "(110" in text or "timed out" in text else "refused"
        if code in (2013, 2006) and "timeout" in text:
            return "timeout"
        if "unknown server host" in text or "name or service not known" in text:
            return "dns"
        return None


def error_number(error: BaseException) -> int | None:
    """The server's (or client library's) error number behind a driver error, if any."""
    args = getattr(driver_error(error), "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def refused(cursor: Any, query: str, refusal: int, absent: int | None = None) -> bool:
    """Whether the server refuses `query` to this user with error `refusal`. The queries read
    no data (a count, LIMIT 0): the privilege is checked when the table is opened. Any other
    error is raised, except `absent` (the table does not exist), which is no refusal."""
    try:
        cursor.execute(query)
        cursor.fetchall()
    except Exception as exc:
        code = error_number(exc)
        if code == refusal:
            return True
        if absent is not None and code == absent:
            return False
        raise
    return False


def holds_process(cursor: Any) -> bool:
    """Whether the user holds PROCESS (directly or through its role)."""
    return not refused(cursor, PROCESS_QUERY, ER_SPECIFIC_ACCESS_DENIED)


def performance_schema_readable(cursor: Any) -> bool:
    """Whether the user may read performance_schema's tables."""
    return not refused(cursor, PERFORMANCE_SCHEMA_READABLE_QUERY, ER_TABLEACCESS_DENIED)


def replica_status_statement(is_mariadb: bool, version: tuple[int, ...]) -> str:
    """The replica status statement this server knows (see MARIADB_REPLICA_SINCE)."""
    if is_mariadb:
        return MARIADB_REPLICA_STATUS if version >= MARIADB_REPLICA_SINCE else MARIADB_SLAVE_STATUS
    return MYSQL_REPLICA_STATUS if version >= MYSQL_REPLICA_SINCE else MYSQL_SLAVE_STATUS


def read_replication(
    is_mariadb: bool, version: tuple[int, ...], cursor: Any, observations: Observations
) -> None:
    """Replica role, connection, lag and last errors; absent (None) when the user may not read
    the replica status. Columns are found by name: their order and their words (Slave/Master
    before MySQL 8.0.22, Replica/Source since) differ by server and version."""
    try:
        cursor.execute(replica_status_statement(is_mariadb, version))
    except Exception as exc:
        if ERRNO_REASONS.get(error_number(exc)) == "permission":
            return
        raise
    columns = [column[0] for column in cursor.description or ()]
    rows = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
    observations.replica = bool(rows)
    if not rows:
        return
    receiving = [row.get("Slave_IO_Running", row.get("Replica_IO_Running")) for row in rows]
    observations.replica_connected = all(state == "Yes" for state in receiving)
    # The last error of each thread, 0 when none (a restarted thread clears it).
    observations.replica_last_errors = {
        thread: max(int(row.get(column) or 0) for row in rows)
        for thread, column in (("io", "Last_IO_Errno"), ("sql", "Last_SQL_Errno"))
    }
    lags = [row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source")) for row in rows]
    known = [float(lag) for lag in lags if lag is not None]
    # A stopped SQL thread reports NULL: the lag is unknown, not zero.
    if known and len(known) == len(lags):
        observations.replication_lag_seconds = max(known)
