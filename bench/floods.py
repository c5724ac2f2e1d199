"""Scrapes under floods of unauthenticated connections, and the memory of TLS handshakes (issue 21).

Starts `manage.py serve` on the SQLite demo database (a free loopback port, default limits:
1,000 connections, 250 per client address) and, for each flood, keeps `--connections` (999)
connections from 127.0.0.1 open and refilled for the whole phase while it times `--scrapes` (10)
scrapes of /metrics, each on a fresh connection with a 10 s client timeout, one a second:

- keep-alive: each connection sends GET /livez, reads the answer and keeps the connection;
- slow-body: each announces a 10 MB body (POST /livez) and sends a byte of it every 5 s;
- idle: each sends nothing; a connection the server closes is opened again at once.

A flood's connections are refilled as the server closes them (at most every 0.1 s), so the
figures show a flood that never lets go. Printed per flood: the scrapes answered 200 within
their timeout, their median and maximum time, how many flood connections the server closed, and
the WARNING lines the service wrote meanwhile.

Then TLS (a self-signed certificate, DBHEALTH_CONNECTIONS_PER_CLIENT=1000 so that one address
may hold all 1,000): the service's RSS before, with 1,000 TCP connections that never send a
ClientHello, and after they are closed, for `--tls-rounds` rounds; and with 1,000 completed TLS
connections kept alive after a request; and scrapes over TLS under a flood of `--connections`
handshakes that never start, refilled as the server closes them. Figures only, no assertions;
loopback only; bounded in time (each flood phase stops after its scrapes, at most `--scrapes` x
11 s).

    .venv/bin/python -m bench.floods [--connections 999] [--scrapes 10] [--skip tls]
"""

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.contenders import REPO, Contender
from bench.scrape import ACCEPT, scrape_once
from tests.serving import waiting
from tests.support.ports import free_port
from tests.support.process import make_tempdir

CLIENT_TIMEOUT = 10.0
SLOW_BYTE_SECONDS = 5.0
REFILL_SECONDS = 0.1
FLOOD_KINDS = ("keep-alive", "slow-body", "idle")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_serve(workdir: Path, name: str, extra: dict[str, str]) -> Contender:
    home = workdir / name
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "DBHEALTH_DATA_DIR": str(home), "DBHEALTH_LOG_LEVEL": "WARNING", **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py's own
    port = free_port()
    command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
    return Contender(name, command, env, port, workdir, cwd=REPO)


class Flood:
    """`count` connections of one kind, refilled from a thread until stopped."""

    def __init__(self, port: int, kind: str, count: int) -> None:
        self.port, self.kind, self.count = port, kind, count
        self.sockets: list[socket.socket] = []
        self.closed_by_server = 0
        self.failed_connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flood-{kind}", daemon=True)

    def __enter__(self) -> "Flood":
        self._fill()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        for sock in self.sockets:
            sock.close()

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT)
            if self.kind == "keep-alive":
                sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.recv(65536)  # the answer (small: one read)
            elif self.kind == "slow-body":
                sock.sendall(
                    b"POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\nx"
                )
            return sock
        except OSError:
            self.failed_connects += 1
            return None

    def _fill(self) -> None:
        while len(self.sockets) < self.count and not self._stop.is_set():
            sock = self._open()
            if sock is None:
                return
            self.sockets.append(sock)

    def _run(self) -> None:
        next_byte_at = time.monotonic() + SLOW_BYTE_SECONDS
        while not self._stop.wait(REFILL_SECONDS):
            kept = []
            for sock in self.sockets:
                if waiting(sock):
                    kept.append(sock)
                else:
                    sock.close()
                    self.closed_by_server += 1
            self.sockets = kept
            if self.kind == "slow-body" and time.monotonic() >= next_byte_at:
                next_byte_at += SLOW_BYTE_SECONDS
                for sock in self.sockets:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"x")
            self._fill()


def scrapes(port: int, count: int, client: ssl.SSLContext | None = None) -> dict:
    """`count` scrapes a second apart, over TLS with `client`; each must be 200 in time."""
    statuses, seconds, errors = [], [], []
    for _ in range(count):
        time.sleep(1.0)
        try:
            if client is None:
                elapsed, _, _ = scrape_once(port, CLIENT_TIMEOUT)
            else:
                elapsed = https_scrape(port, client)
        except Exception as exc:
            statuses.append("failed")
            errors.append(f"{type(exc).__name__}: {exc}"[:100])
            continue
        statuses.append(200)
        seconds.append(elapsed)
    return {
        "answered_200": statuses.count(200),
        "scrapes": count,
        "median_ms": round(statistics.median(seconds) * 1000, 1) if seconds else None,
        "max_ms": round(max(seconds) * 1000, 1) if seconds else None,
        "errors": sorted(set(errors))[:3],
    }


def warning_lines(contender: Contender) -> int:
    return sum(" WARNING " in line for line in contender.logfile.read_text().splitlines())


