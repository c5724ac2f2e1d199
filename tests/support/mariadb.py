"""Throwaway MariaDB servers with performance_schema statement digests.

mariadb-install-db runs once per process into a template data dir that every
server copies (``cp -a`` keeps ownership).
"""

import atexit
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

import MySQLdb

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

# Least privileges a monitoring user needs: processlist and InnoDB status
# (PROCESS), binlog status (REPLICATION CLIENT, an alias of BINLOG MONITOR
# since 10.5), SHOW REPLICA STATUS (REPLICA MONITOR: since 10.5.9 REPLICATION
# CLIENT no longer covers it) and statement digests (performance_schema).
MONITOR_GRANTS = (
    "PROCESS, REPLICATION CLIENT, REPLICA MONITOR ON *.*",
    "SELECT ON performance_schema.*",
)

# Small redo log, no fsync: throwaway data, and install-db gets 3x faster on disk.
_INNODB_FAST = (
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-flush-method=nosync",
    "--innodb-doublewrite=0",
)

# install-db also creates password-less root@127.0.0.1 / ::1 / <hostname>:
# drop them so root is reachable only through the 0700 socket dir.
_INIT_SQL = """
DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';
DELETE FROM mysql.proxies_priv WHERE User = 'root' AND Host <> 'localhost';
"""


class _Template:
    """The installed data dir every server copies."""

    def __init__(self, user: str | None) -> None:
        self.root = make_tempdir("mariadb-template-", user)
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self.datadir = self.root / "data"
        init_sql = self.root / "init.sql"
        init_sql.write_text(_INIT_SQL)
        run_as(
            user,
            [
                binaries.mariadb_install_db(),
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--extra-file={init_sql}",
                *_INNODB_FAST,
            ],
            cwd=self.root,
        )


_template: _Template | None = None
_template_lock = threading.Lock()


def _get_template(user: str | None) -> _Template:
    global _template
    with _template_lock:
        if _template is None:
            _template = _Template(user)
        return _template


class MariaDBServer(ServerProcess):
    """A MariaDB server; root logs in without a password over the unix socket only."""

    name = "mariadb"

    def __init__(
        self,
        max_connections: int = 50,
        log_bin: bool = False,
        port: int | None = None,
        server_id: int | None = None,
    ) -> None:
        super().__init__(prefix="mariadb-", user=service_user("mysql"), port=port)
        self.max_connections = max_connections
        self.log_bin = log_bin
        # Replication needs a distinct id on each server; a binlog alone gets 1.
        self.server_id = server_id if server_id is not None else (1 if log_bin else None)
        self.datadir = self.tmpdir / "data"
        self.socket = self.tmpdir / "mysqld.sock"
        # User name -> password, for every user created through create_user().
        self.passwords: dict[str, str] = {}
        _get_template(self.user)

    @property
    def monitor_password(self) -> str:
        """Password of the ``monitor`` user the fixtures create."""
        return self.passwords["monitor"]

    def _prepare(self) -> None:
        subprocess.run(["cp", "-a", _get_template(self.user).datadir, self.datadir], check=True)

    def _command(self) -> list[str]:
        binlog = [f"--log-bin={self.tmpdir / 'binlog'}"] if self.log_bin else ["--skip-log-bin"]
        if self.server_id is not None:
            binlog += [f"--server-id={self.server_id}", f"--relay-log={self.tmpdir / 'relay'}"]
        # Running as the service user already (setpriv), so no --user.
        return [
            str(binaries.mariadb_server()),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.tmpdir / 'mysqld.pid'}",
            f"--tmpdir={self.tmpdir}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            "--skip-networking=0",
            "--skip-name-resolve",
            f"--max-connections={self.max_connections}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=32M",
            *_INNODB_FAST,
            "--innodb-use-native-aio=0",
            "--performance-schema=ON",
            "--performance-schema-instrument=statement/%=ON",
            "--performance-schema-consumer-events-statements-current=ON",
            "--performance-schema-consumer-events-statements-history=ON",
            "--performance-schema-consumer-statements-digest=ON",
            # Metadata locks name the tables a transaction holds until it ends, whatever its
            # default database (off by default in MariaDB, on in MySQL 8).
            "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON",
            *binlog,
        ]

    def _ready(self) -> bool:
        try:
            MySQLdb.connect(unix_socket=str(self.socket), user="root", connect_timeout=1).close()
            socket.create_connection((self.host, self.port), timeout=1).close()
        except (MySQLdb.OperationalError, OSError):
            return False
        return True

    def sql(
        self, query: str, db: str | None = None, params: Sequence[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement as root over the unix socket."""
        options = {"db": db} if db else {}
        conn = MySQLdb.connect(
            unix_socket=str(self.socket),
            user="root",
            autocommit=True,
            connect_timeout=10,
            **options,
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        """Create a database (utf8mb4, the server default)."""
        quoted = name.replace("`", "``")
        self.sql(f"CREATE DATABASE `{quoted}`")

    def create_user(
        self, name: str, password: str | None = None, grants: Sequence[str] = MONITOR_GRANTS
    ) -> str:
        """Create user@'%' holding only grants (e.g. "SELECT ON db.*"); return its password."""
        password = password or secrets.token_urlsafe(16)
        self.sql("CREATE USER %s@'%%' IDENTIFIED BY %s", params=[name, password])
        for grant in grants:
            self.sql(f"GRANT {grant} TO %s@'%%'", params=[name])
        self.passwords[name] = password
        return password

    def replica_status(self) -> dict[str, Any]:
        """SHOW SLAVE STATUS as root, by column; empty when not a replica."""
        conn = MySQLdb.connect(unix_socket=str(self.socket), user="root", connect_timeout=10)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW SLAVE STATUS")
                row = cursor.fetchone()
                columns = [column[0] for column in cursor.description or ()]
        finally:
            conn.close()
        return dict(zip(columns, row, strict=True)) if row else {}

    def replicate_from(self, primary: "MariaDBServer", user: str = "replicator") -> None:
        """Make this server a binlog replica of primary from primary's current position (both
        hold the same data already: set them up alike first), and wait until both threads run.

        primary needs log_bin and the two servers distinct server ids."""
        password = primary.create_user(user, grants=("REPLICATION SLAVE ON *.*",))
        binlog_file, position = primary.sql("SHOW MASTER STATUS")[0][:2]
        self.sql(
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s,"
            " MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, MASTER_LOG_POS = %s,"
            " MASTER_USE_GTID = no, MASTER_CONNECT_RETRY = 1",
            params=[primary.host, primary.port, user, password, binlog_file, position],
        )
        self.sql("START SLAVE")

        def both_running() -> bool:
            status = self.replica_status()
            return status.get("Slave_IO_Running") == status.get("Slave_SQL_Running") == "Yes"

        running = wait_until(both_running, timeout=START_TIMEOUT)
        if not running:
            raise ServerError(f"replication did not start: {self.replica_status()}")

    def django_settings(self, dbname: str, user: str, password: str) -> dict[str, str]:
        """A Django DATABASES entry reaching this server over TCP."""
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": dbname,
            "USER": user,
            "PASSWORD": password,
            "HOST": self.host,
            "PORT": str(self.port),
        }
