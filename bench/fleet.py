"""The databases every contender watches, and the workload that keeps them busy meanwhile.

Servers come from tests/support (throwaway, loopback-only, killed if we die). Every contender
logs in as its own least-privilege user, so the server-side cost of each can be told apart.
"""

import os
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
# Every PostgreSQL role gets pg_monitor only. dbhealth holds at most max_connections_per_server
# connections to a server (16 by default); the scale phase also runs 200 aliases with a cap of 256,
# which holds 200, beside pgbench (4) and the benchmark's own short connections: about 210 at most
# (bench/results records the peak). 1000 leaves room for bench.ab (two services side by side) and
# for running 1,000 aliases with a cap of at least 1,000 by hand.
MAX_CONNECTIONS = 1000
# The scale phase's databases live on a PostgreSQL server of their own whose data directory is on
# disk, not in /dev/shm like the other servers': 1,000 copies of template1 take about 7 GB.
SCALE_BASE = Path("/var/tmp/dbhealth-bench")
SCALE_STATEMENTS_MAX = 20000
# CREATE DATABASE copies template1 (about 7 MB, with pg_stat_statements, which dbhealth reads per
# database). FILE_COPY copies its files and logs one WAL record; PostgreSQL 15's default, WAL_LOG,
# writes every block to the WAL (and a replica replays it): about twice as slow in a trial.
PART_STRATEGY = "FILE_COPY"


@dataclass
class Fleet:
    """Running servers, their part_NNN databases and the per-contender logins."""

    primary: PostgresServer
    replica: PostgresReplica
    mariadb: MariaDBServer
    sqlite_path: Path
    parts: list[str] = field(default_factory=list)
    scale: PostgresServer | None = None

    @property
    def parts_server(self) -> PostgresServer:
        """Where the part databases are: the scale server once started, else the primary."""
        return self.scale or self.primary

    def start_scale_server(self, base: Path = SCALE_BASE) -> PostgresServer:
        """A PostgreSQL server (pg_stat_statements, no replica, no workload) for the scale
        phase, its data directory under `base` on disk."""
        base.mkdir(mode=0o755, parents=True, exist_ok=True)
        saved = os.environ.get("DBHEALTH_TEST_TMPDIR")
        os.environ["DBHEALTH_TEST_TMPDIR"] = str(base)
        try:
            self.scale = PostgresServer(max_connections=MAX_CONNECTIONS)
        finally:
            if saved is None:
                del os.environ["DBHEALTH_TEST_TMPDIR"]
            else:
                os.environ["DBHEALTH_TEST_TMPDIR"] = saved
        self.scale.start()
        # 1,000 databases x dbhealth's few statements each overflow the default 5,000 entries:
        # evicted entries would take their time out of the measured server time.
        self.scale.sql(f"ALTER SYSTEM SET pg_stat_statements.max = {SCALE_STATEMENTS_MAX}")
        self.scale.restart()
        return self.scale

    def create_parts(self, count: int) -> None:
        """part_001.. on the parts server, for the scale run (after the comparison and the hung
        phase, whose postgres_exporter would otherwise report on every one of them)."""
        for index in range(len(self.parts) + 1, count + 1):
            name = f"part_{index:03d}"
            self.parts_server.sql(f'CREATE DATABASE "{name}" STRATEGY = {PART_STRATEGY}')
            self.parts.append(name)

    def connections(
        self, pg_logins: list[str], mariadb_logins: list[str], application_name: str | None = None
    ) -> dict[str, int]:
        """Client connections the logins hold now, per server: pg_stat_activity (on PostgreSQL
        only those with `application_name`, when given) and MariaDB's process list."""
        held: dict[str, int] = {}
        if pg_logins:
            query = "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY(%s)"
            params: list = [pg_logins]
            if application_name is not None:
                query += " AND application_name = %s"
                params.append(application_name)
            for label, server in (("primary", self.primary), ("replica", self.replica)):
                held[label] = int(server.sql(query, params=params)[0][0])
        if mariadb_logins:
            placeholders = ", ".join(["%s"] * len(mariadb_logins))
            rows = self.mariadb.sql(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                f" WHERE USER IN ({placeholders})",
                params=mariadb_logins,
            )
            held["mariadb"] = int(rows[0][0])
        return held

    def pg_role(self, name: str, server: PostgresServer | None = None) -> str:
        """A pg_monitor login for one contender (on the primary, whence it replicates, unless
        another server is given); returns its password."""
        server = server or self.primary
        if name not in server.passwords:
            server.create_role(name)
        return server.passwords[name]

    def mariadb_user(self, name: str, grants: tuple[str, ...] = DBHEALTH_MARIADB_GRANTS) -> str:
        if name not in self.mariadb.passwords:
            self.mariadb.create_user(name, grants=grants)
        return self.mariadb.passwords[name]

    def close(self) -> None:
        if self.scale is not None:
            self._close_scale_server(self.scale)
        for server in (self.replica, self.primary, self.mariadb):
            server.close()

    @staticmethod
    def _close_scale_server(server: PostgresServer) -> None:
        """Stop it, then delete its data directory (1,000 databases: about 300,000 files, a
        minute and a half of `rm`) in a process of its own that outlives the benchmark."""
        try:
            server.stop()
        except Exception:
            server.kill()
        doomed = server.tmpdir.with_name(server.tmpdir.name + "-deleting")
        try:
            server.tmpdir.rename(doomed)
        except OSError:
            pass  # close() below deletes it in place
        else:
            subprocess.Popen(
                ["rm", "-rf", "--one-file-system", str(doomed)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
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
