"""Custom queries' families: `dbhealth_query_<name>_<column>{alias, <label columns>}`, one per
metric column of each configured query, with the rows each alias read last."""

from prometheus_client.core import Metric

from dbhealth.configuration.queries import CustomQuery
from dbhealth.configuration.targets import Target
from dbhealth.exposition.encoding import LineFamily
from dbhealth.probing.state import AliasState


class QueryFamilies:
    def __init__(self) -> None:
        self.families: dict[str, LineFamily] = {}

    def all(self) -> list[Metric]:
        return list(self.families.values())

    def add(self, target: Target, state: AliasState) -> None:
        # Rows are kept by definition: what an older definition read is never shown as this one.
        for query in target.queries:
            for row in state.query_rows.get(query, ()):
                for column, kind in query.metrics:
                    if column in row.values:
                        self.family(query, column, kind).add_metric(
                            [target.alias, *row.labels], row.values[column]
                        )

    def family(self, query: CustomQuery, column: str, kind: str) -> LineFamily:
        name = query.family_name(column)
        if name not in self.families:
            self.families[name] = LineFamily(name, query.help, kind, ["alias", *query.labels])
        return self.families[name]
