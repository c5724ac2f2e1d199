"""The `dbhealth` command: the service and its tools without a manage.py.

    dbhealth serve [--bind HOST:PORT]     serve /metrics, /probe, /healthz, /sd, /
    dbhealth check                        report every alias that cannot be probed
    dbhealth probe [--json] [--alias A]   probe every alias once; exit 2 if a critical one is down
    dbhealth dashboards --out DIR         write the Grafana dashboards for the configured aliases
    dbhealth rules --out DIR              write the alert rules, a Prometheus config, an example
    dbhealth --version

The standalone settings (DBHEALTH_* environment variables) are used unless DJANGO_SETTINGS_MODULE
names a host project's.
"""

import os
import sys

# The command's own words mapped to Django's management commands.
SUBCOMMANDS = {
    "serve": "serve",
    "check": "check",
    "probe": "dbhealth",
    "dashboards": "dashboards",
    "rules": "rules",
}


def main(argv: list[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return
    if arguments[0] == "--version":
        from dbhealth.exposition.build_info import package_version

        print(f"dbhealth {package_version()}")
        return
    command = SUBCOMMANDS.get(arguments[0])
    if command is None:
        sys.exit(f"dbhealth: unknown command {arguments[0]!r}; try: {', '.join(SUBCOMMANDS)}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(["dbhealth", command, *arguments[1:]])
    except ImproperlyConfigured as exc:
        sys.exit(f"dbhealth: {exc}")
