"""Metric families for the Django project's view of its aliases (dbhealth.project.insight).

dbhealth_route_info needs no database, so it is exported even while every alias is down: that is
when dashboards and alerts need it to name the apps a down alias takes with it. A model whose
reads a router spreads over several replicas has one series per replica.
"""

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from dbhealth.configuration.targets import Target
from dbhealth.probing.state import ServiceState
from dbhealth.project.insight import ProjectLayout, project_layout


class ProjectCollector:
    """Per-alias project readings from the shared state, plus the routing map.

    `only_alias` limits the routing map to models read from or written to that alias, so that
    /probe?alias=X scrapes do not each repeat the whole map.
    """

    def __init__(
        self,
        targets: Iterable[Target],
        state: ServiceState,
        layout: ProjectLayout | None = None,
        only_alias: str | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.state = state
        self.layout = layout or project_layout()
        self.only_alias = only_alias

    def collect(self) -> Iterator[Metric]:
        routes = GaugeMetricFamily(
            "dbhealth_route_info",
            "Where the routers send a model's reads and writes: 1 for every pair of aliases"
            " they can take (load-balancing routers spread reads over several); 'not routed'"
            " where no router answers and the code chooses (default unless .using()).",
            labels=["app_label", "model", "read_alias", "write_alias"],
        )
        for route in self.layout.routes:
            if self.only_alias in (None, route.read_alias, route.write_alias):
                routes.add_metric(
                    [route.app_label, route.model, route.read_alias, route.write_alias], 1
                )
        pending = GaugeMetricFamily(
            "dbhealth_migrations_pending",
            "Migrations the routers allow on the alias that are not recorded as applied there.",
            labels=["alias"],
        )
        missing = GaugeMetricFamily(
            "dbhealth_unmanaged_table_missing",
            "1 if the table of an unmanaged (managed = False) model is absent on the alias.",
            labels=["alias", "app_label", "model"],
        )
        for target in self.targets:
            alias_state = self.state.aliases.get(target.alias)
            # Like the other observations: only from an alias that answers now.
            if alias_state is None or not alias_state.up or alias_state.project is None:
                continue
            reading = alias_state.project
            if reading.migrations_pending is not None:
                pending.add_metric([target.alias], reading.migrations_pending)
            for table in reading.unmanaged_tables:
                missing.add_metric(
                    [target.alias, table.app_label, table.model], 0 if table.present else 1
                )
        yield routes
        yield pending
        yield missing
