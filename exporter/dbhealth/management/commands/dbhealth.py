"""`manage.py dbhealth`: probe every alias now, one row each; exit 2 if a critical one is down."""

import json as json_module

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dbhealth.configuration.targets import load_targets
from dbhealth.exposition.health_rows import AliasReport, build_report
from dbhealth.probing.service import current_state

EXIT_USAGE = 1
EXIT_CRITICAL_DOWN = 2
COLUMNS = (
    "ALIAS",
    "VENDOR",
    "STATUS",
    "REASON",
    "PING",
    "SIZE",
    "CONNECTIONS",
    "LAG",
    "TOP STATEMENT",
)
# Embedded in a project, before TOP STATEMENT (kept last: it is not padded).
DJANGO_COLUMN = "DJANGO"


class Command(BaseCommand):
    help = "Probe every configured database alias and print its health."
    # A misconfigured alias is a row in the output, not a reason to refuse to run.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument(
            "--alias", action="append", metavar="NAME", help="probe only this alias (repeatable)"
        )

    def handle(self, *args, json: bool = False, alias: list[str] | None = None, **options) -> None:
        known = {target.alias for target in load_targets()}
        unknown = sorted(set(alias or ()) - known)
        if unknown:
            raise CommandError(f"unknown alias: {', '.join(unknown)}", returncode=EXIT_USAGE)
        targets, state = current_state(alias)
        report = build_report(targets, state)
        if json:
            self.stdout.write(dumps(report.as_dict()))
        else:
            self.write_table(report.aliases, django=report.project_known)
        if not report.healthy:
            down = [row.alias for row in report.aliases if row.critical and not row.up]
            raise CommandError(
                f"critical alias down: {', '.join(down)}", returncode=EXIT_CRITICAL_DOWN
            )

    def write_table(self, rows: list[AliasReport], django: bool) -> None:
        """`django`: add the project's findings per alias (pending migrations, missing tables)."""
        header = (*COLUMNS[:-1], DJANGO_COLUMN, COLUMNS[-1]) if django else COLUMNS
        table = [header] + [table_row(row, django) for row in rows]
        widths = [max(len(line[index]) for line in table) for index in range(len(header) - 1)]
        for number, line in enumerate(table):
            text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
            text = f"{text}  {line[-1]}".rstrip()
            if number == 0:
                self.stdout.write(self.style.MIGRATE_HEADING(text))
            elif rows[number - 1].up:
                self.stdout.write(self.style.SUCCESS(text))
            else:
                self.stdout.write(self.style.ERROR(text))


def dumps(data: dict) -> str:
    return json_module.dumps(data, indent=2, sort_keys=True)


def table_row(row: AliasReport, django: bool = False) -> tuple[str, ...]:
    status = "up" if row.up else "DOWN"
    if not row.critical:
        status += " (non-critical)"
    connections = "-"
    if row.connections is not None:
        connections = f"{row.connections}/{row.connections_max or '?'}"
    reason = "-" if row.up else one_line(f"{row.reason}: {row.message or ''}")
    top = "-"
    if row.top_statement:
        top = f"{row.top_statement_mean_seconds * 1000:.1f} ms {one_line(row.top_statement)[:60]}"
    cells = (
        row.alias,
        row.vendor,
        status,
        reason[:80],
        seconds_text(row.ping_seconds),
        bytes_text(row.size_bytes),
        connections,
        seconds_text(row.replication_lag_seconds) if row.replica else "-",
    )
    return (*cells, findings_text(row), top) if django else (*cells, top)


def one_line(text: str) -> str:
    """Statement texts and driver messages span lines; a table row must not."""
    return " ".join(text.split())


def findings_text(row: AliasReport) -> str:
    if row.unmanaged_tables_missing is None:
        return "-"
    return "; ".join(row.findings) or "up to date"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def bytes_text(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"
