"""The `check` findings of the Django project (dbhealth.project.database_checks), without servers.

Plain `check` passes no databases and must connect to nothing; the standalone service has no
project and nothing to find; the words come from the same report rows as /healthz.
"""

import pytest
from dbhealth.configuration.targets import build_target
from dbhealth.exposition.health_rows import AliasReport, build_report
from dbhealth.probing.service import ProbeService
from dbhealth.probing.state import AliasState, ProjectReading, ServiceState, UnmanagedTable
from dbhealth.project import database_checks as project_checks
from dbhealth.project.database_checks import check_project_on_databases, findings
from dbhealth.project.insight import ProjectLayout, UnmanagedModel

from tests.dbhealth_fixtures import refused_postgres_entry


@pytest.fixture
def no_probing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the check probed a database")

    monkeypatch.setattr(ProbeService, "snapshot", refuse)


def test_plain_check_reads_no_database(exporter_settings, no_probing, monkeypatch):
    exporter_settings({"gone": refused_postgres_entry(password="unused")})
    # As embedded: a project with something to find on that alias.
    legacy = UnmanagedModel("legacy", "LegacyCustomer", "customers", ("gone",))
    layout = ProjectLayout(migrations=(), routes=(), unmanaged=(legacy,), models_by_table={})
    monkeypatch.setattr(project_checks, "project_layout", lambda: layout)
    assert check_project_on_databases(databases=None) == []


def test_the_standalone_service_has_no_project_to_check(exporter_settings, no_probing):
    exporter_settings({"gone": refused_postgres_entry(password="unused")})
    assert check_project_on_databases(databases=["gone"]) == []


def row(state: AliasState) -> AliasReport:
    target = build_target("default", {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}, {})
    return build_report((target,), ServiceState(aliases={"default": state})).aliases[0]


def test_pending_migrations_are_one_warning_per_alias():
    reading = ProjectReading(migrations_pending=2, unmanaged_tables=[])
    [message] = findings(row(AliasState(up=True, project=reading)))
    assert message.id == "dbhealth.W101"
    assert message.msg == (
        "database alias 'default': 2 migrations that the routers allow there are not applied"
    )
    assert "manage.py migrate --database default" in message.hint


def test_an_alias_as_the_project_expects_has_no_finding():
    present = UnmanagedTable(app_label="legacy", model="LegacyCustomer", table="c", present=True)
    reading = ProjectReading(migrations_pending=0, unmanaged_tables=[present])
    assert findings(row(AliasState(up=True, project=reading))) == []


def test_an_alias_that_cannot_be_read_says_why():
    down = AliasState(up=False, reason="refused", message="connection refused")
    [message] = findings(row(down))
    assert message.id == "dbhealth.W103"
    assert message.msg.endswith(
        "could not be checked for pending migrations and unmanaged tables"
        " (refused: connection refused)"
    )
