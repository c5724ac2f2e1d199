"""The README's alert table, generated from the alert rules so that it never names fewer alerts
than there are (it once named 10 of 28).

    python -m dbhealth.generators.alert_table README.md          # rewrite the table in place
    python -m dbhealth.generators.alert_table --check README.md  # exit 1 if it is stale

The table sits between BEGIN and END in the file; tests/prometheus/test_rules.py fails while it
differs from what this writes for config/prometheus/rules.yml.
"""

import re
import sys
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

BEGIN = "<!-- alert table: generated from config/prometheus/rules.yml by"
BEGIN_LINE = f"{BEGIN} `python -m dbhealth.generators.alert_table README.md` -->"
END = "<!-- end of the alert table -->"
# config/prometheus/rules.yml, as the package ships it (dbhealth.config_files is config/).
RULES = files("dbhealth.config_files") / "prometheus" / "rules.yml"
RUNBOOK = "docs/alerts.md"
SEVERITY_ORDER = ("critical", "warning")


@dataclass
class _Alert:
    """One alert name and what its rules (one per severity) say."""

    name: str
    summary: str
    severities: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)


def alert_table(rules_text: str) -> str:
    """The Markdown table of every alert of `rules_text`, in the rules' order."""
    alerts: dict[str, _Alert] = {}
    for group in yaml.safe_load(rules_text)["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            alert = alerts.setdefault(
                rule["alert"], _Alert(rule["alert"], _plain(rule["annotations"]["summary"]))
            )
            alert.severities.append(rule["labels"]["severity"])
            alert.holds.append(rule.get("for", "at once"))
            # The warning's words fit every alias; a critical variant says "critical alias".
            if rule["labels"]["severity"] == "warning":
                alert.summary = _plain(rule["annotations"]["summary"])
    lines = [
        "| Alert | Severity | For | Summary |",
        "| --- | --- | --- | --- |",
    ]
    for alert in alerts.values():
        severities = sorted(set(alert.severities), key=SEVERITY_ORDER.index)
        lines.append(
            f"| [{alert.name}]({RUNBOOK}#{alert.name.lower()}) | {' or '.join(severities)}"
            f" | {' / '.join(dict.fromkeys(alert.holds))} | {alert.summary} |"
        )
    return "\n".join(lines) + "\n"


def _plain(summary: str) -> str:
    """A summary template as text: labels as `<name>` (code, so Markdown shows the brackets),
    the first branch of a condition."""
    text = " ".join(summary.split())
    text = re.sub(r"\{\{ else \}\}.*?\{\{ end \}\}", "", text)
    text = re.sub(r"\{\{ (?:if|with) [^}]*\}\}|\{\{ end \}\}", "", text)
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"`<\1>`", text)
    return text.replace("|", "\\|").strip()


def with_table(document: str, rules_text: str) -> str:
    """`document` with the text between its table markers replaced by the current table."""
    start = document.index(BEGIN)
    body = document.index("\n", start) + 1
    end = document.index(END, body)
    return document[:start] + BEGIN_LINE + "\n\n" + alert_table(rules_text) + "\n" + document[end:]


def main(arguments: list[str]) -> int:
    check = "--check" in arguments
    [path] = [Path(argument) for argument in arguments if argument != "--check"]
    document = path.read_text(encoding="utf-8")
    expected = with_table(document, RULES.read_text(encoding="utf-8"))
    if document == expected:
        return 0
    if check:
        print(f"{path}: the alert table is stale; run python -m {__spec__.name} {path}")
        return 1
    path.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
