"""Grafana dashboards as code: an overview of every alias and one dashboard per alias.

Plain dicts in Grafana's classic JSON model (schemaVersion 39): no Grafana library, files that
can be provisioned as they are (dashboards/provisioning/dashboards.yml) or imported by hand.
Per-alias dashboards are generated from the configured aliases so that each shows only the panels
its vendor and role can fill.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

Json = dict[str, Any]

SCHEMA_VERSION = 39
GRAFANA_VERSION = "10.4.0"
OVERVIEW_UID = "dbhealth-overview"
ALIAS_TEMPLATE_UID = "dbhealth-alias"
OVERVIEW_FILE = "overview.json"
TAG = "dbhealth"
ALIAS_TAG = "dbhealth-alias"
SERVER_VENDORS = frozenset({"postgresql", "mysql"})
GRID_WIDTH = 24

# The one datasource reference: the `datasource` template variable, so the dashboards work with
# whatever Prometheus the viewer picks and import without editing.
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}

# Panel thresholds; they mirror the alert defaults in config/prometheus/rules.yml.
PING_SECONDS = 0.25
CONNECTIONS_RATIO = 0.8
REPLICATION_LAG_SECONDS = 60
STATEMENT_MEAN_SECONDS = 1
STALE_SECONDS = 300
LONG_TRANSACTION_SECONDS = 3600
IDLE_IN_TRANSACTION_SECONDS = 300
LOCK_WAIT_SECONDS = 60
WRAPAROUND_AGE_WARNING = 1_000_000_000
WRAPAROUND_AGE_CRITICAL = 1_500_000_000
SLOT_RETAINED_BYTES = 10 * 2**30
UNDO_HISTORY_LENGTH = 1_000_000
ID_HEADROOM_RATIO_WARNING = 0.2
ID_HEADROOM_RATIO_CRITICAL = 0.05
SQLITE_WAL_BYTES = 2**30
# PostgreSQL transaction and multixact ids wrap around at 2^31.
WRAPAROUND_LIMIT = 2**31
# DbhealthServerRestarted reports a restart for this long.
RESTART_SECONDS = 900

# What Grafana substitutes for its interval variables; dashboard_queries uses these values.
INTERVAL_VALUES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

PANEL_PLUGIN_NAMES = {
    "stat": "Stat",
    "state-timeline": "State timeline",
    "table": "Table",
    "timeseries": "Time series",
}

UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]

ACTIVE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "INACTIVE", "color": "red", "index": 0},
            "1": {"text": "ACTIVE", "color": "green", "index": 1},
        },
    }
]

INTEGRITY_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "CORRUPT", "color": "red", "index": 0},
            "1": {"text": "OK", "color": "green", "index": 1},
        },
    }
]

RECEIVING_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DISCONNECTED", "color": "red", "index": 0},
            "1": {"text": "RECEIVING", "color": "green", "index": 1},
        },
    }
]


@dataclass(frozen=True)
class DashboardAlias:
    """What decides an alias's panels: its vendor (SQLite has no server) and its role."""

    alias: str
    vendor: str
    replica: bool

    @property
    def has_server(self) -> bool:
        """Connections and statement statistics exist only on PostgreSQL and MySQL."""
        return self.vendor in SERVER_VENDORS


@dataclass(frozen=True)
class _Filter:
    """Label matchers of one dashboard: `alias` for every metric, `up` for those with `vendor`."""

    alias: str
    up: str


_OVERVIEW_FILTER = _Filter(alias='alias=~"$alias"', up='alias=~"$alias", vendor=~"$vendor"')


def _alias_filter(alias: str) -> _Filter:
    # JSON string syntax is valid PromQL string syntax and escapes quotes and backslashes.
    matcher = f"alias={json.dumps(alias)}"
    return _Filter(alias=matcher, up=matcher)


# An alias of these characters is its own dashboard's uid after ALIAS_UID_PREFIX, so that an alert's
# template can compute the link (rules.yml, dashboard_url); Grafana uids are at most 40 characters
# and compared case-insensitively by some of its databases, hence lower case only.
ALIAS_UID_PREFIX = "dbhealth-alias-"
READABLE_ALIAS = re.compile(r"[a-z0-9_-]{1,25}")
HASHED_UID_PREFIX = "dbhealth-hash-"


