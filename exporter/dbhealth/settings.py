"""Settings of the standalone dbhealth service, read from DBHEALTH_* environment variables.

The databases to watch come from the TOML file named by DBHEALTH_CONFIG; without one the service
watches a demo SQLite database in its data directory so that it runs on a bare machine.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from dbhealth.configuration.environment import env_bool, env_list
from dbhealth.configuration.toml_file import demo_databases, load_config_file
from dbhealth.serving.log_formats import SETTING as LOG_FORMAT_SETTING
from dbhealth.serving.log_formats import formatter_for
from dbhealth.serving.service_settings import HTTP_METRICS, SERVICE_MIDDLEWARE, SERVICE_URLCONF

# Only the demo database is ever written, and never into the installed package: it goes to
# DBHEALTH_DATA_DIR, else var/ under the directory the service was started from.
DATA_DIR = Path(os.environ.get("DBHEALTH_DATA_DIR") or Path.cwd() / "var")

# A generated key is fine: the service keeps no sessions or signed data between restarts.
SECRET_KEY = os.environ.get("DBHEALTH_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = env_bool("DBHEALTH_DEBUG", default=False)
ALLOWED_HOSTS = env_list("DBHEALTH_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = ["django_prometheus", "dbhealth"] if HTTP_METRICS else ["dbhealth"]

MIDDLEWARE = list(SERVICE_MIDDLEWARE)

ROOT_URLCONF = SERVICE_URLCONF
ASGI_APPLICATION = "dbhealth.asgi.application"
WSGI_APPLICATION = "dbhealth.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

_config_path = os.environ.get("DBHEALTH_CONFIG")
# Re-read on SIGHUP (and POST /-/reload when DBHEALTH_RELOAD_ENDPOINT is on): serving/reload.py.
DBHEALTH_CONFIG_FILE = _config_path or None
DBHEALTH_RELOAD_ENDPOINT = env_bool("DBHEALTH_RELOAD_ENDPOINT", default=False)
if _config_path:
    _loaded = load_config_file(Path(_config_path))
    DATABASES = _loaded.databases
    DBHEALTH_DEFAULTS = _loaded.defaults
    DBHEALTH_DISCOVER = _loaded.discover
    DBHEALTH_QUERIES = _loaded.queries
else:
    DATABASES = demo_databases(DATA_DIR)
    DBHEALTH_DEFAULTS = {}
    DBHEALTH_DISCOVER = {}
    DBHEALTH_QUERIES = {}

DBHEALTH_ALIASES = env_list("DBHEALTH_ALIASES", default=None)
# The standalone service is a process of its own: /metrics carries its process registry too.
DBHEALTH_EXPORT_PROCESS_METRICS = True
DBHEALTH_AUTH_TOKEN = os.environ.get("DBHEALTH_AUTH_TOKEN", "")
DBHEALTH_AUTH_TOKEN_FILE = os.environ.get("DBHEALTH_AUTH_TOKEN_FILE", "")
# TLS and basic auth users for `serve`, in the Prometheus exporter-toolkit's web config format.
DBHEALTH_WEB_CONFIG_FILE = os.environ.get("DBHEALTH_WEB_CONFIG_FILE", "")

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

try:
    _log_formatter = formatter_for(os.environ.get(LOG_FORMAT_SETTING, ""))
except ValueError as _exc:
    raise ImproperlyConfigured(str(_exc)) from None

# The service's own logging only: a host project's settings keep their LOGGING.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # DBHEALTH_LOG_FORMAT: plain (default), logfmt or json; times with their UTC offset.
    "formatters": {"line": {"()": _log_formatter}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DBHEALTH_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django logs every 4xx answer (a 404, a 405, a 401 to a client without the token) as
        # a WARNING line: one per request, and any client can send requests. Its 5xx lines stay.
        "django.request": {"level": "ERROR"},
    },
}
