"""`manage.py dbhealth`: a row per alias, JSON on request, exit 2 when a critical alias is down."""

import json
from io import StringIO

import pytest
from dbhealth.exposition.health_rows import AliasReport
from dbhealth.management.commands.dbhealth import Command
from django.core.management import CommandError, call_command

from tests.dbhealth_fixtures import refused_postgres_entry


def run(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("dbhealth", *args, stdout=out, no_color=True)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


@pytest.fixture
def two_aliases(exporter_settings, postgres, mariadb):
    exporter_settings(
        {
            "default": postgres.django_settings("app", "monitor", postgres.monitor_password),
            "legacy_db": mariadb.django_settings("legacy", "monitor", mariadb.monitor_password),
        }
    )


def test_prints_one_row_per_alias_and_exits_zero(two_aliases):
    output, error = run()
    assert error is None
    lines = output.splitlines()
    assert lines[0].split()[:3] == ["ALIAS", "VENDOR", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"default", "legacy_db"}
    assert " up " in rows["default"] and "/50" in rows["default"]
    # No Django project in the standalone service: no column for its findings.
    assert "DJANGO" not in lines[0]


def test_json_output_and_alias_filter(two_aliases):
    output, error = run("--json", "--alias", "legacy_db")
    assert error is None
    body = json.loads(output)
    assert list(body["aliases"]) == ["legacy_db"]
    assert body["aliases"]["legacy_db"]["vendor"] == "mysql"
    assert body["aliases"]["legacy_db"]["migrations_pending"] is None
    assert body["aliases"]["legacy_db"]["unmanaged_tables_missing"] is None


def test_unknown_alias_is_a_usage_error(two_aliases):
    _, error = run("--alias", "nope")
    assert error is not None and error.returncode == 1


def test_a_critical_alias_down_exits_two_and_says_why(exporter_settings, postgres):
    exporter_settings(
        {
            "default": postgres.django_settings("app", "monitor", postgres.monitor_password),
            "gone": refused_postgres_entry(password="planted-secret"),
        }
    )
    output, error = run()
    assert error is not None and error.returncode == 2
    assert "gone" in str(error)
    row = next(line for line in output.splitlines() if line.startswith("gone"))
    assert "DOWN" in row and "refused" in row
    assert "planted-secret" not in output


def report_row(**changes) -> AliasReport:
    """A row as build_report makes it for an alias that is up, embedded in a project."""
    row = AliasReport(
        alias="default",
        vendor="postgresql",
        critical=True,
        up=True,
        reason=None,
        message=None,
        ping_seconds=0.001,
        probe_seconds=0.01,
        size_bytes=1024.0,
        connections=3,
        connections_max=100,
        replica=False,
        replication_lag_seconds=None,
        top_statement=None,
        top_statement_mean_seconds=None,
        statements_problem=None,
        last_success_age_seconds=0.5,
        migrations_pending=0,
        unmanaged_tables_missing=[],
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def table(*rows: AliasReport) -> list[str]:
    out = StringIO()
    command = Command(stdout=out, no_color=True)
    command.write_table(list(rows), django=True)
    return out.getvalue().splitlines()


def test_multi_line_statements_and_messages_keep_one_line_per_alias():
    statement = "SELECT id,\n       name\n  FROM shop_product\n WHERE id = $1"
    lines = table(
        report_row(top_statement=statement, top_statement_mean_seconds=0.002),
        report_row(alias="gone", up=False, reason="refused", message="connection failed:\n  no"),
    )
    assert len(lines) == 3, lines
    assert lines[1].endswith("2.0 ms SELECT id, name FROM shop_product WHERE id = $1"), lines[1]
    assert "refused: connection failed: no" in lines[2]


def test_an_alias_whose_migrations_are_not_read_is_not_up_to_date():
    """`migrations: False`: /healthz says null, and the table says so too."""
    lines = table(report_row(), report_row(alias="legacy_db", migrations_pending=None))
    assert "up to date" in lines[1]
    assert "up to date" not in lines[2] and "migrations not read" in lines[2]
