"""A server that accepts TCP but answers nothing (SIGSTOP): the scrape must not wait for it."""

import pytest

from tests.faults.fleet import Fleet, postgres_exporter_connections, wait_for_probe_threads
from tests.support.process import wait_until


def server_for(vendor: str, make_postgres, make_mariadb):
    if vendor == "postgresql":
        server = make_postgres(databases=("app",))
        return server, server.django_settings("app", "monitor", server.monitor_password)
    server = make_mariadb()
    server.create_user("hung_watch", grants=("PROCESS ON *.*", "SELECT ON legacy.*"))
    return server, server.django_settings("legacy", "hung_watch", server.passwords["hung_watch"])


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"])
def test_server_hung_mid_probe(vendor, make_fleet, make_postgres, make_mariadb) -> None:
    server, entry = server_for(vendor, make_postgres, make_mariadb)
    fleet: Fleet = make_fleet("hung", entry)
    fleet.scrape()
    assert fleet.faulted_state().up

    server.pause()
    # The kept connection is blocked in a read: the watchdog interrupts it at the deadline.
    down = fleet.expect_down("timeout")
    assert "deadline" in down.message
    fleet.expect_down("timeout")

    server.resume()
    fleet.expect_up()
    assert fleet.harness.value("dbhealth_probe_failures_total", alias="hung", reason="timeout") == 2
    if vendor == "postgresql":
        # The interrupted connection is gone on the server too; only the new one remains.
        assert wait_until(lambda: postgres_exporter_connections(server) == 1, timeout=30)
    fleet.finish()


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"])
def test_server_hung_before_first_connect(vendor, make_fleet, make_postgres, make_mariadb) -> None:
    server, entry = server_for(vendor, make_postgres, make_mariadb)
    fleet: Fleet = make_fleet("hung", entry)
    server.pause()

    # The kernel completes the TCP handshake; the login never gets an answer.
    fleet.expect_down("timeout")

    server.resume()
    wait_for_probe_threads()
    fleet.expect_up()
    fleet.finish()
