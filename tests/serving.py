"""The exporter served for real: gunicorn in a child process, as users run it."""

import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.mariadb import MariaDBServer
from tests.support.ports import free_port
from tests.support.postgres import PostgresReplica, PostgresServer

REPO = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
START_TIMEOUT = 30.0


@dataclass
class Served:
    url: str
    address: str
    log: Path

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@contextmanager
def gunicorn(
    wsgi: str, env: dict[str, str], log: Path, ready_path: str, workers: int = 2
) -> Iterator[Served]:
    """Serve `wsgi` on a free port for the block; ready once `ready_path` (no probe) answers."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(GUNICORN), wsgi, "-b", address, "--workers", str(workers), "--threads", "4"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Served(url=f"http://{address}", address=address, log=log)
    try:
        give_up_at = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-4000:]}")
            try:
                served.get(ready_path, timeout=1)
                break
            except OSError:
                pass
            if time.monotonic() > give_up_at:
                raise RuntimeError(f"gunicorn did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_reference_config(
    directory: Path,
    postgres: PostgresServer,
    replica: PostgresReplica,
    mariadb: MariaDBServer,
    extra: str = "",
    defaults: str = "",
) -> Path:
    """The six aliases of config/databases.example.toml on the session servers, plus `extra`.

    `extra` is more TOML (e.g. a `[databases.<alias>]` table on a dedicated server) and
    `defaults` more `[dbhealth]` keys; the monitor password of `postgres` is in `pg-password`
    beside the file.
    """
    cache = directory / "cache.sqlite3"
    sqlite3.connect(cache).close()
    (directory / "pg-password").write_text(postgres.monitor_password)
    pg = f"127.0.0.1:{postgres.port}"
    config = directory / "dbhealth.toml"
    config.write_text(
        f"""
[dbhealth]
deadline = 2
{defaults}

[databases.default]
URL = "postgres://monitor@{pg}/app"
PASSWORD_FILE = "pg-password"
[databases.users_db]
URL = "postgres://monitor@{pg}/users"
PASSWORD_FILE = "pg-password"
[databases.analytics_db]
URL = "postgres://monitor@{pg}/analytics"
PASSWORD_FILE = "pg-password"
DBHEALTH = {{ critical = false }}
[databases.read_replica]
URL = "postgres://monitor@127.0.0.1:{replica.port}/app"
PASSWORD_FILE = "pg-password"
DBHEALTH = {{ replica = true }}
[databases.legacy_db]
URL = "mysql://monitor:{mariadb.monitor_password}@127.0.0.1:{mariadb.port}/legacy"
{extra}
[databases]
cache_db = "sqlite:///{cache}"
"""
    )
    return config
