"""The metric contract: service state turned into Prometheus metric families.

Families are built fresh for every scrape from the shared state, never kept in global metric
objects, so a removed alias or statement disappears instead of lingering with stale labels.
"""

import time
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import Metric

from dbhealth.configuration.targets import Target
from dbhealth.exposition.build_info import build_labels
from dbhealth.exposition.encoding import LineFamily
from dbhealth.exposition.maintenance_families import MaintenanceFamilies
from dbhealth.exposition.query_families import QueryFamilies
from dbhealth.probing.state import REASONS, AliasState, ServiceState

MAX_LABEL_LENGTH = 1024


def label_text(value: str, limit: int = MAX_LABEL_LENGTH) -> str:
    """Printable, valid UTF-8 and bounded: database texts can hold anything."""
    cleaned = value
    # Most texts are printable already (which rules out lone surrogates too): skip the slow part.
    if not value.isprintable():
        cleaned = "".join(
            " " if not ch.isprintable() else ch
            for ch in value.encode("utf-8", "replace").decode("utf-8", "replace")
        )
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> LineFamily:
    return LineFamily(name, documentation, "gauge", labels)


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> LineFamily:
    return LineFamily(name, documentation, "counter", labels)


class StateCollector:
    """A collector over a state snapshot; prometheus_client only needs `collect()`."""

    def __init__(self, targets: Iterable[Target], state: ServiceState, now: float | None = None):
        self.targets = tuple(targets)
        self.state = state
        # Part ages are measured on the monotonic clock the probe service records them with.
        self.now = time.monotonic() if now is None else now

    def collect(self) -> Iterator[Metric]:
        families = Families()
        slot_waits = counter(
            "dbhealth_probe_slot_waits",
            "Scrapes that found the alias due while it waited for one of the exporter's own"
            " connection slots or probe threads; it kept its last result meanwhile.",
            labels=["alias"],
        )
        probe_age = gauge(
            "dbhealth_probe_age_seconds",
            "Time since the alias's last recorded probe.",
            labels=["alias"],
        )
        for target in self.targets:
            alias_state = self.state.aliases.get(target.alias)
            if alias_state is not None:
                families.add_alias(target, alias_state, self.now)
                probe_age.add_metric([target.alias], max(0.0, self.now - alias_state.checked_at))
            slot_waits.add_metric([target.alias], self.state.slot_waits.get(target.alias, 0))
        yield slot_waits
        yield probe_age
        if self.state.discoveries:
            yield from discovery_families(self.state)
        rounds = counter("dbhealth_probe_rounds", "Probe rounds run by the whole service.")
        rounds.add_metric([], self.state.rounds)
        yield rounds
        labels = build_labels()
        build = gauge(
            "dbhealth_build_info",
            'dbhealth\'s version and revision, the Python and Django it runs on, and demo="true" '
            "when it watches only its demo database (no configuration); always 1.",
            labels=list(labels),
        )
        build.add_metric(list(labels.values()), 1)
        yield build
        yield from families.all()


def discovery_families(state: ServiceState) -> list[Metric]:
    """[discover.<name>] tables: how many aliases each adds, whether max_aliases cut it."""
    aliases = gauge(
        "dbhealth_discovery_aliases", "Aliases a discovery table adds now.", labels=["discovery"]
    )
    capped = gauge(
        "dbhealth_discovery_capped",
        "1 when more databases matched a discovery table than its max_aliases allows.",
        labels=["discovery"],
    )
    listed = gauge(
        "dbhealth_discovery_up",
        "1 if the last listing of a discovery table's databases worked.",
        labels=["discovery"],
    )
    for name, status in sorted(state.discoveries.items()):
        aliases.add_metric([name], status.aliases)
        capped.add_metric([name], 1 if status.capped else 0)
        listed.add_metric([name], 1 if status.ok else 0)
    return [aliases, capped, listed]