def alias_uid(alias: str) -> str:
    """The uid of an alias's dashboard: `dbhealth-alias-<alias>` when the alias is short and of
    lower-case letters, digits, `_` and `-` (most Django aliases), else a readable slug and a hash
    that keep `Users DB` and `users db`, or long aliases with a common prefix, apart.
    """
    if READABLE_ALIAS.fullmatch(alias):
        return ALIAS_UID_PREFIX + alias
    digest = hashlib.sha256(alias.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", alias.lower()).strip("-")[:17].strip("-")
    return "-".join(part for part in (HASHED_UID_PREFIX.rstrip("-"), slug, digest) if part)


def alias_filename(alias: str) -> str:
    """`alias-<alias>.json`, or the uid's slug and hash when the alias is unsafe as a name."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", alias):
        return f"alias-{alias}.json"
    return f"alias-{alias_uid(alias).removeprefix(HASHED_UID_PREFIX)}.json"


def build_dashboards(aliases: list[DashboardAlias]) -> dict[str, Json]:
    """Every dashboard file: the overview and one dashboard per alias, by file name."""
    files = {OVERVIEW_FILE: _overview(aliases)}
    for alias in aliases:
        files[alias_filename(alias.alias)] = _alias_dashboard(alias)
    return files


def dashboard_queries(dashboard: Json, alias: str, vendor: str) -> list[str]:
    """Every PromQL expression of a dashboard as Grafana would send it with `alias` selected.

    Covers panel targets and annotations, with template variables replaced the way Grafana does
    for a multi-value variable holding one value (regex-escaped), so that a test can run each
    expression against a real Prometheus. Unknown variables raise ValueError.
    """
    values = {"alias": _regex_escape(alias), "vendor": _regex_escape(vendor), **INTERVAL_VALUES}

    def substitute(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise ValueError(f"unknown template variable ${name}")
        return values[name]

    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    exprs += [
        item["target"]["expr"] for item in dashboard["annotations"]["list"] if "target" in item
    ]
    return [re.sub(r"\$(?:\{(\w+)\}|(\w+))", substitute, expr) for expr in exprs]


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a regex variable value inside a PromQL string (plus quotes)."""
    return re.sub(r"""([\\$^*{}\[\]'+?.()|])""", r"\\\\\1", value).replace('"', '\\"')


# ---------------------------------------------------------------------------- dashboards


def _overview(aliases: list[DashboardAlias]) -> Json:
    flt = _OVERVIEW_FILTER
    links_by_alias = {a.alias: f"/d/{alias_uid(a.alias)}?${{__url_time_range}}" for a in aliases}
    panels = [
        _row("Status"),
        _stat(
            "Aliases down",
            "Aliases whose last probe failed.",
            [_target(f"count(max by (alias) (dbhealth_up{{{flt.up}}}) == 0) or vector(0)")],
            unit="short",
            steps=_steps(("red", 1)),
            w=4,
            h=8,
        ),
        _up_timeline(flt, w=20, h=8, links_by_alias=links_by_alias),
        _down_reason_table(flt),
        _info_table(flt, w=12),
        _down_alias_impact_table(flt),
        *_trouble_panels(flt, aliases),
        _row("Latency"),
        _timeseries(
            "Ping latency",
            "Time of the ping query of the last probe.",
            [
                _target(
                    f"max by (alias) (dbhealth_ping_duration_seconds{{{flt.alias}}})", "{{alias}}"
                )
            ],
            unit="s",
            steps=_steps(("orange", PING_SECONDS)),
        ),
        _timeseries(
            "Probe duration",
            "Time of the whole last probe (connect, ping and the cheap parts).",
            [
                _target(
                    f"max by (alias) (dbhealth_probe_duration_seconds{{{flt.alias}}})", "{{alias}}"
                )
            ],
            unit="s",
            steps=_steps(),
        ),
        _row("Size"),
        _size_panel(flt, w=12),
        _growth_panel(flt, w=12),
    ]
    if any(a.has_server for a in aliases):
        panels += [
            _row("Connections"),
            _timeseries(
                "Connections used of the maximum",
                "Open connections of every state over max_connections (PostgreSQL, MySQL).",
                [_target(_connections_ratio(flt.alias, " by (alias)"), "{{alias}}")],
                unit="percentunit",
                steps=_steps(("orange", CONNECTIONS_RATIO), ("red", 0.95)),
                max_value=1,
            ),
            _timeseries(
                "Open connections",
                "Open connections of every state.",
                [
                    _target(
                        "max by (alias) (sum without (state)"
                        f" (dbhealth_connections{{{flt.alias}}}))",
                        "{{alias}}",
                    )
                ],
                unit="short",
                steps=_steps(),
            ),
        ]
    if any(a.replica for a in aliases):
        panels += [_row("Replication"), _lag_panel(flt, w=24, legend="{{alias}}")]
    if any(a.has_server for a in aliases):
        panels += [_row("Statements"), _slowest_statements(flt, w=24)]
    return _dashboard(
        uid=OVERVIEW_UID,
        title="dbhealth / Overview",
        description="Every database alias probed by dbhealth at a glance.",
        tags=[TAG],
        variables=[
            _query_variable("vendor", "Vendor", "label_values(dbhealth_up, vendor)"),
            _query_variable(
                "alias", "Alias", 'label_values(dbhealth_up{vendor=~"$vendor"}, alias)'
            ),
        ],
        links=[_tag_link("Aliases", ALIAS_TAG)],
        panels=panels,
        flt=flt,
    )


def _alias_dashboard(alias: DashboardAlias) -> Json:
    flt = _alias_filter(alias.alias)
    role = "replica" if alias.replica else "primary"
    panels = [
        _row("Status"),
        _stat(
            "State",
            "Whether the last probe connected and answered.",
            [_target(f"max(dbhealth_up{{{flt.up}}})")],
            unit="short",
            steps=_steps(("green", 1), base="red"),
            mappings=UP_MAPPINGS,
            w=4,
        ),
        _stat(
            "Failure reason",
            "Why the alias is down now; 'none' while it is up.",
            [
                _target(
                    f"max by (reason) (dbhealth_down_reason{{{flt.alias}}}) or label_replace("
                    f'max(dbhealth_up{{{flt.up}}}) * 0, "reason", "none", "", "")',
                    "{{reason}}",
                )
            ],
            unit="short",
            steps=_steps(("red", 1)),
            text_mode="name",
            w=5,
        ),
        _stat(
            "Last success",
            "Time since the last successful probe.",
            [_target(f"time() - max(dbhealth_last_success_timestamp_seconds{{{flt.alias}}})")],
            unit="s",
            steps=_steps(("orange", STALE_SECONDS)),
            w=5,
        ),
        _stat(
            "Critical",
            "Whether the health endpoint fails while this alias is down.",
            [_target(f"max(dbhealth_critical{{{flt.alias}}})")],
            unit="short",
            steps=_steps(base="blue"),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "no", "index": 0},
                        "1": {"text": "yes", "index": 1},
                    },
                }
            ],
            w=3,
        ),
        _stat(
            "Deadline",
            "The probe deadline in force.",
            [_target(f"max(dbhealth_deadline_seconds{{{flt.alias}}})")],
            unit="s",
            steps=_steps(base="blue"),
            w=3,
        ),
        _stat(
            "Size",
            "Size of the database.",
            [_target(f"max(dbhealth_database_size_bytes{{{flt.alias}}})")],
            unit="bytes",
            steps=_steps(base="blue"),
            w=4,
        ),
        _up_timeline(flt, w=24, h=5),
        _info_table(flt, w=24),
        _row("Probe"),
        _timeseries(
            "Latency",
            "Ping query, opening a new connection, and the whole probe.",
            [
                _target(f"max(dbhealth_ping_duration_seconds{{{flt.alias}}})", "ping"),
                _target(f"max(dbhealth_connect_duration_seconds{{{flt.alias}}})", "connect"),
                _target(f"max(dbhealth_probe_duration_seconds{{{flt.alias}}})", "probe"),
                _target(f"max(dbhealth_deadline_seconds{{{flt.alias}}})", "deadline"),
            ],
            unit="s",
            steps=_steps(("orange", PING_SECONDS)),
        ),
        _timeseries(
            "Probe failures",
            "Failed probes per interval, by reason.",
            [
                _target(
                    "max by (reason) (increase(dbhealth_probe_failures_total"
                    f"{{{flt.alias}}}[$__rate_interval])) > 0",
                    "{{reason}}",
                )
            ],
            unit="short",
            steps=_steps(),
            draw_style="bars",
        ),
        _row("Size"),
        _size_panel(flt, w=8),
        _growth_panel(flt, w=8),
        _timeseries(
            "Cached part age",
            "Age of the cached expensive parts (size, statements); they refresh less often.",
            [_target(f"max by (part) (dbhealth_part_age_seconds{{{flt.alias}}})", "{{part}}")],
            unit="s",
            steps=_steps(),
            w=8,
        ),
    ]
    if alias.has_server:
        panels += [
            _row("Connections"),
            _timeseries(
                "Connections by state",
                "Open connections by state, and the server's maximum.",
                [
                    _target(f"max by (state) (dbhealth_connections{{{flt.alias}}})", "{{state}}"),
                    _target(f"max(dbhealth_connections_max{{{flt.alias}}})", "max"),
                ],
                unit="short",
                steps=_steps(),
                stack=True,
                overrides=[_unstacked_dashed("max")],
            ),
            _timeseries(
                "Connections used of the maximum",
                "Open connections of every state over max_connections.",
                [_target(_connections_ratio(flt.alias, ""), "used")],
                unit="percentunit",
                steps=_steps(("orange", CONNECTIONS_RATIO), ("red", 0.95)),
                max_value=1,
            ),
        ]
    if alias.replica:
        panels += [
            _row("Replication"),
            _stat(
                "Current lag",
                "How far replay on this replica is behind its primary.",
                [_target(f"max(dbhealth_replication_lag_seconds{{{flt.alias}}})")],
                unit="s",
                steps=_steps(("orange", REPLICATION_LAG_SECONDS)),
                w=4,
                h=8,
            ),
            _stat(
                "Primary link",
                "Whether the replica receives from its primary; its lag reads 0 when it does not.",
                [_target(f"min(dbhealth_replica_connected{{{flt.alias}}})")],
                unit="short",
                steps=_steps(("green", 1), base="red"),
                mappings=RECEIVING_MAPPINGS,
                w=4,
                h=8,
            ),
            _lag_panel(flt, w=16, legend="lag"),
        ]
        if alias.vendor == "mysql":
            panels.append(_replica_error_panel(flt))
    if alias.has_server:
        panels += _transaction_panels(flt)
        panels += _server_panels(flt, mysql=alias.vendor == "mysql")
    if alias.vendor == "postgresql":
        panels += _wraparound_panels(flt)
        if not alias.replica:
            panels += _slot_panels(flt)
    if alias.vendor == "sqlite":
        panels += _sqlite_panels(flt)
    panels += _id_headroom_panels(flt)
    if alias.has_server:
        panels += _statement_panels(flt)
    return _dashboard(
        uid=alias_uid(alias.alias),
        title=f"dbhealth / {alias.alias}",
        description=f"Database alias {alias.alias}: {alias.vendor} {role}.",
        tags=[TAG, ALIAS_TAG, alias.vendor, role],
        variables=[],
        links=[
            {
                **_link_defaults(),
                "type": "link",
                "title": "Overview",
                "url": f"/d/{OVERVIEW_UID}?var-alias={quote(alias.alias, safe='')}",
                "icon": "dashboard",
            },
            _tag_link("Aliases", ALIAS_TAG),
        ],
        panels=panels,
        flt=flt,
    )


