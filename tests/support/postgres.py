"""Throwaway PostgreSQL primaries and streaming replicas.

initdb runs once per process into a template cluster; every server copies it
(``cp -a`` keeps ownership), so a new server costs a copy plus a start.
"""

import atexit
import secrets
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql as pgsql

from . import binaries
from .process import (
    START_TIMEOUT,
    ServerError,
    ServerProcess,
    make_tempdir,
    run_as,
    service_user,
    wait_until,
)

SUPERUSER = "postgres"

# Appended to the template's postgresql.conf. Per-server settings (port,
# socket dir, max_connections) go on the command line instead, so replicas
# cloned with pg_basebackup do not inherit them.
_CONFIG = """
listen_addresses = '127.0.0.1'
shared_buffers = 16MB
# Keep dynamic shared memory in the data dir, not /dev/shm: a killed server
# must not leak segments once its temp dir is deleted.
dynamic_shared_memory_type = mmap
fsync = off
wal_level = replica
max_wal_senders = 5
wal_keep_size = 64MB
hot_standby = on
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
track_io_timing = on
log_line_prefix = '%m [%p] %q%u@%d '
"""

# Sockets live in a 0700 dir owned by the server user, so local trust only
# admits root and that user; TCP always needs a SCRAM password.
_HBA = """
local all all trust
local replication all trust
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
"""


class _Template:
    """The initdb'd cluster every server copies, and its superuser password."""

    def __init__(self, user: str | None) -> None:
        self.root = make_tempdir("pg-template-", user)
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self.datadir = self.root / "data"
        self.password = secrets.token_urlsafe(16)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if user is not None:
            shutil.chown(pwfile, user, user)
        bindir = binaries.postgres_bindir()
        run_as(
            user,
            [
                bindir / "initdb",
                "--pgdata",
                self.datadir,
                "--username",
                SUPERUSER,
                "--pwfile",
                pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
                # 1 MB instead of 16 MB WAL segments: less to copy per server.
                "--wal-segsize=1",
            ],
            cwd=self.root,
        )
        pwfile.unlink()
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(_CONFIG)
        (self.datadir / "pg_hba.conf").write_text(_HBA)
        # Databases created later copy template1, so they all get the extension.
        for dbname in ("template1", "postgres"):
            run_as(
                user,
                [bindir / "postgres", "--single", "-D", self.datadir, "-c", "fsync=off", dbname],
                cwd=self.root,
                stdin="CREATE EXTENSION pg_stat_statements;\n",
            )


_template: _Template | None = None
_template_lock = threading.Lock()


def _get_template(user: str | None) -> _Template:
    global _template
    with _template_lock:
        if _template is None:
            _template = _Template(user)
        return _template


