"""The Prometheus rules, their promtool unit tests, the example config and the runbook agree."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dbhealth.generators.alert_table import alert_table, with_table
from dbhealth.generators.dashboards import (
    ALIAS_TEMPLATE_UID,
    OVERVIEW_UID,
    DashboardAlias,
    build_dashboards,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "rules.yml"
CONFIG = ROOT / "config" / "prometheus" / "prometheus.yml"
RULES_TEST = ROOT / "config" / "prometheus" / "rules_test.yml"
RUNBOOK = ROOT / "docs" / "alerts.md"

# Alerts about the exporter itself rather than one database alias.
ALERTS_WITHOUT_ALIAS = {"DbhealthExporterDown"}
# What every database alert joins onto its labels (see alias:dbhealth_info:target).
TARGET_JOIN = (
    ") * on (job, instance, alias) group_left (host, port, database) alias:dbhealth_info:target"
)
# The labels that say which exporter reports a series; env, cluster and the like are kept by
# never naming them (`without`, `group_left`).
IDENTITY = {"job", "instance"}
AGGREGATIONS = "sum|min|max|avg|group|stddev|stdvar|count|count_values|bottomk|topk|quantile|limitk"
MATCHING_OPERATORS = r"(?:[-+*/%^]|==|!=|>=|<=|>|<)"
LINKS = "dbhealth:links"


def promtool(*args: str) -> None:
    """Run promtool from the rules' directory and fail with its whole output."""
    binary = shutil.which("promtool")
    assert binary, "promtool not found: install Debian's 'prometheus' package"
    result = subprocess.run(
        [binary, *args], cwd=CONFIG.parent, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def recording_rules() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def unit_tests() -> list[dict]:
    return yaml.safe_load(RULES_TEST.read_text())["tests"]


def test_rules_pass_promtool_check() -> None:
    promtool("check", "rules", str(RULES))


def test_rule_unit_tests_pass() -> None:
    promtool("test", "rules", str(RULES_TEST))


def test_example_config_passes_promtool_check() -> None:
    promtool("check", "config", CONFIG.name)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_summary_and_description(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    if rule["alert"] not in ALERTS_WITHOUT_ALIAS:
        assert "$labels.alias" in annotations["summary"]
        assert "$labels.alias" in annotations["description"]


@pytest.mark.parametrize("name", sorted({rule["alert"] for rule in alert_rules()}))
def test_alert_is_in_the_runbook(name: str) -> None:
    runbook = RUNBOOK.read_text()
    assert f"| {name} |" in runbook, f"{name} missing from the alert table of {RUNBOOK.name}"
    assert f"### {name}" in runbook, f"{name} has no first-steps section in {RUNBOOK.name}"


def test_every_alert_variant_fires_and_stays_silent_in_a_unit_test() -> None:
    """Each (alert, severity) has a firing case, and each alert a case with no alert."""
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for case in unit_tests():
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                fired.update(
                    (check["alertname"], alert["exp_labels"]["severity"])
                    for alert in check["exp_alerts"]
                )
            else:
                silent.add(check["alertname"])
    variants = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    assert variants - fired == set(), "alert variants never seen firing"
    assert {name for name, _ in variants} - silent == set(), "alerts never checked silent"


def test_every_recording_rule_is_unit_tested() -> None:
    tested = " ".join(
        check["expr"] for case in unit_tests() for check in case.get("promql_expr_test", [])
    )
    # Defaults are read through the per-alias thresholds, which are tested.
    untested = [
        name
        for name in recording_rules()
        if not name.startswith("dbhealth:threshold_default:") and name not in tested
    ]
    assert untested == []


def github_anchors(markdown: str) -> list[str]:
    """The anchors GitHub gives the headings of a Markdown file, in order.

    Its rule (github-slugger): lower case, drop every character that is not a letter, digit,
    underscore, hyphen or space, spaces become hyphens; a repeated anchor gets -1, -2, ...
    Lines inside fenced code blocks are no headings.
    """
    anchors: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-")
        anchor, repeat = slug, 0
        while anchor in anchors:
            repeat += 1
            anchor = f"{slug}-{repeat}"
        anchors.append(anchor)
    return anchors


def test_github_anchors_follow_githubs_rule() -> None:
    text = "# A `code` Title!\n```yaml\n# not a heading\n```\n## Repeat\n### Repeat\n"
    assert github_anchors(text) == ["a-code-title", "repeat", "repeat-1"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_links_its_runbook_section(rule: dict) -> None:
    """runbook_url is the base set once in dbhealth:links plus the anchor of the alert's own
    `### <alert>` section, and that anchor exists in docs/alerts.md as GitHub renders it."""
    name = rule["alert"]
    url = rule["annotations"]["runbook_url"]
    base, _, anchor = url.rpartition("#")
    assert LINKS in base and "http" not in url, url
    heading_anchor = github_anchors(f"### {name}")[0]
    assert anchor == heading_anchor, f"{name}: runbook_url ends with #{anchor}"
    assert anchor in github_anchors(RUNBOOK.read_text()), f"#{anchor} missing from {RUNBOOK.name}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_links_the_dashboard_of_its_alias(rule: dict) -> None:
    """dashboard_url opens, under the Grafana base set once in dbhealth:links, the templated alias
    dashboard with the alert's exporter (job, instance, env when present) and alias selected; an
    alert about the exporter opens the overview with the exporter selected. promtool renders
    both (rules_test.yml)."""
    url = rule["annotations"]["dashboard_url"]
    assert LINKS in url and "http" not in url, url
    exporter = "var-job={{ $labels.job | urlquery }}&var-instance="
    if rule["alert"] in ALERTS_WITHOUT_ALIAS:
        assert f"/d/{OVERVIEW_UID}" in url and exporter in url, url
    else:
        assert f"/d/{ALIAS_TEMPLATE_UID}?{exporter}{{{{ $labels.instance | urlquery }}}}" in url
        assert "{{ with $labels.env }}&var-env={{ . | urlquery }}{{ end }}" in url, url
        assert url.endswith("&var-alias={{ $labels.alias | urlquery }}'") or url.endswith(
            "&var-alias={{ $labels.alias | urlquery }}"
        ), url


def test_the_dashboards_alerts_link_to_have_the_variables_they_set() -> None:
    files = build_dashboards([DashboardAlias("default", "postgresql", False)])
    by_uid = {dashboard["uid"]: dashboard for dashboard in files.values()}
    variables = {
        uid: {variable["name"] for variable in by_uid[uid]["templating"]["list"]}
        for uid in (ALIAS_TEMPLATE_UID, OVERVIEW_UID)
    }
    assert {"job", "instance", "env", "alias"} <= variables[ALIAS_TEMPLATE_UID]
    assert {"job", "instance"} <= variables[OVERVIEW_UID]


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], " ".join(rule["expr"].split()))
        for group in groups
        for rule in group["rules"]
    ]


