"""Which grants the probe's role lacks on an alias, and which signals stay absent for it.

A role without a privilege is never an error for the probe: what it cannot see is absent. That
is right for the metrics and wrong for an operator who set the role up from the README and
wonders why pending migrations never show: `check --deploy --database ALIAS` says, per alias,
what is missing and the statement that grants it (dbhealth.project.database_checks).

What each signal needs is vendor knowledge, and the vendor probes name it
(`PostgreSQLProbe.missing_grants`, `MySQLProbe.missing_grants`: signal -> grant). This module
adds what only the Django project knows (whether django_migrations is read on the alias at all)
and groups the signals by the grant they wait for.
"""

from dataclasses import dataclass
from typing import Any

from dbhealth.probing.vendors import VendorProbe

# The signal django_migrations serves, as the vendor probes name it.
PENDING_MIGRATIONS = "pending migrations"


@dataclass(frozen=True)
class MissingGrant:
    missing: str  # the privilege, in the vendor probe's words
    signals: tuple[str, ...]  # what stays absent without it
    statement: str | None  # the SQL that grants it, where it can be written out


def missing_grants(
    probe: VendorProbe, wrapper: Any, cursor: Any, migrations_table: str | None
) -> tuple[str, list[MissingGrant]]:
    """(the role, what it lacks) on this connection, one entry per grant. `migrations_table`:
    the project's django_migrations table when the alias's pending migrations are read (embedded,
    `migrations` on), else None."""
    if wrapper.vendor == "postgresql":
        cursor.execute("SELECT current_user")
        (role,) = cursor.fetchone()
        grantee = '"' + role.replace('"', '""') + '"'
    else:
        cursor.execute("SELECT CURRENT_USER()")
        (role,) = cursor.fetchone()
        user, _, host = role.rpartition("@")
        grantee = f"'{user}'@'{host}'"
    lacking = getattr(probe, "missing_grants", None)
    found = dict(lacking(wrapper, cursor)) if lacking is not None else {}
    if migrations_table is None:
        found.pop(PENDING_MIGRATIONS, None)  # not read here: nothing to grant for it
    by_grant: dict[str, list[str]] = {}
    for signal, grant in found.items():
        by_grant.setdefault(grant, []).append(signal)
    return role, [
        MissingGrant(grant, tuple(signals), statement(wrapper.vendor, grant, grantee))
        for grant, signals in by_grant.items()
    ]


def statement(vendor: str, grant: str, grantee: str) -> str | None:
    """The GRANT statement for a grant as the vendor probe words it: MySQL's as a GRANT takes
    them; of PostgreSQL's, pg_monitor and SELECT on one table (the sequences' grant names only
    a count, and the message carries its words)."""
    if vendor == "mysql":
        return f"GRANT {grant} TO {grantee};"
    if grant.startswith("pg_read_all_stats"):
        return f"GRANT pg_monitor TO {grantee};"
    table = grant.removeprefix("SELECT on ")
    if table != grant and " " not in table:
        return f"GRANT SELECT ON {table} TO {grantee};"
    return None
