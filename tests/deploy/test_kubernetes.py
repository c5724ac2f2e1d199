"""deploy/kubernetes/: the manifests are valid, wired to each other and to the exporter as it runs.

The kustomization is rendered with `kubectl kustomize` where kubectl is (it is on the test
machines), else by the few lines below that read what this kustomization uses (resources,
components, generators, images, delete patches) without kustomize's name hashes: the tests that
need the hashes (an edit rolls the pod) then skip. The secrets-from-files component is rendered
with example files written by the test into a copy of the directory.

Offline, with what a fresh machine installs: the core kinds pass kubernetes-validate (the
Kubernetes schemas it bundles, strict: unknown fields fail); the Prometheus Operator's kinds use
only fields its CRDs define (the allow-list below); the PrometheusRule is rules.yml's groups as
generated, and they pass promtool; the TOML of the ConfigMap loads with the passwords of the
Secret; and the service, run with the Deployment's environment and files, answers the kubelet's
probes and Prometheus as the manifests expect. `kubectl kustomize` runs only where kubectl is.
"""

import base64
import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dbhealth.configuration.toml_file import load_config_file

from tests.serving import REPO, serve

KUBERNETES = REPO / "deploy" / "kubernetes"
RULES = REPO / "config" / "prometheus" / "rules.yml"
SCALING = REPO / "docs" / "scaling.md"
COMPONENTS = KUBERNETES / "components"
CORE_KINDS = {
    "Deployment",
    "Service",
    "ConfigMap",
    "Secret",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
KUBECTL = shutil.which("kubectl")
# What an operator writes beside components/secrets-from-files (never committed).
EXAMPLE_SECRET_FILES = {
    "passwords.env": "DBHEALTH_DEFAULT_PASSWORD=pw-default\n"
    "DBHEALTH_REPLICA_PASSWORD=pw-replica\n"
    "DBHEALTH_LEGACY_PASSWORD=pw-legacy\n",
    "token": "0123456789abcdef0123456789abcdef",
}
# The oldest Kubernetes the manifests must work on, and the newest kubernetes-validate knows.
OLDEST_KUBERNETES = (1, 29)


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "generate_prometheusrule", KUBERNETES / "generate_prometheusrule.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kustomization() -> dict:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def working_copy() -> Path:
    """deploy/kubernetes copied to a temp dir, with the secrets-from-files example files."""
    copy = Path(tempfile.mkdtemp(prefix="dbhealth-kustomize-")) / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    for name, text in EXAMPLE_SECRET_FILES.items():
        (copy / "components" / "secrets-from-files" / name).write_text(text)
    return copy


def overlay(base: Path, components: list[str]) -> Path:
    """A kustomization beside `base` that uses it with `components` (names under components/)."""
    directory = Path(tempfile.mkdtemp(prefix="dbhealth-overlay-", dir=base.parent))
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"../{base.name}"],
                "components": [f"../{base.name}/components/{name}" for name in components],
            }
        )
    )
    return directory


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize` builds from `directory` (offline without kubectl)."""
    if KUBECTL:
        result = subprocess.run(
            [KUBECTL, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return render_offline(directory)


def render_offline(directory: Path) -> list[dict]:
    """What this kustomization uses, read without kustomize (and without its name hashes)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += render_offline(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for kind, generators in (
        ("ConfigMap", spec.get("configMapGenerator", [])),
        ("Secret", spec.get("secretGenerator", [])),
    ):
        for generator in generators:
            data = {}
            for file in generator.get("files", []):
                data[Path(file).name] = (directory / file).read_text()
            for env in generator.get("envs", []):
                for line in (directory / env).read_text().splitlines():
                    key, _, value = line.partition("=")
                    data[key] = value
            if kind == "Secret":
                data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            labels = generator.get("options", {}).get("labels", {})
            metadata = {"name": generator["name"], "labels": labels}
            generated = {"apiVersion": "v1", "kind": kind, "metadata": metadata, "data": data}
            if kind == "Secret":
                generated["type"] = "Opaque"
            objects.append(generated)
    for component in spec.get("components", []):
        objects += render_offline((directory / component).resolve())
        patches = yaml.safe_load((directory / component / "kustomization.yaml").read_text())
        for patch in patches.get("patches", []):
            deleted = yaml.safe_load(patch["patch"])
            objects = [
                o
                for o in objects
                if (o["kind"], o["metadata"]["name"])
                != (deleted["kind"], deleted["metadata"]["name"])
            ]
    for image in spec.get("images", []):
        for item in objects:
            if item["kind"] == "Deployment":
                for c in item["spec"]["template"]["spec"]["containers"]:
                    if c["image"] == image["name"]:
                        c["image"] = f"{image['name']}:{image['newTag']}"
    return objects


@functools.cache
def rendered(*components: str) -> tuple[dict, ...]:
    """The base with `components`, rendered from a working copy."""
    base = working_copy()
    return tuple(render(overlay(base, list(components)) if components else base))


def manifests() -> list[dict]:
    """The objects as the tests deploy them: the base with its Secrets generated from files."""
    return [json.loads(json.dumps(o)) for o in rendered("secrets-from-files")]


def one(kind: str, name: str | None = None) -> dict:
    [found] = [
        o for o in manifests() if o["kind"] == kind and name in (None, o["metadata"]["name"])
    ]
    return found


def container() -> dict:
    [found] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def env_value(name: str) -> str:
    [value] = [item["value"] for item in container()["env"] if item["name"] == name]
    return value


def kubernetes_versions() -> list[str]:
    """The oldest bundled schema from OLDEST_KUBERNETES on, and the newest."""

    def number(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    bundled = sorted(set(kubernetes_validate.utils.all_versions()), key=number)
    supported = [v for v in bundled if number(v)[:2] >= OLDEST_KUBERNETES]
    assert supported, f"kubernetes-validate bundles no schema from {OLDEST_KUBERNETES} on"
    return sorted({supported[0], supported[-1]}, key=number)


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(number) * units[unit] for number, unit in parts)


def test_kustomization_lists_every_manifest_and_names_no_namespace():
    listed = set(kustomization()["resources"])
    listed |= {f for g in kustomization()["configMapGenerator"] for f in g["files"]}
    present = {p.name for p in KUBERNETES.glob("*.yaml")} | {
        p.name for p in KUBERNETES.glob("*.toml")
    }
    assert listed == present - {"kustomization.yaml"}
    kinds = sorted(o["kind"] for o in rendered())
    assert kinds == ["ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"]
    every = [o for name in component_names() for o in rendered(name)]
    for item in every:
        assert "namespace" not in item["metadata"], item["metadata"]["name"]
        assert item["metadata"]["labels"]["app.kubernetes.io/name"] == "dbhealth"


def component_names() -> list[str]:
    return sorted(path.parent.name for path in COMPONENTS.glob("*/kustomization.yaml"))


def test_the_base_applies_no_secret_and_nothing_holds_an_example_password():
    """Applying the base never overwrites an operator's Secrets with example values: it
    references dbhealth-passwords and dbhealth-token, which exist before it is applied."""
    assert [o for o in rendered() if o["kind"] == "Secret"] == []
    for path in KUBERNETES.rglob("*"):
        if path.is_file():
            assert "change-me" not in path.read_text(), path
    ignored = (COMPONENTS / "secrets-from-files" / ".gitignore").read_text().split()
    assert sorted(ignored) == sorted(EXAMPLE_SECRET_FILES)


def pod_template(objects: tuple[dict, ...]) -> dict:
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]


@pytest.mark.skipif(KUBECTL is None, reason="name hashes need kubectl kustomize")
@pytest.mark.parametrize(
    "edited, components",
    [
        ("dbhealth.toml", []),
        ("components/secrets-from-files/passwords.env", ["secrets-from-files"]),
        ("components/secrets-from-files/token", ["secrets-from-files"]),
    ],
)
def test_an_edit_of_the_configuration_or_a_secret_rolls_the_pod(edited, components):
    """The generated ConfigMap and Secrets carry a hash of their content in their names, and the
    Deployment refers to them by those names: an edit changes the pod template, so applying it
    replaces the pod (a running process never sees its files change)."""
    base = working_copy()
    before = pod_template(tuple(render(overlay(base, components))))
    with (base / edited).open("a") as file:
        file.write("\n# edited\n" if edited.endswith(".toml") else "X=1\n")
    after = pod_template(tuple(render(overlay(base, components))))
    assert before != after
    # ...in the names it refers to, nothing else.
    for template in (before, after):
        template["spec"]["volumes"] = template["spec"]["containers"][0]["envFrom"] = None
    assert before == after


def test_the_components_render_and_add_what_they_say():
    base = {(o["kind"], o["metadata"]["name"]) for o in rendered()}
    added = {
        name: {(o["kind"], o["metadata"]["name"]) for o in rendered(name)} - base
        for name in component_names()
    }
    assert added == {
        "network-policy": {("NetworkPolicy", "dbhealth")},
        "pod-disruption-budget": {("PodDisruptionBudget", "dbhealth")},
        "pod-monitor": {("PodMonitor", "dbhealth")},
        "secrets-from-files": {
            ("Secret", name)
            for name in (
                secret_name(rendered("secrets-from-files"), "dbhealth-passwords"),
                secret_name(rendered("secrets-from-files"), "dbhealth-token"),
            )
        },
    }
    # The PodMonitor replaces the ServiceMonitor; nothing else is removed.
    removed = {
        name: base - {(o["kind"], o["metadata"]["name"]) for o in rendered(name)}
        for name in component_names()
    }
    assert removed["pod-monitor"] == {("ServiceMonitor", "dbhealth")}
    assert all(not gone for name, gone in removed.items() if name != "pod-monitor")


def secret_name(objects: tuple[dict, ...], prefix: str) -> str:
    [name] = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Secret" and o["metadata"]["name"].startswith(prefix)
    ]
    return name


def test_the_options_select_the_exporters_pods():
    pod_labels = pod_template(rendered())["metadata"]["labels"]
    [port] = container()["ports"]
    [pdb] = [o for o in rendered("pod-disruption-budget") if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1  # minAvailable: 1 would block every drain
    [policy] = [o for o in rendered("network-policy") if o["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    [ingress] = policy["spec"]["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [port["name"]]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 5432, 3306} <= egress_ports
    [monitor] = [o for o in rendered("pod-monitor") if o["kind"] == "PodMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [service_endpoint] = one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint == {**service_endpoint, "port": port["name"]}


def test_the_image_tag_is_the_package_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    [image] = kustomization()["images"]
    assert (image["name"], image["newTag"]) == (version and "dbhealth", version)
    assert container()["image"] == f"dbhealth:{version}"


def every_object() -> list[dict]:
    """The base's objects and each component's, once each."""
    found: dict[tuple[str, str], dict] = {}
    for name in ["secrets-from-files", *component_names()]:
        for item in rendered(name):
            found.setdefault((item["kind"], item["metadata"]["name"]), item)
    return list(found.values())


@pytest.mark.parametrize("version", kubernetes_versions())
@pytest.mark.parametrize(
    "item",
    [o for o in every_object() if o["kind"] in CORE_KINDS],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_core_kinds_pass_kubernetes_validate(item, version):
    assert kubernetes_validate.validate(item, version, strict=True)


def test_kubernetes_validate_rejects_an_unknown_field():
    """The strict schemas catch a misspelt field, so the test above means something."""
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_versions()[0], strict=True)


# ---- The Prometheus Operator's fields (monitoring.coreos.com; its CRDs' openAPIV3Schema). ----
# Only what these manifests and docs/scaling.md use or may plausibly add, from the operator's API
# reference: ServiceMonitorSpec, Endpoint, PrometheusRuleSpec, RuleGroup, Rule, RelabelConfig,
# SafeAuthorization, SecretKeySelector and, for the sharding example, v1alpha1 ScrapeConfigSpec
# and HTTPSDConfig.


@dataclass(frozen=True)
class MapOf:
    """A free-form map: any string key, each value of `value` (labels, annotations, params)."""

    value: Any


DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
# RelabelConfig.action's enum: every action in CamelCase and in lower case.
CAMEL_CASE_ACTIONS = (
    "Replace", "Keep", "Drop", "HashMod", "LabelMap", "LabelDrop", "LabelKeep", "Lowercase",
    "Uppercase", "KeepEqual", "DropEqual",
)  # fmt: skip
RELABEL_ACTIONS = frozenset(CAMEL_CASE_ACTIONS) | {a.lower() for a in CAMEL_CASE_ACTIONS}
SECRET_KEY = {"name": str, "key": str, "optional": bool}
AUTHORIZATION = {"type": str, "credentials": SECRET_KEY}
BASIC_AUTH = {"username": SECRET_KEY, "password": SECRET_KEY}
RELABEL = {
    "sourceLabels": [str],
    "separator": str,
    "targetLabel": str,
    "regex": str,
    "modulus": int,
    "replacement": str,
    "action": RELABEL_ACTIONS,
}
LABEL_SELECTOR = {
    "matchLabels": MapOf(str),
    "matchExpressions": [{"key": str, "operator": str, "values": [str]}],
}
OBJECT_METADATA = {"name": str, "labels": MapOf(str), "annotations": MapOf(str)}
ENDPOINT = {
    "port": str,
    "targetPort": (int, str),
    "path": str,
    "scheme": frozenset({"http", "https", "HTTP", "HTTPS"}),
    "params": MapOf([str]),
    "interval": DURATION,
    "scrapeTimeout": DURATION,
    "honorLabels": bool,
    "honorTimestamps": bool,
    "authorization": AUTHORIZATION,
    "basicAuth": BASIC_AUTH,
    "bearerTokenSecret": SECRET_KEY,
    "relabelings": [RELABEL],
    "metricRelabelings": [RELABEL],
    "followRedirects": bool,
    "enableHttp2": bool,
}
SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "selector": LABEL_SELECTOR,
        "namespaceSelector": {"any": bool, "matchNames": [str]},
        "endpoints": [ENDPOINT],
        "jobLabel": str,
        "targetLabels": [str],
        "podTargetLabels": [str],
        "sampleLimit": int,
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "selector": LABEL_SELECTOR,
        "namespaceSelector": {"any": bool, "matchNames": [str]},
        "podMetricsEndpoints": [ENDPOINT],
        "jobLabel": str,
        "podTargetLabels": [str],
        "sampleLimit": int,
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "groups": [
            {
                "name": str,
                "interval": DURATION,
                "limit": int,
                "query_offset": DURATION,
                "labels": MapOf(str),
                "partial_response_strategy": str,
                "rules": [
                    {
                        "alert": str,
                        "record": str,
                        "expr": (str, int),
                        "for": DURATION,
                        "keep_firing_for": DURATION,
                        "labels": MapOf(str),
                        "annotations": MapOf(str),
                    }
                ],
            }
        ]
    },
    ("monitoring.coreos.com/v1alpha1", "ScrapeConfig"): {
        "jobName": str,
        "httpSDConfigs": [
            {"url": re.compile(r"^https?://.+$"), "refreshInterval": DURATION}
            | {"authorization": AUTHORIZATION, "basicAuth": BASIC_AUTH}
        ],
        "relabelings": [RELABEL],
        "metricRelabelings": [RELABEL],
        "metricsPath": str,
        "scrapeInterval": DURATION,
        "scrapeTimeout": DURATION,
        "honorLabels": bool,
        "honorTimestamps": bool,
        "scheme": frozenset({"HTTP", "HTTPS"}),
        "params": MapOf([str]),
        "authorization": AUTHORIZATION,
        "basicAuth": BASIC_AUTH,
    },
}
REQUIRED = {
    "ServiceMonitor": [("selector",), ("endpoints",)],
    "PodMonitor": [("selector",), ("podMetricsEndpoints",)],
}


def violations(value: Any, schema: Any, path: str = "spec") -> list[str]:
    """Where `value` leaves `schema`: unknown keys, wrong types, bad durations or enum values."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        found = [f"{path}.{key}: not a field of the CRD" for key in value if key not in schema]
        for key, item in value.items():
            if key in schema:
                found += violations(item, schema[key], f"{path}.{key}")
        return found
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        found = [f"{path}: {key!r} is not a string" for key in value if not isinstance(key, str)]
        for key, item in value.items():
            found += violations(item, schema.value, f"{path}.{key}")
        return found
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        found = []
        for index, item in enumerate(value):
            found += violations(item, schema[0], f"{path}[{index}]")
        return found
    if isinstance(schema, re.Pattern):
        ok = isinstance(value, str) and schema.match(value)
        return [] if ok else [f"{path}: {value!r} does not match {schema.pattern}"]
    if isinstance(schema, frozenset):
        return [] if value in schema else [f"{path}: {value!r} is not one of the CRD's values"]
    types = schema if isinstance(schema, tuple) else (schema,)
    # YAML reads `true` as a bool, which is also an int in Python: never accept one for the other.
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    return [] if ok else [f"{path}: {value!r} is not {'/'.join(t.__name__ for t in types)}"]


def monitoring_violations(item: dict) -> list[str]:
    key = (item["apiVersion"], item["kind"])
    if key not in SCHEMAS:
        return [f"{key}: not a kind this test knows"]
    found = violations(item["metadata"], OBJECT_METADATA, "metadata")
    found += violations(item["spec"], SCHEMAS[key])
    for required in REQUIRED.get(item["kind"], []):
        if required[0] not in item["spec"]:
            found.append(f"spec.{required[0]}: required")
    if item["kind"] == "PrometheusRule":
        names = [group["name"] for group in item["spec"]["groups"]]
        if len(names) != len(set(names)):
            found.append("spec.groups: group names must be unique (a list map keyed by name)")
        for group in item["spec"]["groups"]:
            for rule in group["rules"]:
                if ("alert" in rule) == ("record" in rule) or "expr" not in rule:
                    found.append(f"{group['name']}: a rule needs expr and one of alert, record")
    return found


@pytest.mark.parametrize(
    "item",
    [o for o in every_object() if o["kind"] in MONITORING_KINDS],
    ids=lambda o: o["kind"],
)
def test_monitoring_kinds_use_only_fields_the_operator_defines(item):
    assert monitoring_violations(item) == []


def test_the_allow_list_rejects_what_the_operator_would():
    monitor = one("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"  # it is `interval`
    monitor["spec"]["endpoints"][0]["scrapeTimeout"] = "10 s"
    monitor["spec"]["endpoints"][0]["relabelings"][0]["action"] = "rename"
    rule = one("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["labels"] = {"severity": 2}
    assert sorted(monitoring_violations(monitor)) == sorted(
        [
            "spec.endpoints[0].scrapeInterval: not a field of the CRD",
            "spec.endpoints[0].scrapeTimeout: '10 s' does not match " + DURATION.pattern,
            "spec.endpoints[0].relabelings[0].action: 'rename' is not one of the CRD's values",
        ]
    )
    assert monitoring_violations(rule) == [
        "spec.groups[0].rules[0].labels.severity: 2 is not str",
    ]


# ---- The PrometheusRule is config/prometheus/rules.yml. ----


def test_prometheusrule_is_generated_from_rules_yml():
    """Fails when rules.yml changed and the PrometheusRule was not regenerated: run
    `.venv/bin/python deploy/kubernetes/generate_prometheusrule.py`."""
    generator = load_generator()
    committed = (KUBERNETES / "prometheusrule.yaml").read_text()
    assert committed == generator.render(RULES.read_text()), (
        "deploy/kubernetes/prometheusrule.yaml is stale: run "
        "deploy/kubernetes/generate_prometheusrule.py"
    )
    # ...and that rendering is faithful: the groups, exactly, once YAML has read them.
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert one("PrometheusRule")["spec"]["groups"] == groups


def test_a_change_to_rules_yml_makes_the_prometheusrule_stale():
    generator = load_generator()
    committed = (KUBERNETES / "prometheusrule.yaml").read_text()
    changed = RULES.read_text().replace("for: 2m", "for: 3m", 1)
    assert changed != RULES.read_text()
    assert generator.render(changed) != committed


def test_generator_check_mode_agrees():
    script = KUBERNETES / "generate_prometheusrule.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_prometheusrule_groups_pass_promtool(tmp_path):
    binary = shutil.which("promtool")
    assert binary, "promtool not found: install Debian's 'prometheus' package"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": one("PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run(
        [binary, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- The objects find each other. ----


def test_selectors_and_ports_match():
    deployment, service, monitor = one("Deployment"), one("Service"), one("ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [port] = container()["ports"]
    [service_port] = service["spec"]["ports"]
    assert service_port["name"] == "metrics"
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == (
        "/metrics",
        "30s",
        "10s",
    )
    # The service listens on the port the pod declares.
    assert env_value("DBHEALTH_BIND") == f"0.0.0.0:{port['containerPort']}"


def test_probes_ask_livez_and_readyz_on_the_container_port():
    [port] = container()["ports"]
    expected = {
        "startupProbe": "/livez",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        get = container()[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in (port["name"], port["containerPort"]), probe
        assert "httpHeaders" not in get  # /livez and /readyz need no token


def test_the_scrapes_are_those_dbhealth_exporter_down_watches():
    """The operator names the job after the Service; the ServiceMonitor sets it to what the
    rules' DbhealthExporterDown selects, whatever the Service is called."""
    [endpoint] = one("ServiceMonitor")["spec"]["endpoints"]
    jobs = [
        r.get("replacement")
        for r in endpoint["relabelings"]
        if r.get("targetLabel") == "job" and r.get("action", "replace").lower() == "replace"
    ]
    assert jobs == ["dbhealth"]
    [down] = [
        rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "DbhealthExporterDown"
    ]
    [pattern] = set(re.findall(r'job=~"([^"]+)"', down["expr"]))
    assert re.fullmatch(pattern, jobs[0])


def test_the_pod_runs_non_root_on_a_read_only_root_filesystem():
    pod = one("Deployment")["spec"]["template"]["spec"]
    effective = {**pod["securityContext"], **container().get("securityContext", {})}
    assert effective["runAsNonRoot"] is True
    assert (effective["runAsUser"], effective["runAsGroup"]) == (10001, 10001)  # the image's
    assert effective["readOnlyRootFilesystem"] is True
    assert effective["allowPrivilegeEscalation"] is False
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # One process owns all probe state: never two behind the Service, not even in a rollout.
    deployment = one("Deployment")["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}
    # The request is at least the measured 65.6 MB with five aliases (MiB: 62.6), with room.
    assert container()["resources"] == {
        "requests": {"cpu": "50m", "memory": "96Mi"},
        "limits": {"memory": "256Mi"},
    }
    # The image's user can read the token file the volume mounts.
    [token] = [v for v in pod["volumes"] if v["name"] == "token"]
    assert token["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == 10001


# ---- The configuration: ConfigMap, Secret, environment and files, as the container sees them. ----


def secret_data(name: str) -> dict[str, str]:
    """A Secret's values by key, as the container sees them."""
    data = one("Secret", name)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def container_environment() -> dict[str, str]:
    """The container's variables: env, and every key of each envFrom Secret."""
    environment = {item["name"]: item["value"] for item in container()["env"]}
    for source in container()["envFrom"]:
        environment.update(secret_data(source["secretRef"]["name"]))
    return environment


def container_files(root: Path) -> None:
    """Write every mounted ConfigMap and Secret item under `root`, at its path in the container."""
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    for mount in container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            source, items = (
                one("ConfigMap", volume["configMap"]["name"])["data"],
                volume["configMap"],
            )
        else:
            source, items = secret_data(volume["secret"]["secretName"]), volume["secret"]
        for item in items["items"]:
            target = root / mount["mountPath"].lstrip("/") / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source[item["key"]])


def test_secret_keys_are_environment_variable_names():
    """envFrom skips (with a warning event) keys that are not valid variable names."""
    for source in container()["envFrom"]:
        for key in secret_data(source["secretRef"]["name"]):
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), key


def test_the_files_the_environment_names_are_mounted(tmp_path):
    container_files(tmp_path)
    for variable in ("DBHEALTH_CONFIG", "DBHEALTH_AUTH_TOKEN_FILE"):
        path = env_value(variable)
        assert (tmp_path / path.lstrip("/")).is_file(), (variable, path)
    # The TOML where the image expects it.
    assert env_value("DBHEALTH_CONFIG") == "/etc/dbhealth/dbhealth.toml"


def test_configmap_toml_loads_with_the_secrets_passwords(tmp_path, monkeypatch):
    container_files(tmp_path)
    config = tmp_path / env_value("DBHEALTH_CONFIG").lstrip("/")
    text = config.read_text()
    wanted = set(re.findall(r'PASSWORD_ENV = "(\w+)"', text))
    assert wanted, "the example shows PASSWORD_ENV"
    environment = container_environment()
    # Without the Secret every alias with a PASSWORD_ENV is unusable: the test depends on it.
    for variable in wanted:
        monkeypatch.delenv(variable, raising=False)
    entries = tomllib.loads(text)["databases"]
    without = load_config_file(config).databases
    unusable = {alias for alias, entry in without.items() if "config_error" in entry["DBHEALTH"]}
    assert unusable == {alias for alias, entry in entries.items() if "PASSWORD_ENV" in entry}
    for variable in wanted:
        monkeypatch.setenv(variable, environment[variable])
    loaded = load_config_file(config)
    for alias, entry in loaded.databases.items():
        assert "config_error" not in entry.get("DBHEALTH", {}), (alias, entry)
        assert entry["PASSWORD"] == environment[entries[alias]["PASSWORD_ENV"]]
    assert set(loaded.databases) == {"default", "read_replica", "legacy_db"}
    # Every probe ends within the scrape's timeout (README: keep each deadline below it).
    [endpoint] = one("ServiceMonitor")["spec"]["endpoints"]
    timeout = seconds(endpoint["scrapeTimeout"])
    for alias, entry in loaded.databases.items():
        deadline = entry.get("DBHEALTH", {}).get("deadline", loaded.defaults.get("deadline", 5))
        assert deadline < timeout, alias


def test_the_service_answers_the_kubelet_and_prometheus_as_deployed(tmp_path):
    """The Deployment's environment and files, served: the kubelet's probes (Host: the pod's IP,
    IPv4 or IPv6, no token) pass, every other endpoint wants the token the ServiceMonitor sends."""
    container_files(tmp_path)
    environment = container_environment()
    for variable in ("DBHEALTH_CONFIG", "DBHEALTH_AUTH_TOKEN_FILE"):
        environment[variable] = str(tmp_path / environment[variable].lstrip("/"))
    token = secret_data(secret_name(rendered("secrets-from-files"), "dbhealth-token"))["token"]
    [endpoint] = one("ServiceMonitor")["spec"]["endpoints"]
    # The operator reads the token from the Secret by its name as applied (hashed or not).
    assert endpoint["authorization"]["credentials"]["key"] == "token"
    with serve(environment, tmp_path / "service.log", "/livez") as served:
        for host in ("10.244.1.7:10433", "[fd00:10:244::7]:10433"):
            assert served.get("/livez", headers={"Host": host}) == (200, "ok\n")
            assert served.get("/readyz", headers={"Host": host}) == (
                200,
                "ok: 3 aliases configured\n",
            )
        assert served.get("/metrics", headers={"Host": "10.244.1.7:10433"})[0] == 401
        status, body = served.get("/sd", headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    aliases = {group["labels"]["alias"] for group in json.loads(body)}
    assert aliases == {"default", "read_replica", "legacy_db"}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize("components", [[], ["secrets-from-files"], ["pod-monitor"]], ids=str)
def test_the_offline_rendering_is_kubectl_kustomizes_but_for_the_name_hashes(components):
    """What the tests read where kubectl is missing is what kustomize builds."""
    base = working_copy()
    directory = overlay(base, components) if components else base
    unhashed = re.compile(r"(dbhealth-(?:config|passwords|token))-[a-z0-9]{10}\b")

    def canonical(objects: list[dict]) -> list[str]:
        return sorted(unhashed.sub(r"\1", json.dumps(o, sort_keys=True)) for o in objects)

    assert canonical(render(directory)) == canonical(render_offline(directory))
    [deployment] = [o for o in render(directory) if o["kind"] == "Deployment"]
    [image] = kustomization()["images"]
    built_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert built_image == f"{image['name']}:{image['newTag']}"


# ---- docs/scaling.md's Kubernetes sharding example. ----


def kubernetes_section() -> str:
    text = SCALING.read_text()
    start = text.index("## Sharding in Kubernetes")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def section_objects() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", kubernetes_section(), re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def test_the_sharding_example_uses_the_operators_fields_and_the_documented_hashmod():
    objects = section_objects()
    scrape_configs = [o for o in objects if o["kind"] == "ScrapeConfig"]
    assert scrape_configs
    for item in scrape_configs:
        assert monitoring_violations(item) == []
        # The job DbhealthExporterDown watches, and the exporter's alias label kept.
        assert item["spec"]["jobName"] == "dbhealth_probe"
        assert item["spec"]["honorLabels"] is True
    # The same relabelling as the plain Prometheus example above it, in the operator's spelling.
    plain = yaml.safe_load(
        re.search(r"```yaml\n(# Prometheus shard 0 of 2.*?)```", SCALING.read_text(), re.DOTALL)[1]
    )
    [job] = plain["scrape_configs"]
    spelled = {"source_labels": "sourceLabels", "target_label": "targetLabel"}
    expected = [{spelled.get(k, k): v for k, v in r.items()} for r in job["relabel_configs"]]
    assert scrape_configs[0]["spec"]["relabelings"] == expected
    # Replica i is discovered at its StatefulSet name through the headless Service.
    [statefulset] = [o for o in objects if o["kind"] == "StatefulSet"]
    [headless] = [o for o in objects if o["kind"] == "Service"]
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    [sd] = scrape_configs[0]["spec"]["httpSDConfigs"]
    replica = f"{statefulset['metadata']['name']}-0.{headless['metadata']['name']}"
    assert re.fullmatch(rf"http://{re.escape(replica)}\.[\w.-]+:10433/sd", sd["url"])
