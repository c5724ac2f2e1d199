"""Plain records of what a probe saw, kept per alias in the service-wide state.

They travel between worker processes as JSON, so they hold only numbers, strings, lists and dicts.
"""

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

REASONS = ("timeout", "refused", "dns", "auth", "config", "permission", "error")
EXPENSIVE_PARTS = ("size", "statements", "project")
# Read on every round, but through one alias per server: the facts below describe the server.
SERVER_PART = "server"
SERVER_FACTS = (
    "version",
    "connections",
    "connections_max",
    "replica",
    "replica_connected",
    "replication_lag_seconds",
)


@dataclass
class Statement:
    queryid: str
    query: str
    calls: int
    total_seconds: float
    mean_seconds: float
    rows: int


@dataclass
class UnmanagedTable:
    app_label: str
    model: str
    table: str
    present: bool


@dataclass
class ProjectReading:
    """What an alias holds of the Django project: see exporter/project_insight.py."""

    migrations_pending: int
    unmanaged_tables: list[UnmanagedTable]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ProjectReading":
        tables = [UnmanagedTable(**item) for item in data.get("unmanaged_tables") or []]
        return cls(migrations_pending=int(data["migrations_pending"]), unmanaged_tables=tables)


@dataclass
class Observations:
    """What the vendor queries read on one probe; None means 'not read this time'."""

    version: str | None = None
    connections: dict[str, int] | None = None
    connections_max: int | None = None
    replica: bool | None = None
    replica_connected: bool | None = None
    replication_lag_seconds: float | None = None
    size_bytes: float | None = None
    statements: list[Statement] | None = None
    statements_available: bool | None = None
    statements_problem: str | None = None
    project: ProjectReading | None = None


@dataclass
class ProbeOutcome:
    """One probe of one alias, as the runner saw it when its deadline came or it finished."""

    up: bool
    reason: str | None = None
    message: str | None = None
    probe_seconds: float = 0.0
    connect_seconds: float | None = None
    ping_seconds: float | None = None
    observations: Observations = field(default_factory=Observations)


@dataclass
class AliasState(Observations):
    """Everything remembered about an alias across probes: the latest observations, when the
    expensive ones were read, the last probe's outcome and the counters."""

    up: bool = False
    reason: str | None = None
    message: str | None = None
    probed_at: float = 0.0
    probe_seconds: float | None = None
    connect_seconds: float | None = None
    ping_seconds: float | None = None
    last_success: float | None = None
    failures: dict[str, int] = field(default_factory=dict)
    last_failure: dict[str, float] = field(default_factory=dict)
    size_at: float | None = None
    statements_at: float | None = None
    project_at: float | None = None

    def copy(self) -> "AliasState":
        """A copy a probe round may change while other threads still read this one.

        A round reassigns fields and counts into the two failure dicts in place; nested records
        (statements, project readings) are only ever replaced, so they are shared.
        """
        mine = copy.copy(self)
        mine.failures = dict(self.failures)
        mine.last_failure = dict(self.last_failure)
        return mine

    def to_json(self) -> dict[str, Any]:
        """What asdict() gives, without its generic deep copy: saving 200 aliases' state with
        their top statements spent most of its time there."""
        data: dict[str, Any] = {}
        for name in ALIAS_STATE_FIELDS:
            value = getattr(self, name)
            if name == "statements" and value is not None:
                value = [statement_json(statement) for statement in value]
            elif isinstance(value, dict):
                value = dict(value)
            elif is_dataclass(value):
                value = asdict(value)
            data[name] = value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AliasState":
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("statements") is not None:
            values["statements"] = [Statement(**item) for item in values["statements"]]
        if values.get("project") is not None:
            values["project"] = ProjectReading.from_json(values["project"])
        return cls(**values)


ALIAS_STATE_FIELDS = tuple(item.name for item in fields(AliasState))


def statement_json(statement: Statement) -> dict[str, Any]:
    return {
        "queryid": statement.queryid,
        "query": statement.query,
        "calls": statement.calls,
        "total_seconds": statement.total_seconds,
        "mean_seconds": statement.mean_seconds,
        "rows": statement.rows,
    }


@dataclass
class ServiceState:
    rounds: int = 0
    aliases: dict[str, AliasState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "aliases": {alias: state.to_json() for alias, state in self.aliases.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ServiceState":
        return cls(
            rounds=int(data.get("rounds", 0)),
            aliases={
                alias: AliasState.from_json(item)
                for alias, item in (data.get("aliases") or {}).items()
            },
        )
