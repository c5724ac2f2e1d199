"""The host's settings: startproject's defaults (lists), plus dbhealth as the README adds it:
monitoring through a role of its own, whose password comes from the environment (absent in CI
and in migration jobs)."""

from tests.startproject_host.defaults import *  # noqa: F403
from tests.startproject_host.defaults import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "dbhealth"]
DBHEALTH_ALIAS_OPTIONS = {
    "default": {"user": "shop_monitor", "password_env": "SHOP_MONITOR_PASSWORD"},
    "replica": {"user": "shop_monitor", "password_env": "SHOP_MONITOR_PASSWORD", "replica": True},
}
