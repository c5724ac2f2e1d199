"""PostgreSQL: pg_stat_activity, pg_database_size, recovery state, pg_stat_statements, locks,
wraparound, replication slots and sequences."""

import copy
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any, ClassVar

from django.db.migrations.recorder import MigrationRecorder

from dbhealth.probing.state import (
    SERVER_FACTS,
    SESSION_FIELDS,
    IdHeadroom,
    Observations,
    ReplicationSlot,
    Statement,
    TableMaintenance,
)
from dbhealth.probing.statement_text import PLACEHOLDER, sanitize, source_length
from dbhealth.probing.vendors.base import (
    StatementsUnavailable,
    VendorProbe,
    driver_error,
    whole_seconds,
)

logger = logging.getLogger(__name__)

# One round trip for everything cheap; lag is 0 when the replica has replayed all it received,
# otherwise the age of the last replayed transaction. A role without pg_read_all_stats sees the
# WAL receiver's row but not its status: connected is then NULL (unknown), not false.
# Connections by state need pg_read_all_stats: without it other roles' sessions show neither
# state nor backend type, only their database and user, so they are counted as they are seen:
# connections in state `unknown` (a database and a user: client backends, and the rare logical
# walsender or parallel worker of another role), never a count of the states the role can see.
# Replication slots are read by every role (pg_replication_slots is public). The WAL a slot keeps
# is measured from the primary's current position; a replica has none (pg_current_wal_lsn()
# fails during recovery), so there it is NULL, and the metrics show slots of primaries only.
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
       CASE WHEN pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') THEN
            (SELECT json_object_agg(state, n) FROM (
                SELECT COALESCE(state, 'unknown') AS state, count(*) AS n
                FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1) AS s)
       ELSE (SELECT json_build_object('unknown', count(*)) FROM pg_stat_activity
             WHERE datname IS NOT NULL AND usesysid IS NOT NULL
               AND (backend_type = 'client backend' OR backend_type IS NULL))
       END,
       EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8,
       (SELECT json_agg(json_build_array(
                    slot_name,
                    active,
                    CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
                         ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8
                    END) ORDER BY slot_name)
        FROM pg_replication_slots),
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
       (SELECT json_object_agg(datname, json_build_array(oldest, idle, blocked, waited)) FROM (
            SELECT a.datname,
                   GREATEST(0, EXTRACT(EPOCH FROM COALESCE(max(now() - a.xact_start), '0s'))),
                   GREATEST(0, EXTRACT(EPOCH FROM COALESCE(max(now() - a.state_change) FILTER (
                       WHERE a.state IN ('idle in transaction', 'idle in transaction (aborted)')),
                       '0s'))),
                   count(*) FILTER (WHERE a.wait_event_type = 'Lock'),
                   GREATEST(0, EXTRACT(EPOCH FROM COALESCE(max(now() - {wait_since}) FILTER (
                       WHERE a.wait_event_type = 'Lock'), '0s')))
            FROM pg_stat_activity AS a
            WHERE pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
              AND a.backend_type = 'client backend' AND a.datname IS NOT NULL
              AND a.pid <> pg_backend_pid()
              AND a.application_name IS DISTINCT FROM 'dbhealth'
            GROUP BY a.datname) AS s (datname, oldest, idle, blocked, waited)),
       CASE WHEN NOT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') THEN
            (SELECT json_object_agg(d.datname, json_build_array(
                        NULL, NULL, COALESCE(w.blocked, 0), {unprivileged_wait}))
             FROM pg_database AS d LEFT JOIN (
                SELECT a.datname, count(DISTINCT l.pid) AS blocked, {wait_start} AS since
                FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                WHERE NOT l.granted AND l.pid <> pg_backend_pid()
                GROUP BY a.datname) AS w ON w.datname = d.datname)
       END
