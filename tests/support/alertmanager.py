"""A throwaway Alertmanager, and a webhook receiver standing in for the pager.

`AlertmanagerServer` runs Debian's `prometheus-alertmanager` on a free port with its own config
and storage in a temp dir, clustering off; `WebhookReceiver` is a small HTTP server in a thread
of the test process that records every notification Alertmanager POSTs to it, and lets a test
wait for one (woken by each delivery, never polling).
"""

import functools
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

from .binaries import MissingBinaryError
from .ports import free_port
from .process import ServerProcess, http_ready

T = TypeVar("T")

# Debian ships the binary as prometheus-alertmanager; upstream tarballs as alertmanager.
BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@functools.cache
def alertmanager_binary() -> Path:
    """The Alertmanager server binary."""
    for name in BINARY_NAMES:
        found = shutil.which(name) or shutil.which(name, path=_SBIN_PATH)
        if found:
            return Path(found)
    raise MissingBinaryError(
        f"none of {', '.join(BINARY_NAMES)} found; "
        "install it with `apt-get install prometheus-alertmanager`"
    )


def webhook_config(
    url: str,
    group_by: Sequence[str] = ("alertname", "alias"),
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """An Alertmanager config sending every alert, firing and resolved, to one webhook.

    The defaults notify within a second of an alert arriving or resolving (production routes
    wait tens of seconds to batch), and do not repeat within a test.
    """
    return f"""
route:
  receiver: webhook
  group_by: {json.dumps(list(group_by))}
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: webhook
    webhook_configs:
      - url: {json.dumps(url)}
        send_resolved: true
"""


class AlertmanagerError(RuntimeError):
    """The HTTP API answered with an error."""


class AlertmanagerServer(ServerProcess):
    """Alertmanager on a free port, its config and notification log in a temp dir.

    Clustering is off (an empty --cluster.listen-address), so it neither opens the gossip port
    9094 nor waits for peers before sending its first notification.
    """

    name = "alertmanager"

    def __init__(self, config_text: str, port: int | None = None) -> None:
        super().__init__(prefix="alertmanager-", user=None, port=port)
        self.config_file = self.tmpdir / "alertmanager.yml"
        self.config_file.write_text(config_text)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as a Prometheus `alertmanagers` target."""
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [
            str(alertmanager_binary()),
            f"--config.file={self.config_file}",
            f"--storage.path={self.tmpdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
        ]

    def _ready(self) -> bool:
        return http_ready(f"{self.url}/-/ready")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (API v2), resolved ones excluded by Alertmanager."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise AlertmanagerError(error.read().decode(errors="replace")) from None

    def reload(self, config_text: str | None = None) -> None:
        """Re-read the config, optionally replacing it first."""
        if config_text is not None:
            self.config_file.write_text(config_text)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            raise AlertmanagerError(
                f"reload failed: {error.read().decode(errors='replace')}"
            ) from None


@dataclass(frozen=True)
class Delivery:
    """One POST to the webhook: when it arrived (time.monotonic()), its raw body and its JSON
    (None if the body was no JSON)."""

    received: float
    path: str
    body: str
    payload: Any

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """The notification's alerts whose labels include `labels`."""
        if not isinstance(self.payload, dict):
            return []
        return [
            alert
            for alert in self.payload.get("alerts", [])
            if all(alert.get("labels", {}).get(k) == v for k, v in labels.items())
        ]


class WebhookReceiver:
    """An HTTP server on a free loopback port recording every POST, for the block.

    Use as a context manager; `url` is the address to give Alertmanager's webhook_configs.
    """

    def __init__(self, host: str = "127.0.0.1", path: str = "/alerts") -> None:
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}{path}"
        self._deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace")
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                receiver._record(Delivery(time.monotonic(), self.path, body, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log on the test's stderr

        self._server = ThreadingHTTPServer((host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    def _record(self, delivery: Delivery) -> None:
        with self._changed:
            self._deliveries.append(delivery)
            self._changed.notify_all()

    @property
    def deliveries(self) -> list[Delivery]:
        """Every POST so far, oldest first (a copy)."""
        with self._changed:
            return list(self._deliveries)

    def wait_for(self, predicate: Callable[[list[Delivery]], T], timeout: float) -> T:
        """Wait until predicate(deliveries so far) is truthy and return it; woken by each
        delivery. TimeoutError after `timeout` seconds, naming what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate(list(self._deliveries))
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching notification within {timeout} s; received "
                        f"{[d.body[:500] for d in self._deliveries]}"
                    )
                self._changed.wait(remaining)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
