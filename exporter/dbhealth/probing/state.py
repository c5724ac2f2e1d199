"""Plain records of what probes saw: per alias, kept in memory by the one probe service.

An AliasState is never changed once published: recording a probe builds a new one and swaps it in
under the service's lock, so a scrape that holds a snapshot reads a consistent record without any
lock of its own. Times that decide freshness are monotonic (a stepped wall clock cannot stop or
force probing); wall-clock times exist only to be exported as timestamps.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbhealth.configuration.queries import CustomQuery

REASONS = (
    "timeout",
    "refused",
    "dns",
    "auth",
    "config",
    "permission",
    "connection_limit",
    "error",
)
# Optional parts of a probe, in the order they are read. `activity` (transactions, locks, WAL
# file) is read on every probe; the refreshed parts at most once per refresh_interval; the
# integrity check at most once per integrity_interval.
ACTIVITY_PART = "activity"
REFRESHED_PARTS = ("size", "statements", "project", "ids", "maintenance")
INTEGRITY_PART = "integrity"
EXPENSIVE_PARTS = (ACTIVITY_PART, *REFRESHED_PARTS, INTEGRITY_PART)
# Read on every round, but through one alias per server: the facts below describe the server.
# Each vendor probe names which of the observations it reads there (VendorProbe.server_facts).
SERVER_PART = "server"
SERVER_FACTS = (
    "version",
    "connections",
    "connections_max",
    "replica",
    "replica_connected",
    "replication_lag_seconds",
    "server_start_time",
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
class ReplicationSlot:
    name: str
    active: bool
    retained_bytes: float | None  # None: the slot has never reserved WAL


@dataclass
class IdHeadroom:
    """How much of an id column's range is still free: 1 empty, 0 exhausted."""

    table: str
    ratio: float
    model: str = ""  # "app_label.Model" when the Django project knows the table


@dataclass
class TableMaintenance:
    """What a table needs of maintenance (see README, "Maintenance signals"). Dead and live rows
    and the last vacuum and analyze are read for the tables with the most dead rows, size and
    free space for the largest: a field the table was not picked for stays None."""

    table: str
    model: str = ""  # "app_label.Model" when the Django project knows the table
    dead_rows: int | None = None
    live_rows: int | None = None
    last_vacuum: float | None = None  # wall clock; None: never vacuumed (or not read)
    last_analyze: float | None = None  # wall clock; None: never analyzed (or not read)
    size_bytes: float | None = None
    free_bytes: float | None = None


@dataclass
class QueryRow:
    """One row of a custom query: its label values (redacted, in the order of the query's label
    columns) and its metric columns' numbers (a NULL is left out: unknown, never 0)."""

    labels: tuple[str, ...]
    values: dict[str, float]


@dataclass
class ProjectReading:
    """What an alias holds of the Django project: see dbhealth.project.insight."""

    migrations_pending: int | None  # None: the alias opted out of the migrations check
    unmanaged_tables: list[UnmanagedTable]


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
    # Trouble before an outage (see README, "Health signals").
    oldest_transaction_seconds: float | None = None
    oldest_idle_in_transaction_seconds: float | None = None
    blocked_sessions: int | None = None
    longest_lock_wait_seconds: float | None = None
    transactions: dict[str, int] | None = None  # outcome (commit, rollback) -> count
    deadlocks: int | None = None
    transaction_id_age: int | None = None
    multixact_id_age: int | None = None
    server_start_time: float | None = None  # wall clock
    replication_slots: list[ReplicationSlot] | None = None
    threads_running: int | None = None
    undo_history_length: int | None = None
    aborted_connections: dict[str, int] | None = None  # kind (connect, client) -> count
    replica_last_errors: dict[str, int] | None = None  # thread (io, sql) -> error number
    sqlite_wal_bytes: int | None = None
    # Server-wide readings per database, from which each alias takes its own database's
    # (PostgreSQL: database name -> the SESSION_FIELDS values); None when the role cannot see.
    sessions_by_database: dict[str, tuple] | None = None
    id_headroom: list[IdHeadroom] | None = None
    integrity_ok: bool | None = None
    # The maintenance part (see MAINTENANCE_FIELDS).
    tables: list[TableMaintenance] | None = None
    sqlite_freelist_bytes: int | None = None
    # Custom queries read this time, keyed by their definition (a changed definition is another
    # query): see dbhealth.probing.custom_queries.
    query_rows: dict["CustomQuery", list[QueryRow]] = field(default_factory=dict)


