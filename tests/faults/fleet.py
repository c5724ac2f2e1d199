"""Several aliases on several vendors around one faulted alias, and what every fault test checks.

A fault test builds a Fleet: healthy aliases on the session PostgreSQL, MariaDB and a SQLite file,
plus the alias under test. Each scrape is checked for the promises that hold whatever the fault:
the round returns within the faulted alias's deadline plus a margin, and every healthy alias was
probed in that very round and is up. `finish()` checks that nothing was left behind.
"""

import gc
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbhealth.probing.state import AliasState, ServiceState

from tests.dbhealth_fixtures import Harness
from tests.support.mariadb import MariaDBServer
from tests.support.postgres import PostgresServer
from tests.support.process import wait_until

DEADLINE = 1.0
# Thread start-up and scheduling slack on a busy 2-core CI machine; the faults tested here would
# otherwise hold a scrape for tens of seconds to minutes.
MARGIN = 1.0
SETTLE_TIMEOUT = 30.0
HEALTHY = ("pg_ok", "maria_ok", "lite_ok")
MARIADB_WATCHER = "fleet_watch"


def probe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dbhealth-")]


def wait_for_probe_threads() -> None:
    """Interrupted probe threads end on their own once their driver call fails."""
    assert wait_until(lambda: not probe_threads(), timeout=SETTLE_TIMEOUT), probe_threads()


def open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return found


def postgres_exporter_connections(server: PostgresServer) -> int:
    rows = server.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbhealth'")
    return int(rows[0][0])


def mariadb_connections(server: MariaDBServer, user: str) -> int:
    rows = server.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", params=[user]
    )
    return int(rows[0][0])


def healthy_databases(
    postgres: PostgresServer, mariadb: MariaDBServer, directory: Path
) -> dict[str, dict[str, Any]]:
    if MARIADB_WATCHER not in mariadb.passwords:
        mariadb.create_user(
            MARIADB_WATCHER,
            grants=(
                "PROCESS, REPLICATION CLIENT, REPLICA MONITOR ON *.*",
                "SELECT ON performance_schema.*",
                "SELECT ON legacy.*",
            ),
        )
    sqlite_path = directory / "fleet.sqlite3"
    if not sqlite_path.exists():
        with sqlite3.connect(sqlite_path) as connection:
            connection.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
        connection.close()
    return {
        "pg_ok": postgres.django_settings("app", "monitor", postgres.monitor_password),
        "maria_ok": mariadb.django_settings(
            "legacy", MARIADB_WATCHER, mariadb.passwords[MARIADB_WATCHER]
        ),
        "lite_ok": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite_path)},
    }


@dataclass
class Fleet:
    harness: Harness
    faulted: str
    postgres: PostgresServer
    mariadb: MariaDBServer
    threads_before: int = field(default_factory=threading.active_count)
    fds_before: dict[str, str] = field(default_factory=open_fds)
    pg_connections_before: int = 0
    maria_connections_before: int = 0
    elapsed: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Idle probe threads of an earlier test's service end within a second: not ours to count.
        wait_for_probe_threads()
        self.threads_before = threading.active_count()
        self.pg_connections_before = postgres_exporter_connections(self.postgres)
        self.maria_connections_before = mariadb_connections(self.mariadb, MARIADB_WATCHER)

    @property
    def deadline(self) -> float:
        return next(t.deadline for t in self.harness.targets if t.alias == self.faulted)

    def scrape(self) -> ServiceState:
        started = time.monotonic()
        state = self.harness.round()
        elapsed = time.monotonic() - started
        self.elapsed.append(elapsed)
        assert elapsed <= self.deadline + MARGIN, f"round took {elapsed:.2f} s"
        for alias in HEALTHY:
            healthy = state.aliases[alias]
            assert healthy.up, (alias, healthy.reason, healthy.message)
            assert healthy.checked_at >= started, f"{alias} was not probed in this round"
            assert self.harness.value("dbhealth_up", alias=alias, vendor=vendor_of(alias)) == 1
        return state

    def faulted_state(self) -> AliasState:
        return self.harness.alias(self.faulted)

    def expect_down(self, reason: str) -> AliasState:
        self.scrape()
        state = self.faulted_state()
        assert (state.up, state.reason) == (False, reason), state.message
        assert self.harness.value("dbhealth_down_reason", alias=self.faulted, reason=reason) == 1
        return state

    def expect_up(self) -> AliasState:
        wait_for_probe_threads()
        self.scrape()
        state = self.faulted_state()
        assert state.up, (state.reason, state.message)
        assert (
            self.harness.value("dbhealth_down_reason", alias=self.faulted, reason="timeout") is None
        )
        return state

    def finish(self) -> None:
        """Nothing left behind: threads, file descriptors, connections on the healthy servers."""
        self.harness.service.close()
        wait_for_probe_threads()
        assert threading.active_count() == self.threads_before, threading.enumerate()
        # Failed connection attempts can sit in reference cycles with their tracebacks.
        gc.collect()
        now_open = open_fds()
        leaked = {fd: now_open[fd] for fd in set(now_open) - set(self.fds_before)}
        assert not leaked, leaked
        assert wait_until(
            lambda: postgres_exporter_connections(self.postgres) == self.pg_connections_before,
            timeout=SETTLE_TIMEOUT,
        )
        assert wait_until(
            lambda: (
                mariadb_connections(self.mariadb, MARIADB_WATCHER) == self.maria_connections_before
            ),
            timeout=SETTLE_TIMEOUT,
        )


def vendor_of(alias: str) -> str:
    return {"pg_ok": "postgresql", "maria_ok": "mysql", "lite_ok": "sqlite"}[alias]
