"""ASGI entry point of the standalone service: `manage.py serve` serves it in-process.

Any ASGI server can serve it too (`uvicorn dbhealth.asgi:application`); run exactly one process,
since that process owns every database connection and all probe state (see dbhealth.serving.server).
"""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")
try:
    application = get_asgi_application()
except ImproperlyConfigured as exc:
    # One line naming the file, alias and key; a traceback would only bury it.
    print(f"dbhealth: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
