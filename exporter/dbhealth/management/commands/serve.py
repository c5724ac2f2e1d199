"""`manage.py serve`: the dbhealth service in this one process (see dbhealth.serving.server)."""

import contextlib
import logging
import os
import sys

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dbhealth.configuration.demo import demo_database
from dbhealth.exposition.build_info import package_version
from dbhealth.serving.reload import install_sighup_handler
from dbhealth.serving.service_settings import DEFAULT_BIND, server_problem


def default_bind() -> str:
    return os.environ.get("DBHEALTH_BIND") or getattr(settings, "DBHEALTH_BIND", "") or DEFAULT_BIND


class Command(BaseCommand):
    help = (
        "Serve dbhealth's endpoints (/metrics, /probe, /healthz, /sd, /) from this process; over "
        "TLS and with basic auth users when $DBHEALTH_WEB_CONFIG_FILE names a Prometheus "
        "exporter-toolkit web configuration file."
    )
    # Run by handle() itself: the host's checks on its own settings, before the service's swap.
    requires_system_checks: list[str] = []

    def get_version(self) -> str:
        """`serve --version`: dbhealth's version (Django's own command would print Django's)."""
        return f"dbhealth {package_version()}"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--bind",
            metavar="HOST:PORT",
            help=f"address to listen on, [::]:PORT for IPv6 (default: $DBHEALTH_BIND, the "
            f"DBHEALTH_BIND setting, else {DEFAULT_BIND})",
        )
        parser.add_argument(
            "--access-log", action="store_true", help="log one line per request (uvicorn.access)"
        )

    def handle(self, *args, bind: str | None = None, access_log: bool = False, **options) -> None:
        # uvicorn is the `serve` extra: the rest of dbhealth installs beside a host's own pin.
        problem = server_problem()
        if problem is not None:
            raise CommandError(problem)
        from dbhealth.serving.server import build_server, parse_bind

        try:
            host, port = parse_bind(bind or default_bind())
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        # The host's checks on the host's settings, before the service's URLs and middleware
        # replace its own (build_server): the admin's checks of MIDDLEWARE (admin.E408-E410) are
        # the host's to pass, and the host passes them in its own processes.
        self.report_checks(checks.run_checks(databases=[]))
        try:
            server = build_server(host, port, access_log=access_log)
        except ImproperlyConfigured as exc:
            # One line naming the file and the problem, under manage.py and `python -m django`.
            self.stderr.write(f"dbhealth: {exc}")
            sys.exit(1)
        # Then what the swap brought in: the service's own URLconf.
        self.report_checks(checks.run_checks(tags=[checks.Tags.urls], databases=[]))
        demo = demo_database()
        if demo is not None:
            logging.getLogger("dbhealth").warning(
                "no configuration (DBHEALTH_CONFIG is not set): watching only the demo SQLite "
                'database %s; dbhealth_build_info says demo="true" while this lasts',
                demo,
            )
        install_sighup_handler()
        # On SIGINT uvicorn shuts down, then re-raises the signal: no traceback for that.
        with contextlib.suppress(KeyboardInterrupt):
            server.run()

    def report_checks(self, found: list[checks.CheckMessage]) -> None:
        """Every system check message on stderr; stop for errors. An alias that cannot be probed
        is a warning (dbhealth.W003): it is served as down with reason `config`.

        No databases: the checks connect to none, so a server that is down is served as down.
        Django 6.1 runs the model checks on every alias when given None (its MySQL backend
        connects there to learn the server's version) and would stop the service instead.
        """
        issues = [issue for issue in found if not issue.is_silenced()]
        for issue in issues:
            self.stderr.write(f"system check {logging.getLevelName(issue.level)}: {issue}")
        blocking = [issue for issue in issues if issue.is_serious()]
        if blocking:
            raise CommandError(f"not serving: {len(blocking)} system check error(s) above")
