"""Which grants the probe's role lacks on an alias, and which signals stay absent for it.

A role without a privilege is never an error for the probe: what it cannot see is absent. That
is right for the metrics and wrong for an operator who set the role up from the README and
wonders why pending migrations never show: `check --deploy --database ALIAS` says, per alias,
what is missing and the statement that grants it (dbhealth.project.database_checks).

Read with the probe's own connection settings (the alias's monitoring role, read-only): the
privilege functions and catalog views any role may read, and, where only trying tells (a
privilege that may come from a global, schema or table grant, or a role), a `SELECT ... LIMIT 0`
that reads no row (a count of INNODB_TRX for MySQL's PROCESS).
"""

from dataclasses import dataclass
from typing import Any

# Errors that mean "not allowed", by vendor: PostgreSQL's SQLSTATE, MySQL/MariaDB's error number.
POSTGRESQL_DENIED = "42501"  # insufficient_privilege
MYSQL_DENIED = {1044, 1142, 1143, 1227}  # database, table, column, privilege (SUPER-like) denied


@dataclass(frozen=True)
class MissingGrant:
    signals: str  # what stays absent without it
    missing: str  # the privilege, in the vendor's words
    statement: str  # what grants it


def missing_grants(
    wrapper: Any, cursor: Any, migrations_table: str | None
) -> tuple[str, list[MissingGrant]]:
    """(the role, what it lacks) on this PostgreSQL or MySQL/MariaDB connection.
    `migrations_table`: the project's django_migrations table, when the alias's pending
    migrations are read, else None."""
    if wrapper.vendor == "postgresql":
        return postgresql_missing(cursor, migrations_table)
    return mysql_missing(wrapper, cursor, migrations_table)


def postgresql_missing(cursor: Any, migrations_table: str | None) -> tuple[str, list[MissingGrant]]:
    cursor.execute(
        """
        SELECT current_user,
               pg_has_role(current_user, 'pg_monitor', 'USAGE'),
               EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),
               current_database(),
               (SELECT array_agg(DISTINCT n.nspname ORDER BY n.nspname)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'S' AND n.nspname <> 'information_schema'
                  AND n.nspname NOT LIKE 'pg\\_%'
                  -- a CASE: the planner may test rows before relkind otherwise
                  AND CASE WHEN c.relkind = 'S'
                           THEN NOT has_sequence_privilege(c.oid, 'SELECT, USAGE') END)
        """
    )
    role, monitor, statements, database, schemas = cursor.fetchone()
    quoted = quote_postgresql(role)
    missing = []
    if not monitor:
        missing.append(
            MissingGrant(
                "other sessions (connections by state, oldest and idle transactions, blocked "
                "sessions, lock waits), other roles' statement texts, a replica's WAL receiver",
                "membership in pg_monitor",
                f"GRANT pg_monitor TO {quoted};",
            )
        )
    if not statements:
        missing.append(
            MissingGrant(
                "top statements (dbhealth_statements_available is 0)",
                f"the pg_stat_statements extension in database {database}",
                "CREATE EXTENSION pg_stat_statements;  -- as the database's owner",
            )
        )
    for schema in schemas or ():
        name = quote_postgresql(schema)
        missing.append(
            MissingGrant(
                f"id headroom of the tables whose sequences are in schema {schema}",
                f"SELECT on the sequences of schema {schema}",
                f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {name} TO {quoted}; ALTER DEFAULT "
                f"PRIVILEGES IN SCHEMA {name} GRANT SELECT ON SEQUENCES TO {quoted};",
            )
        )
    if migrations_table and denied(cursor, migrations_table, postgresql_denial):
        missing.append(migrations_grant(migrations_table, f"GRANT SELECT ON {{}} TO {quoted};"))
    return role, missing


