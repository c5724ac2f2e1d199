"""Suite-wide set-up: Django configured on the standalone settings, real-server fixtures loaded."""

import os
import tempfile

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DBHEALTH_DATA_DIR", tempfile.mkdtemp(prefix="dbhealth-test-data-"))
django.setup()

pytest_plugins = ["tests.support.pytest_plugin", "tests.exporter_fixtures"]
