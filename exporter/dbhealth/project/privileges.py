"""Which grants the probe's role lacks on an alias, and which signals stay absent for it.

A role without a privilege is never an error for the probe: what it cannot see is absent. That
is right for the metrics and wrong for an operator who set the role up from the README and
wonders why pending migrations never show: `check --deploy --database ALIAS` says, per alias,
what is missing and the statement that grants it (dbhealth.project.database_checks).

A vendor probe with a `missing_grants(wrapper, cursor)` method (signal -> grant, as a GRANT
statement takes it) names its own (MySQL/MariaDB); PostgreSQL's are read here, from the
privilege functions and catalogs any role may read. Pending migrations count only where the
Django project reads them, and the signals are grouped by the grant they wait for.
"""

from dataclasses import dataclass
from typing import Any

from dbhealth.probing.vendors import VendorProbe

# The signal django_migrations serves, as the vendor probes name it.
PENDING_MIGRATIONS = "pending migrations"
# What pg_read_all_stats (pg_monitor) shows: other sessions' state and transactions, the WAL
# receiver's status, other roles' statements. Lock waits come from pg_locks, which every role
# reads; before PostgreSQL 14 when a session began waiting needs it too.
POSTGRESQL_STATS_SIGNALS = (
    "connections by state",
    "oldest transaction",
    "oldest idle in transaction",
    "replica connected",
    "statements",
)
# Whether the role sees other sessions, the schemas of column-owned sequences (serial and
# identity: what the id headroom reads) it may not read, and whether it may read the project's
# django_migrations where that table exists in its search path.
POSTGRESQL_GRANTS_QUERY = """
SELECT current_user,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
       current_setting('server_version_num')::int,
       (SELECT array_agg(DISTINCT n.nspname ORDER BY n.nspname)
        FROM pg_depend AS dep
        JOIN pg_sequence AS seq ON seq.seqrelid = dep.objid
        JOIN pg_class AS c ON c.oid = seq.seqrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
          AND dep.deptype IN ('a', 'i')
          AND NOT has_sequence_privilege(seq.seqrelid, 'SELECT,USAGE')),
       to_regclass(quote_ident(%(table)s))::text,
       has_table_privilege(to_regclass(quote_ident(%(table)s)), 'SELECT')
"""


@dataclass(frozen=True)
class MissingGrant:
    missing: str  # the privilege, as a GRANT statement takes it
    signals: tuple[str, ...]  # what stays absent without it
    statement: str  # the SQL that grants it


def missing_grants(
    probe: VendorProbe, wrapper: Any, cursor: Any, migrations_table: str | None
) -> tuple[str, list[MissingGrant]]:
    """(the role, what it lacks) on this connection, one entry per grant. `migrations_table`:
    the project's django_migrations table when the alias's pending migrations are read (embedded,
    `migrations` on), else None."""
    if wrapper.vendor == "postgresql":
        role, found = postgresql_lacking(cursor, migrations_table or "django_migrations")
        grantee = '"' + role.replace('"', '""') + '"'
    else:
        cursor.execute("SELECT CURRENT_USER()")
        (role,) = cursor.fetchone()
        user, _, host = role.rpartition("@")
        grantee = f"'{user}'@'{host}'"
        vendor_lacking = getattr(probe, "missing_grants", None)
        found = dict(vendor_lacking(wrapper, cursor)) if vendor_lacking is not None else {}
    if migrations_table is None:
        found.pop(PENDING_MIGRATIONS, None)  # not read here: nothing to grant for it
    by_grant: dict[str, list[str]] = {}
    for signal, grant in found.items():
        by_grant.setdefault(grant, []).append(signal)
    return role, [
        MissingGrant(grant, tuple(signals), f"GRANT {grant} TO {grantee};")
        for grant, signals in by_grant.items()
    ]


def postgresql_lacking(cursor: Any, migrations_table: str) -> tuple[str, dict[str, str]]:
    """(the role, signal -> the grant it lacks) on a PostgreSQL connection."""
    cursor.execute(POSTGRESQL_GRANTS_QUERY, {"table": migrations_table})
    role, sees_all, version, hidden_schemas, table, reads_migrations = cursor.fetchone()
    missing: dict[str, str] = {}
    if not sees_all:
        before_14 = ("longest lock wait",) if version < 140000 else ()
        for signal in (*POSTGRESQL_STATS_SIGNALS, *before_14):
            missing[signal] = "pg_monitor"
    for schema in hidden_schemas or ():
        quoted = '"' + schema.replace('"', '""') + '"'
        missing[f"id headroom ({schema})"] = f"SELECT ON ALL SEQUENCES IN SCHEMA {quoted}"
    if table is not None and not reads_migrations:
        missing[PENDING_MIGRATIONS] = f"SELECT ON {table}"
    return role, missing
