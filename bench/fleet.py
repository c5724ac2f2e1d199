"""The databases every contender watches, and the workload that keeps them busy meanwhile.

Servers come from tests/support (throwaway, loopback-only, killed if we die). Every contender
logs in as its own least-privilege user, so the server-side cost of each can be told apart.
"""

import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import MySQLdb

from tests.support import binaries
from tests.support.mariadb import MONITOR_GRANTS, MariaDBServer
from tests.support.postgres import PostgresReplica, PostgresServer
from tests.support.process import as_user, make_tempdir

PG_DATABASES = ("app", "users", "analytics")
MARIADB_DATABASE = "legacy"
# mysqld_exporter's documented grants; dbhealth's are tests/support's plus the right to open the
# watched database (SHOW VIEW, enough for its size query).
MYSQLD_EXPORTER_GRANTS = ("PROCESS, REPLICATION CLIENT, SELECT ON *.*",)
DBHEALTH_MARIADB_GRANTS = (*MONITOR_GRANTS, f"SHOW VIEW ON {MARIADB_DATABASE}.*")
# Every PostgreSQL role gets pg_monitor only; two gunicorn workers keep one connection per alias
# each, so 200 aliases need 400, and bench.ab runs two such services side by side.
MAX_CONNECTIONS = 1000


@dataclass
class Fleet:
    """Running servers, their part_NNN databases and the per-contender logins."""

    primary: PostgresServer
    replica: PostgresReplica
    mariadb: MariaDBServer
    sqlite_path: Path
    parts: list[str] = field(default_factory=list)

    def create_parts(self, count: int) -> None:
        """part_001.. on the primary, for the scale run (after the comparison, which would
        otherwise see postgres_exporter report on every one of them)."""
        for index in range(len(self.parts) + 1, count + 1):
            self.parts.append(f"part_{index:03d}")
            self.primary.create_database(self.parts[-1])

    def pg_role(self, name: str) -> str:
        """A pg_monitor login for one contender; returns its password."""
        if name not in self.primary.passwords:
            self.primary.create_role(name)
        return self.primary.passwords[name]

    def mariadb_user(self, name: str, grants: tuple[str, ...] = DBHEALTH_MARIADB_GRANTS) -> str:
        if name not in self.mariadb.passwords:
            self.mariadb.create_user(name, grants=grants)
        return self.mariadb.passwords[name]

    def close(self) -> None:
        for server in (self.replica, self.primary, self.mariadb):
            server.close()


def start_fleet(part_count: int, workdir: Path) -> Fleet:
    """Primary (pg_stat_statements) with a streaming replica, MariaDB, SQLite, N part databases."""
    primary = PostgresServer(max_connections=MAX_CONNECTIONS)
    primary.start()
    for name in PG_DATABASES:
        primary.create_database(name)
    replica = PostgresReplica(primary)
    replica.start()
    mariadb = MariaDBServer(max_connections=200)
    mariadb.start()
    mariadb.create_database(MARIADB_DATABASE)
    sqlite_path = workdir / "local.sqlite3"
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(500)])
    fleet = Fleet(primary, replica, mariadb, sqlite_path)
    fleet.create_parts(part_count)
    return fleet


class Workload:
    """pgbench (rate-limited) on the primary and a light query loop on MariaDB.

    Both stop by themselves after `seconds`; stop() ends them sooner.
    """

    def __init__(self, fleet: Fleet, seconds: float, pg_tps: int = 40, mariadb_qps: int = 20):
        self.fleet = fleet
        self.seconds = seconds
        self.pg_tps = pg_tps
        self.mariadb_qps = mariadb_qps
        self._pgbench: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.mariadb_queries = 0

    def initialise(self) -> None:
        self._pgbench_run(["-i", "-s", "2", "-q"])
        self.fleet.mariadb.sql(
            "CREATE TABLE IF NOT EXISTS orders (id INT AUTO_INCREMENT PRIMARY KEY,"
            " customer INT NOT NULL, amount DECIMAL(10,2), created TIMESTAMP DEFAULT NOW(),"
            " KEY (customer))",
            db=MARIADB_DATABASE,
        )

    def _pgbench_command(self, args: list[str]) -> list[str]:
        primary = self.fleet.primary
        return as_user(
            None,
            [
                binaries.postgres_bindir() / "pgbench",
                "-h",
                str(primary.tmpdir),
                "-p",
                str(primary.port),
                "-U",
                primary.superuser,
                *args,
                "app",
            ],
        )

    def _pgbench_run(self, args: list[str]) -> None:
        subprocess.run(self._pgbench_command(args), check=True, capture_output=True)

    def start(self) -> None:
        """Main thread only: pgbench dies with the thread that started it."""
        rate = ["-c", "4", "-j", "2", "-R", str(self.pg_tps), "-T", str(int(self.seconds)), "-n"]
        self._pgbench = subprocess.Popen(
            self._pgbench_command(rate), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.resume_mariadb()

    def resume_mariadb(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._mariadb_loop, daemon=True)
        self._thread.start()

    def pause_mariadb(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _mariadb_loop(self) -> None:
        ends_at = time.monotonic() + self.seconds
        connection = MySQLdb.connect(
            unix_socket=str(self.fleet.mariadb.socket),
            user="root",
            db=MARIADB_DATABASE,
            autocommit=True,
            read_timeout=5,
        )
        pause = 1.0 / self.mariadb_qps
        step = 0
        try:
            with connection.cursor() as cursor:
                while not self._stop.is_set() and time.monotonic() < ends_at:
                    step += 1
                    customer = step % 97
                    if step % 3 == 0:
                        cursor.execute(
                            "INSERT INTO orders (customer, amount) VALUES (%s, %s)",
                            (customer, step % 500),
                        )
                    elif step % 3 == 1:
                        cursor.execute(
                            "SELECT COUNT(*), SUM(amount) FROM orders WHERE customer = %s",
                            (customer,),
                        )
                        cursor.fetchall()
                    else:
                        cursor.execute(
                            "SELECT customer, MAX(created) FROM orders GROUP BY customer"
                        )
                        cursor.fetchall()
                    self.mariadb_queries += 1
                    self._stop.wait(pause)
        finally:
            connection.close()

    def stop(self) -> None:
        self.pause_mariadb()
        if self._pgbench is not None and self._pgbench.poll() is None:
            self._pgbench.terminate()
            self._pgbench.wait(timeout=10)


def workdir() -> Path:
    return make_tempdir("dbhealth-bench-", None)
