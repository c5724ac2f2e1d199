"""`manage.py check --database ALIAS`: what the Django project expects of an alias and misses.

Pending migrations and missing tables of unmanaged models are facts about a database, so finding
them connects. These checks are tagged `database` and, like Django's own database checks, do
nothing unless the command names databases: plain `check` (and `serve`, `runserver`) never
connects; `check --database ALIAS` reads the aliases it names. Commands that pass their databases
run them too, as they run Django's: `migrate --database ALIAS` (which then applies what it
reports) and `test` (on the test databases).

The reading is the probe's (dbhealth.project.insight), from a probe service of the check's
own: a read-only connection per alias under the alias's deadline, never the project's, closed
when the check returns (so a `test` run can still drop its test databases afterwards).
"""

from collections.abc import Iterable

from django.apps import apps
from django.core import checks
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import load_backend

from dbhealth.configuration.targets import Target, load_targets, service_options
from dbhealth.exposition.health_rows import AliasReport, build_report
from dbhealth.probing.service import ProbeService
from dbhealth.probing.vendors import PROBES
from dbhealth.project.insight import project_layout
from dbhealth.project.privileges import missing_grants


# Tagged `database` like Django's own database checks, so that plain `check` never connects, and
# deploy-only, so that `migrate --database` and a host's test runs (which run the database checks
# on their test databases) never probe: `check --deploy --database ALIAS` runs them.
@checks.register(checks.Tags.database, deploy=True)
def check_project_on_databases(
    app_configs=None, databases: Iterable[str] | None = None, **kwargs
) -> list[checks.CheckMessage]:
    if not databases or project_layout().empty:
        return []
    # An alias with a configuration problem is reported by check_targets (dbhealth.W003).
    targets = tuple(t for t in load_targets() if t.alias in databases and t.problem is None)
    if not targets:
        return []
    service = ProbeService(targets, service_options())
    try:
        state = service.snapshot(targets)
    finally:
        service.close()
    messages: list[checks.CheckMessage] = []
    for row in build_report(targets, state).aliases:
        messages += findings(row)
    return messages


def findings(row: AliasReport) -> list[checks.CheckMessage]:
    if row.unmanaged_tables_missing is None:
        cause = f"{row.reason}: {row.message}" if not row.up else "reading the project failed"
        return [
            checks.Warning(
                f"database alias {row.alias!r} could not be checked for pending migrations and "
                f"unmanaged tables ({cause})",
                id="dbhealth.W103",
            )
        ]
    messages: list[checks.CheckMessage] = []
    if row.migrations_pending:
        plural, verb = ("", "is") if row.migrations_pending == 1 else ("s", "are")
        messages.append(
            checks.Warning(
                f"database alias {row.alias!r}: {row.migrations_pending} migration{plural} "
                f"that the routers allow there {verb} not applied",
                hint=f"Run `manage.py migrate --database {row.alias}`; "
                f"`manage.py showmigrations --database {row.alias}` lists what is applied.",
                id="dbhealth.W101",
            )
        )
    for table in row.unmanaged_tables_missing:
        messages.append(
            checks.Warning(
                f"database alias {row.alias!r}: table {table.table!r} of unmanaged model "
                f"{table.app_label}.{table.model} is missing",
                hint="Django never creates the table of a managed = False model: create it on "
                "this database, or route the model to the database that has it.",
                obj=apps.get_model(table.app_label, table.model),
                id="dbhealth.W102",
            )
        )
    return messages


# Vendors whose roles hold grants (SQLite's access is the file's, which a probe names itself).
GRANTED = {"postgresql", "mysql"}


# Deploy-only and tagged `database`, like the project check above: it connects.
@checks.register(checks.Tags.database, deploy=True)
def check_grants_on_databases(
    app_configs=None, databases: Iterable[str] | None = None, **kwargs
) -> list[checks.CheckMessage]:
    """Per alias named, each grant its probe role lacks, the signals absent for want of it and
    the statement that grants it."""
    if not databases:
        return []
    messages: list[checks.CheckMessage] = []
    for target in load_targets():
        if target.alias in databases and target.problem is None and target.vendor in GRANTED:
            messages += grant_findings(target)
    return messages


def grant_findings(target: Target) -> list[checks.CheckMessage]:
    """On a connection of its own, made as the probe makes it (monitoring role, read-only,
    the alias's deadline), closed before returning."""
    layout = project_layout()
    reads_migrations = target.migrations and bool(layout.migrations)
    migrations_table = MigrationRecorder.Migration._meta.db_table if reads_migrations else None
    probe = PROBES[target.vendor]
    wrapper = None
    try:
        settings = probe.connection_settings(target.settings, target.deadline)
        wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, target.alias)
        wrapper.ensure_connection()
        probe.prepare_connection(wrapper, target.deadline)
        with wrapper.cursor() as cursor:
            role, missing = missing_grants(probe, wrapper, cursor, migrations_table)
    except Exception as exc:
        reason = probe.classify(exc) or "error"
        return [
            checks.Warning(
                f"database alias {target.alias!r}: its probe role's grants could not be read "
                f"({reason}: {type(exc).__name__})",
                id="dbhealth.W111",
            )
        ]
    finally:
        if wrapper is not None:
            wrapper.close()
    return [
        checks.Warning(
            f"database alias {target.alias!r}: role {role} lacks {grant.missing}, so these are "
            f"absent: {', '.join(grant.signals)}",
            hint=grant.statement,
            id="dbhealth.W110",
        )
        for grant in missing
    ]