def _trouble_panels(flt: _Filter, aliases: list[DashboardAlias]) -> list[Json]:
    """The worst alias for each signal that takes a database down hours or days later."""
    panels = []
    if any(a.has_server for a in aliases):
        panels += [
            _worst_stat(
                "Oldest transaction",
                "The alias with the oldest open transaction (not dbhealth's own), and its age.",
                f"topk(1, max by (alias) (dbhealth_oldest_transaction_seconds{{{flt.alias}}}))",
                unit="s",
                steps=_steps(("orange", LONG_TRANSACTION_SECONDS)),
            ),
            _worst_stat(
                "Blocked sessions",
                "The alias with the most sessions waiting for a lock another session holds.",
                f"topk(1, max by (alias) (dbhealth_blocked_sessions{{{flt.alias}}}))",
                unit="short",
                steps=_steps(("orange", 1)),
            ),
        ]
    if any(a.vendor == "postgresql" for a in aliases):
        panels.append(
            _worst_stat(
                "Transaction id age",
                "The PostgreSQL alias closest to transaction id wraparound (at 2^31, 2.1 billion).",
                f"topk(1, max by (alias) (dbhealth_transaction_id_age{{{flt.alias}}}))",
                unit="short",
                steps=_steps(("orange", WRAPAROUND_AGE_WARNING), ("red", WRAPAROUND_AGE_CRITICAL)),
            )
        )
    panels.append(
        _worst_stat(
            "Lowest id headroom",
            "The table with the least of its id range left (1 = empty, 0 = exhausted).",
            f"bottomk(1, min by (alias, table) (dbhealth_id_headroom_ratio{{{flt.alias}}}))",
            legend="{{alias}} {{table}}",
            unit="percentunit",
            steps=_headroom_steps(),
        )
    )
    width = GRID_WIDTH // len(panels)
    for panel in panels:
        panel["gridPos"]["w"] = width
    return [_row("Trouble before an outage"), *panels]


