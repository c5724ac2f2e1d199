"""A throwaway PgBouncer (Debian's `pgbouncer`) in front of a test PostgreSQL server.

Every database of the server is reachable through it (`* = host=... port=...`); clients
authenticate with SCRAM against an auth file written at start from the roles the server knows,
and PgBouncer logs in to the server with the same password. It runs as the server's unprivileged
user (PgBouncer refuses to run as root), on a free port below 32768.
"""

import shutil
from pathlib import Path

import psycopg

from . import binaries
from .postgres import PostgresServer
from .process import ServerProcess

POOL_MODES = ("session", "transaction")


class PgBouncerServer(ServerProcess):
    """PgBouncer in `pool_mode` in front of `server`, knowing every role created there through
    `create_role()` (and the superuser) before it started. At most `pool_size` server
    connections per database and role: with 1, every client of a role shares one server
    session, so whatever one leaves set there the next one sees."""

    name = "pgbouncer"

    def __init__(
        self,
        server: PostgresServer,
        pool_mode: str,
        pool_size: int = 10,
        port: int | None = None,
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, not {pool_mode!r}")
        super().__init__(prefix="pgbouncer-", user=server.user, port=port)
        self.server = server
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.config_file = self.tmpdir / "pgbouncer.ini"
        self.auth_file = self.tmpdir / "userlist.txt"

    def _prepare(self) -> None:
        self._write_auth_file()
        # No ignore_startup_parameters: a client sending `options` must be refused, as in
        # production, so that the tests see what PgBouncer users see.
        self.config_file.write_text(
            f"""[databases]
* = host={self.server.host} port={self.server.port}

[pgbouncer]
listen_addr = {self.host}
listen_port = {self.port}
unix_socket_dir = {self.tmpdir}
pidfile = {self.tmpdir / "pgbouncer.pid"}
auth_type = scram-sha-256
auth_file = {self.auth_file}
pool_mode = {self.pool_mode}
max_client_conn = 200
default_pool_size = {self.pool_size}
server_login_retry = 1
log_connections = 1
log_disconnections = 1
"""
        )
        self._chown(self.config_file)

    def _write_auth_file(self) -> None:
        lines = [
            '"{}" "{}"'.format(name.replace('"', '""'), password.replace('"', '""'))
            for name, password in self.server.passwords.items()
        ]
        self.auth_file.write_text("\n".join(lines) + "\n")
        self._chown(self.auth_file)
        self.auth_file.chmod(0o600)

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            shutil.chown(path, self.user, self.user)

    def _command(self) -> list[str]:
        return [str(binaries.pgbouncer()), str(self.config_file)]

    def _ready(self) -> bool:
        return self._logs_in(self.server.superuser)

    def _logs_in(self, role: str) -> bool:
        try:
            psycopg.connect(**self.connection_keywords("postgres", role), connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def connection_keywords(self, dbname: str, role: str) -> dict[str, object]:
        """What psycopg.connect() takes to reach `dbname` as `role` through PgBouncer."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": dbname,
            "user": role,
            "password": self.server.passwords[role],
        }

    def django_settings(self, dbname: str, role: str) -> dict[str, str]:
        """A Django DATABASES entry reaching `dbname` on the server through PgBouncer."""
        return {
            **self.server.django_settings(dbname, role, self.server.passwords[role]),
            "PORT": str(self.port),
        }
