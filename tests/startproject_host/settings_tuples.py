"""The same host written as older projects are, with tuples (Django's settings were tuples
until 1.9, and many projects kept them), plus dbhealth in the README's words, unchanged."""

from tests.startproject_host import defaults
from tests.startproject_host.defaults import *  # noqa: F403

INSTALLED_APPS = tuple(defaults.INSTALLED_APPS)
MIDDLEWARE = tuple(defaults.MIDDLEWARE)
ADMINS = tuple(defaults.ADMINS)
ALLOWED_HOSTS = tuple(defaults.ALLOWED_HOSTS)

INSTALLED_APPS = [*INSTALLED_APPS, "dbhealth"]
DBHEALTH_ALIAS_OPTIONS = {
    "default": {"user": "shop_monitor", "password_env": "SHOP_MONITOR_PASSWORD"},
    "replica": {"user": "shop_monitor", "password_env": "SHOP_MONITOR_PASSWORD", "replica": True},
}
