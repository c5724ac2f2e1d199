"""WSGI entry point for embedding behind a WSGI server: `gunicorn dbhealth.wsgi`.

Each WSGI worker process probes on its own; `manage.py serve` (dbhealth.asgi) is the service.
"""

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

# gunicorn's "App failed to load": the master stops instead of respawning workers that cannot boot.
APP_LOAD_ERROR = 4

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # One line naming the file, alias and key; a traceback would only bury it.
    print(f"dbhealth: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None