class Families:
    def __init__(self) -> None:
        self.up = gauge(
            "dbhealth_up", "1 if the last probe connected and answered.", labels=["alias", "vendor"]
        )
        self.probe_duration = gauge(
            "dbhealth_probe_duration_seconds", "Wall time of the last probe.", labels=["alias"]
        )
        self.connect_duration = gauge(
            "dbhealth_connect_duration_seconds",
            "Time to open the last new connection.",
            labels=["alias"],
        )
        self.ping_duration = gauge(
            "dbhealth_ping_duration_seconds",
            "Round trip of the trivial query in the last probe.",
            labels=["alias"],
        )
        self.failures = counter(
            "dbhealth_probe_failures", "Failed probes by reason.", labels=["alias", "reason"]
        )
        self.down_reason = gauge(
            "dbhealth_down_reason",
            "1 for the reason the alias is down now; absent while it is up.",
            labels=["alias", "reason"],
        )
        self.last_failure = gauge(
            "dbhealth_last_failure_timestamp_seconds",
            "When a probe last failed, by reason.",
            labels=["alias", "reason"],
        )
        self.last_success = gauge(
            "dbhealth_last_success_timestamp_seconds",
            "When the alias last answered a probe.",
            labels=["alias"],
        )
        self.info = gauge(
            "dbhealth_info",
            "Identity of the alias's server; never carries credentials.",
            labels=["alias", "vendor", "version", "host", "port", "database"],
        )
        self.critical = gauge(
            "dbhealth_critical", "1 if the alias being down fails /healthz.", labels=["alias"]
        )
        self.deadline = gauge(
            "dbhealth_deadline_seconds", "Configured probe deadline.", labels=["alias"]
        )
        self.size = gauge(
            "dbhealth_database_size_bytes", "Size of the alias's database.", labels=["alias"]
        )
        self.connections = gauge(
            "dbhealth_connections",
            "Client connections to the server by state (MySQL/MariaDB without PROCESS: all "
            "under state unknown); server-wide, repeated on every alias of the server.",
            labels=["alias", "state"],
        )
        self.connections_max = gauge(
            "dbhealth_connections_max", "The server's connection limit.", labels=["alias"]
        )
        self.replica = gauge("dbhealth_replica", "1 replica, 0 primary.", labels=["alias"])
        self.replica_connected = gauge(
            "dbhealth_replica_connected",
            "1 if a replica is connected to its primary and receiving; replicas only.",
            labels=["alias"],
        )
        self.lag = gauge(
            "dbhealth_replication_lag_seconds",
            "How far a replica's replay is behind; replicas only.",
            labels=["alias"],
        )
        self.statements_available = gauge(
            "dbhealth_statements_available",
            "1 if statement statistics could be read (extension and privilege present).",
            labels=["alias"],
        )
        statement = ["alias", "queryid"]
        self.statement_calls = counter(
            "dbhealth_statement_calls", "Calls of a top statement.", labels=statement
        )
        self.statement_seconds = counter(
            "dbhealth_statement_seconds",
            "Total execution time of a top statement.",
            labels=statement,
        )
        self.statement_mean = gauge(
            "dbhealth_statement_mean_seconds",
            "Mean execution time of a top statement.",
            labels=statement,
        )
        self.statement_rows = counter(
            "dbhealth_statement_rows", "Rows read or written by a top statement.", labels=statement
        )
        self.statement_info = gauge(
            "dbhealth_statement_info",
            "Normalized, cut text of a top statement.",
            labels=["alias", "queryid", "query"],
        )
        self.part_failures = counter(
            "dbhealth_part_failures",
            "Optional parts (server facts, activity, size, statements, project, ids, integrity, "
            "maintenance, query:<name>) that could not be read, by reason; the alias stays up.",
            labels=["alias", "part", "reason"],
        )
        self.part_age = gauge(
            "dbhealth_part_age_seconds",
            "Age of the cached expensive parts (size, statements, project, ids, integrity).",
            labels=["alias", "part"],
        )

        self.health = HealthFamilies()
        self.maintenance = MaintenanceFamilies()
        self.queries = QueryFamilies()

    def all(self) -> list[Metric]:
        own = [value for value in vars(self).values() if isinstance(value, Metric)]
        return own + self.health.all() + self.maintenance.all() + self.queries.all()

    def add_alias(self, target: Target, state: AliasState, now: float) -> None:
        alias = target.alias
        self.up.add_metric([alias, target.vendor], 1 if state.up else 0)
        self.critical.add_metric([alias], 1 if target.critical else 0)
        self.deadline.add_metric([alias], target.deadline)
        if state.probe_seconds is not None:
            self.probe_duration.add_metric([alias], state.probe_seconds)
        if state.connect_seconds is not None:
            self.connect_duration.add_metric([alias], state.connect_seconds)
        if state.ping_seconds is not None and state.up:
            self.ping_duration.add_metric([alias], state.ping_seconds)
        for reason in REASONS:
            self.failures.add_metric([alias, reason], state.failures.get(reason, 0))
        for (part, reason), count in sorted(state.part_failures.items()):
            self.part_failures.add_metric([alias, part, reason], count)
        for reason, when in sorted(state.last_failure.items()):
            self.last_failure.add_metric([alias, reason], when)
        if state.last_success is not None:
            self.last_success.add_metric([alias], state.last_success)
        self.info.add_metric(
            [
                alias,
                target.vendor,
                label_text(state.version or "", 64),
                label_text(target.host, 256),
                target.port,
                label_text(target.database, 256),
            ],
            1,
        )
        if not state.up:
            self.down_reason.add_metric([alias, state.reason or "error"], 1)
            return
        self.add_observations(alias, state, now)
        self.queries.add(target, state)

    def add_observations(self, alias: str, state: AliasState, now: float) -> None:
        if state.connections is not None:
            for connection_state, count in sorted(state.connections.items()):
                self.connections.add_metric([alias, label_text(connection_state, 64)], count)
        if state.connections_max is not None:
            self.connections_max.add_metric([alias], state.connections_max)
        if state.replica is not None:
            self.replica.add_metric([alias], 1 if state.replica else 0)
        if state.replica and state.replica_connected is not None:
            self.replica_connected.add_metric([alias], 1 if state.replica_connected else 0)
        if state.replica and state.replication_lag_seconds is not None:
            self.lag.add_metric([alias], state.replication_lag_seconds)
        if state.size_bytes is not None and state.size_at is not None:
            self.size.add_metric([alias], state.size_bytes)
            self.part_age.add_metric([alias, "size"], max(0.0, now - state.size_at))
        if state.maintenance_at is not None:
            self.part_age.add_metric([alias, "maintenance"], max(0.0, now - state.maintenance_at))
        if state.statements_available is not None:
            self.statements_available.add_metric([alias], 1 if state.statements_available else 0)
        if state.statements and state.statements_available and state.statements_at is not None:
            self.part_age.add_metric([alias, "statements"], max(0.0, now - state.statements_at))
            for statement in state.statements:
                labels = [alias, label_text(statement.queryid, 64)]
                self.statement_calls.add_metric(labels, statement.calls)
                self.statement_seconds.add_metric(labels, statement.total_seconds)
                self.statement_mean.add_metric(labels, statement.mean_seconds)
                self.statement_rows.add_metric(labels, statement.rows)
                self.statement_info.add_metric([*labels, label_text(statement.query)], 1)
        # Each with the values it dates: none when the part has nothing to show.
        for part, values, read_at in (
            ("project", state.project, state.project_at),
            ("ids", state.id_headroom, state.ids_at),
            ("integrity", state.integrity_ok, state.integrity_at),
        ):
            if values is not None and read_at is not None:
                self.part_age.add_metric([alias, part], max(0.0, now - read_at))
        self.health.add(alias, state)
        self.maintenance.add(alias, state, label_text)


