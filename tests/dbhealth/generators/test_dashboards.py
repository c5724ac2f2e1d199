"""The generated Grafana dashboards are valid, consistent models that fit each alias."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import promql_parser
import pytest
import yaml
from dbhealth.generators import dashboards
from dbhealth.generators.dashboards import (
    ALIAS_TAG,
    ALIAS_TEMPLATE_FILE,
    ALIAS_TEMPLATE_UID,
    DATASOURCE,
    DATASOURCE_INPUT,
    OVERVIEW_FILE,
    OVERVIEW_UID,
    DashboardAlias,
    alias_uid,
    build_dashboards,
    dashboard_queries,
)
from dbhealth.management.commands import dashboards as dashboards_command
from hypothesis import given
from hypothesis import strategies as st

RULES = Path(__file__).resolve().parents[3] / "config" / "prometheus" / "rules.yml"

REFERENCE = [
    DashboardAlias("default", "postgresql", replica=False),
    DashboardAlias("users_db", "postgresql", replica=False),
    DashboardAlias("analytics_db", "postgresql", replica=False),
    DashboardAlias("read_replica", "postgresql", replica=True),
    DashboardAlias("legacy_db", "mysql", replica=False),
    DashboardAlias("legacy_replica", "mysql", replica=True),
    DashboardAlias("cache_db", "sqlite", replica=False),
]
BY_FILE = {f"alias-{a.alias}.json": a for a in REFERENCE}
# Grafana's rule for a uid (util.IsValidShortUID, MaxUIDLength), in lower case: some of the
# databases Grafana stores dashboards in compare uids case-insensitively.
UID = re.compile(r"[a-z0-9_-]{1,40}")
UNITS = {"s", "bytes", "percentunit", "short"}
REQUIRED_KEYS = {
    "__inputs",
    "__requires",
    "annotations",
    "id",
    "links",
    "panels",
    "schemaVersion",
    "tags",
    "templating",
    "time",
    "title",
    "uid",
}


@pytest.fixture(scope="module")
def files() -> dict[str, dict]:
    return build_dashboards(REFERENCE)


def panels(dashboard: dict) -> list[dict]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def exprs(panel: dict) -> list[str]:
    return [target["expr"] for target in panel["targets"]]


def uses(panel: dict, metric_prefix: str) -> bool:
    return any(metric_prefix in expr for expr in exprs(panel))


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_one_overview_one_templated_alias_dashboard_and_one_file_per_alias(
    files: dict[str, dict],
) -> None:
    assert set(files) == {OVERVIEW_FILE, ALIAS_TEMPLATE_FILE, *BY_FILE}
    assert files[ALIAS_TEMPLATE_FILE]["uid"] == ALIAS_TEMPLATE_UID


def test_files_are_json_with_the_required_keys(files: dict[str, dict]) -> None:
    for name, dashboard in files.items():
        assert json.loads(json.dumps(dashboard, allow_nan=False)) == dashboard, name
        assert dashboard.keys() >= REQUIRED_KEYS, name
        assert dashboard["schemaVersion"] == 39
        assert dashboard["id"] is None
        required = {(item["type"], item["id"]) for item in dashboard["__requires"]}
        kinds = {("panel", panel["type"]) for panel in panels(dashboard)}
        assert {("grafana", "grafana"), ("datasource", "prometheus"), *kinds} <= required


def test_uids_are_valid_and_unique(files: dict[str, dict]) -> None:
    uids = [dashboard["uid"] for dashboard in files.values()]
    assert all(UID.fullmatch(uid) for uid in uids), uids
    assert len(set(uids)) == len(uids)


@given(st.text(min_size=1, max_size=200))
def test_any_alias_gets_a_valid_uid(alias: str) -> None:
    uid = alias_uid(DashboardAlias(alias, "postgresql", replica=False))
    assert UID.fullmatch(uid)
    assert uid not in {OVERVIEW_UID, ALIAS_TEMPLATE_UID}


def test_similar_or_long_aliases_get_distinct_uids() -> None:
    long_prefix = "reporting_warehouse_replica_"
    aliases = ["users_db", "users-db", "Users_DB", f"{long_prefix}1", f"{long_prefix}2", "ß", "∂"]
    aliases += ["overview", "alias", "hash-x", "a b", "a-b"]
    uids = {alias_uid(DashboardAlias(alias, "postgresql", False)) for alias in aliases}
    assert len(uids | {OVERVIEW_UID, ALIAS_TEMPLATE_UID}) == len(aliases) + 2


def test_environments_share_a_uid_exactly_when_they_share_the_dashboard() -> None:
    """prod's and staging's `default` from two configs, in one Grafana: the same vendor and
    role make the same dashboard (its variables choose the environment), so the same uid
    overwrites nothing; another vendor or role is another dashboard under another uid."""
    prod = DashboardAlias("default", "postgresql", replica=False)
    staging = DashboardAlias("default", "postgresql", replica=False)
    [prod_files, staging_files] = [build_dashboards([a]) for a in (prod, staging)]
    assert prod_files == staging_files
    others = [
        DashboardAlias("default", "sqlite", replica=False),
        DashboardAlias("default", "postgresql", replica=True),
    ]
    assert len({alias_uid(a) for a in [prod, *others]}) == 3


def test_panel_ids_are_unique(files: dict[str, dict]) -> None:
    for name, dashboard in files.items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name


def test_panels_fit_the_grid_without_overlapping(files: dict[str, dict]) -> None:
    for name, dashboard in files.items():
        boxes = [panel["gridPos"] for panel in dashboard["panels"]]
        for box in boxes:
            assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["w"] <= 24, name
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart = (
                    a["x"] + a["w"] <= b["x"]
                    or b["x"] + b["w"] <= a["x"]
                    or a["y"] + a["h"] <= b["y"]
                    or b["y"] + b["h"] <= a["y"]
                )
                assert apart, f"{name}: {a} overlaps {b}"


def test_every_datasource_reference_is_the_variable(files: dict[str, dict]) -> None:
    for name, dashboard in files.items():
        references = [value for key, value in walk(dashboard) if key == "datasource"]
        assert references, name
        assert all(reference == DATASOURCE for reference in references), name
        variable = dashboard["templating"]["list"][0]
        assert (variable["name"], variable["type"], variable["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )


def test_panels_have_units_and_thresholds(files: dict[str, dict]) -> None:
    for name, dashboard in files.items():
        for panel in panels(dashboard):
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["unit"] in UNITS, (name, panel["title"])
            assert defaults["thresholds"]["steps"][0]["value"] is None, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])


@pytest.mark.parametrize("alias", REFERENCE, ids=lambda alias: alias.alias)
def test_every_expression_parses_as_promql_once_substituted(
    files: dict[str, dict], alias: DashboardAlias
) -> None:
    for name in (OVERVIEW_FILE, ALIAS_TEMPLATE_FILE, f"alias-{alias.alias}.json"):
        queries = dashboard_queries(files[name], alias.alias, alias.vendor)
        assert len(queries) > 5
        for query in queries:
            assert "$" not in query.replace("$1", ""), query
            try:
                promql_parser.parse(query)
            except ValueError as error:
                pytest.fail(f"{name}: {query}: {error}")


def test_substitution_escapes_regex_characters(files: dict[str, dict]) -> None:
    queries = dashboard_queries(files[OVERVIEW_FILE], "shop.db", "postgresql")
    assert any(r'alias=~"shop\\.db"' in query for query in queries)
    queries = dashboard_queries(files[ALIAS_TEMPLATE_FILE], "shop.db", "postgresql")
    assert any('alias="shop.db"' in query for query in queries)
    with pytest.raises(ValueError, match="unknown template variable"):
        dashboard_queries(
            {"panels": [{"targets": [{"expr": "up{a=~'$nope'}"}]}], "annotations": {"list": []}},
            "a",
            "b",
        )


def test_multi_value_variables_are_matched_as_regexes_single_ones_by_equality(
    files: dict[str, dict],
) -> None:
    """Grafana regex-escapes the values of multi-value and All variables (`(a|b)`) and leaves a
    single value as it is: each variable is matched the way its values are written."""
    for name, dashboard in files.items():
        queries = [expr for panel in panels(dashboard) for expr in exprs(panel)]
        queries += [v["query"]["query"] for v in dashboard["templating"]["list"][1:]]
        for variable in dashboard["templating"]["list"][1:]:
            var = variable["name"]
            as_regex = variable["multi"] or variable["includeAll"]
            wrong = f'{var}="${var}"' if as_regex else f'{var}=~"${var}"'
            assert not any(wrong in query for query in queries), (name, wrong)


def test_every_panel_selects_the_exporter_and_the_alias(files: dict[str, dict]) -> None:
    expected = {
        OVERVIEW_FILE: ['job=~"$job"', 'instance=~"$instance"', 'env=~"$env"', 'alias=~"$alias"'],
        ALIAS_TEMPLATE_FILE: [
            'job="$job"',
            'instance="$instance"',
            'env=~"$env"',
            'alias="$alias"',
        ],
    }
    for name, alias in BY_FILE.items():
        expected[name] = ['job="$job"', 'instance="$instance"', f"alias={json.dumps(alias.alias)}"]
    for name, matchers in expected.items():
        for panel in panels(files[name]):
            for expr in exprs(panel):
                assert all(m in expr for m in matchers), (name, panel["title"], expr)


def test_the_overview_never_merges_exporters(files: dict[str, dict]) -> None:
    """An aggregation or join that keeps `alias` keeps the exporter (job, instance) with it, so
    prod's and staging's `default` are two rows, two lines, two links."""
    for panel in panels(files[OVERVIEW_FILE]):
        for expr in exprs(panel):
            for names in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
                labels = {n.strip() for n in names.split(",")}
                if labels & {"alias", "read_alias", "write_alias"}:
                    assert {"job", "instance"} <= labels, (panel["title"], expr)


def test_datasource_is_an_import_input_and_the_variables_default(files: dict[str, dict]) -> None:
    """Grafana's import asks for `__inputs` and replaces `${DS_PROMETHEUS}` with the answer,
    which only the datasource variable's default holds; provisioning leaves it, and Grafana
    selects one of its Prometheus datasources for the unknown value."""
    for name, dashboard in files.items():
        [source] = dashboard["__inputs"]
        assert (source["name"], source["type"], source["pluginId"]) == (
            DATASOURCE_INPUT,
            "datasource",
            "prometheus",
        )
        variable = dashboard["templating"]["list"][0]
        assert variable["current"]["value"] == f"${{{DATASOURCE_INPUT}}}"
        assert json.dumps(dashboard).count(f"${{{DATASOURCE_INPUT}}}") == 2, name


def test_counter_rates_use_the_rate_interval(files: dict[str, dict]) -> None:
    for dashboard in files.values():
        for panel in panels(dashboard):
            for expr in exprs(panel):
                for window in re.findall(r"\b(?:rate|increase)\([^\[]*\[([^\]]+)\]", expr):
                    assert window == "$__rate_interval", expr


def test_only_counters_are_rated(files: dict[str, dict]) -> None:
    """rate()/increase() only of counters; a gauge's rate is noise (no irate at all)."""
    for dashboard in files.values():
        for panel in panels(dashboard):
            for expr in exprs(panel):
                assert "irate(" not in expr, expr
                for metric in re.findall(r"\b(?:rate|increase)\((\w+)", expr):
                    assert metric.endswith("_total"), expr


