"""Pytest fixtures for real servers; register with ``pytest_plugins``.

Session-scoped servers are shared: tests may add data but must undo any
state change (paused replay, ...) they make. Destructive tests (kill, stop,
pause) use the make_* factories, which give each test its own servers.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from .alertmanager import AlertmanagerServer
from .mariadb import MariaDBServer
from .postgres import PostgresReplica, PostgresServer
from .prometheus import PrometheusServer

MONITOR = "monitor"
POSTGRES_DATABASES = ("app", "users", "analytics")
MARIADB_DATABASES = ("legacy",)


def _setup_postgres(server: PostgresServer, databases: Sequence[str]) -> PostgresServer:
    for name in databases:
        server.create_database(name)
    server.create_role(MONITOR)
    return server


def _setup_mariadb(server: MariaDBServer, databases: Sequence[str]) -> MariaDBServer:
    for name in databases:
        server.create_database(name)
    server.create_user(MONITOR)
    for name in databases:
        # The one schema-level grant a probe needs: it may USE the schema and see its tables'
        # sizes in information_schema, but SHOW VIEW reads no table data.
        server.sql(f"GRANT SHOW VIEW ON `{name}`.* TO {MONITOR}@'%'")
        # Column types of the schema's tables, for the id headroom; grants no row access.
        server.sql(f"GRANT REFERENCES ON `{name}`.* TO {MONITOR}@'%'")
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Primary with databases app/users/analytics and a pg_monitor-only role ``monitor``."""
    with PostgresServer() as server:
        yield _setup_postgres(server, POSTGRES_DATABASES)


@pytest.fixture(scope="session")
def postgres_replica(postgres: PostgresServer) -> Iterator[PostgresReplica]:
    """Hot-standby streaming replica of the session primary."""
    with PostgresReplica(postgres) as replica:
        replica.wait_caught_up()
        yield replica


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """MariaDB with database ``legacy`` and a least-privilege user ``monitor``."""
    with MariaDBServer() as server:
        yield _setup_mariadb(server, MARIADB_DATABASES)


@pytest.fixture
def make_postgres() -> Iterator[Callable[..., PostgresServer]]:
    """Factory for dedicated primaries (set up like ``postgres``), closed after the test."""
    with ExitStack() as stack:

        def make(
            max_connections: int = 50, databases: Sequence[str] = POSTGRES_DATABASES
        ) -> PostgresServer:
            server = stack.enter_context(PostgresServer(max_connections=max_connections))
            return _setup_postgres(server, databases)

        yield make


@pytest.fixture
def make_mariadb() -> Iterator[Callable[..., MariaDBServer]]:
    """Factory for dedicated MariaDB servers (set up like ``mariadb``), closed after the test."""
    with ExitStack() as stack:

        def make(
            max_connections: int = 50, databases: Sequence[str] = MARIADB_DATABASES
        ) -> MariaDBServer:
            server = stack.enter_context(MariaDBServer(max_connections=max_connections))
            return _setup_mariadb(server, databases)

        yield make


@pytest.fixture
def make_mariadb_pair() -> Iterator[Callable[..., tuple[MariaDBServer, MariaDBServer]]]:
    """Factory for a MariaDB primary (binlog, server id 1) and its binlog replica (server id 2),
    each set up like ``mariadb``, replicating from there on; both closed after the test."""
    with ExitStack() as stack:

        def make(
            databases: Sequence[str] = MARIADB_DATABASES,
        ) -> tuple[MariaDBServer, MariaDBServer]:
            primary = stack.enter_context(MariaDBServer(log_bin=True, server_id=1))
            replica = stack.enter_context(MariaDBServer(server_id=2))
            _setup_mariadb(primary, databases)
            _setup_mariadb(replica, databases)
            replica.replicate_from(primary)
            return primary, replica

        yield make


@pytest.fixture
def make_prometheus() -> Iterator[Callable[..., PrometheusServer]]:
    """Factory for Prometheus servers, stopped after the test."""
    with ExitStack() as stack:

        def make(
            config_text: str, rule_files: Iterable[Path] = (), port: int | None = None
        ) -> PrometheusServer:
            return stack.enter_context(PrometheusServer(config_text, rule_files, port=port))

        yield make


@pytest.fixture
def make_alertmanager() -> Iterator[Callable[..., AlertmanagerServer]]:
    """Factory for Alertmanager servers (clustering off), stopped after the test."""
    with ExitStack() as stack:

        def make(config_text: str, port: int | None = None) -> AlertmanagerServer:
            return stack.enter_context(AlertmanagerServer(config_text, port=port))

        yield make