# Simple per-alias gauges of the health signals: (metric name, help, AliasState attribute).
HEALTH_GAUGES = (
    (
        "dbhealth_oldest_transaction_seconds",
        "Age of the oldest open transaction on the alias's database (not dbhealth's own).",
        "oldest_transaction_seconds",
    ),
    (
        "dbhealth_oldest_idle_in_transaction_seconds",
        "The longest a session has sat idle inside an open transaction.",
        "oldest_idle_in_transaction_seconds",
    ),
    (
        "dbhealth_blocked_sessions",
        "Sessions waiting for a lock another session holds.",
        "blocked_sessions",
    ),
    (
        "dbhealth_longest_lock_wait_seconds",
        "The longest current wait for a lock.",
        "longest_lock_wait_seconds",
    ),
    (
        "dbhealth_server_start_time_seconds",
        "When the database server last started, in unix time.",
        "server_start_time",
    ),
    (
        "dbhealth_transaction_id_age",
        "PostgreSQL: age of the database's oldest unfrozen transaction id (wraparound at 2^31).",
        "transaction_id_age",
    ),
    (
        "dbhealth_multixact_id_age",
        "PostgreSQL: age of the database's oldest multixact id.",
        "multixact_id_age",
    ),
    (
        "dbhealth_threads_running",
        "MySQL/MariaDB: Threads_running of the server (server-wide, repeated per alias).",
        "threads_running",
    ),
    (
        "dbhealth_undo_history_length",
        "MySQL/MariaDB: InnoDB history list length (purge lag) of the server (server-wide, "
        "repeated per alias).",
        "undo_history_length",
    ),
    ("dbhealth_sqlite_wal_bytes", "SQLite: size of the -wal file.", "sqlite_wal_bytes"),
)


