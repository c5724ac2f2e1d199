"""`manage.py dashboards --out DIR`: write the Grafana dashboards for the configured aliases."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from dbhealth.configuration.targets import load_targets
from dbhealth.generators.dashboards import DashboardAlias, build_dashboards


class Command(BaseCommand):
    help = "Write Grafana dashboards (overview.json and alias-<alias>.json) into a directory."
    # Dashboards only need alias names, vendors and roles; a broken alias still gets one.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", required=True, type=Path, metavar="DIR", help="directory to write into"
        )

    def handle(self, *args, out: Path, **options) -> None:
        aliases = [
            DashboardAlias(alias=target.alias, vendor=target.vendor, replica=target.replica)
            for target in load_targets()
        ]
        out.mkdir(parents=True, exist_ok=True)
        for name, dashboard in build_dashboards(aliases).items():
            (out / name).write_text(json.dumps(dashboard, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(str(out / name))
