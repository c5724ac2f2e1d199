"""Packets to the database host silently dropped: the scrape must still end at the deadline."""

from collections.abc import Iterator

import pytest

from tests.faults.black_hole import NamespacedPostgres, NamespaceUnavailable, NetworkNamespace
from tests.faults.fleet import Fleet, postgres_exporter_connections
from tests.support.process import wait_until


@pytest.fixture
def remote_postgres() -> Iterator[tuple[NetworkNamespace, NamespacedPostgres]]:
    try:
        namespace = NetworkNamespace().__enter__()
    except NamespaceUnavailable as exc:
        pytest.skip(f"no network namespace for the black-hole test: {exc}")
    try:
        with NamespacedPostgres(namespace) as server:
            server.create_database("app")
            server.create_role("monitor")
            yield namespace, server
    finally:
        namespace.close()


def test_black_hole_mid_probe_and_before_connect(remote_postgres, make_fleet) -> None:
    namespace, server = remote_postgres
    entry = server.django_settings("app", "monitor", server.monitor_password)
    fleet: Fleet = make_fleet("remote", entry)
    fleet.scrape()
    assert fleet.faulted_state().up

    namespace.drop_everything()
    # The kept connection's query goes nowhere; then fresh connects get no SYN-ACK.
    fleet.expect_down("timeout")
    fleet.expect_down("timeout")

    namespace.heal()
    fleet.expect_up()
    assert wait_until(lambda: postgres_exporter_connections(server) == 1, timeout=60)
    fleet.finish()


def test_black_hole_before_first_connect(remote_postgres, make_fleet) -> None:
    namespace, server = remote_postgres
    fleet: Fleet = make_fleet(
        "remote", server.django_settings("app", "monitor", server.monitor_password)
    )
    namespace.drop_everything()
    fleet.expect_down("timeout")

    namespace.heal()
    fleet.expect_up()
    fleet.finish()
