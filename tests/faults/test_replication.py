"""A replica outliving its primary, then promoted: the role metric follows the server."""

import time

from tests.faults.fleet import Fleet
from tests.support.postgres import PostgresReplica


def test_replica_without_primary_then_promoted(make_fleet, make_postgres) -> None:
    primary = make_postgres(databases=("app",))
    with PostgresReplica(primary) as replica:
        replica.wait_caught_up()
        fleet: Fleet = make_fleet(
            "primary",
            primary.django_settings("app", "monitor", primary.monitor_password),
            extra={"replica": replica.django_settings("app", "monitor", primary.monitor_password)},
        )
        fleet.scrape()
        assert fleet.harness.value("dbhealth_replica", alias="primary") == 0
        assert fleet.harness.value("dbhealth_replica", alias="replica") == 1
        assert fleet.harness.value("dbhealth_replication_lag_seconds", alias="replica") == 0
        assert fleet.harness.value("dbhealth_replica_connected", alias="replica") == 1

        primary.kill()
        fleet.expect_down("refused")
        # The replica still serves reads and is still a replica, but says it lost its primary:
        # its lag alone (0, all received WAL replayed) would hide that.
        assert fleet.harness.alias("replica").up
        assert fleet.harness.value("dbhealth_replica", alias="replica") == 1
        for _ in range(50):
            if fleet.harness.value("dbhealth_replica_connected", alias="replica") == 0:
                break
            time.sleep(0.1)
            fleet.scrape()
        assert fleet.harness.value("dbhealth_replica_connected", alias="replica") == 0

        replica.promote()
        fleet.scrape()
        assert fleet.harness.alias("replica").up
        assert fleet.harness.value("dbhealth_replica", alias="replica") == 0
        assert fleet.harness.value("dbhealth_replication_lag_seconds", alias="replica") is None
        assert fleet.harness.value("dbhealth_replica_connected", alias="replica") is None

        primary.start()
        fleet.expect_up()
        fleet.finish()
