"""Servers that die, shut down, were never there, or have a name nobody can resolve."""

import pytest

from tests.faults.fleet import Fleet, postgres_exporter_connections
from tests.support.ports import free_port
from tests.support.process import wait_until


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_postgres_killed_or_shut_down_then_restarted_on_the_same_port(
    how, make_fleet, make_postgres
) -> None:
    server = make_postgres(databases=("app",))
    fleet: Fleet = make_fleet(
        "gone", server.django_settings("app", "monitor", server.monitor_password)
    )
    fleet.scrape()
    assert fleet.faulted_state().up
    port = server.port

    getattr(server, how)()
    # The kept connection is dead and the one fresh attempt finds nothing listening.
    fleet.expect_down("refused")

    server.start()
    assert server.port == port
    fleet.expect_up()
    assert wait_until(lambda: postgres_exporter_connections(server) == 1, timeout=30)
    fleet.finish()


def test_mariadb_killed_then_restarted(make_fleet, make_mariadb) -> None:
    server = make_mariadb()
    server.create_user("gone_watch", grants=("PROCESS ON *.*", "SELECT ON legacy.*"))
    entry = server.django_settings("legacy", "gone_watch", server.passwords["gone_watch"])
    fleet: Fleet = make_fleet("gone", entry)
    fleet.scrape()
    assert fleet.faulted_state().up

    server.kill()
    fleet.expect_down("refused")

    server.start()
    fleet.expect_up()
    fleet.finish()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_nothing_listening_is_refused(engine, make_fleet) -> None:
    entry = {
        "ENGINE": f"django.db.backends.{engine}",
        "NAME": "app",
        "USER": "monitor",
        "PASSWORD": "irrelevant",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    fleet: Fleet = make_fleet("nobody", entry)
    fleet.expect_down("refused")
    fleet.finish()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_host_name_that_does_not_resolve(engine, make_fleet) -> None:
    entry = {
        "ENGINE": f"django.db.backends.{engine}",
        "NAME": "app",
        "USER": "monitor",
        "PASSWORD": "irrelevant",
        # RFC 2606: .invalid never resolves.
        "HOST": "db.dbhealth-test.invalid",
        "PORT": "5432",
    }
    fleet: Fleet = make_fleet("unresolvable", entry)
    down = fleet.expect_down("dns")
    assert "db.dbhealth-test.invalid" in down.message
    fleet.finish()
