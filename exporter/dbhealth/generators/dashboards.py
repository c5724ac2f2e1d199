"""Grafana dashboards as code: an overview of every alias, a templated alias dashboard, and one
dashboard per configured alias.

Plain dicts in Grafana's classic JSON model (schemaVersion 39): no Grafana library, files that
can be provisioned as they are (dashboards/provisioning/dashboards.yml) or imported by hand.

Every dashboard selects the exporter as well as the alias: `job`, `instance` and `env` template
variables, because one Grafana often shows several environments whose exporters have aliases of
the same name. The templated alias dashboard (uid ALIAS_TEMPLATE_UID, alias as a variable) has the
panels of every vendor and role, so an alias discovered at run time has a dashboard without
regenerating files; alerts and the overview link to it. The per-alias dashboards show only the
panels their vendor and role can fill.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dbhealth.project.insight import NOT_ROUTED

Json = dict[str, Any]

SCHEMA_VERSION = 39
GRAFANA_VERSION = "10.4.0"
OVERVIEW_UID = "dbhealth-overview"
OVERVIEW_FILE = "overview.json"
ALIAS_TEMPLATE_UID = "dbhealth-alias"
ALIAS_TEMPLATE_FILE = "alias.json"
TAG = "dbhealth"
ALIAS_TAG = "dbhealth-alias"
SERVER_VENDORS = frozenset({"postgresql", "mysql"})
GRID_WIDTH = 24

# The one datasource reference: the `datasource` template variable, so the dashboards work with
# whatever Prometheus the viewer picks, provisioned as files or imported.
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's import dialog asks for each `__inputs` entry and replaces `${DS_PROMETHEUS}` in the
# file with the answer: it becomes the `datasource` variable's default. File provisioning leaves
# it as it is, an unknown value, and Grafana selects one of its Prometheus datasources instead.
DATASOURCE_INPUT = "DS_PROMETHEUS"

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
# Maintenance panels: a table whose dead rows are this share of all its rows wants a VACUUM; a
# table not vacuumed or analyzed for a week is worth a look.
DEAD_ROW_SHARE = 0.2
MAINTENANCE_AGE_SECONDS = 7 * 86400

# What Grafana substitutes for its interval variables; dashboard_queries uses these values.
INTERVAL_VALUES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

PANEL_PLUGIN_NAMES = {
    "stat": "Stat",
    "state-timeline": "State timeline",
    "table": "Table",
    "timeseries": "Time series",
}


def _value_mappings(zero: Json, one: Json) -> list[Json]:
    return [{"type": "value", "options": {"0": {**zero, "index": 0}, "1": {**one, "index": 1}}}]


UP_MAPPINGS = _value_mappings({"text": "DOWN", "color": "red"}, {"text": "UP", "color": "green"})
ACTIVE_MAPPINGS = _value_mappings(
    {"text": "INACTIVE", "color": "red"}, {"text": "ACTIVE", "color": "green"}
)
INTEGRITY_MAPPINGS = _value_mappings(
    {"text": "CORRUPT", "color": "red"}, {"text": "OK", "color": "green"}
)
RECEIVING_MAPPINGS = _value_mappings(
    {"text": "DISCONNECTED", "color": "red"}, {"text": "RECEIVING", "color": "green"}
)
YES_NO_MAPPINGS = _value_mappings({"text": "no"}, {"text": "yes"})
AVAILABLE_MAPPINGS = _value_mappings(
    {"text": "unavailable", "color": "orange"}, {"text": "available", "color": "green"}
)

# The exporter's identity in the overview: multi-value variables, matched as regexes (Grafana
# regex-escapes their values). env is whatever `env` label the operator's targets carry; its All
# is `.*`, which also matches series without one.
OVERVIEW_EXPORTER = 'job=~"$job", instance=~"$instance", env=~"$env"'
# ...and in an alias dashboard: one exporter, single-value variables matched by equality (Grafana
# does not regex-escape those).
ALIAS_EXPORTER = 'job="$job", instance="$instance", env=~"$env"'
# The labels the overview keeps apart: an alias of each exporter.
EXPORTER_ALIAS = "job, instance, alias"
EXPORTER_ALIAS_LEGEND = "{{alias}} @ {{instance}}"


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

    @property
    def role(self) -> str:
        return "replica" if self.replica else "primary"


@dataclass(frozen=True)
class _Sections:
    """Which vendor- and role-specific sections an alias dashboard shows."""

    server: bool
    replica: bool
    primary: bool
    postgresql: bool
    mysql: bool
    sqlite: bool

    @classmethod
    def of(cls, alias: DashboardAlias) -> "_Sections":
        return cls(
            server=alias.has_server,
            replica=alias.replica,
            primary=not alias.replica,
            postgresql=alias.vendor == "postgresql",
            mysql=alias.vendor == "mysql",
            sqlite=alias.vendor == "sqlite",
        )


# The templated alias dashboard does not know its alias's vendor or role: it shows them all, and a
# section the alias cannot fill says "No data".
_EVERY_SECTION = _Sections(True, True, True, True, True, True)


@dataclass(frozen=True)
class _Filter:
    """Label matchers of one dashboard: `alias` for every metric, `up` for those with `vendor`."""

    alias: str
    up: str


_OVERVIEW_FILTER = _Filter(
    alias=f'{OVERVIEW_EXPORTER}, alias=~"$alias"',
    up=f'{OVERVIEW_EXPORTER}, alias=~"$alias", vendor=~"$vendor"',
)
_TEMPLATE_FILTER = _Filter(
    alias=f'{ALIAS_EXPORTER}, alias="$alias"', up=f'{ALIAS_EXPORTER}, alias="$alias"'
)


def _alias_filter(alias: str) -> _Filter:
    # JSON string syntax is valid PromQL string syntax and escapes quotes and backslashes.
    matcher = f"{ALIAS_EXPORTER}, alias={json.dumps(alias)}"
    return _Filter(alias=matcher, up=matcher)


def alias_uid(alias: DashboardAlias) -> str:
    """The uid of an alias's own dashboard: `dbhealth-<slug>-<hash>`.

    The hash is of the alias, its vendor and its role, which decide the whole dashboard: two
    environments' dashboards of an alias of the same name share a uid exactly when they are the
    same dashboard (its job/instance/env variables choose the environment), and never overwrite a
    different one in a shared Grafana. The slug keeps it readable; Grafana uids are at most 40
    characters and compared case-insensitively by some of its databases, hence lower case.
    """
    key = "\0".join((alias.alias, alias.vendor, alias.role))
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", alias.alias.lower()).strip("-")[:22].strip("-")
    return "-".join(part for part in ("dbhealth", slug, digest) if part)


def alias_filename(alias: DashboardAlias) -> str:
    """`alias-<alias>.json`, or the uid's slug and hash when the alias is unsafe as a name."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", alias.alias):
        return f"alias-{alias.alias}.json"
    return f"alias-{alias_uid(alias).removeprefix('dbhealth-')}.json"