class PostgresServer(ServerProcess):
    """A PostgreSQL primary with pg_stat_statements, ready to be replicated.

    The superuser ``postgres`` logs in without a password over the unix
    socket (used by sql()) and with ``superuser_password`` over TCP.
    """

    name = "postgres"

    def __init__(self, max_connections: int = 50, port: int | None = None) -> None:
        super().__init__(prefix="pg-", user=service_user("postgres"), port=port)
        self.max_connections = max_connections
        self.datadir = self.tmpdir / "data"
        self.superuser = SUPERUSER
        self.superuser_password = _get_template(self.user).password
        # Role name -> password, for every role created through create_role().
        self.passwords: dict[str, str] = {SUPERUSER: self.superuser_password}

    @property
    def monitor_password(self) -> str:
        """Password of the ``monitor`` role the fixtures create."""
        return self.passwords["monitor"]

    def _prepare(self) -> None:
        subprocess.run(["cp", "-a", _get_template(self.user).datadir, self.datadir], check=True)

    def _command(self) -> list[str]:
        return [
            str(binaries.postgres_bindir() / "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-c",
            f"unix_socket_directories={self.tmpdir}",
            "-c",
            f"max_connections={self.max_connections}",
        ]

    def _ready(self) -> bool:
        try:
            psycopg.connect(
                host=self.host,
                port=self.port,
                dbname="postgres",
                user=self.superuser,
                password=self.superuser_password,
                connect_timeout=1,
            ).close()
        except psycopg.OperationalError:
            return False
        return True

    def _pg_ctl(self, *args: str) -> None:
        run_as(
            self.user,
            [binaries.postgres_bindir() / "pg_ctl", "-D", self.datadir, *args],
            cwd=self.tmpdir,
        )

    def stop(self, mode: str = "fast") -> None:
        """Clean shutdown via ``pg_ctl stop -m mode`` (smart, fast or immediate)."""
        self._shutdown(
            lambda: self._pg_ctl(
                "stop", "--wait", "--mode", mode, "--timeout", str(int(START_TIMEOUT))
            )
        )

    def sql(
        self,
        query: str,
        dbname: str = "postgres",
        user: str | None = None,
        params: Sequence[Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one query over the unix socket (superuser unless user is given)."""
        with psycopg.connect(
            host=str(self.tmpdir),
            port=self.port,
            dbname=dbname,
            user=user or self.superuser,
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def connect(
        self, dbname: str = "postgres", user: str | None = None, autocommit: bool = False
    ) -> psycopg.Connection:
        """An open session over the unix socket (superuser unless user is given), for tests
        that hold a transaction or a lock open; the caller closes it."""
        return psycopg.connect(
            host=str(self.tmpdir),
            port=self.port,
            dbname=dbname,
            user=user or self.superuser,
            autocommit=autocommit,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> None:
        """Create a database; it inherits pg_stat_statements from template1."""
        self.sql(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)).as_string())

    def create_role(
        self, name: str, password: str | None = None, grants: Sequence[str] = ("pg_monitor",)
    ) -> str:
        """Create a login role that holds only the given roles; return its password."""
        password = password or secrets.token_urlsafe(16)
        self.sql(
            pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
            .format(pgsql.Identifier(name), pgsql.Literal(password))
            .as_string()
        )
        for grant in grants:
            self.sql(
                pgsql.SQL("GRANT {} TO {}")
                .format(pgsql.Identifier(grant), pgsql.Identifier(name))
                .as_string()
            )
        self.passwords[name] = password
        return password

    def django_settings(self, dbname: str, user: str, password: str) -> dict[str, str]:
        """A Django DATABASES entry reaching this server over TCP."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": dbname,
            "USER": user,
            "PASSWORD": password,
            "HOST": self.host,
            "PORT": str(self.port),
        }


class PostgresReplica(PostgresServer):
    """A hot-standby streaming replica cloned from a running primary.

    Roles and passwords are those of the primary (they replicate).
    """

    name = "postgres-replica"

    def __init__(self, primary: PostgresServer, port: int | None = None) -> None:
        super().__init__(max_connections=primary.max_connections, port=port)
        self.primary = primary
        self.passwords = primary.passwords

    def _prepare(self) -> None:
        # -R writes primary_conninfo (TCP, superuser password) and standby.signal.
        run_as(
            self.user,
            [
                binaries.postgres_bindir() / "pg_basebackup",
                "--host",
                self.primary.host,
                "--port",
                str(self.primary.port),
                "--username",
                self.primary.superuser,
                "--pgdata",
                self.datadir,
                "--write-recovery-conf",
                "--checkpoint=fast",
                "--wal-method=stream",
                "--no-sync",
            ],
            cwd=self.tmpdir,
            env={"PGPASSWORD": self.primary.superuser_password},
        )

    def pause_replay(self) -> None:
        """Stop applying WAL (it is still received), so replay lag grows."""
        self.sql("SELECT pg_wal_replay_pause()")
        if not wait_until(
            lambda: self.sql("SELECT pg_get_wal_replay_pause_state()") == [("paused",)],
            timeout=START_TIMEOUT,
        ):
            raise ServerError("WAL replay did not pause")

    def resume_replay(self) -> None:
        """Apply WAL again after pause_replay()."""
        self.sql("SELECT pg_wal_replay_resume()")

    def promote(self) -> None:
        """Turn the replica into a primary and wait until it accepts writes."""
        if self.sql("SELECT pg_promote(true, %s)", params=[int(START_TIMEOUT)]) != [(True,)]:
            raise ServerError(f"promotion failed\n{self.log_tail()}")

    def wait_caught_up(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        (target,) = self.primary.sql("SELECT pg_current_wal_lsn()::text")[0]
        if not wait_until(
            lambda: (
                self.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", params=[target])
                == [(True,)]
            ),
            timeout=timeout,
        ):
            raise ServerError(
                f"replica did not replay up to {target} within {timeout} s\n{self.log_tail()}"
            )