# Session signals a vendor may read per database for the whole server (sessions_by_database).
SESSION_FIELDS = (
    "oldest_transaction_seconds",
    "oldest_idle_in_transaction_seconds",
    "blocked_sessions",
    "longest_lock_wait_seconds",
)
# What the activity part reads: replaced whole on every probe that reads it, less the ones a
# vendor reads as server facts instead.
ACTIVITY_FIELDS = (
    "oldest_transaction_seconds",
    "oldest_idle_in_transaction_seconds",
    "blocked_sessions",
    "longest_lock_wait_seconds",
    "transactions",
    "deadlocks",
    "transaction_id_age",
    "multixact_id_age",
    "replication_slots",
    "threads_running",
    "undo_history_length",
    "aborted_connections",
    "replica_last_errors",
    "sqlite_wal_bytes",
)


# What the maintenance part reads: replaced whole whenever it is read.
MAINTENANCE_PART = "maintenance"
MAINTENANCE_FIELDS = ("tables", "sqlite_freelist_bytes")


@dataclass
class ProbeOutcome:
    """One probe of one alias, as it ended or as it stood when its deadline came."""

    up: bool
    reason: str | None = None
    message: str | None = None
    probe_seconds: float = 0.0
    connect_seconds: float | None = None
    ping_seconds: float | None = None
    observations: Observations = field(default_factory=Observations)
    # True when this outcome read the server's facts (see SERVER_FACTS) itself.
    read_server: bool = False
    # Optional parts that could not be read this time: part -> (reason, message).
    parts_failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Optional parts read to the end this time.
    parts_read: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ServerFacts:
    """The last facts read of one server, shared by every alias on it."""

    values: dict[str, object]
    read_at: float  # monotonic


@dataclass
class AliasState(Observations):
    """Everything remembered about an alias: the latest observations, when the expensive ones
    were read, the last probe's outcome and the counters. Published copies are never changed."""

    up: bool = False
    reason: str | None = None
    message: str | None = None
    checked_at: float = 0.0  # monotonic: when the last probe (or stuck-probe check) was recorded
    probe_seconds: float | None = None
    connect_seconds: float | None = None
    ping_seconds: float | None = None
    last_success: float | None = None  # wall clock, exported
    failures: dict[str, int] = field(default_factory=dict)
    last_failure: dict[str, float] = field(default_factory=dict)  # wall clock, exported
    # Optional parts failing now (part -> message), and how often each failed, by reason.
    failing_parts: dict[str, str] = field(default_factory=dict)
    part_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    size_at: float | None = None  # monotonic
    statements_at: float | None = None  # monotonic
    project_at: float | None = None  # monotonic
    ids_at: float | None = None  # monotonic
    integrity_at: float | None = None  # monotonic
    integrity_checked: float | None = None  # wall clock, exported
    maintenance_at: float | None = None  # monotonic
    # Custom queries: when each was last run (monotonic), read or failed: at most once per
    # its interval either way, so that a slow query is not retried on every probe.
    queries_at: dict["CustomQuery", float] = field(default_factory=dict)

    def evolve(self) -> "AliasState":
        """A copy to build the next published state from; the counters are copied, nested
        records (statements, project readings) are only ever replaced, so they are shared."""
        mine = dataclasses.replace(self)
        mine.failures = dict(self.failures)
        mine.last_failure = dict(self.last_failure)
        mine.failing_parts = dict(self.failing_parts)
        mine.part_failures = dict(self.part_failures)
        mine.query_rows = dict(self.query_rows)
        mine.queries_at = dict(self.queries_at)
        return mine


@dataclass(frozen=True)
class DiscoveryStatus:
    """One [discover.<name>] table as last listed."""

    aliases: int
    capped: bool  # more databases matched than max_aliases allowed
    ok: bool  # the last listing worked


@dataclass
class ServiceState:
    """A snapshot for one scrape: the aliases it asked for, as last recorded."""

    rounds: int = 0
    aliases: dict[str, AliasState] = field(default_factory=dict)
    # Scrapes that wanted an alias probed while it waited for a connection slot or a probe
    # thread of the exporter's own (it kept its last result meanwhile), per alias asked for.
    slot_waits: dict[str, int] = field(default_factory=dict)
    # Discovery tables by name (probing/discovery.py).
    discoveries: dict[str, DiscoveryStatus] = field(default_factory=dict)
