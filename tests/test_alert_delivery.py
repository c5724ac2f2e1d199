"""End to end: a stopped database reaches the pager, and so does its recovery.

The whole route of a DbhealthDatabaseDown notification, every piece real: a dedicated PostgreSQL
watched by the service (`manage.py serve`) as alias orders_db, a Prometheus scraping it on both
/metrics and /probe and evaluating config/prometheus/rules.yml, an Alertmanager, and a webhook
receiver in this process standing in for the pager. The notification must say where the database
is (host, port, database), link its runbook section and its dashboard, count the alias once
although two jobs scrape it, and never carry a password; the recovery must arrive as a resolved
notification. Both delays are measured and printed (`pytest -s`).
"""

import re
import time
from pathlib import Path
from urllib.parse import urlsplit

from dbhealth.generators.dashboards import alias_uid

from tests.serving import serve
from tests.support.alertmanager import Delivery, WebhookReceiver, webhook_config

RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus" / "rules.yml"
ALIAS = "orders_db"
DATABASE = "app"
ALERT = "DbhealthDatabaseDown"
WAIT = 30.0
# Stop to notification: a failed scrape (1 s), the recording rule and the alert (1 s each), the
# shortened `for` (FOR), Alertmanager's group_wait (1 s); restart to resolved likewise without
# `for`. Measured well under 15 s; the bound leaves room for a loaded machine.
DELIVERY_TIMEOUT = 90.0

# rules.yml holds DbhealthDatabaseDown for 2 minutes before it fires. The test loads a copy in
# which the `for:` of its two rules (critical and warning) is FOR instead: a text substitution
# that touches only the `for:` line between `- alert: DbhealthDatabaseDown` and the next rule,
# and fails unless it finds exactly those two. Every other alert and expression is unchanged.
FOR = "5s"
FOR_IN_RULES = "2m"
DOWN_FOR = re.compile(
    rf"(- alert: {ALERT}\n(?:(?!\s*- (?:alert|record):).*\n)*?\s+for: ){FOR_IN_RULES}\n"
)
# The copy's links (the dbhealth:links rule) point at recognisable test bases.
RUNBOOK_BASE = "https://runbooks.test/dbhealth/docs/alerts.md"
GRAFANA_BASE = "https://grafana.test"

