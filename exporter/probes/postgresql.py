"""PostgreSQL: pg_stat_activity, pg_database_size, recovery state and pg_stat_statements."""

import copy
import re
from typing import Any, ClassVar

from exporter.probes.base import StatementsUnavailable, VendorProbe, driver_error, whole_seconds
from exporter.state import Observations, Statement
from exporter.statement_text import sanitize, source_length

# One round trip for everything cheap; lag is 0 when the replica has replayed all it received,
# otherwise the age of the last replayed transaction. A role without pg_read_all_stats sees the
# WAL receiver's row but not its status: connected is then NULL (unknown), not false.
STATUS_QUERY = """
SELECT current_setting('server_version'),
       current_setting('max_connections')::int,
       pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()))
       END,
       (SELECT CASE WHEN count(*) = 0 THEN false ELSE bool_or(status = 'streaming') END
        FROM pg_stat_wal_receiver),
       (SELECT json_object_agg(state, n) FROM (
            SELECT COALESCE(state, 'unknown') AS state, count(*) AS n
            FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1) AS s)
"""

# pg_stat_statements keys rows by (user, database, queryid, toplevel): summing per queryid keeps
# one series per statement, where exporting rows as they are yields duplicate series. The probing
# role's own statements are left out: on a quiet database they would be the top statements.
STATEMENTS_QUERY = """
SELECT queryid::text, left(min(query), %s), sum(calls)::bigint,
       sum({total}) / 1000.0, sum(rows)::bigint
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND queryid IS NOT NULL
GROUP BY queryid
ORDER BY sum({total}) DESC
LIMIT %s
"""

STATE_NAMES = {
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
    "fastpath function call": "fastpath",
}

# psycopg 3 gives a failed connection no SQLSTATE (libpq reports it as text), so the server's
# message decides. They come first: SQLSTATE 28000 covers both a missing role and pg_hba.conf.
# pg_hba.conf refusing the address, user or database is `permission`, not `auth`: it refuses
# before any credential is checked, and the fix is the server's access rules, not the password.
MESSAGE_REASONS = (
    (re.compile(r'database ".*" does not exist'), "config"),
    (re.compile(r"permission denied for database|does not have connect privilege"), "permission"),
    (re.compile(r"pg_hba\.conf"), "permission"),
    (re.compile(r"password authentication failed|no password supplied"), "auth"),
    (re.compile(r'role ".*" does not exist'), "auth"),
    (re.compile(r"too many clients|remaining connection slots are reserved"), "connection_limit"),
)

SQLSTATE_REASONS = {
    "28P01": "auth",
    "28000": "auth",
    "3D000": "config",
    "42501": "permission",
    "57014": "timeout",
    "55P03": "timeout",
    "53300": "connection_limit",
    "57P03": "refused",
}


class PostgreSQLProbe(VendorProbe):
    vendor: ClassVar[str] = "postgresql"

    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        result = copy.deepcopy(settings)
        options = result["OPTIONS"]
        # A probe keeps its own plain connection: a pool would hold connections the probe cannot
        # interrupt and would outlive the probe's bookkeeping.
        options.pop("pool", None)
        options["connect_timeout"] = whole_seconds(deadline, minimum=2)
        options.setdefault("application_name", "dbhealth")
        timeout_ms = max(100, int(deadline * 1000))
        session = (
            f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
            f" -c lock_timeout={timeout_ms} -c idle_in_transaction_session_timeout=60000"
        )
        options["options"] = f"{options.get('options', '')} {session}".strip()
        result["CONN_MAX_AGE"] = None
        result["CONN_HEALTH_CHECKS"] = False
        return result

    def read_server(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        cursor.execute(STATUS_QUERY)
        version, max_connections, in_recovery, lag, streaming, states = cursor.fetchone()
        observations.version = version.split()[0]
        observations.connections_max = max_connections
        observations.replica = bool(in_recovery)
        # Lag alone cannot tell a replica that is caught up from one whose primary is gone:
        # both have replayed all they received.
        observations.replica_connected = (
            bool(streaming) if in_recovery and streaming is not None else None
        )
        observations.replication_lag_seconds = float(lag) if lag is not None else None
        observations.connections = {
            STATE_NAMES.get(state, state.replace(" ", "_")): int(count)
            for state, count in (states or {}).items()
        }

    def read_size(self, wrapper: Any, cursor: Any) -> float:
        cursor.execute("SELECT pg_database_size(current_database())")
        return float(cursor.fetchone()[0])

    def read_statements(
        self, wrapper: Any, cursor: Any, top_n: int, text_length: int, timeout: float
    ) -> list[Statement]:
        from psycopg import errors

        # Known from the connection's start-up, without a query.
        total = (
            "total_exec_time" if wrapper.connection.info.server_version >= 130000 else "total_time"
        )
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, false)", [str(max(1, int(timeout * 1000)))]
        )
        try:
            cursor.execute(
                STATEMENTS_QUERY.format(total=total), [source_length(text_length), top_n]
            )
            rows = cursor.fetchall()
        except Exception as exc:
            cause = driver_error(exc)
            if isinstance(cause, errors.UndefinedTable):
                raise StatementsUnavailable("pg_stat_statements is not installed here") from None
            if isinstance(cause, errors.ObjectNotInPrerequisiteState):
                raise StatementsUnavailable("pg_stat_statements is not preloaded") from None
            if isinstance(cause, errors.InsufficientPrivilege):
                raise StatementsUnavailable("no privilege on pg_stat_statements") from None
            raise
        finally:
            cursor.execute("RESET statement_timeout")
        return [
            Statement(
                queryid=queryid,
                query=sanitize(text or "")[:text_length],
                calls=int(calls),
                total_seconds=float(total_seconds),
                mean_seconds=float(total_seconds) / calls if calls else 0.0,
                rows=int(rows_count),
            )
            for queryid, text, calls, total_seconds, rows_count in rows
        ]

    def classify(self, error: BaseException) -> str | None:
        import psycopg

        cause = driver_error(error)
        text = str(cause).lower()
        for pattern, reason in MESSAGE_REASONS:
            if pattern.search(text):
                return reason
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate in SQLSTATE_REASONS:
            return SQLSTATE_REASONS[sqlstate]
        if "timeout expired" in text or "timed out" in text:
            return "timeout"
        if "connection refused" in text or "no such file or directory" in text:
            return "refused"
        if "resolve host" in text or "translate host name" in text or "name or service" in text:
            return "dns"
        if isinstance(cause, psycopg.ProgrammingError) or "invalid dsn" in text:
            return "config"
        return None
