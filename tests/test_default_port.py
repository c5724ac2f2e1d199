"""One default port, the same in every place that names it, and one no other exporter claims.

The port is 10433 (README, "Environment variables"): the 9100-9999 range of Prometheus's
default port allocations is full, the allocations past it start at 10000 and go up one at a
time, and the port is in neither the IANA list this machine ships (/etc/services) nor among the
ports that run beside Django projects and Kubernetes.
"""

import re
import runpy
from pathlib import Path

import yaml
from dbhealth.serving import service_settings

from tests.support import ports

REPO = Path(__file__).resolve().parent.parent
PORT = int(service_settings.DEFAULT_BIND.rpartition(":")[2])

# Taken by exporters and by services that run beside Django projects and Kubernetes nodes.
TAKEN = {
    80,
    443,
    3000,
    5000,
    5432,
    5555,
    6379,
    8000,
    8008,
    8080,
    8081,
    8443,
    8888,  # web, db, dev
    9808,  # celery-exporter
    10000,  # webmin
    10050,
    10051,  # zabbix
    10248,
    10249,
    10250,
    10255,
    10256,
    10257,
    10259,  # kubelet, kube-proxy, control plane
    10901,
    10902,  # thanos
    11211,  # memcached
    15000,
    15001,
    15006,
    15020,
    15021,
    15090,  # istio / envoy
}


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_the_port_is_nobody_elses():
    assert not 9100 <= PORT <= 9999, "the exporter range is fully allocated"
    assert PORT not in TAKEN
    services = Path("/etc/services")
    if services.exists():
        assert not re.search(rf"\s{PORT}/(tcp|udp)\b", services.read_text())
    # Below the kernel's ephemeral range, and outside the range the tests draw their servers from.
    assert PORT < ports.LOWEST


def test_every_place_that_names_a_port_names_the_default():
    healthcheck = runpy.run_path(str(REPO / "docker" / "healthcheck.py"), run_name="not_main")
    assert port_of(healthcheck["DEFAULT_BIND"]) == PORT

    dockerfile = (REPO / "Dockerfile").read_text()
    assert port_of(re.search(r"DBHEALTH_BIND=(\S+)", dockerfile)[1]) == PORT
    assert re.search(rf"^EXPOSE {PORT}$", dockerfile, re.MULTILINE)

    assert re.search(rf"^PORT \?= {PORT}$", (REPO / "Makefile").read_text(), re.MULTILINE)

    kubernetes = REPO / "deploy" / "kubernetes"
    deployment = yaml.safe_load((kubernetes / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert [port["containerPort"] for port in container["ports"]] == [PORT]
    service = yaml.safe_load((kubernetes / "service.yaml").read_text())
    assert [port["port"] for port in service["spec"]["ports"]] == [PORT]

    prometheus = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    addresses = [
        target
        for job in prometheus["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
        if job["job_name"] == "dbhealth"
    ] + [
        relabel["replacement"]
        for job in prometheus["scrape_configs"]
        for relabel in job.get("relabel_configs", [])
        if relabel.get("target_label") == "__address__"
    ]
    assert addresses and {port_of(address) for address in addresses} == {PORT}


def test_the_docs_show_the_default_port_only():
    for doc in (REPO / "README.md", REPO / "docs" / "scaling.md"):
        text = doc.read_text()
        shown = {
            int(port)
            for port in re.findall(r"(?:--bind \S+:|dbhealth[\w.-]*:|127\.0\.0\.1:)(\d+)", text)
        }
        # Databases, Prometheus and Alertmanager have their own ports; dbhealth's are the default.
        assert shown - {5432, 3306, 9090, 9093} == {PORT}, doc.name
