"""What `django-admin startproject` writes (Django 5.2), made ready for production as its
operators would: DEBUG off, ADMINS set (so server errors are mailed), django-prometheus engines,
a read replica that the code reads with `.using("replica")` and no router. Nothing here knows
about dbhealth: settings.py and settings_tuples.py add it the way the README says.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "startproject-host-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ADMINS = [("Site admins", "admins@shop.example")]
SERVER_EMAIL = "shop@shop.example"
# Mails go to files, one directory per test, to be counted.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ["SHOP_MAIL_DIR"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "tests.startproject_host.shop",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "tests.startproject_host.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "tests.startproject_host.wsgi.application"


def database(port_variable: str) -> dict:
    return {
        "ENGINE": "django_prometheus.db.backends.postgresql",
        "NAME": "shop",
        "USER": os.environ["SHOP_DB_USER"],
        "PASSWORD": os.environ["SHOP_DB_PASSWORD"],
        "HOST": os.environ["SHOP_DB_HOST"],
        "PORT": os.environ[port_variable],
    }


# No DATABASE_ROUTERS: the code sends reads to the replica itself, `.using("replica")`.
DATABASES = {"default": database("SHOP_DB_PORT"), "replica": database("SHOP_REPLICA_PORT")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
