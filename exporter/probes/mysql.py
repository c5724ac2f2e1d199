"""MySQL and MariaDB: processlist, information_schema sizes, replica status, statement digests."""

import copy
import re
from typing import Any, ClassVar

from exporter.probes.base import StatementsUnavailable, VendorProbe, driver_error, whole_seconds
from exporter.state import Observations, Statement
from exporter.statement_text import sanitize, source_length

COMMAND_STATES = {"Sleep": "idle", "Query": "active", "Execute": "active"}
BACKGROUND_USERS = ("system user", "event_scheduler")

CONNECTIONS_QUERY = """
SELECT COMMAND, COUNT(*) FROM information_schema.PROCESSLIST
WHERE USER NOT IN ('system user', 'event_scheduler') AND COMMAND <> 'Daemon'
GROUP BY COMMAND
"""

SIZE_QUERY = """
SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES
WHERE TABLE_SCHEMA = DATABASE()
"""

# Timers are picoseconds. Digests are summed so that one digest is one series whatever the key.
STATEMENTS_QUERY = """
SELECT DIGEST, LEFT(MIN(DIGEST_TEXT), %s), SUM(COUNT_STAR), SUM(SUM_TIMER_WAIT) / 1e12,
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
VERSION_QUERY = "SELECT VERSION(), @@max_connections"
READ_ONLY = "SET SESSION TRANSACTION READ ONLY"
MARIADB_TIMEOUT = "SET SESSION max_statement_time = {seconds:.3f}"
MYSQL_TIMEOUT = "SET SESSION max_execution_time = {milliseconds}"
MARIADB_REPLICA_STATUS = "SHOW ALL SLAVES STATUS"
MYSQL_REPLICA_STATUS = "SHOW REPLICA STATUS"
PERFORMANCE_SCHEMA_QUERY = "SELECT @@performance_schema"

# What runs on the probe's own connection: VendorProbe.ping, the queries above, and what Django
# and mysqlclient send when they connect. performance_schema's digests have no user column, so
# these are recognized by their words; on a quiet schema they would be the top statements.
OWN_STATEMENTS = (
    "SELECT 1",
    VERSION_QUERY,
    CONNECTIONS_QUERY,
    SIZE_QUERY,
    READ_ONLY,
    MARIADB_TIMEOUT.format(seconds=1),
    MYSQL_TIMEOUT.format(milliseconds=1),
    MARIADB_REPLICA_STATUS,
    MYSQL_REPLICA_STATUS,
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

    def read_server(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        cursor.execute(VERSION_QUERY)
        version, max_connections = cursor.fetchone()
        observations.version = version.split("-log")[0]
        observations.connections_max = int(max_connections)
        cursor.execute(CONNECTIONS_QUERY)
        connections: dict[str, int] = {}
        for command, count in cursor.fetchall():
            state = COMMAND_STATES.get(command, "other")
            connections[state] = connections.get(state, 0) + int(count)
        observations.connections = connections
        self._read_replication(wrapper, cursor, observations)

    def _read_replication(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        statement = MARIADB_REPLICA_STATUS if wrapper.mysql_is_mariadb else MYSQL_REPLICA_STATUS
        try:
            cursor.execute(statement)
        except Exception as exc:
            if self.classify(exc) == "permission":
                return
            raise
        columns = [column[0] for column in cursor.description or ()]
        rows = [dict(zip(columns, row, strict=False)) for row in cursor.fetchall()]
        observations.replica = bool(rows)
        if not rows:
            return
        receiving = [row.get("Slave_IO_Running", row.get("Replica_IO_Running")) for row in rows]
        observations.replica_connected = all(state == "Yes" for state in receiving)
        lags = [row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source")) for row in rows]
        known = [float(lag) for lag in lags if lag is not None]
        # A stopped SQL thread reports NULL: the lag is unknown, not zero.
        if known and len(known) == len(lags):
            observations.replication_lag_seconds = max(known)

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
            cursor.execute(query, [source_length(text_length), top_n + len(OWN_SHAPES)])
            rows = cursor.fetchall()
        except Exception as exc:
            if self.classify(exc) == "permission":
                raise StatementsUnavailable("no SELECT privilege on performance_schema") from None
            raise
        others = [row for row in rows if statement_shape(row[1] or "") not in OWN_SHAPES]
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
        args = getattr(cause, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
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
