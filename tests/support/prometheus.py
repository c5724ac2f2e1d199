"""A throwaway Prometheus server for testing scrape configs and alert rules."""

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from . import binaries
from .process import START_TIMEOUT, ServerProcess, http_ready

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """The HTTP API answered with an error."""


class PrometheusServer(ServerProcess):
    """Prometheus on a free port with its TSDB in a temp dir.

    Pass port= (from ports.free_port()) when the config must reference the
    server's own address, e.g. to scrape itself.
    """

    name = "prometheus"

    def __init__(
        self, config_text: str, rule_files: Iterable[Path] = (), port: int | None = None
    ) -> None:
        self.rule_files = [Path(path).resolve() for path in rule_files]
        if self.rule_files and any(
            line.startswith("rule_files:") for line in config_text.splitlines()
        ):
            raise ValueError("pass rule files either in config_text or as rule_files, not both")
        super().__init__(prefix="prometheus-", user=None, port=port)
        self.config_file = self.tmpdir / "prometheus.yml"
        self._write_config(config_text)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self, config_text: str) -> None:
        rules = "".join(f"\n  - {json.dumps(str(path))}" for path in self.rule_files)
        self.config_file.write_text(config_text + (f"\nrule_files:{rules}\n" if rules else ""))

    def _command(self) -> list[str]:
        return [
            str(binaries.prometheus()),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.tmpdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
        ]

    def _ready(self) -> bool:
        return http_ready(f"{self.url}/-/ready")

    def _api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            # Bad queries come back as 4xx with the usual JSON error envelope.
            body = json.load(error)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> dict[str, Any]:
        """Instant query; returns data ({"resultType": ..., "result": [...]})."""
        return self._api("query", query=expr)

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of `label` on series matching `match`, as Grafana's label_values() asks."""
        return self._api(f"label/{label}/values", **{"match[]": match})

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending and firing) alerts."""
        return self._api("alerts")["alerts"]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health and last error."""
        return self._api("targets")["activeTargets"]

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = START_TIMEOUT, interval: float = 0.2
    ) -> T:
        """Poll predicate until it returns something truthy and return that.

        Scrapes and rule evaluations are periodic, so tests wait rather than
        assert once; API errors count as "not yet".
        """
        deadline = time.monotonic() + timeout
        last: T | Exception | None = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except PrometheusError as error:
                last = error
            else:
                if last:
                    return last
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s; last result: {last!r}")

    def reload(self, config_text: str | None = None) -> None:
        """Re-read the config and rule files, optionally replacing the config first."""
        if config_text is not None:
            self._write_config(config_text)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            raise PrometheusError(
                f"reload failed: {error.read().decode(errors='replace')}"
            ) from None