"""
# Without pg_read_all_stats, other sessions' transactions and states are hidden, but every role
# reads pg_locks and which database a session is in: lock waits (and, from 14 on, since when)
# per database, every database listed so that one without waits reads 0 and the hidden
# transaction ages stay unknown (None).
UNPRIVILEGED_WAIT_14 = "GREATEST(0, EXTRACT(EPOCH FROM COALESCE(now() - w.since, '0s')))"
WAIT_START_14 = "min(l.waitstart)"
# When a session began to wait for its lock: PostgreSQL 14+ says so in pg_locks (read only for
# waiting sessions); before, the waiting statement's start stands in.
WAIT_SINCE_14 = (
    "CASE WHEN a.wait_event_type = 'Lock' THEN COALESCE((SELECT min(l.waitstart) FROM pg_locks"
    " AS l WHERE l.pid = a.pid AND NOT l.granted), a.query_start) END"
)
WAIT_SINCE_BEFORE_14 = "a.query_start"

# The alias's own database, in one round trip, on every probe: its transactions, deadlocks and
# transaction-id ages (pg_stat_database and pg_database are readable by every role). Its
# sessions (oldest and idle transactions, lock waits) come with the server facts instead, for
# every database in one scan of pg_stat_activity: scanned once per alias, the view's cost grew
# with aliases times connections (660 ms of server time per scrape for 200 databases).
ACTIVITY_QUERY = """
SELECT age(d.datfrozenxid), mxid_age(d.datminmxid), s.xact_commit, s.xact_rollback, s.deadlocks
FROM pg_database AS d LEFT JOIN pg_stat_database AS s ON s.datid = d.oid
WHERE d.datname = current_database()
"""

# Sequences owned by a table's column (serial, identity: Django's AutoField, BigAutoField,
# SmallAutoField), read at most once per refresh_interval, in one round trip. A column's range
# ends at its sequence's bound or its type's, whichever comes first (a bigint sequence behind an
# integer column runs out at 2^31 - 1); the share still free is measured in the direction the
# sequence moves. A sequence never used (last_value NULL) leaves its whole range free. Its last
# value is only readable with SELECT or USAGE on it (as pg_sequences does): a table with a
# sequence the role cannot read is left out, never reported as full or empty. The first row
# carries how many tables have such sequences and how many of them could be read.
IDS_QUERY = """
WITH owned AS (
    SELECT tab.oid AS relid,
           CASE WHEN ns.nspname = current_schema() THEN tab.relname
                ELSE ns.nspname || '.' || tab.relname END AS label,
           seq.seqincrement > 0 AS ascending,
           GREATEST(seq.seqmin::numeric, CASE base.typname WHEN 'int2' THEN -32768
                                                       WHEN 'int4' THEN -2147483648
                                                       WHEN 'int8' THEN -9223372036854775808
                                         END) AS low,
           LEAST(seq.seqmax::numeric, CASE base.typname WHEN 'int2' THEN 32767
                                                    WHEN 'int4' THEN 2147483647
                                                    WHEN 'int8' THEN 9223372036854775807
                                      END) AS high,
           has_sequence_privilege(seq.seqrelid, 'SELECT,USAGE') AS readable,
           CASE WHEN has_sequence_privilege(seq.seqrelid, 'SELECT,USAGE')
                THEN pg_sequence_last_value(seq.seqrelid) END AS last_value
    FROM pg_depend AS dep
    JOIN pg_sequence AS seq ON seq.seqrelid = dep.objid
    JOIN pg_class AS tab ON tab.oid = dep.refobjid
    JOIN pg_namespace AS ns ON ns.oid = tab.relnamespace
    JOIN pg_attribute AS att ON att.attrelid = tab.oid AND att.attnum = dep.refobjsubid
    JOIN pg_type AS typ ON typ.oid = att.atttypid
    JOIN pg_type AS base ON base.oid = CASE WHEN typ.typtype = 'd' THEN typ.typbasetype
                                            ELSE typ.oid END
    WHERE dep.classid = 'pg_class'::regclass
      AND dep.refclassid = 'pg_class'::regclass
      AND dep.deptype IN ('a', 'i')
      AND dep.refobjsubid > 0
      AND NOT pg_is_other_temp_schema(ns.oid)
), tables AS (
    SELECT relid, min(label) AS label, bool_and(readable) AS readable,
           min(GREATEST(0, LEAST(1, CASE
               WHEN last_value IS NULL THEN 1
               WHEN high < low THEN 0
               WHEN ascending THEN (high - last_value) / (high - low + 1)
               ELSE (last_value - low) / (high - low + 1)
           END)))::float8 AS ratio
    FROM owned GROUP BY relid
)
SELECT (SELECT count(*) FROM tables), (SELECT count(*) FROM tables WHERE readable),
       top.label, top.ratio
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT label, ratio FROM tables WHERE readable ORDER BY ratio, label LIMIT %s
) AS top ON true
ORDER BY top.ratio, top.label
"""

# Maintenance, at most once per refresh_interval, in one round trip: dead and live rows and the
# last vacuum and analyze (manual or auto, whichever is later; NULL when never) of the tables
# with the most dead rows, and the size (table, indexes and TOAST) of the largest tables. Every
# role reads pg_stat_user_tables, and sizes need no privilege. Other sessions' temporary tables
# are left out; the counts are the statistics collector's (exact enough, a moment late).
# Measuring a table's size costs system calls on its files (70 ms for 1,000 tables, measured:
# bench/maintenance_cost.py), so the largest are picked among twice as many candidates by the
# planner's page count (pg_class.relpages, kept by VACUUM and ANALYZE), then measured.
# Measuring opens the table and its indexes with ACCESS SHARE locks: a table with an ACCESS
# EXCLUSIVE lock held or asked for (ALTER TABLE, TRUNCATE, VACUUM FULL, LOCK TABLE) would make the
# read wait behind it until the deadline, losing every part of the probe. Such a table is not
# measured that time (pg_locks needs no privilege): it is left out of the largest, not waited on.
MAINTENANCE_QUERY = """
WITH t AS (
    SELECT s.relid,
           CASE WHEN s.schemaname = current_schema() THEN s.relname
                ELSE s.schemaname || '.' || s.relname END AS label,
           s.n_dead_tup, s.n_live_tup,
           EXTRACT(EPOCH FROM GREATEST(s.last_vacuum, s.last_autovacuum))::float8 AS vacuumed,
           EXTRACT(EPOCH FROM GREATEST(s.last_analyze, s.last_autoanalyze))::float8 AS analyzed
    FROM pg_stat_user_tables AS s
    WHERE s.schemaname !~ '^pg_temp_'
), dead AS (
    SELECT relid FROM t ORDER BY n_dead_tup DESC, label LIMIT %s
), candidates AS (
    SELECT t.relid, t.label FROM t JOIN pg_class AS c ON c.oid = t.relid
    ORDER BY c.relpages DESC, t.label LIMIT %s
), locked AS (
    SELECT DISTINCT relation FROM pg_locks
    WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), sized AS (
    SELECT relid, label,
           CASE WHEN EXISTS (
                    SELECT 1 FROM locked
                    WHERE relation = relid
                       OR relation = (SELECT reltoastrelid FROM pg_class WHERE oid = relid)
                       OR relation IN (SELECT indexrelid FROM pg_index WHERE indrelid = relid))
                THEN NULL
                ELSE pg_total_relation_size(relid)::float8 END AS size
    FROM candidates
), large AS (
    SELECT relid, size FROM sized WHERE size IS NOT NULL ORDER BY size DESC, label LIMIT %s
)
SELECT t.label, dead.relid IS NOT NULL, t.n_dead_tup, t.n_live_tup, t.vacuumed, t.analyzed,
       large.size
