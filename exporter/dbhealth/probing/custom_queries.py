"""Running a custom query (dbhealth.configuration.queries) on a prober's own connection.

The limits that make it safe to hand to many teams, per vendor:
- read-only: PostgreSQL and MySQL/MariaDB run it in a read-only transaction that is always
  rolled back; SQLite runs it with `PRAGMA query_only` on a file opened read-only. A statement
  that writes fails and changes nothing.
- one statement: PostgreSQL gets it through the extended protocol (psycopg's stream), MySQL with
  the connection's multi-statement option off, SQLite's driver runs one only; so `SELECT 1;
  COMMIT; ...` cannot step out of the read-only transaction.
- time: a server-side statement timeout of what is left of the alias's deadline (SQLite: the
  connection is interrupted then), so a slow query fails as `timeout` and the alias stays up.
- size: at most max_series rows are taken; one more fails the query (`series_limit`) rather than
  export a silently cut answer. PostgreSQL stops the query there; the others stop fetching.
- texts: label values pass through the same redaction as error texts, so a column holding a
  connection string or `password=...` never leaves the exporter as it was.
"""

import itertools
import math
import threading
from decimal import Decimal
from typing import Any

from dbhealth.configuration.queries import CustomQuery
from dbhealth.exposition.families import label_text
from dbhealth.probing.failures import classify
from dbhealth.probing.redaction import redact
from dbhealth.probing.state import AliasState, ProbeOutcome, QueryRow
from dbhealth.probing.vendors.base import VendorProbe, driver_error
from dbhealth.probing.vendors.mysql import CUSTOM_QUERY_STATEMENTS, MARIADB_TIMEOUT, MYSQL_TIMEOUT
from dbhealth.probing.vendors.sqlite import interrupt_quietly

# mysql_set_server_option()'s values (mysql.h: enum enum_mysql_set_option).
MYSQL_MULTI_STATEMENTS_ON = 0
MYSQL_MULTI_STATEMENTS_OFF = 1
# What a refused write says, per vendor: PostgreSQL SQLSTATE 25006 (read_only_sql_transaction),
# MySQL/MariaDB 1792 (ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION) and 1290 (--read-only), SQLite
# SQLITE_READONLY (8).
POSTGRESQL_READ_ONLY = "25006"
MYSQL_READ_ONLY = (1792, 1290)
SQLITE_READONLY = 8
MYSQL_BEGIN, MYSQL_END = CUSTOM_QUERY_STATEMENTS


class UnusableResult(Exception):
    """The query ran but its answer cannot be exported as defined."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def run_query(
    vendor: str,
    wrapper: Any,
    query: CustomQuery,
    timeout: float,
    deadline: float,
    secrets: list[str],
) -> list[QueryRow]:
    """The query's rows as labels and numbers; raises when it fails or does not fit its
    definition. `timeout` is what is left of this probe, `deadline` the alias's own, which the
    session's statement timeout is put back to."""
    limit = query.max_series + 1
    if vendor == "postgresql":
        columns, rows = run_postgresql(wrapper.connection, query.sql, timeout, limit)
    elif vendor == "mysql":
        columns, rows = run_mysql(wrapper, query.sql, timeout, deadline, limit)
    elif vendor == "sqlite":
        columns, rows = run_sqlite(wrapper.connection, query.sql, timeout, limit)
    else:
        raise UnusableResult("config", f"custom queries do not run on {vendor}")
    return rows_of(query, columns, rows, secrets)


def run_postgresql(raw: Any, sql: str, timeout: float, limit: int) -> tuple[list[str], list]:
    with raw.cursor() as cursor:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            # Local to the transaction: the session's own timeout is back after the rollback.
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                [str(max(1, int(timeout * 1000)))],
            )
            stream = cursor.stream(sql)
            try:
                rows = list(itertools.islice(stream, limit))
            finally:
                stream.close()  # beyond the limit: psycopg cancels the rest on the server
            columns = [column.name for column in cursor.description or ()]
        finally:
            cursor.execute("ROLLBACK")
    return columns, rows


def run_mysql(
    wrapper: Any, sql: str, timeout: float, deadline: float, limit: int
) -> tuple[list[str], list]:
    raw = wrapper.connection

    def statement_timeout(seconds: float) -> str:
        if wrapper.mysql_is_mariadb:
            return MARIADB_TIMEOUT.format(seconds=max(0.001, seconds))
        return MYSQL_TIMEOUT.format(milliseconds=max(1, int(seconds * 1000)))

    raw.set_server_option(MYSQL_MULTI_STATEMENTS_OFF)
    cursor = raw.cursor()
    try:
        cursor.execute(statement_timeout(timeout))
        cursor.execute(MYSQL_BEGIN)
        try:
            cursor.execute(sql)
            columns = [column[0] for column in cursor.description or ()]
            rows = list(cursor.fetchmany(limit))
        finally:
            cursor.execute(MYSQL_END)
    finally:
        cursor.execute(statement_timeout(max(0.1, deadline)))
        cursor.close()
        raw.set_server_option(MYSQL_MULTI_STATEMENTS_ON)
    return columns, rows


