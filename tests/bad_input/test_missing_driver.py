"""A driver that is not installed: the alias is down with reason `config` naming what to install."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Run where MySQLdb cannot be imported, as on a machine where mysqlclient was never built.
SCRIPT = """
import os, sys
sys.modules["MySQLdb"] = None
os.environ["DJANGO_SETTINGS_MODULE"] = "dbhealth.settings"
import django
django.setup()
from dbhealth.configuration.targets import build_target
print(build_target("legacy", {"ENGINE": "django.db.backends.mysql", "NAME": "legacy"}, {}).problem)
"""


def test_a_missing_mysql_driver_names_the_package_to_install(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "DBHEALTH_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    problem = result.stdout.strip()
    assert problem.startswith("ENGINE 'django.db.backends.mysql' cannot be loaded")
    assert "pip install 'dbhealth[mysql]'" in problem
    assert "libmariadb-dev" in problem
    assert "\n" not in problem