def build_dashboards(aliases: list[DashboardAlias]) -> dict[str, Json]:
    """Every dashboard file by name: the overview, the templated alias dashboard and one
    dashboard per alias."""
    files = {
        OVERVIEW_FILE: _overview(aliases),
        ALIAS_TEMPLATE_FILE: _alias_template(),
    }
    for alias in aliases:
        files[alias_filename(alias)] = _alias_dashboard(alias)
    return files


def dashboard_queries(
    dashboard: Json,
    alias: str,
    vendor: str,
    *,
    job: str = "dbhealth",
    instance: str = "127.0.0.1:10433",
    env: str = ".*",
) -> list[str]:
    """Every PromQL expression of a dashboard as Grafana would send it with `alias` of the
    exporter `job`/`instance` selected (`env` is the regex of the env variable, `.*` for All).

    Covers panel targets and annotations, with template variables replaced the way Grafana does:
    regex-escaped where matched as a regex (multi-value variables), as they are where matched by
    equality (single-value ones), so that a test can run each expression against a real
    Prometheus. Unknown variables raise ValueError.
    """
    values = {
        "alias": alias,
        "vendor": vendor,
        "job": job,
        "instance": instance,
        **INTERVAL_VALUES,
    }

    def substitute(match: re.Match[str]) -> str:
        operator, name = match[1] or "", match[2] or match[3]
        if name == "env":
            return operator + env
        if name not in values:
            raise ValueError(f"unknown template variable ${name}")
        value = values[name]
        if operator == '=~"':
            return operator + _regex_escape(value)
        if operator:
            return operator + value.replace("\\", "\\\\").replace('"', '\\"')
        return value

    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    exprs += [
        item["target"]["expr"] for item in dashboard["annotations"]["list"] if "target" in item
    ]
    return [re.sub(r'(=~?")?\$(?:\{(\w+)\}|(\w+))', substitute, expr) for expr in exprs]


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a regex variable value inside a PromQL string (plus quotes)."""
    return re.sub(r"""([\\$^*{}\[\]'+?.()|])""", r"\\\\\1", value).replace('"', '\\"')


# ---------------------------------------------------------------------------- dashboards


def _overview(aliases: list[DashboardAlias]) -> Json:
    flt = _OVERVIEW_FILTER
    panels = [
        _row("Status"),
        _stat(
            "Aliases down",
            "Aliases whose last probe failed (an alias of each exporter counts once).",
            f"count(max by ({EXPORTER_ALIAS}) (dbhealth_up{{{flt.up}}}) == 0) or vector(0)",
            unit="short",
            steps=_steps(("red", 1)),
            w=4,
            h=8,
        ),
        _up_timeline(
            f"max by ({EXPORTER_ALIAS}) (dbhealth_up{{{flt.up}}})",
            EXPORTER_ALIAS_LEGEND,
            "Click an alias to open its dashboard.",
            links=[_alias_dashboard_link()],
            w=20,
            h=8,
        ),
        _down_reason_table(flt),
        _info_table(flt, w=12),
        _down_alias_impact_table(flt),
        *_trouble_panels(flt, aliases),
        _row("Latency"),
        _timeseries(
            "Ping latency",
            "Time of the ping query of the last probe.",
            (_by_alias("dbhealth_ping_duration_seconds", flt), EXPORTER_ALIAS_LEGEND),
            unit="s",
            steps=_steps(("orange", PING_SECONDS)),
        ),
        _timeseries(
            "Probe duration",
            "Time of the whole last probe (connect, ping and the cheap parts).",
            (_by_alias("dbhealth_probe_duration_seconds", flt), EXPORTER_ALIAS_LEGEND),
            unit="s",
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
                (_connections_ratio(flt.alias, f" by ({EXPORTER_ALIAS})"), EXPORTER_ALIAS_LEGEND),
                unit="percentunit",
                steps=_steps(("orange", CONNECTIONS_RATIO), ("red", 0.95)),
                max_value=1,
            ),
            _timeseries(
                "Open connections",
                "Open connections of every state.",
                (
                    f"max by ({EXPORTER_ALIAS}) (sum without (state)"
                    f" (dbhealth_connections{{{flt.alias}}}))",
                    EXPORTER_ALIAS_LEGEND,
                ),
                unit="short",
            ),
        ]
    if any(a.replica for a in aliases):
        panels += [
            _row("Replication"),
            _timeseries(
                "Replication lag",
                "How far replay on each replica is behind its primary.",
                (_by_alias("dbhealth_replication_lag_seconds", flt), EXPORTER_ALIAS_LEGEND),
                unit="s",
                steps=_steps(("orange", REPLICATION_LAG_SECONDS)),
                w=24,
            ),
        ]
    if any(a.has_server for a in aliases):
        panels += [_row("Statements"), _slowest_statements(flt, w=24, overview=True)]
    return _dashboard(
        uid=OVERVIEW_UID,
        title="dbhealth / Overview",
        description="Every database alias probed by dbhealth at a glance.",
        tags=[TAG],
        variables=[
            *_exporter_variables("", multi=True),
            _query_variable(
                "vendor", "Vendor", f"label_values(dbhealth_up{{{OVERVIEW_EXPORTER}}}, vendor)"
            ),
            _query_variable(
                "alias",
                "Alias",
                f'label_values(dbhealth_up{{{OVERVIEW_EXPORTER}, vendor=~"$vendor"}}, alias)',
            ),
        ],
        links=[
            {
                **_link_defaults(),
                "type": "link",
                "title": "Alias dashboard",
                "url": f"/d/{ALIAS_TEMPLATE_UID}",
                "icon": "dashboard",
            },
            _tag_link("Aliases", ALIAS_TAG),
        ],
        panels=panels,
        flt=flt,
    )


def _alias_template() -> Json:
    """One dashboard for any alias of any exporter, chosen with its variables: what alerts and
    the overview link to, and what an alias discovered at run time is shown with."""
    return _dashboard(
        uid=ALIAS_TEMPLATE_UID,
        title="dbhealth / Alias",
        description="Any database alias of any exporter, chosen with the variables; sections"
        " of other vendors and roles show no data.",
        tags=[TAG, ALIAS_TAG],
        variables=[
            *_exporter_variables("", multi=False),
            _query_variable(
                "alias",
                "Alias",
                f"label_values(dbhealth_up{{{ALIAS_EXPORTER}}}, alias)",
                multi=False,
            ),
        ],
        links=[_overview_link(""), _tag_link("Aliases", ALIAS_TAG)],
        panels=_alias_panels(_TEMPLATE_FILTER, _EVERY_SECTION),
        flt=_TEMPLATE_FILTER,
    )


def _alias_dashboard(alias: DashboardAlias) -> Json:
    flt = _alias_filter(alias.alias)
    alias_matcher = f"alias={json.dumps(alias.alias)}"
    return _dashboard(
        uid=alias_uid(alias),
        title=f"dbhealth / {alias.alias}",
        description=f"Database alias {alias.alias}: {alias.vendor} {alias.role}.",
        tags=[TAG, ALIAS_TAG, alias.vendor, alias.role],
        variables=_exporter_variables(alias_matcher, multi=False),
        links=[
            _overview_link(f"var-alias={quote(alias.alias, safe='')}"),
            _tag_link("Aliases", ALIAS_TAG),
        ],
        panels=_alias_panels(flt, _Sections.of(alias)),
        flt=flt,
    )


def _alias_panels(flt: _Filter, sections: _Sections) -> list[Json]:
    """The panels of one alias, for the sections its vendor and role can fill."""
    panels = [
        _row("Status"),
        _stat(
            "State",
            "Whether the last probe connected and answered.",
            f"max(dbhealth_up{{{flt.up}}})",
            unit="short",
            steps=_steps(("green", 1), base="red"),
            mappings=UP_MAPPINGS,
        ),
        _stat(
            "Failure reason",
            "Why the alias is down now; 'none' while it is up.",
            (
                f"max by (reason) (dbhealth_down_reason{{{flt.alias}}}) or label_replace("
                f'max(dbhealth_up{{{flt.up}}}) * 0, "reason", "none", "", "")',
                "{{reason}}",
            ),
            unit="short",
            steps=_steps(("red", 1)),
            text_mode="name",
            w=5,
        ),
        _stat(
            "Last success",
            "Time since the last successful probe.",
            f"time() - {_one('dbhealth_last_success_timestamp_seconds', flt)}",
            unit="s",
            steps=_steps(("orange", STALE_SECONDS)),
            w=5,
        ),
        _stat(
            "Critical",
            "Whether the health endpoint fails while this alias is down.",
            _one("dbhealth_critical", flt),
            unit="short",
            steps=_steps(base="blue"),
            mappings=YES_NO_MAPPINGS,
            w=3,
        ),
        _stat(
            "Deadline",
            "The probe deadline in force.",
            _one("dbhealth_deadline_seconds", flt),
            unit="s",
            steps=_steps(base="blue"),
            w=3,
        ),
        _stat(
            "Size",
            "Size of the database.",
            _one("dbhealth_database_size_bytes", flt),
            unit="bytes",
            steps=_steps(base="blue"),
        ),
        _up_timeline(f"max(dbhealth_up{{{flt.up}}})", "{{alias}}", "", links=[], w=24, h=5),
        _info_table(flt, w=24),
        _row("Probe"),
        _timeseries(
            "Latency",
            "Ping query, opening a new connection, and the whole probe.",
            (_one("dbhealth_ping_duration_seconds", flt), "ping"),
            (_one("dbhealth_connect_duration_seconds", flt), "connect"),
            (_one("dbhealth_probe_duration_seconds", flt), "probe"),
            (_one("dbhealth_deadline_seconds", flt), "deadline"),
            unit="s",
            steps=_steps(("orange", PING_SECONDS)),
        ),
        _timeseries(
            "Probe failures",
            "Failed probes per interval, by reason.",
            (
                "max by (reason) (increase(dbhealth_probe_failures_total"
                f"{{{flt.alias}}}[$__rate_interval])) > 0",
                "{{reason}}",
            ),
            unit="short",
            draw_style="bars",
        ),
        _row("Size"),
        _size_panel(flt, w=8),
        _growth_panel(flt, w=8),
        _timeseries(
            "Cached part age",
            "Age of the cached expensive parts (size, statements); they refresh less often.",
            (f"max by (part) (dbhealth_part_age_seconds{{{flt.alias}}})", "{{part}}"),
            unit="s",
            w=8,
        ),
    ]
    if sections.server:
        panels += _connection_panels(flt)
    if sections.replica:
        panels += _replication_panels(flt, mysql=sections.mysql)
    if sections.server:
        panels += _transaction_panels(flt)
        panels += _server_panels(flt, mysql=sections.mysql)
    if sections.postgresql:
        panels += _wraparound_panels(flt)
        if sections.primary:
            panels += _slot_panels(flt)
    if sections.server:
        panels += _table_maintenance_panels(flt, sections)
    if sections.sqlite:
        panels += _sqlite_panels(flt)
    panels += _id_headroom_panels(flt)
    if sections.server:
        panels += _statement_panels(flt)
    return panels


def _trouble_panels(flt: _Filter, aliases: list[DashboardAlias]) -> list[Json]:
    """The worst alias for each signal that takes a database down hours or days later."""
    panels = []
    if any(a.has_server for a in aliases):
        panels += [
            _worst_stat(
                "Oldest transaction",
                "The alias with the oldest open transaction (not dbhealth's own), and its age.",
                f"topk(1, {_by_alias('dbhealth_oldest_transaction_seconds', flt)})",
                unit="s",
                steps=_steps(("orange", LONG_TRANSACTION_SECONDS)),
            ),
            _worst_stat(
                "Blocked sessions",
                "The alias with the most sessions waiting for a lock another session holds.",
                f"topk(1, {_by_alias('dbhealth_blocked_sessions', flt)})",
                unit="short",
                steps=_steps(("orange", 1)),
            ),
        ]
    if any(a.vendor == "postgresql" for a in aliases):
        panels.append(
            _worst_stat(
                "Transaction id age",
                "The PostgreSQL alias closest to transaction id wraparound (at 2^31, 2.1 billion).",
                f"topk(1, {_by_alias('dbhealth_transaction_id_age', flt)})",
                unit="short",
                steps=_steps(("orange", WRAPAROUND_AGE_WARNING), ("red", WRAPAROUND_AGE_CRITICAL)),
            )
        )
    panels.append(
        _worst_stat(
            "Lowest id headroom",
            "The table with the least of its id range left (1 = empty, 0 = exhausted).",
            f"bottomk(1, min by ({EXPORTER_ALIAS}, table)"
            f" (dbhealth_id_headroom_ratio{{{flt.alias}}}))",
            legend="{{alias}} {{table}} @ {{instance}}",
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
    legend: str = EXPORTER_ALIAS_LEGEND,
) -> Json:
    """A stat naming the worst alias now (an instant query, so one series only)."""
    return _stat(
        title,
        description,
        _target(expr, legend, instant=True, fmt="time_series"),
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


def _connection_panels(flt: _Filter) -> list[Json]:
    return [
        _row("Connections"),
        _timeseries(
            "Connections by state",
            "Open connections by state, and the server's maximum.",
            (f"max by (state) (dbhealth_connections{{{flt.alias}}})", "{{state}}"),
            (_one("dbhealth_connections_max", flt), "max"),
            unit="short",
            stack=True,
            overrides=[_unstacked_dashed("max")],
        ),
        _timeseries(
            "Connections used of the maximum",
            "Open connections of every state over max_connections.",
            (_connections_ratio(flt.alias, ""), "used"),
            unit="percentunit",
            steps=_steps(("orange", CONNECTIONS_RATIO), ("red", 0.95)),
            max_value=1,
        ),
    ]


def _replication_panels(flt: _Filter, *, mysql: bool) -> list[Json]:
    panels = [
        _row("Replication"),
        _stat(
            "Current lag",
            "How far replay on this replica is behind its primary.",
            _one("dbhealth_replication_lag_seconds", flt),
            unit="s",
            steps=_steps(("orange", REPLICATION_LAG_SECONDS)),
            h=8,
        ),
        _stat(
            "Primary link",
            "Whether the replica receives from its primary; its lag reads 0 when it does not.",
            _one("dbhealth_replica_connected", flt, "min"),
            unit="short",
            steps=_steps(("green", 1), base="red"),
            mappings=RECEIVING_MAPPINGS,
            h=8,
        ),
        _timeseries(
            "Replication lag",
            "How far replay on this replica is behind its primary.",
            (_one("dbhealth_replication_lag_seconds", flt), "lag"),
            unit="s",
            steps=_steps(("orange", REPLICATION_LAG_SECONDS)),
            w=16,
        ),
    ]
    if mysql:
        panels.append(
            _stat(
                "Replication thread errors",
                "MySQL/MariaDB: last error number of the I/O (receiver) and SQL (applier)"
                " threads; 0 when none.",
                (
                    f"max by (thread) (dbhealth_replica_last_error{{{flt.alias}}})",
                    "{{thread}}",
                ),
                unit="short",
                steps=_steps(("red", 1)),
                mappings=[{"type": "value", "options": {"0": {"text": "no error", "index": 0}}}],
                text_mode="value_and_name",
                w=24,
            )
        )
    return panels


def _transaction_panels(flt: _Filter) -> list[Json]:
    """Open transactions, lock waits and deadlocks (PostgreSQL, MySQL/MariaDB)."""
    return [
        _row("Transactions and locks"),
        _timeseries(
            "Oldest transaction",
            "Age of the oldest open transaction on the database (dbhealth's own left out); it"
            " holds back vacuum / InnoDB purge and keeps its locks.",
            (_one("dbhealth_oldest_transaction_seconds", flt), "oldest transaction"),
            unit="s",
            steps=_steps(("orange", LONG_TRANSACTION_SECONDS)),
        ),
        _timeseries(
            "Idle in transaction",
            "Longest a session has sat idle inside an open transaction.",
            (_one("dbhealth_oldest_idle_in_transaction_seconds", flt), "idle in transaction"),
            unit="s",
            steps=_steps(("orange", IDLE_IN_TRANSACTION_SECONDS)),
        ),
        _timeseries(
            "Blocked sessions",
            "Sessions waiting for a lock another session holds.",
            (_one("dbhealth_blocked_sessions", flt), "blocked"),
            unit="short",
            w=6,
        ),
        _timeseries(
            "Longest lock wait",
            "How long the longest-waiting blocked session has waited for its lock.",
            (_one("dbhealth_longest_lock_wait_seconds", flt), "longest wait"),
            unit="s",
            steps=_steps(("orange", LOCK_WAIT_SECONDS)),
            w=6,
        ),
        _timeseries(
            "Transactions per second",
            "Transactions ended, by outcome. PostgreSQL: this database's commits and rollbacks;"
            " MySQL/MariaDB: explicit COMMIT and ROLLBACK statements of the whole server"
            " (autocommitted statements are not counted).",
            (
                "max by (outcome) (rate(dbhealth_transactions_total"
                f"{{{flt.alias}}}[$__rate_interval]))",
                "{{outcome}}",
            ),
            unit="short",
            w=6,
        ),
        _timeseries(
            "Deadlocks",
            "Deadlocks detected per interval (MySQL/MariaDB: the whole server).",
            (
                f"max(increase(dbhealth_deadlocks_total{{{flt.alias}}}[$__rate_interval]))",
                "deadlocks",
            ),
            unit="short",
            w=6,
            draw_style="bars",
        ),
    ]


def _server_panels(flt: _Filter, *, mysql: bool) -> list[Json]:
    """Restarts from the server's own start time; MySQL/MariaDB's load and purge lag."""
    uptime = f"time() - {_one('dbhealth_server_start_time_seconds', flt)}"
    panels = [
        _row("Server"),
        _stat(
            "Server uptime",
            "Time since the database server (not the exporter) last started.",
            uptime,
            unit="s",
            steps=_steps(("green", RESTART_SECONDS), base="orange"),
            h=8,
        ),
        _timeseries(
            "Server uptime (drops are restarts)",
            "Time since the database server last started: every drop is a restart.",
            (uptime, "uptime"),
            unit="s",
            w=20,
        ),
    ]
    if mysql:
        panels += [
            _timeseries(
                "Threads running",
                "MySQL/MariaDB: threads executing a statement (Threads_running), a saturation"
                " symptom, on the dashboard only.",
                (_one("dbhealth_threads_running", flt), "running"),
                unit="short",
                w=8,
            ),
            _timeseries(
                "Undo history length",
                "MySQL/MariaDB: InnoDB history list length, undo not purged yet, held back by"
                " old transactions.",
                (_one("dbhealth_undo_history_length", flt), "history length"),
                unit="short",
                steps=_steps(("orange", UNDO_HISTORY_LENGTH)),
                w=8,
            ),
            _timeseries(
                "Aborted connections",
                "MySQL/MariaDB, per second: failed connection attempts (connect) and clients"
                " gone without closing (client); on the dashboard only.",
                (
                    "max by (kind) (rate(dbhealth_aborted_connections_total"
                    f"{{{flt.alias}}}[$__rate_interval]))",
                    "{{kind}}",
                ),
                unit="short",
                w=8,
            ),
        ]
    return panels


def _wraparound_panels(flt: _Filter) -> list[Json]:
    """PostgreSQL transaction and multixact id ages against the 2^31 wraparound limit."""
    ages = [
        (_one("dbhealth_transaction_id_age", flt), "xid"),
        (_one("dbhealth_multixact_id_age", flt), "multixact"),
    ]
    return [
        _row("Wraparound (PostgreSQL)"),
        _stat(
            "Wraparound used",
            "Share of the 2^31 ids between the oldest unfrozen id and wraparound.",
            *((f"{expr} / {WRAPAROUND_LIMIT}", name) for expr, name in ages),
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
            *ages,
            unit="short",
            steps=_steps(("orange", WRAPAROUND_AGE_WARNING), ("red", WRAPAROUND_AGE_CRITICAL)),
            max_value=WRAPAROUND_LIMIT,
            w=18,
        ),
    ]


def _slot_panels(flt: _Filter) -> list[Json]:
    """PostgreSQL replication slots on a primary: consumer attached, WAL kept for it."""
    return [
        _row("Replication slots (PostgreSQL primaries)"),
        _state_timeline(
            "Slot consumers",
            "Whether a consumer (standby, logical decoding client) is attached to each slot.",
            (f"max by (slot) (dbhealth_replication_slot_active{{{flt.alias}}})", "{{slot}}"),
            mappings=ACTIVE_MAPPINGS,
            w=12,
            h=8,
        ),
        _timeseries(
            "WAL retained by slots",
            "WAL each slot keeps on disk until its consumer confirms it.",
            (
                f"max by (slot) (dbhealth_replication_slot_retained_bytes{{{flt.alias}}})",
                "{{slot}}",
            ),
            unit="bytes",
            steps=_steps(("orange", SLOT_RETAINED_BYTES)),
        ),
    ]


def _table_maintenance_panels(flt: _Filter, sections: _Sections) -> list[Json]:
    """What says a VACUUM, an ANALYZE or an OPTIMIZE is due, for the tables the exporter reads
    (the top tables per alias, not every table)."""
    per_table = "table, model"
    panels = [
        _row("Table maintenance"),
        _timeseries(
            "Largest tables",
            "Size of the largest tables (PostgreSQL: with indexes and TOAST).",
            (f"topk(10, max by (table) (dbhealth_table_size_bytes{{{flt.alias}}}))", "{{table}}"),
            unit="bytes",
            # Beside MySQL's free space, else a line of its own.
            w=12 if sections.mysql else 24,
        ),
    ]
    if sections.mysql:
        panels.append(
            _timeseries(
                "Free space in tables",
                "MySQL/MariaDB: allocated but unused space (data_free) of the largest tables;"
                " OPTIMIZE TABLE returns it.",
                (
                    f"topk(10, max by (table) (dbhealth_table_free_bytes{{{flt.alias}}}))",
                    "{{table}}",
                ),
                unit="bytes",
            )
        )
    if sections.postgresql:
        dead = f"dbhealth_table_dead_rows{{{flt.alias}}}"
        live = f"dbhealth_table_live_rows{{{flt.alias}}}"
        panels += [
            _timeseries(
                "Dead rows",
                "PostgreSQL: dead rows of the tables with the most; VACUUM removes them.",
                (f"topk(10, max by (table) ({dead}))", "{{table}}"),
                unit="short",
            ),
            _table(
                "Dead row share",
                "PostgreSQL: dead rows over all rows of the tables with the most dead rows.",
                f"max by ({per_table}) ({dead} / ({dead} + {live} > 0))",
                unit="percentunit",
                steps=_steps(("orange", DEAD_ROW_SHARE)),
                columns={"table": "Table", "model": "Model", "Value": "Dead share"},
                sort_by="Dead share",
                w=12,
            ),
            *(
                _table(
                    f"Since last {action}",
                    f"PostgreSQL: time since the last {action} (manual or auto, whichever is"
                    " later) of the tables with the most dead rows.",
                    f"time() - max by ({per_table})"
                    f" (dbhealth_table_last_{action}_timestamp_seconds{{{flt.alias}}})",
                    unit="s",
                    steps=_steps(("orange", MAINTENANCE_AGE_SECONDS)),
                    columns={"table": "Table", "model": "Model", "Value": "Since"},
                    sort_by="Since",
                    w=12,
                )
                for action in ("vacuum", "analyze")
            ),
        ]
    return panels


def _sqlite_panels(flt: _Filter) -> list[Json]:
    """SQLite: the -wal file (checkpoint starvation), free pages and PRAGMA quick_check."""
    return [
        _row("SQLite file"),
        _stat(
            "Integrity",
            "Result of the last PRAGMA quick_check.",
            _one("dbhealth_integrity_ok", flt, "min"),
            unit="short",
            steps=_steps(("green", 1), base="red"),
            mappings=INTEGRITY_MAPPINGS,
            h=8,
        ),
        _stat(
            "Last integrity check",
            "Time since PRAGMA quick_check last ran.",
            f"time() - {_one('dbhealth_integrity_checked_timestamp_seconds', flt)}",
            unit="s",
            steps=_steps(base="blue"),
            h=8,
        ),
        _timeseries(
            "WAL file size",
            "Size of the -wal file; it grows while a long-lived reader starves checkpoints.",
            (_one("dbhealth_sqlite_wal_bytes", flt), "wal"),
            unit="bytes",
            steps=_steps(("orange", SQLITE_WAL_BYTES)),
            w=8,
        ),
        _timeseries(
            "Free pages",
            "Bytes of free pages inside the file (freelist pages times page size), beside the"
            " file's size: VACUUM gives them back to the filesystem.",
            (_one("dbhealth_sqlite_freelist_bytes", flt), "free pages"),
            (_one("dbhealth_database_size_bytes", flt), "file size"),
            unit="bytes",
            w=8,
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
            f"bottomk(10, min by (table, model) (dbhealth_id_headroom_ratio{{{flt.alias}}}))",
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
            (
                f"bottomk(10, min by (table) (dbhealth_id_headroom_ratio{{{flt.alias}}}))",
                "{{table}}",
            ),
            unit="percentunit",
            steps=_headroom_steps(),
            max_value=1,
        ),
    ]


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
            _one("dbhealth_statements_available", flt),
            unit="short",
            steps=_steps(("green", 1), base="orange"),
            mappings=AVAILABLE_MAPPINGS,
            h=10,
        ),
        _slowest_statements(flt, w=20, overview=False),
        _timeseries(
            "Calls per second",
            "Top statements by calls; ids are explained in the table above.",
            (
                "topk(10, max by (queryid) (rate(dbhealth_statement_calls_total"
                f"{{{flt.alias}}}[$__rate_interval])))",
                "{{queryid}}",
            ),
            unit="short",
            w=8,
        ),
        _timeseries(
            "Execution time per second",
            "Top statements by time spent executing them.",
            (
                "topk(10, max by (queryid) (rate(dbhealth_statement_seconds_total"
                f"{{{flt.alias}}}[$__rate_interval])))",
                "{{queryid}}",
            ),
            unit="s",
            w=8,
        ),
        _timeseries(
            "Time per call",
            "Recent mean time per call of the top statements.",
            (f"topk(10, max by (queryid) ({per_call}))", "{{queryid}}"),
            unit="s",
            steps=_steps(("orange", STATEMENT_MEAN_SECONDS)),
            w=8,
        ),
    ]


# ---------------------------------------------------------------------------- shared panels


def _one(metric: str, flt: _Filter, aggregation: str = "max") -> str:
    """One alias's value of a metric (the alias dashboards select one exporter and alias)."""
    return f"{aggregation}({metric}{{{flt.alias}}})"


def _by_alias(metric: str, flt: _Filter) -> str:
    """A metric per alias of each exporter (the overview)."""
    return f"max by ({EXPORTER_ALIAS}) ({metric}{{{flt.alias}}})"


def _up_timeline(expr: str, legend: str, hint: str, *, links: list[Json], w: int, h: int) -> Json:
    """Up/down over time; `links` are data links of every row (the overview's open the alias)."""
    panel = _state_timeline(
        "Up / down",
        f"1 when the probe connected and answered. {hint}".strip(),
        (expr, legend),
        mappings=UP_MAPPINGS,
        w=w,
        h=h,
    )
    panel["fieldConfig"]["defaults"]["links"] = links
    return panel


def _alias_dashboard_link() -> Json:
    """A data link from an overview series to the templated alias dashboard with that series'
    exporter and alias selected (an env-less series selects the empty env, which matches it)."""
    variables = "&".join(
        f"var-{name}=${{__field.labels.{name}}}" for name in ("job", "instance", "env", "alias")
    )
    return {
        "title": "Open ${__field.labels.alias} (${__field.labels.instance})",
        "url": f"/d/{ALIAS_TEMPLATE_UID}?{variables}&${{__url_time_range}}",
    }


def _state_timeline(
    title: str,
    description: str,
    *queries: tuple[str, str],
    mappings: list[Json],
    w: int,
    h: int,
) -> Json:
    """A 0/1 state per series over time: red for 0, green for 1."""
    return _panel(
        "state-timeline",
        title,
        description,
        queries,
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
        w=w,
        h=h,
    )


def _down_reason_table(flt: _Filter) -> Json:
    return _table(
        "Current failures",
        "The reason each down alias is failing now; empty while every alias is up.",
        f"max by ({EXPORTER_ALIAS}, reason) (dbhealth_down_reason{{{flt.alias}}})",
        unit="short",
        columns={"alias": "Alias", "instance": "Exporter", "reason": "Reason"},
        w=12,
        h=6,
    )


def _info_table(flt: _Filter, *, w: int) -> Json:
    return _table(
        "Databases",
        "Vendor, server version and address of each alias, and the exporter reporting it.",
        f"max by ({EXPORTER_ALIAS}, env, vendor, version, host, port, database)"
        f" (dbhealth_info{{{flt.up}}})",
        unit="short",
        columns={
            "alias": "Alias",
            "env": "Env",
            "instance": "Exporter",
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
        (_by_alias("dbhealth_database_size_bytes", flt), EXPORTER_ALIAS_LEGEND),
        unit="bytes",
        w=w,
    )


def _growth_panel(flt: _Filter, *, w: int) -> Json:
    return _timeseries(
        "Growth per day",
        "Size change per day, least-squares trend over 6 hours.",
        (
            f"max by ({EXPORTER_ALIAS}) (deriv(dbhealth_database_size_bytes{{{flt.alias}}}[6h]))"
            " * 86400",
            EXPORTER_ALIAS_LEGEND,
        ),
        unit="bytes",
        w=w,
    )


def _connections_ratio(matcher: str, grouping: str) -> str:
    """Open connections of every state over the maximum; `grouping` is "" or " by (...)"."""
    return (
        f"max{grouping} (sum without (state) (dbhealth_connections{{{matcher}}}))"
        f" / max{grouping} (dbhealth_connections_max{{{matcher}}} > 0)"
    )


def _slowest_statements(flt: _Filter, *, w: int, overview: bool) -> Json:
    """Top statements by mean time, their text joined from dbhealth_statement_info."""
    keys = f"{EXPORTER_ALIAS}, queryid"
    text = f"topk by ({keys}) (1, dbhealth_statement_info{{{flt.alias}}})"
    expr = (
        f"topk(10, max by ({keys}) (dbhealth_statement_mean_seconds{{{flt.alias}}})"
        f" * on ({keys}) group_left (query) {text})"
    )
    columns = {"alias": "Alias", "instance": "Exporter"} if overview else {}
    return _table(
        "Slowest statements",
        "Mean time per call since the statistics were reset; the text is normalized and cut.",
        expr,
        unit="s",
        steps=_steps(("orange", STATEMENT_MEAN_SECONDS)),
        columns={**columns, "queryid": "Query id", "query": "Query", "Value": "Mean"},
        sort_by="Mean",
        w=w,
        h=10,
    )


def _down_alias_impact_table(flt: _Filter) -> Json:
    """Models whose reads or writes go to a down alias, from the routers (embedded mode only)."""
    routes = (
        "max by (job, instance, app_label, model, read_alias, write_alias) (dbhealth_route_info)"
    )
    down = f"(max by ({EXPORTER_ALIAS}) (dbhealth_up{{{flt.up}}}) == 0)"
    routed = [
        f'{routes} and on (job, instance, {side}) label_join({down}, "{side}", "", "alias")'
        for side in ("read_alias", "write_alias")
    ]
    # A model no router routes reads or writes wherever its code says (`.using()`): while any
    # alias of its exporter is down, it may be broken too, and it says so instead of hiding.
    unrouted = (
        f"max by (job, instance, app_label, model, read_alias, write_alias)"
        f' (dbhealth_route_info{{read_alias="{NOT_ROUTED}"}}'
        f' or dbhealth_route_info{{write_alias="{NOT_ROUTED}"}})'
        f" and on (job, instance) max by (job, instance) ({down})"
    )
    expr = " or ".join([*routed, unrouted])
    return _table(
        "Impact of down aliases",
        "Models the Django routers send to a down alias, for reads or writes: what is broken"
        f" for users. Models no router routes ('{NOT_ROUTED}': the code picks the alias, as"
        " with .using()) are listed while any alias is down, since they may use it. Empty"
        " while every alias is up, and in standalone mode (no models).",
        expr,
        unit="short",
        columns={
            "app_label": "App",
            "model": "Model",
            "read_alias": "Reads from",
            "write_alias": "Writes to",
            "instance": "Exporter",
        },
        w=24,
        h=6,
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


Query = str | tuple[str, str] | Json


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


def _targets(queries: tuple[Query, ...], *, instant: bool = False) -> list[Json]:
    """Targets from expressions, (expression, legend) pairs or ready targets."""
    built = []
    for query in queries:
        if isinstance(query, dict):
            built.append(query)
        elif isinstance(query, tuple):
            built.append(_target(*query, instant=instant))
        else:
            built.append(_target(query, instant=instant))
    return built


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
    queries: tuple[Query, ...],
    *,
    unit: str,
    steps: list[Json],
    w: int,
    h: int,
    options: Json,
    instant: bool = False,
    custom: Json | None = None,
    mappings: list[Json] | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    max_value: float | None = None,
) -> Json:
    """The one panel shape every panel is made of; id and position are filled in by _lay_out."""
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
    targets = _targets(queries, instant=instant)
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
    *queries: Query,
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
        queries,
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
    *queries: Query,
    unit: str,
    steps: list[Json] | None = None,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    draw_style: str = "line",
    max_value: float | None = None,
    overrides: list[Json] | None = None,
) -> Json:
    steps = steps or _steps()
    # A threshold line only where a threshold beyond the base step exists.
    threshold_mode = "line" if len(steps) > 1 else "off"
    return _panel(
        "timeseries",
        title,
        description,
        queries,
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
    *queries: Query,
    unit: str,
    columns: dict[str, str],
    w: int,
    h: int = 8,
    steps: list[Json] | None = None,
    sort_by: str | None = None,
    sort_desc: bool = True,
) -> Json:
    """An instant-query table showing only `columns` (label or Value -> header), in order."""
    return _panel(
        "table",
        title,
        description,
        queries,
        instant=True,
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
    chosen = f"${{{DATASOURCE_INPUT}}}"
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": chosen, "value": chosen},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def _query_variable(
    name: str, label: str, query: str, *, multi: bool = True, all_value: str | None = None
) -> Json:
    """A label_values variable: multi-select with All (its All is the list of values, or
    `all_value`), or a single value (Grafana selects the first until one is chosen)."""
    variable: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable", "qryType": 1},
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if multi:
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


def _exporter_variables(alias_matcher: str, *, multi: bool) -> list[Json]:
    """job, instance and env: which exporter (and environment) the dashboard shows.

    `alias_matcher` narrows them to the exporters reporting one alias. env lists the values of an
    `env` target label; with none it is empty, and its All (`.*`) matches every series.
    """
    job, instance, _ = (OVERVIEW_EXPORTER if multi else ALIAS_EXPORTER).split(", ")

    def values_of(label: str, *matchers: str) -> str:
        selected = ", ".join(m for m in (*matchers, alias_matcher) if m)
        return f"label_values(dbhealth_up{{{selected}}}, {label})".replace("{}", "")

    env = _query_variable("env", "Environment", values_of("env", job, instance), all_value=".*")
    if not multi:
        env["multi"] = False
        env["current"] = {"selected": True, "text": "All", "value": "$__all"}
    return [
        _query_variable("job", "Job", values_of("job"), multi=multi),
        _query_variable("instance", "Exporter", values_of("instance", job), multi=multi),
        env,
    ]


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


def _overview_link(query: str) -> Json:
    """Back to the overview, with this dashboard's exporter (its variables) selected."""
    return {
        **_link_defaults(),
        "type": "link",
        "title": "Overview",
        "url": f"/d/{OVERVIEW_UID}" + (f"?{query}" if query else ""),
        "icon": "dashboard",
        "includeVars": True,
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
        "textFormat": "{{alias}} @ {{instance}} ({{severity}})",
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


def _inputs() -> list[Json]:
    return [
        {
            "name": DATASOURCE_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes dbhealth (the datasource variable's"
            " default).",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
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
        "__inputs": _inputs(),
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