def _worst_stat(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str,
    steps: list[Json],
    legend: str = "{{alias}}",
) -> Json:
    """A stat naming the worst alias now (an instant query, so one series only)."""
    return _stat(
        title,
        description,
        [_target(expr, legend, instant=True, fmt="time_series")],
        unit=unit,
        steps=steps,
        text_mode="value_and_name",
        w=6,
        h=5,
    )


def _headroom_steps() -> list[Json]:
    return _steps(
        ("orange", ID_HEADROOM_RATIO_CRITICAL), ("green", ID_HEADROOM_RATIO_WARNING), base="red"
    )


def _transaction_panels(flt: _Filter) -> list[Json]:
    """Open transactions, lock waits and deadlocks (PostgreSQL, MySQL/MariaDB)."""
    return [
        _row("Transactions and locks"),
        _timeseries(
            "Oldest transaction",
            "Age of the oldest open transaction on the database (dbhealth's own left out); it"
            " holds back vacuum / InnoDB purge and keeps its locks.",
            [
                _target(
                    f"max(dbhealth_oldest_transaction_seconds{{{flt.alias}}})", "oldest transaction"
                )
            ],
            unit="s",
            steps=_steps(("orange", LONG_TRANSACTION_SECONDS)),
        ),
        _timeseries(
            "Idle in transaction",
            "Longest a session has sat idle inside an open transaction.",
            [
                _target(
                    f"max(dbhealth_oldest_idle_in_transaction_seconds{{{flt.alias}}})",
                    "idle in transaction",
                )
            ],
            unit="s",
            steps=_steps(("orange", IDLE_IN_TRANSACTION_SECONDS)),
        ),
        _timeseries(
            "Blocked sessions",
            "Sessions waiting for a lock another session holds.",
            [_target(f"max(dbhealth_blocked_sessions{{{flt.alias}}})", "blocked")],
            unit="short",
            steps=_steps(),
            w=6,
        ),
        _timeseries(
            "Longest lock wait",
            "How long the longest-waiting blocked session has waited for its lock.",
            [_target(f"max(dbhealth_longest_lock_wait_seconds{{{flt.alias}}})", "longest wait")],
            unit="s",
            steps=_steps(("orange", LOCK_WAIT_SECONDS)),
            w=6,
        ),
        _timeseries(
            "Transactions per second",
            "Transactions ended, by outcome (PostgreSQL: this database; MySQL/MariaDB: the"
            " whole server).",
            [
                _target(
                    "max by (outcome) (rate(dbhealth_transactions_total"
                    f"{{{flt.alias}}}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            unit="short",
            steps=_steps(),
            w=6,
        ),
        _timeseries(
            "Deadlocks",
            "Deadlocks detected per interval (MySQL/MariaDB: the whole server).",
            [
                _target(
                    f"max(increase(dbhealth_deadlocks_total{{{flt.alias}}}[$__rate_interval]))",
                    "deadlocks",
                )
            ],
            unit="short",
            steps=_steps(),
            w=6,
            draw_style="bars",
        ),
    ]


def _server_panels(flt: _Filter, *, mysql: bool) -> list[Json]:
    """Restarts from the server's own start time; MySQL/MariaDB's load and purge lag."""
    uptime = f"time() - max(dbhealth_server_start_time_seconds{{{flt.alias}}})"
    panels = [
        _row("Server"),
        _stat(
            "Server uptime",
            "Time since the database server (not the exporter) last started.",
            [_target(uptime)],
            unit="s",
            steps=_steps(("green", RESTART_SECONDS), base="orange"),
            w=4,
            h=8,
        ),
        _timeseries(
            "Server uptime (drops are restarts)",
            "Time since the database server last started: every drop is a restart.",
            [_target(uptime, "uptime")],
            unit="s",
            steps=_steps(),
            w=20,
        ),
    ]
    if mysql:
        panels += [
            _timeseries(
                "Threads running",
                "Threads executing a statement (Threads_running): a saturation symptom, on the"
                " dashboard only.",
                [_target(f"max(dbhealth_threads_running{{{flt.alias}}})", "running")],
                unit="short",
                steps=_steps(),
                w=8,
            ),
            _timeseries(
                "Undo history length",
                "InnoDB history list length: undo not purged yet, held back by old transactions.",
                [_target(f"max(dbhealth_undo_history_length{{{flt.alias}}})", "history length")],
                unit="short",
                steps=_steps(("orange", UNDO_HISTORY_LENGTH)),
                w=8,
            ),
            _timeseries(
                "Aborted connections",
                "Per second: failed connection attempts (connect) and clients gone without"
                " closing (client); on the dashboard only.",
                [
                    _target(
                        "max by (kind) (rate(dbhealth_aborted_connections_total"
                        f"{{{flt.alias}}}[$__rate_interval]))",
                        "{{kind}}",
                    )
                ],
                unit="short",
                steps=_steps(),
                w=8,
            ),
        ]
    return panels


def _wraparound_panels(flt: _Filter) -> list[Json]:
    """PostgreSQL transaction and multixact id ages against the 2^31 wraparound limit."""
    ages = [
        ("xid", f"max(dbhealth_transaction_id_age{{{flt.alias}}})"),
        ("multixact", f"max(dbhealth_multixact_id_age{{{flt.alias}}})"),
    ]
    return [
        _row("Wraparound"),
        _stat(
            "Wraparound used",
            "Share of the 2^31 ids between the oldest unfrozen id and wraparound.",
            [_target(f"{expr} / {WRAPAROUND_LIMIT}", name) for name, expr in ages],
            unit="percentunit",
            steps=_steps(
                ("orange", WRAPAROUND_AGE_WARNING / WRAPAROUND_LIMIT),
                ("red", WRAPAROUND_AGE_CRITICAL / WRAPAROUND_LIMIT),
            ),
            text_mode="value_and_name",
            w=6,
            h=8,
        ),
        _timeseries(
            "Transaction id age",
            "age(datfrozenxid) and mxid_age(datminmxid) of the database; the axis ends at the"
            " wraparound limit (2^31). Autovacuum freezes from 200 million (xid) by default.",
            [_target(expr, name) for name, expr in ages],
            unit="short",
            steps=_steps(("orange", WRAPAROUND_AGE_WARNING), ("red", WRAPAROUND_AGE_CRITICAL)),
            max_value=WRAPAROUND_LIMIT,
            w=18,
        ),
    ]


def _slot_panels(flt: _Filter) -> list[Json]:
    """PostgreSQL replication slots on a primary: consumer attached, WAL kept for it."""
    return [
        _row("Replication slots"),
        _state_timeline(
            "Slot consumers",
            "Whether a consumer (standby, logical decoding client) is attached to each slot.",
            [
                _target(
                    f"max by (slot) (dbhealth_replication_slot_active{{{flt.alias}}})", "{{slot}}"
                )
            ],
            mappings=ACTIVE_MAPPINGS,
            w=12,
            h=8,
        ),
        _timeseries(
            "WAL retained by slots",
            "WAL each slot keeps on disk until its consumer confirms it.",
            [
                _target(
                    f"max by (slot) (dbhealth_replication_slot_retained_bytes{{{flt.alias}}})",
                    "{{slot}}",
                )
            ],
            unit="bytes",
            steps=_steps(("orange", SLOT_RETAINED_BYTES)),
        ),
    ]


def _sqlite_panels(flt: _Filter) -> list[Json]:
    """SQLite: the -wal file (checkpoint starvation) and PRAGMA quick_check."""
    return [
        _row("SQLite file"),
        _stat(
            "Integrity",
            "Result of the last PRAGMA quick_check.",
            [_target(f"min(dbhealth_integrity_ok{{{flt.alias}}})")],
            unit="short",
            steps=_steps(("green", 1), base="red"),
            mappings=INTEGRITY_MAPPINGS,
            w=4,
            h=8,
        ),
        _stat(
            "Last integrity check",
            "Time since PRAGMA quick_check last ran.",
            [_target(f"time() - max(dbhealth_integrity_checked_timestamp_seconds{{{flt.alias}}})")],
            unit="s",
            steps=_steps(base="blue"),
            w=4,
            h=8,
        ),
        _timeseries(
            "WAL file size",
            "Size of the -wal file; it grows while a long-lived reader starves checkpoints.",
            [_target(f"max(dbhealth_sqlite_wal_bytes{{{flt.alias}}})", "wal")],
            unit="bytes",
            steps=_steps(("orange", SQLITE_WAL_BYTES)),
            w=16,
        ),
    ]


def _id_headroom_panels(flt: _Filter) -> list[Json]:
    """The tables whose id column has the least of its range left."""
    return [
        _row("Id headroom"),
        _table(
            "Tables with the least id headroom",
            "Share of the id range still free (1 = empty, 0 = exhausted) for the tables with the"
            " least headroom; the Django model in embedded mode.",
            [
                _target(
                    "bottomk(10, min by (table, model)"
                    f" (dbhealth_id_headroom_ratio{{{flt.alias}}}))",
                    instant=True,
                )
            ],
            unit="percentunit",
            steps=_headroom_steps(),
            columns={"table": "Table", "model": "Model", "Value": "Headroom"},
            sort_by="Headroom",
            sort_desc=False,
            w=12,
            h=8,
        ),
        _timeseries(
            "Id headroom over time",
            "Share of the id range still free for the tables with the least headroom.",
            [
                _target(
                    f"bottomk(10, min by (table) (dbhealth_id_headroom_ratio{{{flt.alias}}}))",
                    "{{table}}",
                )
            ],
            unit="percentunit",
            steps=_headroom_steps(),
            max_value=1,
        ),
    ]


def _replica_error_panel(flt: _Filter) -> Json:
    """MySQL/MariaDB replicas: the error that stopped the receiver or applier thread."""
    return _stat(
        "Replication thread errors",
        "Last error number of the I/O (receiver) and SQL (applier) threads; 0 when none.",
        [_target(f"max by (thread) (dbhealth_replica_last_error{{{flt.alias}}})", "{{thread}}")],
        unit="short",
        steps=_steps(("red", 1)),
        mappings=[{"type": "value", "options": {"0": {"text": "no error", "index": 0}}}],
        text_mode="value_and_name",
        w=24,
        h=4,
    )


def _statement_panels(flt: _Filter) -> list[Json]:
    per_call = (
        f"rate(dbhealth_statement_seconds_total{{{flt.alias}}}[$__rate_interval])"
        f" / rate(dbhealth_statement_calls_total{{{flt.alias}}}[$__rate_interval])"
    )
    return [
        _row("Statements"),
        _stat(
            "Statement statistics",
            "Whether pg_stat_statements / performance_schema could be read.",
            [_target(f"max(dbhealth_statements_available{{{flt.alias}}})")],
            unit="short",
            steps=_steps(("green", 1), base="orange"),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "unavailable", "color": "orange", "index": 0},
                        "1": {"text": "available", "color": "green", "index": 1},
                    },
                }
            ],
            w=4,
            h=10,
        ),
        _slowest_statements(flt, w=20),
        _timeseries(
            "Calls per second",
            "Top statements by calls; ids are explained in the table above.",
            [
                _target(
                    "topk(10, max by (queryid) (rate(dbhealth_statement_calls_total"
                    f"{{{flt.alias}}}[$__rate_interval])))",
                    "{{queryid}}",
                )
            ],
            unit="short",
            steps=_steps(),
            w=8,
        ),
        _timeseries(
            "Execution time per second",
            "Top statements by time spent executing them.",
            [
                _target(
                    "topk(10, max by (queryid) (rate(dbhealth_statement_seconds_total"
                    f"{{{flt.alias}}}[$__rate_interval])))",
                    "{{queryid}}",
                )
            ],
            unit="s",
            steps=_steps(),
            w=8,
        ),
        _timeseries(
            "Time per call",
            "Recent mean time per call of the top statements.",
            [_target(f"topk(10, max by (queryid) ({per_call}))", "{{queryid}}")],
            unit="s",
            steps=_steps(("orange", STATEMENT_MEAN_SECONDS)),
            w=8,
        ),
    ]