FROM t LEFT JOIN dead ON dead.relid = t.relid LEFT JOIN large ON large.relid = t.relid
WHERE dead.relid IS NOT NULL OR large.relid IS NOT NULL
ORDER BY t.label
"""
# Every statement a probe sends is marked, so that pg_stat_statements tells dbhealth's own
# statements (of any role it uses, on any connection) from the application's by what they are,
# even when both share one role. The mark starts the stored text: PostgreSQL keeps comments, and a
# statement's text starts where the statement does. But an entry keeps the text of its first
# run, and a comment does not change a queryid: an entry begun before (by an older dbhealth, or
# another tool running the same query) has no mark. So, from PostgreSQL 14 on, the queryids of
# the statements a connection sent are also learned from the server (EXPLAIN VERBOSE names them)
# and left out by id. Every probe statement is also one nobody else writes (no bare `SELECT 1`),
# so that it never shares a queryid with an application's.
MARK = "/* dbhealth probe */"
# A connection's limits (read-only, statement and lock timeouts from the alias's deadline) are
# set where they cost nothing: at start-up, in the `options` parameter, on the connection's own
# session. PgBouncer refuses that parameter (`unsupported startup parameter: options`), and behind
# its transaction pooling a session setting would land on a server connection another client
# gets next. There the limits are sent in front of every probe statement instead, in the same
# simple-query message: the two run as one implicit transaction, so the limits hold for that
# statement only, on whichever server connection runs it, for the time left before the deadline.
# Values are bound as constants, so pg_stat_statements keeps one entry for every value.
OPTIONS_REFUSED = "unsupported startup parameter: options"
SESSION_LIMITS = (
    "-c default_transaction_read_only=on -c statement_timeout={milliseconds}"
    " -c lock_timeout={milliseconds} -c idle_in_transaction_session_timeout=60000"
)
SESSION_LIMITS_PATTERN = re.compile(
    r"\s*" + re.escape(SESSION_LIMITS).replace(re.escape("{milliseconds}"), r"\d+")
)
LIMITS = (
    MARK + " SELECT set_config('statement_timeout', '{milliseconds}', true),"
    " set_config('lock_timeout', '{milliseconds}', true),"
    " set_config('transaction_read_only', 'on', true);\n" + MARK + " "
)
PING = "SELECT 1 FROM pg_backend_pid() AS dbhealth_ping"
# Queries EXPLAIN can plan without running them.
EXPLAINABLE = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
# Time kept back from each statement's server-side timeout, so that the server cancels it, and
# says so, before the watchdog's interrupt at the deadline.
SERVER_TIMEOUT_HEADROOM = 0.2

# pg_stat_statements keys rows by (user, database, queryid, toplevel): summing per queryid keeps
# one series per statement, where exporting rows as they are yields duplicate series. Ranked
# without texts: asking for any text makes PostgreSQL read its whole query-text file (hundreds of
# megabytes on busy servers). The ids already known to be dbhealth's are left out; a few more
# than asked for are ranked, since new ones of ours may still be among them.
RANK_QUERY = """
SELECT queryid, sum(calls)::bigint, sum({total}) / 1000.0, sum(rows)::bigint
FROM pg_stat_statements(false)
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND queryid IS NOT NULL AND queryid <> ALL(%s::bigint[])
GROUP BY queryid
ORDER BY sum({total}) DESC
LIMIT %s
"""
# Texts of the ranked statements not seen before, and whether they are dbhealth's own.
TEXTS_QUERY = """
SELECT queryid, bool_or(position(%s in query) = 1), left(min(query), %s)
FROM pg_stat_statements(true)
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND queryid = ANY(%s::bigint[])
GROUP BY queryid
"""
# More than the distinct statements dbhealth sends to one database.
OWN_STATEMENTS_MARGIN = 32
# pg_stat_statements normalizes the constants of these statements only; the queryid of any other
# (utility) statement is a hash of its text as sent (PostgreSQL 14, 15), or of its parse tree
# constants included (16+): for `ALTER ROLE x PASSWORD '...'` an offline password oracle.
PLANNABLE = frozenset({"select", "insert", "update", "delete", "merge", "with", "values", "table"})
# Utility statements are exported under a keyed hash of their queryid instead; the key lives and
# dies with the process, like the counters the ids label.
STATEMENT_ID_KEY = secrets.token_bytes(32)

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
    # PgBouncer refusing a start-up parameter of the alias's own OPTIONS (dbhealth's own limits
    # it retries without).
    (re.compile(r"unsupported startup parameter"), "config"),
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
    # Replication slots belong to the server, not to one database: read with the server facts.
    server_facts: ClassVar[tuple[str, ...]] = (
        *SERVER_FACTS,
        "replication_slots",
        "sessions_by_database",
        *SESSION_FIELDS,
    )

    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        result = copy.deepcopy(settings)
        options = result["OPTIONS"]
        # A probe keeps its own plain connection: a pool would hold connections the probe cannot
        # interrupt and would outlive the probe's bookkeeping.
        options.pop("pool", None)
        # Limits travel in front of each statement (see LIMITS), which needs the simple-query
        # protocol of client-side binding.
        options.pop("server_side_binding", None)
        options["connect_timeout"] = whole_seconds(deadline, minimum=2)
        options.setdefault("application_name", "dbhealth")
        session = SESSION_LIMITS.format(milliseconds=max(100, int(deadline * 1000)))
        options["options"] = f"{options.get('options', '')} {session}".strip()
        result["CONN_MAX_AGE"] = None
        result["CONN_HEALTH_CHECKS"] = False
        return result

    def settings_after_refusal(
        self, settings: dict[str, Any], error: BaseException
    ) -> dict[str, Any] | None:
        """PgBouncer refuses the `options` start-up parameter: connect without dbhealth's
        session limits, which then go with every statement (see LIMITS)."""
        options = settings["OPTIONS"].get("options", "")
        if OPTIONS_REFUSED not in str(error) or not has_session_limits(options):
            return None
        result = copy.deepcopy(settings)
        # The alias's own options stay: if it has any, PgBouncer refuses them too, and says so.
        if own := SESSION_LIMITS_PATTERN.sub("", options).strip():
            result["OPTIONS"]["options"] = own
        else:
            del result["OPTIONS"]["options"]
        return result

    def prepare_connection(self, wrapper: Any, deadline: float) -> None:
        if has_session_limits(wrapper.settings_dict["OPTIONS"].get("options", "")):
            wrapper.execute_wrappers.append(mark_statement)
        else:
            wrapper.execute_wrappers.append(limit_statement)
        self.start_probe(wrapper, deadline)

    def start_probe(self, wrapper: Any, remaining: float) -> None:
        # When this probe's statements must stop (the wrapper is this alias's alone).
        wrapper.dbhealth_stop_at = time.monotonic() + remaining - SERVER_TIMEOUT_HEADROOM

    def ping(self, cursor: Any) -> None:
        cursor.execute(PING)
        cursor.fetchone()

    def missing_grants(self, wrapper: Any, cursor: Any) -> dict[str, str]:
        """What the connected role may not read, as signal -> the grant that would show it;
        empty when it sees everything dbhealth reads. Without a grant those signals are absent
        (never 0): this names them, for `dbhealth check`."""
        cursor.execute(GRANTS_QUERY, {"table": MigrationRecorder.Migration._meta.db_table})
        sees_all, hidden_sequences, migrations_table, reads_migrations = cursor.fetchone()
        missing = {}
        if not sees_all:
            recent = wrapper.connection.info.server_version >= 140000
            for signal in (*STATS_SIGNALS, *(() if recent else ("longest lock wait",))):
                missing[signal] = "pg_read_all_stats (or pg_monitor)"
        if hidden_sequences:
            missing["id headroom"] = (
                f"SELECT on {hidden_sequences} sequence(s) (GRANT SELECT ON ALL SEQUENCES IN"
                " SCHEMA ...)"
            )
        if migrations_table is not None and not reads_migrations:
            missing["pending migrations"] = f"SELECT on {migrations_table}"
        return missing

    def read_server(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        recent = wrapper.connection.info.server_version >= 140000
        cursor.execute(
            STATUS_QUERY.format(
                wait_since=WAIT_SINCE_14 if recent else WAIT_SINCE_BEFORE_14,
                # Before 14 a waiting session's start is hidden like its transaction's.
                unprivileged_wait=UNPRIVILEGED_WAIT_14 if recent else "NULL",
                wait_start=WAIT_START_14 if recent else "NULL",
            )
        )
        row = cursor.fetchone()
        version, max_connections, in_recovery, lag, streaming, states, started, slots = row[:8]
        sees_all, sessions, unprivileged_sessions = row[8:]
        # Per database: (oldest, idle in transaction, blocked, longest wait); a value the role
        # cannot see (no pg_read_all_stats) is None: unknown, never 0.
        observations.sessions_by_database = {
            name: tuple(values)
            for name, values in ((sessions if sees_all else unprivileged_sessions) or {}).items()
        }
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
        observations.server_start_time = float(started)
        observations.replication_slots = [
            ReplicationSlot(
                name=name,
                active=bool(active),
                retained_bytes=float(retained) if retained is not None else None,
            )
            for name, active, retained in slots or ()
        ]

    def read_activity(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        cursor.execute(ACTIVITY_QUERY)
        xid_age, mxid_age, commits, rollbacks, deadlocks = cursor.fetchone()
        if commits is not None:
            observations.transactions = {"commit": int(commits), "rollback": int(rollbacks)}
            observations.deadlocks = int(deadlocks)
        observations.transaction_id_age = int(xid_age)
        observations.multixact_id_age = int(mxid_age)

    def read_size(self, wrapper: Any, cursor: Any) -> float:
        cursor.execute("SELECT pg_database_size(current_database())")
        return float(cursor.fetchone()[0])

    def read_ids(self, wrapper: Any, cursor: Any, top_n: int) -> list[IdHeadroom] | None:
        cursor.execute(IDS_QUERY, [top_n])
        rows = cursor.fetchall()
        tables, readable = rows[0][0], rows[0][1]
        if tables and not readable:
            return None  # every sequence is hidden from the role: unknown, not "no tables"
        return [
            IdHeadroom(table=label, ratio=float(ratio))
            for _, _, label, ratio in rows
            if label is not None
        ]

    def read_maintenance(
        self, wrapper: Any, cursor: Any, observations: Observations, top_n: int
    ) -> None:
        cursor.execute(MAINTENANCE_QUERY, [top_n, 2 * top_n, top_n])
        tables = []
        for label, by_dead, dead, live, vacuumed, analyzed, size in cursor.fetchall():
            table = TableMaintenance(table=label)
            if by_dead:
                table.dead_rows, table.live_rows = int(dead), int(live)
                table.last_vacuum, table.last_analyze = vacuumed, analyzed
            table.size_bytes = size
            tables.append(table)
        observations.tables = tables

    def read_statements(
        self, wrapper: Any, cursor: Any, top_n: int, text_length: int, timeout: float
    ) -> list[Statement]:
        """The top statements by total time, dbhealth's own left out, read within `timeout`
        seconds (behind PgBouncer every statement carries the time left anyway)."""
        from psycopg import errors

        # Known from the connection's start-up, without a query.
        total = (
            "total_exec_time" if wrapper.connection.info.server_version >= 130000 else "total_time"
        )
        # queryid -> (exported id, sanitized text), or None for dbhealth's own; kept with the
        # connection, so that texts are read again only for statements new to the top.
        known: dict[int, tuple[str, str] | None] = getattr(wrapper, "dbhealth_statement_texts", {})
        # A session of its own: this read may take what is left, not the whole deadline.
        session = has_session_limits(wrapper.settings_dict["OPTIONS"].get("options", ""))
        try:
            if session:
                cursor.execute(
                    SEES_ALL_QUERY + ", set_config('statement_timeout', %s, false)",
                    [str(max(1, int(timeout * 1000)))],
                )
            else:
                cursor.execute(SEES_ALL_QUERY)
            if not cursor.fetchone()[0]:
                raise StatementsUnavailable(
                    "the role lacks pg_read_all_stats (pg_monitor): other roles' statements"
                    " are hidden from it"
                )
            own = [queryid for queryid, text in known.items() if text is None]
            own += learn_own_ids(wrapper, cursor).difference(own)
            cursor.execute(RANK_QUERY.format(total=total), [own, top_n + OWN_STATEMENTS_MARGIN])
            ranked = cursor.fetchall()
            new = [row[0] for row in ranked if row[0] not in known]
            if new:
                cursor.execute(TEXTS_QUERY, [MARK, source_length(text_length), new])
                for queryid, ours, text in cursor.fetchall():
                    known[queryid] = None if ours else exported(queryid, text or "", text_length)
        except Exception as exc:
            cause = driver_error(exc)
            if isinstance(cause, errors.UndefinedTable | errors.UndefinedFunction):
                raise StatementsUnavailable("pg_stat_statements is not installed here") from None
            if isinstance(cause, errors.ObjectNotInPrerequisiteState):
                raise StatementsUnavailable("pg_stat_statements is not preloaded") from None
            if isinstance(cause, errors.InsufficientPrivilege):
                raise StatementsUnavailable("no privilege on pg_stat_statements") from None
            raise
        finally:
            if session:
                cursor.execute("RESET statement_timeout")  # to the connection's start-up value
        statements = [
            Statement(
                queryid=known[queryid][0],
                query=known[queryid][1],
                calls=int(calls),
                total_seconds=float(total_seconds),
                mean_seconds=float(total_seconds) / calls if calls else 0.0,
                rows=int(rows_count),
            )
            for queryid, calls, total_seconds, rows_count in ranked
            if known.get(queryid) is not None
        ][:top_n]
        # Forget texts that left the ranking; dbhealth's own ids stay known for good.
        still_ranked = {row[0] for row in ranked}
        wrapper.dbhealth_statement_texts = {
            queryid: text
            for queryid, text in known.items()
            if text is None or queryid in still_ranked
        }
        return statements

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


# Signals that need pg_read_all_stats: other sessions' state and transactions, the WAL
# receiver's status, other roles' statements (lock waits come from pg_locks, which every role
# reads; before PostgreSQL 14, since when a session waits needs it too).
STATS_SIGNALS = (
    "connections by state",
    "oldest transaction",
    "oldest idle in transaction",
    "replica connected",
    "statements",
)
SEES_ALL_QUERY = "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
# Whether the role sees other sessions, how many owned sequences it may not read (id headroom),
# and whether it may read django_migrations where that table exists in its search path.
GRANTS_QUERY = """
SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
       (SELECT count(*) FROM pg_depend AS dep JOIN pg_sequence AS seq ON seq.seqrelid = dep.objid
        WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
          AND dep.deptype IN ('a', 'i')
          AND NOT has_sequence_privilege(seq.seqrelid, 'SELECT,USAGE')),
       to_regclass(quote_ident(%(table)s))::text,
       has_table_privilege(to_regclass(quote_ident(%(table)s)), 'SELECT')