def flood_phase(contender: Contender, kind: str, args: argparse.Namespace) -> dict:
    before = warning_lines(contender)
    started = time.monotonic()
    with Flood(contender.port, kind, args.connections) as flood:
        filled = len(flood.sockets)
        result = scrapes(contender.port, args.scrapes)
        result["flood_connections_open_at_start"] = filled
        result["flood_connections_open_at_end"] = len(flood.sockets)
        result["flood_connections_closed_by_server"] = flood.closed_by_server
        result["flood_connects_failed"] = flood.failed_connects
    result["seconds"] = round(time.monotonic() - started, 1)
    result["warning_lines"] = warning_lines(contender) - before
    return result


def rss_mib(contender: Contender) -> float:
    return round(contender.usage().rss_bytes / 2**20, 1)


def tls_phase(workdir: Path, args: argparse.Namespace) -> dict:
    cert, key = workdir / "server.crt", workdir / "server.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    web = workdir / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    client = ssl.create_default_context(cafile=str(cert))
    extra = {"DBHEALTH_WEB_CONFIG_FILE": str(web), "DBHEALTH_CONNECTIONS_PER_CLIENT": "1000"}
    contender = start_serve(workdir, "tls", extra)
    try:
        https_ready(contender.port, client)
        for _ in range(5):
            https_livez(contender.port, client)
        time.sleep(2)
        result: dict = {"rss_mib_start": rss_mib(contender), "abandoned_handshakes": []}
        log(f"TLS: scrapes under {args.connections} handshakes that never start, refilled")
        with Flood(contender.port, "idle", args.connections) as flood:
            result["handshake_flood"] = scrapes(contender.port, args.scrapes, client)
            result["handshake_flood"]["rss_mib_during"] = rss_mib(contender)
            result["handshake_flood"]["closed_by_server"] = flood.closed_by_server
        time.sleep(3)
        result["rss_mib_after_handshake_flood"] = rss_mib(contender)
        for _ in range(args.tls_rounds):
            before = rss_mib(contender)
            sockets = [
                socket.create_connection(("127.0.0.1", contender.port), timeout=CLIENT_TIMEOUT)
                for _ in range(args.tls_connections)
            ]
            time.sleep(2)  # every one accepted and its handshake begun
            during = rss_mib(contender)
            still_open = sum(map(waiting, sockets))
            for sock in sockets:
                sock.close()
            time.sleep(3)  # closes seen; heap.release_soon runs a second after the first
            result["abandoned_handshakes"].append(
                {
                    "connections": args.tls_connections,
                    "open_when_measured": still_open,
                    "rss_mib_before": before,
                    "rss_mib_open": during,
                    "rss_mib_after_close": rss_mib(contender),
                    "kib_per_open_handshake": round((during - before) * 1024 / max(still_open, 1)),
                }
            )
        before = rss_mib(contender)
        kept = [https_kept_alive(contender.port, client) for _ in range(args.tls_connections)]
        time.sleep(1)
        during = rss_mib(contender)
        for sock in kept:
            sock.close()
        time.sleep(3)
        result["kept_alive_tls"] = {
            "connections": len(kept),
            "rss_mib_before": before,
            "rss_mib_open": during,
            "rss_mib_after_close": rss_mib(contender),
            "kib_per_connection": round((during - before) * 1024 / len(kept)),
        }
        return result
    finally:
        contender.stop()


def https_scrape(port: int, client: ssl.SSLContext) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, timeout=CLIENT_TIMEOUT, context=client
    )
    try:
        connection.request("GET", "/metrics", headers={"Accept": ACCEPT})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started


def https_ready(port: int, client: ssl.SSLContext) -> None:
    give_up_at = time.monotonic() + 60
    while True:
        try:
            https_livez(port, client)
            return
        except OSError:
            if time.monotonic() > give_up_at:
                raise
            time.sleep(0.2)


def https_livez(port: int, client: ssl.SSLContext) -> None:
    https_kept_alive(port, client).close()


def https_kept_alive(port: int, client: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection that has had one answer to GET /livez."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    sock = client.wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.recv(65536)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floods", description=__doc__)
    parser.add_argument("--connections", type=int, default=999, help="connections per flood")
    parser.add_argument("--scrapes", type=int, default=10, help="scrapes timed per flood")
    parser.add_argument("--floods", nargs="+", choices=FLOOD_KINDS, default=list(FLOOD_KINDS))
    parser.add_argument("--tls-connections", type=int, default=1000)
    parser.add_argument("--tls-rounds", type=int, default=3)
    parser.add_argument("--skip", nargs="*", choices=("floods", "tls"), default=[])
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    workdir = make_tempdir("dbhealth-floods-", None)
    results: dict = {"parameters": vars(args)}
    try:
        if "floods" not in args.skip:
            contender = start_serve(workdir, "serve", {})
            try:
                contender.wait_ready()
                results["alone"] = scrapes(contender.port, args.scrapes)
                for kind in args.floods:
                    log(f"flood: {args.connections} {kind} connections")
                    results[kind] = flood_phase(contender, kind, args)
                    time.sleep(2)
                results["rss_mib_after_floods"] = rss_mib(contender)
            finally:
                contender.stop()
        if "tls" not in args.skip:
            log(f"TLS: {args.tls_connections} abandoned handshakes x {args.tls_rounds}")
            results["tls"] = tls_phase(workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
