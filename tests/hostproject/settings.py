"""Settings of the sample host project; nothing in here is specific to dbhealth."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "hostproject-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "dbhealth",
    "tests.hostproject.users",
    "tests.hostproject.blog",
    "tests.hostproject.analytics",
    "tests.hostproject.legacy",
    "tests.hostproject.cache",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "tests.hostproject.urls"
WSGI_APPLICATION = "tests.hostproject.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True


def postgresql(name: str, port_variable: str = "HOSTPROJECT_PG_PORT") -> dict:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": os.environ["HOSTPROJECT_PG_USER"],
        "PASSWORD": os.environ["HOSTPROJECT_PG_PASSWORD"],
        "HOST": os.environ["HOSTPROJECT_PG_HOST"],
        "PORT": os.environ[port_variable],
    }


DATABASES = {
    "default": postgresql("main_app_db"),
    "users_db": postgresql("users_database"),
    "analytics_db": postgresql("analytics_database"),
    "legacy_db": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "legacy_system",
        "USER": os.environ["HOSTPROJECT_MARIADB_USER"],
        "PASSWORD": os.environ["HOSTPROJECT_MARIADB_PASSWORD"],
        "HOST": os.environ["HOSTPROJECT_MARIADB_HOST"],
        "PORT": os.environ["HOSTPROJECT_MARIADB_PORT"],
        "OPTIONS": {"charset": "utf8mb4"},
    },
    "cache_db": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["HOSTPROJECT_CACHE_PATH"],
    },
    "read_replica": postgresql("main_app_db", "HOSTPROJECT_REPLICA_PORT"),
}

DATABASE_ROUTERS = [
    "tests.hostproject.routers.ReadReplicaRouter",
    "tests.hostproject.routers.DatabaseRouter",
    "tests.hostproject.routers.AnalyticsRouter",
]
