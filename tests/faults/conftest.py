"""Fault tests: a Fleet factory over the session servers plus one alias under test."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.faults.fleet import DEADLINE, Fleet, healthy_databases, wait_for_probe_threads
from tests.support.mariadb import MariaDBServer
from tests.support.pgbouncer import PgBouncerServer
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def fleet_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture
def make_fleet(
    postgres: PostgresServer, mariadb: MariaDBServer, fleet_directory: Path, make_harness
) -> Callable[..., Fleet]:
    def make(
        faulted: str,
        entry: dict[str, Any],
        extra: dict[str, dict[str, Any]] | None = None,
        **options: Any,
    ) -> Fleet:
        # Threads of an earlier test's probe pool end within a second: counted before, they
        # would look like threads this fleet ended.
        wait_for_probe_threads()
        databases = {
            **healthy_databases(postgres, mariadb, fleet_directory),
            faulted: entry,
            **(extra or {}),
        }
        harness = make_harness(databases, deadline=options.pop("deadline", DEADLINE), **options)
        return Fleet(harness=harness, faulted=faulted, postgres=postgres, mariadb=mariadb)

    return make


@pytest.fixture
def make_pgbouncer(postgres: PostgresServer) -> Iterator[Callable[..., PgBouncerServer]]:
    """Factory for PgBouncers in front of the session primary, stopped after the test."""
    with ExitStack() as stack:

        def make(pool_mode: str, pool_size: int = 10) -> PgBouncerServer:
            return stack.enter_context(PgBouncerServer(postgres, pool_mode, pool_size=pool_size))

        yield make
