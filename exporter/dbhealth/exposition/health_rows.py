"""One row per alias for people: the JSON health endpoint, the CLI and the status page share it."""

import time
from dataclasses import asdict, dataclass

from dbhealth.configuration.targets import Target
from dbhealth.probing.state import AliasState, ServiceState


@dataclass
class MissingTable:
    """The table of an unmanaged (managed = False) model, absent where the routers send it."""

    app_label: str
    model: str
    table: str


@dataclass
class AliasReport:
    alias: str
    vendor: str
    critical: bool
    up: bool
    reason: str | None
    message: str | None
    ping_seconds: float | None
    probe_seconds: float | None
    size_bytes: float | None
    connections: int | None
    connections_max: int | None
    replica: bool | None
    replication_lag_seconds: float | None
    top_statement: str | None
    top_statement_mean_seconds: float | None
    statements_problem: str | None
    last_success_age_seconds: float | None
    # What the Django project expects of the alias (embedded mode; see project_insight). None
    # while unknown: no project, alias down, or not read yet.
    migrations_pending: int | None
    unmanaged_tables_missing: list[MissingTable] | None

    @property
    def findings(self) -> list[str]:
        """The Django findings in words, for the status page, the CLI and `check`."""
        found = []
        if self.migrations_pending:
            plural = "s" if self.migrations_pending != 1 else ""
            found.append(f"{self.migrations_pending} migration{plural} not applied")
        found += [
            f"table {t.table} of {t.app_label}.{t.model} missing"
            for t in self.unmanaged_tables_missing or ()
        ]
        if self.migrations_pending is None and self.unmanaged_tables_missing is not None:
            # The alias's `migrations` option is off: unknown, never "up to date".
            found.append("migrations not read")
        return found

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class HealthReport:
    aliases: list[AliasReport]

    @property
    def healthy(self) -> bool:
        return all(row.up for row in self.aliases if row.critical)

    @property
    def project_known(self) -> bool:
        """True when some alias has a reading of the Django project (embedded mode)."""
        return any(row.unmanaged_tables_missing is not None for row in self.aliases)

    def as_dict(self) -> dict:
        return {
            "status": "ok" if self.healthy else "failing",
            "aliases": {row.alias: row.as_dict() for row in self.aliases},
        }


def build_report(targets: tuple[Target, ...], state: ServiceState) -> HealthReport:
    now = time.time()
    return HealthReport([alias_report(t, state.aliases.get(t.alias), now) for t in targets])


def alias_report(target: Target, state: AliasState | None, now: float) -> AliasReport:
    state = state or AliasState(reason="error", message="not probed yet")
    up = state.up
    top = state.statements[0] if up and state.statements and state.statements_available else None
    # Like the metrics: only from an alias that answers now.
    project = state.project if up else None
    return AliasReport(
        alias=target.alias,
        vendor=target.vendor,
        critical=target.critical,
        up=up,
        reason=None if up else state.reason,
        message=None if up else state.message,
        ping_seconds=state.ping_seconds if up else None,
        probe_seconds=state.probe_seconds,
        size_bytes=state.size_bytes if up else None,
        connections=sum(state.connections.values()) if up and state.connections else None,
        connections_max=state.connections_max if up else None,
        replica=state.replica if up else None,
        replication_lag_seconds=state.replication_lag_seconds if up else None,
        top_statement=top.query if top else None,
        top_statement_mean_seconds=top.mean_seconds if top else None,
        statements_problem=state.statements_problem if up else None,
        last_success_age_seconds=(
            max(0.0, now - state.last_success) if state.last_success else None
        ),
        migrations_pending=project.migrations_pending if project else None,
        unmanaged_tables_missing=(
            [
                MissingTable(app_label=t.app_label, model=t.model, table=t.table)
                for t in project.unmanaged_tables
                if not t.present
            ]
            if project
            else None
        ),
    )
