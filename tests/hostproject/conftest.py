"""The sample host project on the session's real servers, as its own process would see them."""

import os
import subprocess
import sys

import pytest

from tests.serving import REPO
from tests.support.mariadb import MONITOR_GRANTS

PG_DATABASES = ("main_app_db", "users_database", "analytics_database")
LEGACY_DATABASE = "legacy_system"
LEGACY_USER = "legacy_user"


@pytest.fixture(scope="session")
def host_environment(postgres, postgres_replica, mariadb, tmp_path_factory) -> dict[str, str]:
    """HOSTPROJECT_* variables for tests/hostproject/settings.py, its databases created empty.

    The legacy database already holds the legacy system's `customers` table, as it would.
    """
    for name in PG_DATABASES:
        postgres.create_database(name)
    mariadb.create_database(LEGACY_DATABASE)
    password = mariadb.create_user(
        LEGACY_USER, grants=(*MONITOR_GRANTS, f"ALL PRIVILEGES ON {LEGACY_DATABASE}.*")
    )
    mariadb.sql(
        "CREATE TABLE customers (customer_id INT AUTO_INCREMENT PRIMARY KEY,"
        " customer_name VARCHAR(100), customer_email VARCHAR(100), created_date DATETIME)",
        db=LEGACY_DATABASE,
    )
    postgres_replica.wait_caught_up()
    return {
        "DJANGO_SETTINGS_MODULE": "tests.hostproject.settings",
        "HOSTPROJECT_PG_HOST": postgres.host,
        "HOSTPROJECT_PG_PORT": str(postgres.port),
        "HOSTPROJECT_REPLICA_PORT": str(postgres_replica.port),
        "HOSTPROJECT_PG_USER": postgres.superuser,
        "HOSTPROJECT_PG_PASSWORD": postgres.superuser_password,
        "HOSTPROJECT_MARIADB_HOST": mariadb.host,
        "HOSTPROJECT_MARIADB_PORT": str(mariadb.port),
        "HOSTPROJECT_MARIADB_USER": LEGACY_USER,
        "HOSTPROJECT_MARIADB_PASSWORD": password,
        "HOSTPROJECT_CACHE_PATH": str(tmp_path_factory.mktemp("hostproject") / "cache.sqlite3"),
    }


def manage(environment: dict[str, str], *arguments: str) -> str:
    """`python -m django ...` in the host project, as its operators would run it."""
    result = subprocess.run(
        [sys.executable, "-m", "django", *arguments],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **environment},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