def mysql_missing(
    wrapper: Any, cursor: Any, migrations_table: str | None
) -> tuple[str, list[MissingGrant]]:
    cursor.execute("SELECT CURRENT_USER()")
    (current,) = cursor.fetchone()
    user, _, host = current.rpartition("@")
    role = f"'{user}'@'{host}'"
    missing = []
    # Tried, not looked up: USER_PRIVILEGES leaves out what a (default) role grants, and SHOW
    # GRANTS carries the password hash. INNODB_TRX is what the probe reads with PROCESS; it
    # checks the privilege as it fills its rows, so LIMIT 0 would pass.
    if denied(cursor, "information_schema.INNODB_TRX", mysql_denial, "SELECT COUNT(*) FROM {}"):
        missing.append(
            MissingGrant(
                "other sessions (connections by state), transactions and lock waits",
                "PROCESS",
                f"GRANT PROCESS ON *.* TO {role};",
            )
        )
    digests = "performance_schema.events_statements_summary_by_digest"
    if denied(cursor, digests, mysql_denial):
        missing.append(
            MissingGrant(
                "top statements (dbhealth_statements_available is 0)",
                "SELECT on performance_schema",
                f"GRANT SELECT ON performance_schema.* TO {role};",
            )
        )
    replica_grant = replica_status_grant(wrapper, cursor)
    if replica_grant:
        missing.append(
            MissingGrant(
                "replication state and lag",
                replica_grant,
                f"GRANT {replica_grant} ON *.* TO {role};",
            )
        )
    if migrations_table and denied(cursor, migrations_table, mysql_denial):
        schema = wrapper.settings_dict["NAME"]
        missing.append(
            migrations_grant(migrations_table, f"GRANT SELECT ON `{schema}`.{{}} TO {role};")
        )
    return current, missing


def replica_status_grant(wrapper: Any, cursor: Any) -> str | None:
    """The privilege SHOW REPLICA STATUS needs and this role lacks, else None."""
    mariadb = wrapper.mysql_is_mariadb
    version = wrapper.mysql_version
    recent = version >= ((10, 5, 1) if mariadb else (8, 0, 22))
    try:
        cursor.execute("SHOW REPLICA STATUS" if recent else "SHOW SLAVE STATUS")
        cursor.fetchall()
    except Exception as exc:
        if mysql_denial(exc):
            # MariaDB 10.5.9 split REPLICA MONITOR from REPLICATION CLIENT.
            return "REPLICA MONITOR" if mariadb and version >= (10, 5, 9) else "REPLICATION CLIENT"
        raise
    return None


def migrations_grant(table: str, statement: str) -> MissingGrant:
    return MissingGrant(
        "pending migrations (dbhealth_migrations_pending)",
        f"SELECT on {table}",
        statement.format(table),
    )


def denied(cursor: Any, table: str, is_denial, query: str = "SELECT 1 FROM {} LIMIT 0") -> bool:
    """True when reading `table` is refused; a table that does not exist is not refused."""
    try:
        cursor.execute(query.format(table))  # names from code, never from input
        cursor.fetchall()
    except Exception as exc:
        if is_denial(exc):
            return True
        if is_missing_table(exc):
            return False
        raise
    return False


def postgresql_denial(error: BaseException) -> bool:
    return getattr(driver_cause(error), "sqlstate", None) == POSTGRESQL_DENIED


def mysql_denial(error: BaseException) -> bool:
    return mysql_code(error) in MYSQL_DENIED


def is_missing_table(error: BaseException) -> bool:
    cause = driver_cause(error)
    return getattr(cause, "sqlstate", None) == "42P01" or mysql_code(error) == 1146


def mysql_code(error: BaseException) -> int | None:
    arguments = getattr(driver_cause(error), "args", ())
    return arguments[0] if arguments and isinstance(arguments[0], int) else None


def driver_cause(error: BaseException) -> BaseException:
    """Django wraps the driver's exception; the driver's carries the code."""
    return error.__cause__ or error


def quote_postgresql(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