class HealthFamilies:
    """The signals that come before an outage: long transactions, locks, wraparound, slots,
    restarts, deadlocks, ids running out, SQLite's WAL and integrity."""

    def __init__(self) -> None:
        self.gauges = [
            (gauge(name, documentation, labels=["alias"]), attribute)
            for name, documentation, attribute in HEALTH_GAUGES
        ]
        self.transactions = counter(
            "dbhealth_transactions",
            "PostgreSQL: transactions of the alias's database ended, by outcome. "
            "MySQL/MariaDB: COMMIT and ROLLBACK statements run on the whole server "
            "(Com_commit, Com_rollback; autocommitted statements are not counted), repeated on "
            "every alias of the server: do not sum over aliases.",
            labels=["alias", "outcome"],
        )
        self.deadlocks = counter(
            "dbhealth_deadlocks",
            "Deadlocks detected (PostgreSQL: the database; MySQL/MariaDB: the whole server, "
            "repeated on every alias of the server).",
            labels=["alias"],
        )
        self.aborted = counter(
            "dbhealth_aborted_connections",
            "MySQL/MariaDB: connections aborted on the server, by kind (connect: failed "
            "attempts, client: clients gone without closing); server-wide, repeated per alias.",
            labels=["alias", "kind"],
        )
        self.slot_active = gauge(
            "dbhealth_replication_slot_active",
            "PostgreSQL primaries: 1 while a consumer is attached to the replication slot.",
            labels=["alias", "slot"],
        )
        self.slot_retained = gauge(
            "dbhealth_replication_slot_retained_bytes",
            "PostgreSQL primaries: WAL the replication slot keeps on disk.",
            labels=["alias", "slot"],
        )
        self.replica_error = gauge(
            "dbhealth_replica_last_error",
            "MySQL/MariaDB replicas: number of the replication thread's last error, 0 when none.",
            labels=["alias", "thread"],
        )
        self.id_headroom = gauge(
            "dbhealth_id_headroom_ratio",
            "Share of an id column's range still free (1 empty, 0 exhausted), for the tables "
            "with the least; model names the Django model where the project has one.",
            labels=["alias", "table", "model"],
        )
        self.integrity_ok = gauge(
            "dbhealth_integrity_ok",
            "SQLite: 1 if PRAGMA quick_check found no problem, 0 if it found corruption.",
            labels=["alias"],
        )
        self.integrity_checked = gauge(
            "dbhealth_integrity_checked_timestamp_seconds",
            "SQLite: when PRAGMA quick_check last ran.",
            labels=["alias"],
        )

    def all(self) -> list[Metric]:
        return [family for family, _ in self.gauges] + [
            self.transactions,
            self.deadlocks,
            self.aborted,
            self.slot_active,
            self.slot_retained,
            self.replica_error,
            self.id_headroom,
            self.integrity_ok,
            self.integrity_checked,
        ]

    def add(self, alias: str, state: AliasState) -> None:
        for family, attribute in self.gauges:
            value = getattr(state, attribute)
            if value is not None:
                family.add_metric([alias], value)
        for outcome, count in sorted((state.transactions or {}).items()):
            self.transactions.add_metric([alias, outcome], count)
        if state.deadlocks is not None:
            self.deadlocks.add_metric([alias], state.deadlocks)
        for kind, count in sorted((state.aborted_connections or {}).items()):
            self.aborted.add_metric([alias, kind], count)
        if not state.replica:
            for slot in state.replication_slots or ():
                labels = [alias, label_text(slot.name, 128)]
                self.slot_active.add_metric(labels, 1 if slot.active else 0)
                if slot.retained_bytes is not None:
                    self.slot_retained.add_metric(labels, slot.retained_bytes)
        if state.replica:
            for thread, number in sorted((state.replica_last_errors or {}).items()):
                self.replica_error.add_metric([alias, thread], number)
        for item in state.id_headroom or ():
            labels = [alias, label_text(item.table, 256), label_text(item.model, 256)]
            self.id_headroom.add_metric(labels, item.ratio)
        if state.integrity_ok is not None:
            self.integrity_ok.add_metric([alias], 1 if state.integrity_ok else 0)
        if state.integrity_checked is not None:
            self.integrity_checked.add_metric([alias], state.integrity_checked)


def reload_families(subject: str, what: str, successful: bool, last_success: float) -> list[Metric]:
    """Prometheus's own names for the state of the last reload of a file, under
    dbhealth_<subject>_ (config: the TOML file; web_config: DBHEALTH_WEB_CONFIG_FILE)."""
    ok = gauge(
        f"dbhealth_{subject}_last_reload_successful",
        f"1 if the last reload of the {what} succeeded (or none was needed).",
    )
    ok.add_metric([], 1 if successful else 0)
    when = gauge(
        f"dbhealth_{subject}_last_reload_success_timestamp_seconds",
        f"When the {what} in use was loaded.",
    )
    when.add_metric([], last_success)
    return [ok, when]
