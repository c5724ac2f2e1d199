"""The exporter served for real, in a child process, as users run it.

`serve` runs the service as `manage.py serve` (one process, uvicorn); `gunicorn` serves a WSGI
application, as a host project embedding the exporter does. `SlowClients` holds idle and
slowloris connections open against either. `manage` runs a manage.py command that ends by itself.
"""

import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
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
STOP_TIMEOUT = 30.0


@dataclass
class Served:
    url: str
    address: str
    log: Path
    process: subprocess.Popen
    # For an https service: the client side (trusted CA, client certificate) of every get().
    ssl_context: ssl.SSLContext | None = None

    def get(
        self, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(
                request, timeout=timeout, context=self.ssl_context
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@contextmanager
def served_process(
    name: str,
    command: list[str],
    env: dict[str, str],
    log: Path,
    address: str,
    ready_path: str,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[Served]:
    """Run `command` for the block; ready once `ready_path` answers (any status) at `address`,
    over https with `ssl_context` when one is given."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    scheme = "http" if ssl_context is None else "https"
    served = Served(
        url=f"{scheme}://{address}",
        address=address,
        log=log,
        process=process,
        ssl_context=ssl_context,
    )
    try:
        give_up_at = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text()[-4000:]}")
            try:
                served.get(ready_path, timeout=1)
                break
            except OSError:
                pass
            if time.monotonic() > give_up_at:
                raise RuntimeError(f"{name} did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def manage(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in the repository with exactly `env`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def serve(
    env: dict[str, str],
    log: Path,
    ready_path: str,
    settings_module: str = "dbhealth.settings",
    access_log: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    python: list[str] | None = None,
) -> Iterator[Served]:
    """The service on a free port for the block: `manage.py serve` with the standalone settings,
    `python -m django serve` with any other settings module (a host project's). Pass the client
    `ssl_context` when `env` gives the service TLS (DBHEALTH_WEB_CONFIG_FILE): it is then asked
    over https, for readiness too. `python` replaces the interpreter's command (a wrapper that
    takes a Python command line after its own arguments)."""
    address = f"127.0.0.1:{free_port()}"
    interpreter = python or [sys.executable]
    if settings_module == "dbhealth.settings":
        command = [*interpreter, "manage.py", "serve", "--bind", address]
    else:
        command = [*interpreter, "-m", "django", "serve", "--bind", address]
    if access_log:
        command.append("--access-log")
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        **env,
        "DJANGO_SETTINGS_MODULE": settings_module,
    }
    with served_process(
        "serve", command, environment, log, address, ready_path, ssl_context
    ) as served:
        yield served


@contextmanager
def gunicorn(
    wsgi: str, env: dict[str, str], log: Path, ready_path: str, workers: int = 2
) -> Iterator[Served]:
    """Serve `wsgi` under gunicorn on a free port for the block, as a host project would."""
    address = f"127.0.0.1:{free_port()}"
    command = [str(GUNICORN), wsgi, "-b", address, "--workers", str(workers), "--threads", "4"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    with served_process("gunicorn", command, environment, log, address, ready_path) as served:
        yield served


class SlowClients:
    """Connections that hold a server's attention without ever finishing a request.

    `idle` connections never send a byte; `slow` ones ("slowloris") send a request line and one
    header, then one more header line every `interval` seconds from a background thread, and never
    the blank line that would end the request. Use as a context manager: every socket is closed
    and the thread stopped on exit, and the thread stops by itself after `max_seconds`.
    """

    def __init__(
        self,
        address: str,
        idle: int = 200,
        slow: int = 8,
        interval: float = 2.0,
        max_seconds: float = 300.0,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.target = (host, int(port))
        self.idle_count, self.slow_count = idle, slow
        self.interval, self.max_seconds = interval, max_seconds
        self.idle: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        self.lines_sent = [0] * slow  # header lines sent after the first, per slow connection
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="slowloris", daemon=True)

    def __enter__(self) -> "SlowClients":
        try:
            for _ in range(self.idle_count):
                self.idle.append(socket.create_connection(self.target, timeout=10))
            for number in range(self.slow_count):
                sock = socket.create_connection(self.target, timeout=10)
                self.slow.append(sock)
                sock.sendall(f"GET /metrics?slow={number} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        except BaseException:
            self.close()
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _feed(self) -> None:
        give_up_at = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.interval) and time.monotonic() < give_up_at:
            for number, sock in enumerate(self.slow):
                try:
                    sock.sendall(f"X-Slow-{self.lines_sent[number]}: {number}\r\n".encode())
                except OSError as error:
                    self.errors.append(f"slow connection {number}: {error}")
                else:
                    self.lines_sent[number] += 1

    def still_open(self) -> tuple[int, int]:
        """How many idle and slow connections the server has neither closed nor answered."""
        return (sum(map(waiting, self.idle)), sum(map(waiting, self.slow)))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 10)
        for sock in self.idle + self.slow:
            sock.close()


def waiting(sock: socket.socket) -> bool:
    """True while the peer has neither sent anything on `sock` nor closed it."""
    previous = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer, or b"" for a closed connection
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(previous)
    return False


def application_statements(
    postgres: PostgresServer, replica: PostgresReplica, mariadb: MariaDBServer
) -> None:
    """A statement by someone other than the probing role in every server database the reference
    aliases watch: dbhealth leaves its own statements out, so a quiet database has none to show."""
    for database in ("app", "users", "analytics"):
        postgres.sql("SELECT count(*) FROM pg_class", dbname=database)
    replica.sql("SELECT count(*) FROM pg_class", dbname="app")
    mariadb.sql("SELECT COUNT(*) FROM information_schema.TABLES", db="legacy")


def write_reference_config(
    directory: Path,
    postgres: PostgresServer,
    replica: PostgresReplica,
    mariadb: MariaDBServer,
    extra: str = "",
    defaults: str = "",
) -> Path:
    """The six aliases of the example config (config/dbhealth.example.toml) on the
    session servers, plus `extra`.

    `extra` is more TOML (e.g. a `[databases.<alias>]` table on a dedicated server) and
    `defaults` more `[dbhealth]` keys; the monitor password of `postgres` is in `pg-password`
    beside the file. Every server database has an application statement to show.
    """
    application_statements(postgres, replica, mariadb)
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
