"""Suite-wide set-up: Django configured on the standalone settings, real-server fixtures loaded."""

import atexit
import os
import shutil
import tempfile

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")
if "DBHEALTH_DATA_DIR" not in os.environ:
    data_dir = tempfile.mkdtemp(prefix="dbhealth-test-data-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    os.environ["DBHEALTH_DATA_DIR"] = data_dir
django.setup()

pytest_plugins = ["tests.support.pytest_plugin", "tests.dbhealth_fixtures"]