# ---------------------------------------------------------------------------- shared panels


def _up_timeline(
    flt: _Filter, *, w: int, h: int, links_by_alias: dict[str, str] | None = None
) -> Json:
    """Up/down over time; in the overview each alias's row links to its dashboard."""
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "links", "value": [{"title": f"Open {name}", "url": url}]}],
        }
        for name, url in (links_by_alias or {}).items()
    ]
    return _state_timeline(
        "Up / down",
        "1 when the probe connected and answered. Click an alias to open its dashboard.",
        [_target(f"max by (alias) (dbhealth_up{{{flt.up}}})", "{{alias}}")],
        mappings=UP_MAPPINGS,
        overrides=overrides,
        w=w,
        h=h,
    )


def _state_timeline(
    title: str,
    description: str,
    targets: list[Json],
    *,
    mappings: list[Json],
    w: int,
    h: int,
    overrides: list[Json] | None = None,
) -> Json:
    """A 0/1 state per series over time: red for 0, green for 1."""
    return _panel(
        "state-timeline",
        title,
        description,
        targets,
        unit="short",
        steps=_steps(("green", 1), base="red"),
        mappings=mappings,
        custom={"fillOpacity": 80, "lineWidth": 0},
        options={
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {
                "showLegend": False,
                "displayMode": "list",
                "placement": "bottom",
                "calcs": [],
            },
            "tooltip": {"mode": "single", "sort": "none"},
        },
        overrides=overrides,
        w=w,
        h=h,
    )


