"""A broken variant: the session middleware the admin needs is missing (admin.E410), so the
host's own `check` fails, and `serve` must not hide that."""

from tests.startproject_host.settings import *  # noqa: F403
from tests.startproject_host.settings import MIDDLEWARE

MIDDLEWARE = [m for m in MIDDLEWARE if m != "django.contrib.sessions.middleware.SessionMiddleware"]