SCRAPE_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager}"]
scrape_configs:
  - job_name: dbhealth
    static_configs:
      - targets: ["{address}"]
  - job_name: dbhealth_probe
    metrics_path: /probe
    honor_labels: true
    static_configs:
      - targets: ["{alias}"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_alias
      - source_labels: [__param_alias]
        target_label: alias
      - target_label: __address__
        replacement: "{address}"
"""


def rules_for_the_test(directory: Path) -> Path:
    """rules.yml with DbhealthDatabaseDown's `for` shortened and the links set (see above)."""
    text, count = DOWN_FOR.subn(rf"\g<1>{FOR}\n", RULES.read_text())
    assert count == 2, f"expected the 2 DbhealthDatabaseDown rules with for: {FOR_IN_RULES}"
    for label, base in (("runbook", RUNBOOK_BASE), ("grafana", GRAFANA_BASE)):
        text, count = re.subn(rf"(?m)^(\s+{label}: ).*$", rf"\g<1>{base}", text)
        assert count == 1, f"expected one `{label}:` label (dbhealth:links) in rules.yml"
    path = directory / "rules.yml"
    path.write_text(text)
    return path


def notification(status: str, after: float):
    """A predicate for WebhookReceiver.wait_for: the first delivery after `after` carrying the
    orders_db DbhealthDatabaseDown alert with `status`, as (delivery, alert)."""

    def find(deliveries: list[Delivery]) -> tuple[Delivery, dict] | None:
        for delivery in deliveries:
            if delivery.received < after:
                continue
            for alert in delivery.alerts(alertname=ALERT, alias=ALIAS):
                if alert["status"] == status:
                    return delivery, alert
        return None

    return find


def test_a_stopped_database_is_delivered_with_its_server_and_links_and_so_is_its_recovery(
    make_postgres, make_prometheus, make_alertmanager, tmp_path
):
    dedicated = make_postgres()
    password = dedicated.monitor_password
    (tmp_path / "orders-password").write_text(password)
    config = tmp_path / "dbhealth.toml"
    config.write_text(
        f"""
[dbhealth]
deadline = 2
# A 1 s scrape timeout leaves probes 0.5 s with the default margin.
scrape_timeout_margin = 0.2

[databases.{ALIAS}]
URL = "postgres://monitor@127.0.0.1:{dedicated.port}/{DATABASE}"
PASSWORD_FILE = "orders-password"
"""
    )
    rules = rules_for_the_test(tmp_path)
    env = {"DBHEALTH_CONFIG": str(config)}
    with (
        serve(env, tmp_path / "service.log", "/sd") as served,
        WebhookReceiver() as webhook,
    ):
        alertmanager = make_alertmanager(webhook_config(webhook.url))
        prometheus = make_prometheus(
            SCRAPE_CONFIG.format(
                address=served.address, alias=ALIAS, alertmanager=alertmanager.address
            ),
            [rules],
        )
        # Both jobs scrape, the alias is up, and its target is known for the join.
        prometheus.wait_for(
            lambda: len([t for t in prometheus.targets() if t["health"] == "up"]) == 2,
            timeout=WAIT,
        )
        prometheus.wait_for(
            lambda: prometheus.query(
                f'alias:dbhealth_up:max{{alias="{ALIAS}"}} == 1'
                f' and on (alias) alias:dbhealth_info:target{{host="127.0.0.1"}}'
            )["result"],
            timeout=WAIT,
        )
        assert not notification("firing", after=0)(webhook.deliveries)

        stopped_at = time.monotonic()
        dedicated.stop()
        delivery, alert = webhook.wait_for(
            notification("firing", after=stopped_at), timeout=DELIVERY_TIMEOUT
        )
        down_delay = delivery.received - stopped_at

        # Where the database is, on the alert itself, so that Alertmanager can route by it.
        labels = alert["labels"]
        assert labels == {
            "alertname": ALERT,
            "alias": ALIAS,
            "host": "127.0.0.1",
            "port": str(dedicated.port),
            "database": DATABASE,
            "severity": "critical",
            "vendor": "postgresql",
        }
        # Once, although /metrics and /probe both report the alias (and its dbhealth_info).
        assert len(delivery.alerts(alertname=ALERT, alias=ALIAS)) == 1
        in_prometheus = [a for a in prometheus.alerts() if a["labels"]["alertname"] == ALERT]
        assert [(a["labels"]["alias"], a["state"]) for a in in_prometheus] == [(ALIAS, "firing")]
        annotations = alert["annotations"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#dbhealthdatabasedown"
        dashboard = urlsplit(annotations["dashboard_url"])
        assert f"{dashboard.scheme}://{dashboard.netloc}" == GRAFANA_BASE
        # The alias's own dashboard, by the uid `dbhealth dashboards` gives it.
        assert (dashboard.path, dashboard.query) == (f"/d/{alias_uid(ALIAS)}", "")
        assert "refused" in annotations["description"], annotations["description"]
        assert delivery.payload["status"] == "firing"
        assert delivery.payload["groupLabels"] == {"alertname": ALERT, "alias": ALIAS}

        dedicated.start()
        restarted_at = time.monotonic()
        delivery, resolved = webhook.wait_for(
            notification("resolved", after=restarted_at), timeout=DELIVERY_TIMEOUT
        )
        up_delay = delivery.received - restarted_at
        assert resolved["labels"] == labels
        assert resolved["fingerprint"] == alert["fingerprint"]

        bodies = [d.body for d in webhook.deliveries]
    for body in bodies:
        assert password not in body
        assert dedicated.superuser_password not in body
    print(
        f"\n{ALERT} for {ALIAS} ({FOR} `for`, 1 s scrape/evaluation, 1 s group_wait/interval):"
        f" firing notification {down_delay:.1f} s after the stop,"
        f" resolved {up_delay:.1f} s after the restart; {len(bodies)} notification(s) in all"
    )
