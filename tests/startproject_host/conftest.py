"""The startproject host on the session's real PostgreSQL primary and replica."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving import REPO

SETTINGS = ("tests.startproject_host.settings", "tests.startproject_host.settings_tuples")
APP_ROLE = "shop_app"
MONITOR_ROLE = "shop_monitor"


@pytest.fixture(scope="session")
def shop_servers(postgres, postgres_replica) -> dict[str, str]:
    """The shop's database, owned by its application role, and a pg_monitor role for dbhealth,
    on the primary and (streamed) the replica."""
    app_password = postgres.create_role(APP_ROLE, grants=())
    postgres.create_role(MONITOR_ROLE, grants=("pg_monitor",))
    postgres.create_database("shop")
    postgres.sql(f"ALTER DATABASE shop OWNER TO {APP_ROLE}")
    return {
        "SHOP_DB_HOST": postgres.host,
        "SHOP_DB_PORT": str(postgres.port),
        "SHOP_REPLICA_PORT": str(postgres_replica.port),
        "SHOP_DB_USER": APP_ROLE,
        "SHOP_DB_PASSWORD": app_password,
    }


@pytest.fixture
def shop(shop_servers, postgres, tmp_path) -> dict[str, str]:
    """The host's environment as its CI or migration job has it: no monitoring secret."""
    mail = tmp_path / "mail"
    mail.mkdir()
    return {**shop_servers, "SHOP_MAIL_DIR": str(mail)}


@pytest.fixture
def monitored_shop(shop, postgres, postgres_replica) -> dict[str, str]:
    """The host's environment where dbhealth runs: the monitoring secret set, the shop migrated
    (its tables on the replica too) and the monitoring role granted what the README lists."""
    run(shop, SETTINGS[0], "migrate", "--no-input")
    # The README's least privilege: pg_monitor, sequences, which migrations are applied.
    postgres.sql(
        f"GRANT SELECT ON django_migrations TO {MONITOR_ROLE};"
        f" GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {MONITOR_ROLE}",
        dbname="shop",
    )
    postgres_replica.wait_caught_up()
    return {**shop, "SHOP_MONITOR_PASSWORD": postgres.passwords[MONITOR_ROLE]}


def run(
    environment: dict[str, str], settings: str, *arguments: str, expect: int = 0
) -> subprocess.CompletedProcess:
    """`python -m django ARGS` with the host's settings, as its operators run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "DBHEALTH_"))}
    result = subprocess.run(
        [sys.executable, "-m", "django", *arguments],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": settings, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def mails(environment: dict[str, str]) -> list[str]:
    """Subjects of every mail the host has sent (the file backend writes each message)."""
    subjects = []
    for path in sorted(Path(environment["SHOP_MAIL_DIR"]).iterdir()):
        subjects += [
            line.removeprefix("Subject: ")
            for line in path.read_text().splitlines()
            if line.startswith("Subject: ")
        ]
    return subjects