def run_sqlite(raw: Any, sql: str, timeout: float, limit: int) -> tuple[list[str], list]:
    # The file is opened read-only already; query_only refuses writes to anything else the
    # statement might reach (an attached or temporary database), and stays on: the connection is
    # the probe's alone and never writes.
    raw.execute("PRAGMA query_only = 1")
    if timeout <= 0:
        raise TimeoutError("no time left for the query")
    # SQLite has no statement timeout: the connection is interrupted when the time is up.
    timer = threading.Timer(timeout, interrupt_quietly, [raw])
    timer.daemon = True
    timer.start()
    cursor = raw.cursor()
    try:
        cursor.execute(sql)
        columns = [column[0] for column in cursor.description or ()]
        rows = cursor.fetchmany(limit)
    finally:
        cursor.close()
        timer.cancel()
        timer.join()
    return columns, rows


def rows_of(
    query: CustomQuery, columns: list[str], rows: list, secrets: list[str]
) -> list[QueryRow]:
    if len(rows) > query.max_series:
        raise UnusableResult(
            "series_limit", f"more than max_series = {query.max_series} rows; nothing exported"
        )
    if not rows:
        # Nothing to export, and nothing to check: PostgreSQL's stream gives no column names
        # without a row, so the columns are checked when rows come.
        return []
    index: dict[str, int] = {}
    for position, column in enumerate(columns):
        index.setdefault(str(column).lower(), position)
    wanted = (*query.labels, *(column for column, _ in query.metrics))
    missing = [column for column in wanted if column not in index]
    if missing:
        raise UnusableResult(
            "config",
            f"the result has no column(s) {', '.join(missing)} (it has: "
            f"{', '.join(label_text(str(c), 60) for c in columns)})"[:300],
        )
    found: list[QueryRow] = []
    seen: dict[tuple[str, ...], int] = {}
    for number, row in enumerate(rows, start=1):
        labels = tuple(label_value(row[index[column]], secrets) for column in query.labels)
        if labels in seen:
            raise UnusableResult(
                "config",
                f"rows {seen[labels]} and {number} have the same labels: aggregate them in the SQL",
            )
        seen[labels] = number
        values = {}
        for column, _ in query.metrics:
            value = number_of(row[index[column]], column)
            if value is not None:
                values[column] = value
        found.append(QueryRow(labels=labels, values=values))
    return found


def label_value(value: Any, secrets: list[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "replace")
    return label_text(redact(str(value), secrets), 256)


def number_of(value: Any, column: str) -> float | None:
    """A metric column's value; NULL (and NaN) are unknown and left out, never 0."""
    if value is None:
        return None
    if isinstance(value, bool | int | float | Decimal):
        number = float(value)
        return None if math.isnan(number) else number
    raise UnusableResult(
        "config", f"column {column} holds {type(value).__name__} values, not numbers"
    )


def failure_reason(error: BaseException, vendor_probe: VendorProbe | None) -> str:
    """The part failure's reason: `read_only` for a refused write, `series_limit`, or what any
    other part failing so would get."""
    if isinstance(error, UnusableResult):
        return error.reason
    cause = driver_error(error)
    if getattr(cause, "sqlstate", None) == POSTGRESQL_READ_ONLY:
        return "read_only"
    args = getattr(cause, "args", ())
    if args and isinstance(args[0], int) and args[0] in MYSQL_READ_ONLY:
        return "read_only"
    if getattr(cause, "sqlite_errorcode", 0) & 0xFF == SQLITE_READONLY:
        return "read_only"
    return classify(error, vendor_probe)


def due_queries(
    state: AliasState, queries: tuple[CustomQuery, ...], now: float, refresh_interval: float
) -> frozenset[str]:
    """The parts of the queries due on this probe: each at most once per its interval (default
    refresh_interval), counted from its last run whether it succeeded or failed, so that a slow
    or failing query costs the database no more often than a good one."""
    due = set()
    for query in queries:
        last = state.queries_at.get(query)
        interval = query.interval if query.interval is not None else refresh_interval
        if last is None or now - last >= interval:
            due.add(query.part)
    return frozenset(due)


def record_queries(
    state: AliasState, outcome: ProbeOutcome, queries: tuple[CustomQuery, ...], now: float
) -> None:
    """Rows of a query read this time replace its old ones whole; a query that failed exports
    nothing until it is read again (its part failure says why). Queries no longer configured
    (removed, or changed by a reload) are forgotten."""
    for stale in [query for query in state.queries_at if query not in queries]:
        del state.queries_at[stale]
        state.query_rows.pop(stale, None)
    for query in queries:
        if query.part in outcome.parts_read:
            state.queries_at[query] = now
            state.query_rows[query] = outcome.observations.query_rows[query]
        elif query.part in outcome.parts_failed:
            state.queries_at[query] = now
            state.query_rows.pop(query, None)
