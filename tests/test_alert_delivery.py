"""End to end: alerts reach the pager through the shipped rules and Alertmanager example.

Every piece is real: the service (`manage.py serve`), a Prometheus evaluating
config/prometheus/rules.yml, an Alertmanager running config/alertmanager/alertmanager.yml (its
receivers pointed at a webhook receiver in this process, standing in for the pager).

- Two environments, each its own exporter with an alias named `default`, one Prometheus: the
  stopped database's DbhealthDatabaseDown arrives with its own environment, exporter, host and
  port, the healthy one stays silent, and the recovery arrives as a resolved notification.
- An exporter scraped on /metrics and per alias on /probe that stops answering is one page, not
  one per alias.

Delays are measured and printed (`pytest -s`).
"""

import re
import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.serving import serve
from tests.support.alertmanager import Delivery, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "prometheus" / "rules.yml"
ALERTMANAGER_EXAMPLE = ROOT / "config" / "alertmanager" / "alertmanager.yml"
ALIAS = "default"
DATABASE = "app"
DOWN = "DbhealthDatabaseDown"
EXPORTER_DOWN = "DbhealthExporterDown"
WAIT = 30.0
# Stop to notification: a failed scrape (1 s), the recording rule and the alert (1 s each), the
# shortened `for` (FOR), Alertmanager's group_wait (1 s); restart to resolved likewise without
# `for`. Measured well under 15 s; the bound leaves room for a loaded machine.
DELIVERY_TIMEOUT = 90.0

# rules.yml holds these alerts for 2 minutes before they fire. The test loads a copy in which the
# `for:` of each of their rules is FOR instead: a text substitution that touches only the `for:`
# line between `- alert: <name>` and the next rule, and fails unless it finds as many as given.
FOR = "5s"
FOR_IN_RULES = "2m"
# The copy's links (the dbhealth:links rule) point at recognisable test bases.
RUNBOOK_BASE = "https://runbooks.test/dbhealth/docs/alerts.md"
GRAFANA_BASE = "https://grafana.test"

ALERTING = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager}"]
"""
ENVIRONMENTS = """
scrape_configs:
  - job_name: dbhealth
    static_configs:
      - targets: ["{prod}"]
        labels:
          env: prod
      - targets: ["{staging}"]
        labels:
          env: staging
"""
# The per-alias job as config/prometheus/prometheus.yml shows it, beside the /metrics job.
BOTH_WAYS = """
scrape_configs:
  - job_name: dbhealth
    static_configs:
      - targets: ["{address}"]
  - job_name: dbhealth_probe
    metrics_path: /probe
    honor_labels: true
    static_configs:
      - targets: {aliases}
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_alias
      - source_labels: [__param_alias]
        target_label: alias
      - target_label: __address__
        replacement: "{address}"
"""


def rules_for_the_test(directory: Path, shortened: dict[str, int]) -> Path:
    """rules.yml with the `for` of the alerts in `shortened` (name: number of rules) set to FOR
    and the links set (see above)."""
    text = RULES.read_text()
    for alert, rules in shortened.items():
        pattern = (
            rf"(- alert: {alert}\n(?:(?!\s*- (?:alert|record):).*\n)*?\s+for: ){FOR_IN_RULES}\n"
        )
        text, count = re.subn(pattern, rf"\g<1>{FOR}\n", text)
        assert count == rules, f"expected {rules} {alert} rule(s) with for: {FOR_IN_RULES}"
    for label, base in (("runbook", RUNBOOK_BASE), ("grafana", GRAFANA_BASE)):
        text, count = re.subn(rf"(?m)^(\s+{label}: ).*$", rf"\g<1>{base}", text)
        assert count == 1, f"expected one `{label}:` label (dbhealth:links) in rules.yml"
    path = directory / "rules.yml"
    path.write_text(text)
    return path


def alertmanager_config(webhook_url: str) -> str:
    """The shipped example, its routes and grouping unchanged, every receiver a webhook to the
    test, and its waits shortened to a second so that a test need not wait minutes."""
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    config["receivers"] = [
        {
            "name": receiver["name"],
            "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
        }
        for receiver in config["receivers"]
    ]
    return yaml.safe_dump(config)


def notification(alertname: str, status: str, after: float, **labels: str):
    """A predicate for WebhookReceiver.wait_for: the first delivery after `after` carrying an
    `alertname` alert with `labels` and `status`, as (delivery, alert)."""

    def find(deliveries: list[Delivery]) -> tuple[Delivery, dict] | None:
        for delivery in deliveries:
            if delivery.received < after:
                continue
            for alert in delivery.alerts(alertname=alertname, **labels):
                if alert["status"] == status:
                    return delivery, alert
        return None

    return find


def config_of_one_alias(directory: Path, server, name: str) -> Path:
    """A TOML file watching `server`'s database as alias `default`."""
    (directory / f"{name}-password").write_text(server.monitor_password)
    config = directory / f"{name}.toml"
    config.write_text(
        f"""
[dbhealth]
deadline = 2
# A 1 s scrape timeout leaves probes 0.5 s with the default margin.
scrape_timeout_margin = 0.2

[databases.{ALIAS}]
URL = "postgres://monitor@127.0.0.1:{server.port}/{DATABASE}"
PASSWORD_FILE = "{name}-password"
"""
    )
    return config


