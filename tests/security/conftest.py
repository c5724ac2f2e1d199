"""One exporter served by `manage.py serve` for the security tests, with aliases failing every way.

Every password in its configuration starts with one unique prefix, so a single search of any
output finds a leak of any of them.
"""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serving import Served, serve
from tests.support.ports import free_port

PLANTED = f"Planted{secrets.token_hex(8)}"


@dataclass
class SecuredService:
    served: Served
    config: Path
    token: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def secured(tmp_path_factory, postgres, mariadb) -> Iterator[SecuredService]:
    directory = tmp_path_factory.mktemp("secured")
    role = f"leakcheck_{secrets.token_hex(4)}"
    postgres.create_role(role, password=f"{PLANTED}good")
    (directory / "pg-password").write_text(f"{PLANTED}fromfile\n")
    (directory / "token").write_text("scrape-token-for-tests\n")
    config = directory / "dbhealth.toml"
    pg = f"127.0.0.1:{postgres.port}"
    config.write_text(
        f"""
[dbhealth]
deadline = 1

[databases.pg_good]
URL = "postgres://{role}:{PLANTED}good@{pg}/app"
[databases.pg_wrong]
URL = "postgres://monitor@{pg}/app"
PASSWORD_FILE = "pg-password"
[databases.pg_dns]
URL = "postgres://monitor:{PLANTED}dns@db.dbhealth-test.invalid/app"
[databases.maria_refused]
URL = "mysql://monitor:{PLANTED}refused@127.0.0.1:{free_port()}/legacy"
[databases.maria_wrong]
ENGINE = "django.db.backends.mysql"
NAME = "legacy"
USER = "monitor"
PASSWORD = "{PLANTED}wrong"
HOST = "127.0.0.1"
PORT = {mariadb.port}
OPTIONS = {{ password = "{PLANTED}options" }}
"""
    )
    env = {
        "DBHEALTH_CONFIG": str(config),
        "DBHEALTH_DATA_DIR": str(directory / "data"),
        "DBHEALTH_AUTH_TOKEN_FILE": str(directory / "token"),
        "DBHEALTH_LOG_LEVEL": "DEBUG",
    }
    with serve(env, directory / "service.log", "/sd") as served:
        yield SecuredService(served=served, config=config, token="scrape-token-for-tests", env=env)
