"""ASGI entry point: `uvicorn dbhealth.asgi:application` (or any ASGI server) serves exactly what
`manage.py serve` serves, with the same web configuration in force.

It is the service's own application (dbhealth.serving.application.service_application): the
exporter's URLs and middleware, DBHEALTH_WEB_CONFIG_FILE's basic_auth_users and headers, the
token settings, and the scrape path. A web configuration with tls_server_config refuses to start:
TLS is the server's side of the socket, which only `serve` sets up from that file (an outside
server would serve plain HTTP where the file asks for TLS). `serve` is still the way to run the
service: it adds the deadline on request heads and the connection limit (serving/server.py).
Run exactly one process, since that process owns every database connection and all probe state.
"""

import os
import sys

import django
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")


def build_application():
    from dbhealth.serving.application import service_application
    from dbhealth.serving.web_config import SETTING, configured_web_config

    django.setup(set_prefix=False)
    web = configured_web_config()
    if web is not None and web.tls is not None:
        raise ImproperlyConfigured(
            f"{SETTING} {web.path} configures TLS, which only `dbhealth serve` (manage.py serve) "
            "serves from that file: run it instead of another ASGI server"
        )
    return service_application(web)


try:
    application = build_application()
except ImproperlyConfigured as exc:
    # One line naming the file, alias and key; a traceback would only bury it.
    print(f"dbhealth: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