"""


def has_session_limits(options: str) -> bool:
    return SESSION_LIMITS_PATTERN.search(options) is not None


def mark_statement(execute: Any, sql: str, params: Any, many: bool, context: dict) -> Any:
    """A Django execute wrapper on a probe connection with its limits set on the session: every
    statement goes with the mark."""
    remember(context["connection"], sql, params)
    return execute(f"{MARK} {sql}", params, many, context)


def remember(wrapper: Any, sql: str, params: Any) -> None:
    """Keep a query the connection sent (and its first parameters), to learn its queryid."""
    if EXPLAINABLE.match(sql):
        sent = wrapper.__dict__.setdefault("dbhealth_sent", {})
        sent.setdefault(sql, params)


def learn_own_ids(wrapper: Any, cursor: Any) -> set[int]:
    """The queryids of every query this connection sent, as the server computes them (PostgreSQL
    14+, with pg_stat_statements loaded): each learned once per connection, EXPLAIN plans it
    without running it."""
    learned: dict[str, int | None] = wrapper.__dict__.setdefault("dbhealth_learned", {})
    if wrapper.connection.info.server_version >= 140000:
        for sql, params in list(getattr(wrapper, "dbhealth_sent", {}).items()):
            if sql in learned:
                continue
            learned[sql] = None
            try:
                cursor.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}", params)
            except Exception as exc:
                if not wrapper.is_usable():
                    raise
                logger.debug("no queryid for a probe statement: %s", exc)
                continue
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            learned[sql] = plan[0].get("Query Identifier")
    return {queryid for queryid in learned.values() if queryid is not None}


def limit_statement(execute: Any, sql: str, params: Any, many: bool, context: dict) -> Any:
    """A Django execute wrapper on the probe's connection: every statement goes with its limits
    (LIMITS) and the mark, and the cursor is left on the statement's own result."""
    wrapper = context["connection"]
    remember(wrapper, sql, params)
    remaining = getattr(wrapper, "dbhealth_stop_at", 0.0) - time.monotonic()
    limits = LIMITS.format(milliseconds=max(1, int(remaining * 1000)))
    result = execute(limits + sql, params, many, context)
    raw = context["cursor"].cursor
    while raw.nextset():
        pass
    return result


def exported(queryid: int, text: str, text_length: int) -> tuple[str, str]:
    """A statement as exported: its `queryid` label and its sanitized text. The label is the
    server's queryid only where the server computed it without constants (a plannable statement,
    whose text it normalized: no literal left in it), else a keyed hash of it that nobody outside
    this process can compute from a guessed text."""
    safe = sanitize(text)
    words = safe.split(None, 1)
    # Any `?` sanitizing the text leaves, once the text's own are out of the way, replaced a
    # literal the server kept (`SELECT 'x' INTO t` is a utility statement that reads as a query).
    literal = PLACEHOLDER in sanitize(text.replace(PLACEHOLDER, "\x00"))
    if words and words[0].lower() in PLANNABLE and not literal:
        return str(queryid), safe[:text_length]
    digest = hmac.new(STATEMENT_ID_KEY, str(queryid).encode(), hashlib.sha256).hexdigest()
    return f"u{digest[:16]}", safe[:text_length]