def _down_reason_table(flt: _Filter) -> Json:
    return _table(
        "Current failures",
        "The reason each down alias is failing now; empty while every alias is up.",
        [_target(f"max by (alias, reason) (dbhealth_down_reason{{{flt.alias}}})", instant=True)],
        unit="short",
        columns={"alias": "Alias", "reason": "Reason"},
        w=12,
        h=6,
    )


def _info_table(flt: _Filter, *, w: int) -> Json:
    labels = "alias, vendor, version, host, port, database"
    return _table(
        "Databases",
        "Vendor, server version and address of each alias.",
        [_target(f"max by ({labels}) (dbhealth_info{{{flt.up}}})", instant=True)],
        unit="short",
        columns={
            "alias": "Alias",
            "vendor": "Vendor",
            "version": "Version",
            "host": "Host",
            "port": "Port",
            "database": "Database",
        },
        w=w,
        h=6,
    )


def _size_panel(flt: _Filter, *, w: int) -> Json:
    return _timeseries(
        "Database size",
        "Size of each database (refreshed less often than the ping).",
        [_target(f"max by (alias) (dbhealth_database_size_bytes{{{flt.alias}}})", "{{alias}}")],
        unit="bytes",
        steps=_steps(),
        w=w,
    )


def _growth_panel(flt: _Filter, *, w: int) -> Json:
    return _timeseries(
        "Growth per day",
        "Size change per day, least-squares trend over 6 hours.",
        [
            _target(
                f"max by (alias) (deriv(dbhealth_database_size_bytes{{{flt.alias}}}[6h])) * 86400",
                "{{alias}}",
            )
        ],
        unit="bytes",
        steps=_steps(),
        w=w,
    )


