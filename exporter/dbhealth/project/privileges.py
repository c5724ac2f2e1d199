"""Which grants the probe's role lacks on an alias, and which signals stay absent for it.

A role without a privilege is never an error for the probe: what it cannot see is absent. That
is right for the metrics and wrong for an operator who set the role up from the README and
wonders why pending migrations never show: `check --deploy --database ALIAS` says, per alias,
what is missing and the statement that grants it (dbhealth.project.database_checks).

What each signal needs is vendor knowledge, and the vendor probes name it
(`PostgreSQLProbe.missing_grants`, `MySQLProbe.signals_lacking_privilege`: signal -> grant).
This module adds what only the Django project knows (whether django_migrations is read on the
alias at all) and groups the signals by the grant they wait for.
"""

from dataclasses import dataclass
from typing import Any

from dbhealth.probing.vendors import VendorProbe

# What the vendor probes call the signal django_migrations serves.
PENDING_MIGRATIONS = "pending migrations"
# The vendor probes' methods naming what the connected role lacks (signal -> grant).
LACKING_METHODS = ("missing_grants", "signals_lacking_privilege")
MYSQL_TABLE_DENIED = 1142
MYSQL_NO_SUCH_TABLE = 1146


@dataclass(frozen=True)
class MissingGrant:
    missing: str  # the privilege, in the vendor's words
    signals: tuple[str, ...]  # what stays absent without it
    statement: str | None  # the SQL that grants it, where it can be written out


def missing_grants(
    probe: VendorProbe, wrapper: Any, cursor: Any, migrations_table: str | None
) -> tuple[str, list[MissingGrant]]:
    """(the role, what it lacks) on this connection, one entry per grant. `migrations_table`:
    the project's django_migrations table when the alias's pending migrations are read (embedded,
    `migrations` on), else None."""
    lacking = next((getattr(probe, name) for name in LACKING_METHODS if hasattr(probe, name)), None)
    found: dict[str, str] = dict(lacking(wrapper, cursor)) if lacking is not None else {}
    if wrapper.vendor == "postgresql":
        cursor.execute("SELECT current_user")
        (role,) = cursor.fetchone()
        grantee = '"' + role.replace('"', '""') + '"'
    else:
        cursor.execute("SELECT CURRENT_USER()")
        (role,) = cursor.fetchone()
        user, _, host = role.rpartition("@")
        grantee = f"'{user}'@'{host}'"
    if migrations_table is None:
        found.pop(PENDING_MIGRATIONS, None)  # not read here: nothing to grant for it
    elif wrapper.vendor == "mysql" and mysql_denied(cursor, migrations_table):
        schema = wrapper.settings_dict["NAME"].replace("`", "``")
        found[PENDING_MIGRATIONS] = f"SELECT ON `{schema}`.{migrations_table}"
    by_grant: dict[str, list[str]] = {}
    for signal, grant in found.items():
        by_grant.setdefault(grant, []).append(signal)
    return role, [
        MissingGrant(grant, tuple(signals), statement(wrapper.vendor, grant, grantee))
        for grant, signals in by_grant.items()
    ]


def statement(vendor: str, grant: str, grantee: str) -> str | None:
    """The GRANT statement for a grant as the vendor probe words it. MySQL's are written as a
    GRANT takes them; PostgreSQL's as what to grant, of which two are written out here."""
    if vendor == "mysql":
        return f"GRANT {grant} TO {grantee};"
    if grant.startswith("pg_read_all_stats"):
        return f"GRANT pg_monitor TO {grantee};"
    table = grant.removeprefix("SELECT on ")
    if table != grant and " " not in table:
        return f"GRANT SELECT ON {table} TO {grantee};"
    return None


def mysql_denied(cursor: Any, table: str) -> bool:
    """True when reading `table` is refused; one that does not exist is not refused. Reads no
    row (LIMIT 0): the privilege is checked when the table is opened."""
    try:
        cursor.execute(f"SELECT 1 FROM {table} LIMIT 0")  # the name comes from Django's code
        cursor.fetchall()
    except Exception as exc:
        code = mysql_error_number(exc)
        if code == MYSQL_TABLE_DENIED:
            return True
        if code == MYSQL_NO_SUCH_TABLE:
            return False
        raise
    return False


def mysql_error_number(error: BaseException) -> int | None:
    """Django wraps the driver's exception; the driver's carries the number."""
    arguments = getattr(error.__cause__ or error, "args", ())
    return arguments[0] if arguments and isinstance(arguments[0], int) else None
