"""Fixtures that point the exporter at real servers: a probe-service harness and Django settings."""

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbhealth.configuration.targets import ServiceOptions, Target, build_target
from dbhealth.exposition.families import StateCollector
from dbhealth.probing.service import ProbeService
from dbhealth.probing.state import ServiceState
from django.test import override_settings
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Harness:
    targets: tuple[Target, ...]
    service: ProbeService
    state: ServiceState | None = None

    def round(self, budget: float | None = None) -> ServiceState:
        self.state = self.service.snapshot(self.targets, budget)
        return self.state

    def round_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Probe until predicate() holds: a session hands its counters to the server's
        statistics a moment after its client has closed it."""
        give_up_at = time.monotonic() + timeout
        while True:
            self.round()
            if predicate():
                return True
            if time.monotonic() > give_up_at:
                return False
            time.sleep(0.1)

    def exposition(self) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(self.targets, self.state or ServiceState()))
        return generate_latest(registry).decode()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = {}
        for family in text_string_to_metric_families(self.exposition()):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))

    def alias(self, alias: str):
        return (self.state or ServiceState()).aliases[alias]


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    harnesses: list[Harness] = []

    def make(
        databases: dict[str, dict[str, Any]],
        *,
        refresh_interval: float = 60.0,
        min_interval: float = 0.0,
        max_connections_per_server: int = 16,
        rotation_interval: float = 30.0,
        **alias_options: Any,
    ) -> Harness:
        targets = tuple(
            build_target(alias, entry, alias_options) for alias, entry in databases.items()
        )
        options = ServiceOptions(
            refresh_interval=refresh_interval,
            min_interval=min_interval,
            scrape_timeout_margin=0.5,
            max_connections_per_server=max_connections_per_server,
            rotation_interval=rotation_interval,
        )
        harness = Harness(targets=targets, service=ProbeService(targets, options))
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.service.close()


@pytest.fixture
def exporter_settings(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Reconfigure the Django app itself (views, CLI) for one test."""
    overrides: list[override_settings] = []

    def configure(databases: dict[str, dict[str, Any]], **defaults: Any) -> None:
        override = override_settings(
            DATABASES={"default": {}, **databases} if "default" not in databases else databases,
            DBHEALTH_DEFAULTS={"min_interval": 0.0, **defaults},
            DBHEALTH_ALIASES=list(databases),
            ALLOWED_HOSTS=["testserver"],
        )
        override.enable()
        overrides.append(override)

    yield configure
    for override in reversed(overrides):
        override.disable()


def refused_postgres_entry(password: str) -> dict[str, str]:
    """A PostgreSQL alias on a port where nothing listens: down with reason `refused`."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "x",
        "HOST": "127.0.0.1",
        "PORT": "1",
        "USER": "u",
        "PASSWORD": password,
    }


def promtool_check_metrics(exposition: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