def _lag_panel(flt: _Filter, *, w: int, legend: str) -> Json:
    return _timeseries(
        "Replication lag",
        "How far replay on each replica is behind its primary.",
        [_target(f"max by (alias) (dbhealth_replication_lag_seconds{{{flt.alias}}})", legend)],
        unit="s",
        steps=_steps(("orange", REPLICATION_LAG_SECONDS)),
        w=w,
    )


def _connections_ratio(matcher: str, grouping: str) -> str:
    """Open connections of every state over the maximum; `grouping` is "" or " by (...)"."""
    return (
        f"max{grouping} (sum without (state) (dbhealth_connections{{{matcher}}}))"
        f" / max{grouping} (dbhealth_connections_max{{{matcher}}} > 0)"
    )


def _slowest_statements(flt: _Filter, *, w: int) -> Json:
    """Top statements by mean time, their text joined from dbhealth_statement_info."""
    text = f"topk by (alias, queryid) (1, dbhealth_statement_info{{{flt.alias}}})"
    expr = (
        f"topk(10, max by (alias, queryid) (dbhealth_statement_mean_seconds{{{flt.alias}}})"
        f" * on (alias, queryid) group_left (query) {text})"
    )
    return _table(
        "Slowest statements",
        "Mean time per call since the statistics were reset; the text is normalized and cut.",
        [_target(expr, instant=True)],
        unit="s",
        steps=_steps(("orange", STATEMENT_MEAN_SECONDS)),
        columns={"alias": "Alias", "queryid": "Query id", "query": "Query", "Value": "Mean"},
        sort_by="Mean",
        w=w,
        h=10,
    )


