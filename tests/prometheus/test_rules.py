"""The Prometheus rules, their promtool unit tests, the example config and the runbook agree."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "rules.yml"
CONFIG = ROOT / "config" / "prometheus" / "prometheus.yml"
RULES_TEST = ROOT / "tests" / "prometheus" / "rules_test.yml"
RUNBOOK = ROOT / "docs" / "alerts.md"

# Alerts about the exporter itself rather than one database alias.
ALERTS_WITHOUT_ALIAS = {"DbhealthExporterDown"}


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
