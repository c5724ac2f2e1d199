"""The maintenance signals (README, "Maintenance signals"): what VACUUM, ANALYZE, OPTIMIZE TABLE
or SQLite's VACUUM would fix, for a bounded number of tables per alias (table_top_n)."""

from collections.abc import Callable

from prometheus_client.core import Metric

from dbhealth.exposition.encoding import LineFamily
from dbhealth.probing.state import AliasState

TABLE_LABELS = ["alias", "table", "model"]


def gauge(name: str, documentation: str, labels: list[str]) -> LineFamily:
    return LineFamily(name, documentation, "gauge", labels)


class MaintenanceFamilies:
    def __init__(self) -> None:
        self.dead_rows = gauge(
            "dbhealth_table_dead_rows",
            "PostgreSQL: dead rows of the tables with the most; model names the Django model "
            "where the project has one.",
            TABLE_LABELS,
        )
        self.live_rows = gauge(
            "dbhealth_table_live_rows",
            "PostgreSQL: live rows of the tables with the most dead rows.",
            TABLE_LABELS,
        )
        self.last_vacuum = gauge(
            "dbhealth_table_last_vacuum_timestamp_seconds",
            "PostgreSQL: when the table was last vacuumed (manual or auto, whichever is later); "
            "absent when never.",
            TABLE_LABELS,
        )
        self.last_analyze = gauge(
            "dbhealth_table_last_analyze_timestamp_seconds",
            "PostgreSQL: when the table was last analyzed (manual or auto, whichever is later); "
            "absent when never.",
            TABLE_LABELS,
        )
        self.size = gauge(
            "dbhealth_table_size_bytes",
            "PostgreSQL, MySQL/MariaDB: size of the largest tables, indexes included.",
            TABLE_LABELS,
        )
        self.free = gauge(
            "dbhealth_table_free_bytes",
            "MySQL/MariaDB: space allocated to the largest tables and unused (DATA_FREE).",
            TABLE_LABELS,
        )
        self.sqlite_freelist = gauge(
            "dbhealth_sqlite_freelist_bytes",
            "SQLite: free pages times the page size, what VACUUM would give back.",
            ["alias"],
        )

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]

    def add(self, alias: str, state: AliasState, label_text: Callable[[str, int], str]) -> None:
        """`label_text` is exposition.families' (passed in: that module imports this one)."""
        for table in state.tables or ():
            labels = [alias, label_text(table.table, 256), label_text(table.model, 256)]
            if table.dead_rows is not None:
                self.dead_rows.add_metric(labels, table.dead_rows)
            if table.live_rows is not None:
                self.live_rows.add_metric(labels, table.live_rows)
            if table.last_vacuum is not None:
                self.last_vacuum.add_metric(labels, table.last_vacuum)
            if table.last_analyze is not None:
                self.last_analyze.add_metric(labels, table.last_analyze)
            if table.size_bytes is not None:
                self.size.add_metric(labels, table.size_bytes)
            if table.free_bytes is not None:
                self.free.add_metric(labels, table.free_bytes)
        if state.sqlite_freelist_bytes is not None:
            self.sqlite_freelist.add_metric([alias], state.sqlite_freelist_bytes)