def _unstacked_dashed(name: str) -> Json:
    """An override that draws one series as a dashed limit line outside the stack."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
        ],
    }


# ---------------------------------------------------------------------------- panel builders


def _target(expr: str, legend: str = "", *, instant: bool = False, fmt: str | None = None) -> Json:
    """A query; instant ones are tables unless `fmt` says otherwise."""
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": fmt or ("table" if instant else "time_series"),
        "instant": instant,
        "range": not instant,
        "legendFormat": legend or "__auto",
    }


def _steps(*levels: tuple[str, float], base: str = "green") -> list[Json]:
    """Threshold steps: a base colour, then (colour, from value) pairs."""
    return [
        {"color": base, "value": None},
        *({"color": color, "value": value} for color, value in levels),
    ]


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str,
    steps: list[Json],
    w: int,
    h: int,
    options: Json,
    custom: Json | None = None,
    mappings: list[Json] | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    max_value: float | None = None,
) -> Json:
    """Any panel; id and position are filled in by _lay_out."""
    defaults: Json = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "mappings": mappings or [],
        "color": {
            "mode": "thresholds" if kind in {"stat", "state-timeline"} else "palette-classic"
        },
    }
    if custom:
        defaults["custom"] = custom
    if max_value is not None:
        defaults["min"] = 0
        defaults["max"] = max_value
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": w, "h": h},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
        "transformations": transformations or [],
    }


def _stat(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str,
    steps: list[Json],
    mappings: list[Json] | None = None,
    text_mode: str = "auto",
    w: int = 4,
    h: int = 4,
) -> Json:
    return _panel(
        "stat",
        title,
        description,
        targets,
        unit=unit,
        steps=steps,
        mappings=mappings,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": text_mode,
            "wideLayout": True,
            "showPercentChange": False,
        },
        w=w,
        h=h,
    )


def _timeseries(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str,
    steps: list[Json],
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    draw_style: str = "line",
    max_value: float | None = None,
    overrides: list[Json] | None = None,
) -> Json:
    # A threshold line only where a threshold beyond the base step exists.
    threshold_mode = "line" if len(steps) > 1 else "off"
    return _panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        steps=steps,
        custom={
            "drawStyle": draw_style,
            "lineWidth": 1,
            "fillOpacity": 30 if stack or draw_style == "bars" else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": threshold_mode},
        },
        options={
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "right" if w >= 12 else "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        max_value=max_value,
        overrides=overrides,
        w=w,
        h=h,
    )


def _table(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str,
    columns: dict[str, str],
    w: int,
    h: int,
    steps: list[Json] | None = None,
    sort_by: str | None = None,
    sort_desc: bool = True,
) -> Json:
    """An instant-query table showing only `columns` (label or Value -> header), in order."""
    return _panel(
        "table",
        title,
        description,
        targets,
        unit=unit,
        steps=steps or _steps(),
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "frameIndex": 0,
            "footer": {"show": False, "reducer": ["sum"], "countRows": False},
            "sortBy": [{"displayName": sort_by, "desc": sort_desc}] if sort_by else [],
        },
        transformations=[
            {
                "id": "filterFieldsByName",
                "options": {"include": {"names": list(columns)}},
            },
            {
                "id": "organize",
                "options": {
                    "excludeByName": {},
                    "indexByName": {name: i for i, name in enumerate(columns)},
                    "renameByName": columns,
                },
            },
        ],
        w=w,
        h=h,
    )


def _down_alias_impact_table(flt: _Filter) -> Json:
    """Models whose reads or writes go to a down alias, from the routers (embedded mode only)."""
    routes = "max by (app_label, model, read_alias, write_alias) (dbhealth_route_info)"
    down = f"(max by (alias) (dbhealth_up{{{flt.up}}}) == 0)"
    expr = " or ".join(
        f'{routes} and on ({side}) label_join({down}, "{side}", "", "alias")'
        for side in ("read_alias", "write_alias")
    )
    return _table(
        "Impact of down aliases",
        "Models the Django routers send to a down alias, for reads or writes: what is broken"
        " for users. Empty while every alias is up, and in standalone mode (no models).",
        [_target(expr, instant=True)],
        unit="short",
        columns={
            "app_label": "App",
            "model": "Model",
            "read_alias": "Reads from",
            "write_alias": "Writes to",
        },
        w=24,
        h=6,
    )


def _row(title: str) -> Json:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"w": GRID_WIDTH, "h": 1},
        "panels": [],
    }


# ---------------------------------------------------------------------------- dashboard frame


def _lay_out(panels: list[Json]) -> list[Json]:
    """Number panels from 1 and place them left to right, wrapping at the grid width.

    A row panel always starts a new line, so sections never share one.
    """
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        position = panel["gridPos"]
        if panel["type"] == "row" or x + position["w"] > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        position["x"], position["y"] = x, y
        x += position["w"]
        line_height = max(line_height, position["h"])
        panel["id"] = panel_id
    return panels


def _datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def _query_variable(name: str, label: str, query: str) -> Json:
    """A multi-select label_values variable with All (its All is the list of values)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable", "qryType": 1},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "multi": True,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def _link_defaults() -> Json:
    return {
        "asDropdown": False,
        "icon": "external link",
        "includeVars": False,
        "keepTime": True,
        "tags": [],
        "targetBlank": False,
        "tooltip": "",
        "url": "",
    }


def _tag_link(title: str, tag: str) -> Json:
    return {
        **_link_defaults(),
        "type": "dashboards",
        "title": title,
        "tags": [tag],
        "asDropdown": True,
    }


def _alerts_annotation(flt: _Filter) -> Json:
    return {
        "name": "dbhealth alerts",
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        # The query lives in `target`, where the schema puts it (its step is the datasource's
        # default, 60s); titles, text and tags stay beside it, where the datasource reads them.
        "target": {
            "refId": "Anno",
            "expr": f'ALERTS{{alertname=~"Dbhealth.+", alertstate="firing", {flt.alias}}}',
        },
        "titleFormat": "{{alertname}}",
        "textFormat": "{{alias}} ({{severity}})",
        "tagKeys": "severity",
    }


def _requires(panels: list[Json]) -> list[Json]:
    kinds = sorted({panel["type"] for panel in panels} - {"row"})
    return [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *(
            {"type": "panel", "id": kind, "name": PANEL_PLUGIN_NAMES[kind], "version": ""}
            for kind in kinds
        ),
    ]


def _dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    variables: list[Json],
    links: list[Json],
    panels: list[Json],
    flt: _Filter,
) -> Json:
    return {
        # Datasources are chosen with the `datasource` variable, so import asks for nothing.
        "__inputs": [],
        "__requires": _requires(panels),
        "annotations": {"list": [_alerts_annotation(flt)]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": links,
        "liveNow": False,
        "panels": _lay_out(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": tags,
        "templating": {"list": [_datasource_variable(), *variables]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }
