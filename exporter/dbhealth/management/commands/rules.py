"""`dbhealth rules --out DIR`: write the alert rules, a Prometheus config and an example TOML."""

from importlib import resources
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

# The repository's config/, shipped as the package dbhealth.config_files: (resource, file written).
FILES = (
    ("prometheus/rules.yml", "rules.yml"),
    ("prometheus/prometheus.yml", "prometheus.yml"),
    ("dbhealth.example.toml", "dbhealth.example.toml"),
)


class Command(BaseCommand):
    help = "Write rules.yml, prometheus.yml and an example dbhealth.toml into a directory."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", required=True, type=Path, metavar="DIR", help="directory to write into"
        )

    def handle(self, *args, out: Path, **options) -> None:
        out.mkdir(parents=True, exist_ok=True)
        package = resources.files("dbhealth.config_files")
        for source, name in FILES:
            (out / name).write_bytes(package.joinpath(source).read_bytes())
            self.stdout.write(str(out / name))