def test_overview_variables(files: dict[str, dict]) -> None:
    variables = {v["name"]: v for v in files[OVERVIEW_FILE]["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "env", "vendor", "alias"]
    assert variables["env"]["allValue"] == ".*"
    for name in ("job", "instance", "env", "vendor", "alias"):
        variable = variables[name]
        assert variable["multi"] and variable["includeAll"]
        assert variable["query"]["query"].startswith("label_values(dbhealth_up")
        assert variable["query"]["query"].endswith(f", {name})")


def test_overview_shows_every_section(files: dict[str, dict]) -> None:
    overview = files[OVERVIEW_FILE]
    kinds = {panel["type"] for panel in panels(overview)}
    assert {"state-timeline", "table", "timeseries", "stat"} <= kinds
    for metric in (
        "dbhealth_up",
        "dbhealth_down_reason",
        "dbhealth_ping_duration_seconds",
        "dbhealth_probe_duration_seconds",
        "dbhealth_database_size_bytes",
        "deriv(dbhealth_database_size_bytes",
        "dbhealth_connections_max",
        "dbhealth_replication_lag_seconds",
        "dbhealth_statement_info",
        "dbhealth_oldest_transaction_seconds",
        "dbhealth_blocked_sessions",
        "dbhealth_transaction_id_age",
        "dbhealth_id_headroom_ratio",
    ):
        assert any(uses(panel, metric) for panel in panels(overview)), metric


def test_overview_names_the_worst_alias_of_each_trouble_signal(files: dict[str, dict]) -> None:
    overview = files[OVERVIEW_FILE]["panels"]
    start = next(i for i, p in enumerate(overview) if p["title"] == "Trouble before an outage")
    end = next(i for i, p in enumerate(overview) if i > start and p["type"] == "row")
    trouble = overview[start + 1 : end]
    assert [p["title"] for p in trouble] == [
        "Oldest transaction",
        "Blocked sessions",
        "Transaction id age",
        "Lowest id headroom",
    ]
    assert sum(p["gridPos"]["w"] for p in trouble) == 24
    for panel in trouble:
        [target] = panel["targets"]
        assert target["expr"].startswith(("topk(1, ", "bottomk(1, ")), target["expr"]
        assert (target["instant"], target["format"]) == (True, "time_series")
        assert "{{alias}}" in target["legendFormat"]
        assert "{{instance}}" in target["legendFormat"]


def test_overview_leaves_out_trouble_signals_no_alias_has() -> None:
    overview = build_dashboards([DashboardAlias("cache", "sqlite", replica=False)])
    titles = [panel["title"] for panel in panels(overview[OVERVIEW_FILE])]
    assert "Lowest id headroom" in titles
    assert not {"Oldest transaction", "Blocked sessions", "Transaction id age"} & set(titles)


@pytest.mark.parametrize("name", sorted(BY_FILE))
def test_alias_panels_fit_vendor_and_role(files: dict[str, dict], name: str) -> None:
    alias = BY_FILE[name]
    dashboard_panels = panels(files[name])

    def shown(*metrics: str) -> bool:
        return any(uses(p, metric) for p in dashboard_panels for metric in metrics)

    postgresql, mysql = alias.vendor == "postgresql", alias.vendor == "mysql"
    assert shown("dbhealth_replication_lag_seconds", "dbhealth_replica_connected") == alias.replica
    assert shown("dbhealth_replica_last_error") == (mysql and alias.replica)
    # Slots matter on primaries only.
    assert shown("dbhealth_replication_slot_") == (postgresql and not alias.replica)
    assert shown("dbhealth_connections") == alias.has_server
    assert shown("dbhealth_statement") == alias.has_server
    for metric in (
        "dbhealth_oldest_transaction_seconds",
        "dbhealth_oldest_idle_in_transaction_seconds",
        "dbhealth_blocked_sessions",
        "dbhealth_longest_lock_wait_seconds",
        "dbhealth_transactions_total",
        "dbhealth_deadlocks_total",
        "dbhealth_server_start_time_seconds",
    ):
        assert shown(metric) == alias.has_server, metric
    for metric in ("dbhealth_transaction_id_age", "dbhealth_multixact_id_age"):
        assert shown(metric) == postgresql, metric
    for metric in (
        "dbhealth_threads_running",
        "dbhealth_undo_history_length",
        "dbhealth_aborted_connections_total",
    ):
        assert shown(metric) == mysql, metric
    for metric in (
        "dbhealth_sqlite_wal_bytes",
        "dbhealth_integrity_ok",
        "dbhealth_sqlite_freelist_bytes",
    ):
        assert shown(metric) == (alias.vendor == "sqlite"), metric
    for metric in (
        "dbhealth_table_dead_rows",
        "dbhealth_table_live_rows",
        "dbhealth_table_last_vacuum_timestamp_seconds",
        "dbhealth_table_last_analyze_timestamp_seconds",
    ):
        assert shown(metric) == postgresql, metric
    assert shown("dbhealth_table_size_bytes") == alias.has_server
    assert shown("dbhealth_table_free_bytes") == mysql
    assert shown("dbhealth_id_headroom_ratio")
    assert shown("dbhealth_ping_duration_seconds")
    assert all(f"alias={json.dumps(alias.alias)}" in e for p in dashboard_panels for e in exprs(p))


def metric_names(dashboard: dict) -> set[str]:
    return {
        name
        for panel in panels(dashboard)
        for expr in exprs(panel)
        for name in re.findall(r"\bdbhealth_\w+", expr)
    }


def test_the_templated_alias_dashboard_has_every_panel_of_every_alias(
    files: dict[str, dict],
) -> None:
    template = files[ALIAS_TEMPLATE_FILE]
    variables = [v["name"] for v in template["templating"]["list"]]
    assert variables == ["datasource", "job", "instance", "env", "alias"]
    assert ALIAS_TAG in template["tags"]
    for name in BY_FILE:
        assert metric_names(files[name]) <= metric_names(template), name


def test_overview_links_to_the_alias_dashboard_and_each_links_back(
    files: dict[str, dict],
) -> None:
    overview = files[OVERVIEW_FILE]
    tag_links = [link for link in overview["links"] if link["type"] == "dashboards"]
    assert [link["tags"] for link in tag_links] == [[ALIAS_TAG]]
    [timeline] = [p for p in panels(overview) if p["type"] == "state-timeline"]
    [data_link] = timeline["fieldConfig"]["defaults"]["links"]
    assert data_link["url"] == (
        f"/d/{ALIAS_TEMPLATE_UID}?var-job=${{__field.labels.job}}"
        "&var-instance=${__field.labels.instance}&var-env=${__field.labels.env}"
        "&var-alias=${__field.labels.alias}&${__url_time_range}"
    )
    [template_link] = [link for link in overview["links"] if link["type"] == "link"]
    assert template_link["url"] == f"/d/{ALIAS_TEMPLATE_UID}"
    for name, alias in BY_FILE.items():
        dashboard = files[name]
        assert ALIAS_TAG in dashboard["tags"]
        [back] = [link for link in dashboard["links"] if link["type"] == "link"]
        assert back["url"] == f"/d/{OVERVIEW_UID}?var-alias={alias.alias}"
        # ...with the dashboard's job, instance and env selected there too.
        assert back["includeVars"]


def test_panel_thresholds_match_the_alert_defaults() -> None:
    defaults = {
        rule["record"].rpartition(":")[2]: float(re.fullmatch(r"vector\((.+)\)", rule["expr"])[1])
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("record", "").startswith("dbhealth:threshold_default:")
    }
    panel_thresholds = {
        "ping_seconds": dashboards.PING_SECONDS,
        "connections_ratio": dashboards.CONNECTIONS_RATIO,
        "replication_lag_seconds": dashboards.REPLICATION_LAG_SECONDS,
        "statement_mean_seconds": dashboards.STATEMENT_MEAN_SECONDS,
        "stale_seconds": dashboards.STALE_SECONDS,
        "long_transaction_seconds": dashboards.LONG_TRANSACTION_SECONDS,
        "idle_in_transaction_seconds": dashboards.IDLE_IN_TRANSACTION_SECONDS,
        "lock_wait_seconds": dashboards.LOCK_WAIT_SECONDS,
        "wraparound_age_warning": dashboards.WRAPAROUND_AGE_WARNING,
        "wraparound_age_critical": dashboards.WRAPAROUND_AGE_CRITICAL,
        "slot_retained_bytes": dashboards.SLOT_RETAINED_BYTES,
        "undo_history_length": dashboards.UNDO_HISTORY_LENGTH,
        "id_headroom_ratio_warning": dashboards.ID_HEADROOM_RATIO_WARNING,
        "id_headroom_ratio_critical": dashboards.ID_HEADROOM_RATIO_CRITICAL,
        "sqlite_wal_bytes": dashboards.SQLITE_WAL_BYTES,
    }
    assert {knob: defaults[knob] for knob in panel_thresholds} == panel_thresholds


def test_command_writes_a_file_per_dashboard(tmp_path: Path, monkeypatch) -> None:
    targets = [
        SimpleNamespace(alias=a.alias, vendor=a.vendor, replica=a.replica) for a in REFERENCE
    ]
    monkeypatch.setattr(dashboards_command, "load_targets", lambda: tuple(targets))
    dashboards_command.Command().handle(out=tmp_path / "out")
    written = {path.name: json.loads(path.read_text()) for path in (tmp_path / "out").iterdir()}
    assert written == build_dashboards(REFERENCE)


def test_the_impact_of_down_aliases_names_routed_and_unrouted_models(
    files: dict[str, dict], tmp_path: Path
) -> None:
    """Evaluated by promtool on series shaped as dbhealth exports them: with `default` down,
    the table lists the model written there and the model no router routes (its code picks the
    alias, as with .using()), not the one kept wholly on the healthy replica; another exporter's
    healthy `default` changes nothing; with every alias up it is empty."""
    [expr] = [
        expr
        for panel in panels(files["overview.json"])
        if panel["title"] == "Impact of down aliases"
        for expr in exprs(panel)
    ]
    expr = re.sub(r"\$\w+", ".*", expr)
    prod = 'job="dbhealth", instance="prod:10433"'
    staging = 'job="dbhealth", instance="staging:10433"'

    def route(exporter: str, model: str, read: str, write: str) -> dict:
        return {
            "series": f'dbhealth_route_info{{{exporter}, app_label="shop", model="{model}",'
            f' read_alias="{read}", write_alias="{write}"}}',
            "values": "1 1",
        }

    def up(exporter: str, alias: str, values: str) -> dict:
        return {
            "series": f'dbhealth_up{{{exporter}, alias="{alias}", vendor="postgresql"}}',
            "values": values,
        }

    case = {
        "interval": "1m",
        "input_series": [
            up(prod, "default", "0 1"),
            up(prod, "replica", "1 1"),
            up(staging, "default", "1 1"),
            route(prod, "Order", "replica", "default"),
            route(prod, "Item", "not routed", "not routed"),
            route(prod, "Note", "replica", "replica"),
            route(staging, "Order", "replica", "default"),
        ],
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": "0m",
                "exp_samples": [
                    {
                        "labels": f'{{{prod}, app_label="shop", model="{model}",'
                        f' read_alias="{read}", write_alias="{write}"}}',
                        "value": 1,
                    }
                    for model, read, write in (
                        ("Order", "replica", "default"),
                        ("Item", "not routed", "not routed"),
                    )
                ],
            },
            {"expr": expr, "eval_time": "1m", "exp_samples": []},
        ],
    }
    test_file = tmp_path / "impact_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [], "tests": [case]}))
    binary = shutil.which("promtool")
    assert binary, "promtool not found: install Debian's 'prometheus' package"
    result = subprocess.run(
        [binary, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