def test_two_environments_with_the_same_alias_alert_apart_and_recover(
    postgres, make_postgres, make_prometheus, make_alertmanager, tmp_path
):
    staging_server = make_postgres()
    password = staging_server.monitor_password
    rules = rules_for_the_test(tmp_path, {DOWN: 2})
    with (
        serve(
            {"DBHEALTH_CONFIG": str(config_of_one_alias(tmp_path, postgres, "prod"))},
            tmp_path / "prod.log",
            "/sd",
        ) as prod,
        serve(
            {"DBHEALTH_CONFIG": str(config_of_one_alias(tmp_path, staging_server, "staging"))},
            tmp_path / "staging.log",
            "/sd",
        ) as staging,
        WebhookReceiver() as webhook,
    ):
        alertmanager = make_alertmanager(alertmanager_config(webhook.url))
        prometheus = make_prometheus(
            ALERTING.format(alertmanager=alertmanager.address)
            + ENVIRONMENTS.format(prod=prod.address, staging=staging.address),
            [rules],
        )
        # Both exporters report their `default` up, and its target is known for the join.
        prometheus.wait_for(
            lambda: (
                len(
                    prometheus.query(
                        f'alias:dbhealth_up:max{{alias="{ALIAS}"}} == 1'
                        " and on (job, instance, alias)"
                        ' alias:dbhealth_info:target{host="127.0.0.1"}'
                    )["result"]
                )
                == 2
            ),
            timeout=WAIT,
        )
        assert not notification(DOWN, "firing", after=0)(webhook.deliveries)

        stopped_at = time.monotonic()
        staging_server.stop()
        delivery, alert = webhook.wait_for(
            notification(DOWN, "firing", after=stopped_at, alias=ALIAS), timeout=DELIVERY_TIMEOUT
        )
        down_delay = delivery.received - stopped_at

        # Staging's exporter, environment and server, on the alert itself, so that Alertmanager
        # can route by them.
        labels = alert["labels"]
        assert labels == {
            "alertname": DOWN,
            "env": "staging",
            "job": "dbhealth",
            "instance": staging.address,
            "alias": ALIAS,
            "host": "127.0.0.1",
            "port": str(staging_server.port),
            "database": DATABASE,
            "severity": "critical",
            "vendor": "postgresql",
        }
        # Prod's healthy `default` neither hides staging's outage nor alerts itself.
        assert len(delivery.alerts(alertname=DOWN)) == 1
        in_prometheus = [a for a in prometheus.alerts() if a["labels"]["alertname"] == DOWN]
        assert [(a["labels"]["env"], a["state"]) for a in in_prometheus] == [("staging", "firing")]
        annotations = alert["annotations"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#dbhealthdatabasedown"
        dashboard = urlsplit(annotations["dashboard_url"])
        assert f"{dashboard.scheme}://{dashboard.netloc}" == GRAFANA_BASE
        # The templated alias dashboard with staging's exporter and the alias selected.
        assert dashboard.path == "/d/dbhealth-alias"
        assert parse_qs(dashboard.query) == {
            "var-job": ["dbhealth"],
            "var-instance": [staging.address],
            "var-env": ["staging"],
            "var-alias": [ALIAS],
        }
        assert "refused" in annotations["description"], annotations["description"]
        assert delivery.payload["status"] == "firing"
        assert delivery.payload["groupLabels"] == {
            "alertname": DOWN,
            "env": "staging",
            "job": "dbhealth",
            "instance": staging.address,
            "alias": ALIAS,
        }
        assert delivery.payload["receiver"] == "pager"

        staging_server.start()
        restarted_at = time.monotonic()
        delivery, resolved = webhook.wait_for(
            notification(DOWN, "resolved", after=restarted_at, alias=ALIAS),
            timeout=DELIVERY_TIMEOUT,
        )
        up_delay = delivery.received - restarted_at
        assert resolved["labels"] == labels
        assert resolved["fingerprint"] == alert["fingerprint"]

        bodies = [d.body for d in webhook.deliveries]
    assert all(d.alerts(env="prod") == [] for d in webhook.deliveries)
    for body in bodies:
        for secret in (password, staging_server.superuser_password, postgres.monitor_password):
            assert secret not in body
    print(
        f"\n{DOWN} for staging's {ALIAS} ({FOR} `for`, 1 s scrape/evaluation, 1 s"
        f" group_wait/interval): firing notification {down_delay:.1f} s after the stop,"
        f" resolved {up_delay:.1f} s after the restart; {len(bodies)} notification(s) in all"
    )


def test_an_exporter_that_stops_answering_is_one_page_not_one_per_alias(
    make_prometheus, make_alertmanager, tmp_path
):
    aliases = ["default", "users_db", "cache_db"]
    config = tmp_path / "dbhealth.toml"
    lines = ["[dbhealth]", "scrape_timeout_margin = 0.2", "[databases]"]
    for alias in aliases:
        sqlite3.connect(tmp_path / f"{alias}.sqlite3").close()
        lines.append(f'{alias} = "sqlite:///{tmp_path / alias}.sqlite3"')
    config.write_text("\n".join(lines) + "\n")
    rules = rules_for_the_test(tmp_path, {EXPORTER_DOWN: 1})
    with (
        serve({"DBHEALTH_CONFIG": str(config)}, tmp_path / "service.log", "/sd") as served,
        WebhookReceiver() as webhook,
    ):
        alertmanager = make_alertmanager(alertmanager_config(webhook.url))
        prometheus = make_prometheus(
            ALERTING.format(alertmanager=alertmanager.address)
            + BOTH_WAYS.format(address=served.address, aliases=aliases),
            [rules],
        )
        prometheus.wait_for(
            lambda: (
                len([t for t in prometheus.targets() if t["health"] == "up"]) == 1 + len(aliases)
            ),
            timeout=WAIT,
        )

        stopped_at = time.monotonic()
        served.process.terminate()
        served.process.wait(timeout=WAIT)
        delivery, alert = webhook.wait_for(
            notification(EXPORTER_DOWN, "firing", after=stopped_at), timeout=DELIVERY_TIMEOUT
        )
        down_delay = delivery.received - stopped_at
        assert alert["labels"] == {
            "alertname": EXPORTER_DOWN,
            "job": "dbhealth",
            "instance": served.address,
            "severity": "critical",
        }
        # Every /probe target has been failing for longer than the alert's `for` by now (in
        # Prometheus's own samples), so an alert per alias would have fired as well.
        prometheus.wait_for(
            lambda: prometheus.query(
                f'count_over_time((max(up{{job="dbhealth_probe"}}) == 0)[30s:1s]) > {FOR[:-1]} + 2'
            )["result"],
            timeout=WAIT,
        )
        ever_firing = prometheus.query(
            f'max_over_time(count(ALERTS{{alertname="{EXPORTER_DOWN}", alertstate="firing"}})'
            "[1m:1s])"
        )["result"]
        assert [sample["value"][1] for sample in ever_firing] == ["1"]
        held = [a for a in alertmanager.alerts() if a["labels"]["alertname"] == EXPORTER_DOWN]
        assert [a["labels"]["job"] for a in held] == ["dbhealth"]
        pages = {
            alert["fingerprint"]
            for d in webhook.deliveries
            for alert in d.alerts(alertname=EXPORTER_DOWN)
        }
        assert len(pages) == 1
    print(
        f"\n{EXPORTER_DOWN} ({FOR} `for`, {len(aliases)} aliases on /metrics and /probe):"
        f" one page {down_delay:.1f} s after the exporter stopped"
    )
