"""WSGI entry point: `gunicorn dbhealth.wsgi` (and `manage.py runserver`, through
WSGI_APPLICATION) serve the exporter's URLs with the same web configuration in force as
`manage.py serve`: DBHEALTH_WEB_CONFIG_FILE's basic_auth_users and headers, and the token
settings. A web configuration with tls_server_config refuses to start: only `serve` sets up TLS
from that file, and a WSGI server would serve plain HTTP where the file asks for TLS.

`serve` is the way to run the service (dbhealth.serving.server says why). Under a WSGI server run
one worker process: each process probes on its own, with its own connections and counters.
"""

import os
import sys

import django
from django.core.exceptions import ImproperlyConfigured

# gunicorn's "App failed to load": the master stops instead of respawning workers that cannot boot.
APP_LOAD_ERROR = 4

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")


class WebConfigHeaders:
    """WSGI middleware: the web configuration's response headers on every response, replacing
    any of the same name (as serving.application.ResponseHeaders does for ASGI)."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        from dbhealth.serving.web_config import active_headers

        headers = list(active_headers())
        names = {name.lower() for name, _ in headers}

        def start_with_headers(status, response_headers, exc_info=None):
            kept = [(n, v) for n, v in response_headers if n.lower() not in names]
            return start_response(status, kept + headers, exc_info)

        return self.app(environ, start_with_headers if headers else start_response)


def build_application():
    from django.core.wsgi import get_wsgi_application

    from dbhealth.serving import web_config
    from dbhealth.serving.application import apply_service_settings

    django.setup(set_prefix=False)
    web = web_config.configured_web_config()
    if web is not None and web.tls is not None:
        raise ImproperlyConfigured(
            f"{web_config.SETTING} {web.path} configures TLS, which only `dbhealth serve` "
            "(manage.py serve) serves from that file: run it instead of a WSGI server"
        )
    apply_service_settings()
    web_config.activate(web)
    application = get_wsgi_application()
    return WebConfigHeaders(application) if web is not None else application


try:
    application = build_application()
except ImproperlyConfigured as exc:
    # One line naming the file, alias and key; a traceback would only bury it.
    print(f"dbhealth: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None