def closing_parenthesis(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced: {text}")


def identity_losses(expr: str) -> list[str]:
    """What in one rule expression drops the exporter's identity (job, instance, target labels).

    - an aggregation `by (...)` without job and instance, or `without (...)` job or instance,
      or with neither (it drops every label);
    - a join `on (...)` without job and instance; the one exception is the per-alias threshold
      override, recorded per alias name and joined group_left onto every exporter's alias;
    - `ignoring (...)` instance;
    - an arithmetic or comparison `on (...)` without group_left/group_right: one-to-one
      matching keeps only the `on` labels, so env and cluster would be lost.
    """
    losses = []
    for match in re.finditer(rf"\b({AGGREGATIONS})\b\s*(?=\()", expr):
        # `max (x)` without a clause before its argument may still have one after it.
        end = closing_parenthesis(expr, match.end())
        if not re.match(r"\s*(by|without)\b", expr[end + 1 :]):
            losses.append(f"{match[0]}(...): aggregation of every label")
    threshold_override = re.search(
        r"on \(alias\) group_left \(\) dbhealth:threshold_override:", expr
    )
    for kind, names in re.findall(r"\b(by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels = {name.strip() for name in names.split(",") if name.strip()}
        kept = labels >= IDENTITY
        if kind == "by" and not kept:
            losses.append(f"by ({names})")
        if kind in {"without", "ignoring"} and "instance" in labels:
            losses.append(f"{kind} ({names})")
        if kind == "without" and "job" in labels:
            losses.append(f"without ({names})")
        if (
            kind == "on"
            and labels
            and not kept
            and not (threshold_override and labels == {"alias"})
        ):
            losses.append(f"on ({names})")
    for match in re.finditer(
        rf"{MATCHING_OPERATORS}\s*(?:bool\s+)?on\s*\(([^)]+)\)(?!\s*group_(?:left|right))",
        expr,
    ):
        losses.append(f"one-to-one {match[0]}")
    return losses


@pytest.mark.parametrize("name, expr", rule_exprs(), ids=lambda value: value[:60])
def test_no_rule_drops_the_identity_of_the_exporter(name: str, expr: str) -> None:
    """Two exporters with aliases of the same name (prod's and staging's `default`) must never
    be merged by a rule: a healthy one would hide the other's outage."""
    assert identity_losses(expr) == [], name


@pytest.mark.parametrize(
    "expr",
    [
        "max by (alias) (dbhealth_up)",
        "max(dbhealth_up)",
        "max without (instance) (dbhealth_up)",
        "a > on (alias) b",
        "a > on (job, instance, alias) b",
        "a * on (alias) group_left (host) b",
        "a unless ignoring (instance) b",
    ],
)
def test_the_identity_check_catches_what_merges_exporters(expr: str) -> None:
    assert identity_losses(expr) != []


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_annotation_queries_read_the_alerts_own_exporter(rule: dict) -> None:
    """A query in an annotation that selects an alias also selects the alert's job and
    instance, so staging's alert never quotes prod's reason or threshold."""
    for text in rule["annotations"].values():
        for selector in re.findall(r"\{[^{}]*alias=%q[^{}]*\}", text):
            assert "job=%q" in selector and "instance=%q" in selector, selector


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_database_alerts_carry_the_host_port_and_database_of_their_alias(rule: dict) -> None:
    """The join is on every alert about an alias (the promtool cases show its result)."""
    expr = " ".join(rule["expr"].split())
    if rule["alert"] in ALERTS_WITHOUT_ALIAS:
        assert "dbhealth_info" not in expr
    else:
        assert expr.endswith(TARGET_JOIN), expr


def test_links_are_set_once() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    [links] = [rule for group in groups for rule in group["rules"] if rule.get("record") == LINKS]
    assert set(links["labels"]) == {"runbook", "grafana"}
    assert links["labels"]["runbook"].endswith("/docs/alerts.md")
    assert not links["labels"]["grafana"].endswith("/")
    assert RULES.read_text().count(links["labels"]["runbook"]) == 1
    assert RULES.read_text().count(links["labels"]["grafana"]) == 1


def test_the_readme_names_every_alert_in_its_generated_table() -> None:
    """README.md's alert table is what `python -m dbhealth.generators.alert_table README.md`
    writes for rules.yml: every alert, once, with its severities and `for`."""
    readme = (ROOT / "README.md").read_text()
    assert with_table(readme, RULES.read_text()) == readme, (
        "README.md's alert table is stale: run python -m dbhealth.generators.alert_table README.md"
    )
    table = alert_table(RULES.read_text())
    names = re.findall(r"^\| \[(\w+)\]", table, re.MULTILINE)
    assert names == list(dict.fromkeys(rule["alert"] for rule in alert_rules()))
    assert (
        "| [DbhealthDatabaseDown](docs/alerts.md#dbhealthdatabasedown) | critical or warning |"
        in (table)
    )


def test_the_alert_table_follows_a_change_of_the_rules() -> None:
    changed = RULES.read_text().replace("- alert: DbhealthSlowPing", "- alert: DbhealthPingSlow")
    assert "DbhealthPingSlow" in alert_table(changed)
    readme = (ROOT / "README.md").read_text()
    assert with_table(readme, changed) != readme
