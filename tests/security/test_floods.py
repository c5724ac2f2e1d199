"""Floods of unauthenticated connections never keep a scrape away (issue 21).

The service's connection limit is scaled down (DBHEALTH_MAX_CONNECTIONS=60) so that floods of
60-150 connections on loopback exercise what 1,000 would in production: kept-alive connections,
request bodies, idle connections that reconnect, one address taking every slot, TLS handshakes
that never start. Each test waits for events (a close by the server, an answer) within generous
bounds; none compares durations. bench/floods.py measures the same floods at full size.
"""

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.http_client import one_response
from tests.serving import Served, serve, waiting

LIMIT = 60
PER_CLIENT = 20
SLACK = 30.0  # how long a test waits for an event that should have happened by then
REQUEST = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "DBHEALTH_MAX_CONNECTIONS": str(LIMIT),
        "DBHEALTH_CONNECTIONS_PER_CLIENT": str(LIMIT),
        **extra,
    }


@pytest.fixture
def service(tmp_path) -> Iterator[Served]:
    with serve(service_env(tmp_path), tmp_path / "service.log", "/livez") as served:
        yield served


def target(served: Served) -> tuple[str, int]:
    host, _, port = served.address.rpartition(":")
    return host, int(port)


def connect(served: Served, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(target(served), timeout=SLACK, source_address=(source, 0))


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (after any answer, read and dropped)."""
    sock.settimeout(SLACK)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def scrape(served: Served, source: str = "127.0.0.1") -> int:
    """The status of GET /metrics on a connection of its own from `source`, 0 for none."""
    try:
        with connect(served, source) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return int(one_response(sock).split(b" ", 2)[1])
    except (OSError, AssertionError):
        return 0


def log_lines(served: Served, text: str) -> list[str]:
    return [line for line in served.log.read_text().splitlines() if text in line]


def wait_for(condition, what: str) -> None:
    give_up_at = time.monotonic() + SLACK
    while not condition():
        assert time.monotonic() < give_up_at, what
        time.sleep(0.1)


# Request bodies


@pytest.mark.parametrize(
    "announcement",
    [b"Content-Length: 10000000\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["content-length", "chunked"],
)
def test_a_request_announcing_a_body_is_refused_before_the_body_comes(service, announcement):
    with connect(service) as sock:
        sock.sendall(b"POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n" + announcement + b"\r\n")
        # Not a byte of the body is sent: the answer comes all the same, and the connection ends.
        head = one_response(sock)
        assert head.startswith(b"HTTP/1.1 413"), head
        assert b"connection: close" in head.lower()
        assert closed_by_server(sock)


def test_a_request_without_a_body_is_answered_as_before(service):
    with connect(service) as sock:
        sock.sendall(b"POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        assert one_response(sock).startswith(b"HTTP/1.1 405")
        sock.sendall(REQUEST)  # and the connection is kept for the next request
        assert one_response(sock).startswith(b"HTTP/1.1 200")


def test_slow_bodies_keep_no_slot(service):
    """Connections that announce a body and would send it a byte at a time (the issue's flood)
    are answered and closed at once, so they never fill the limit."""
    with contextlib.ExitStack() as stack:
        flood = []
        for _ in range(LIMIT + 20):
            sock = stack.enter_context(connect(service))
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nx")
            flood.append(sock)
        assert all(map(closed_by_server, flood))
        statuses = [scrape(service) for _ in range(10)]
        assert statuses.count(200) >= 8, statuses
    assert len(log_lines(service, "announcing a body")) == 1  # for the flood, not per request


def test_a_flood_of_bad_requests_writes_a_line_per_reason(service):
    with connect(service) as sock:
        for number in range(50):
            sock.sendall(f"GET /nowhere-{number} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert one_response(sock).startswith(b"HTTP/1.1 404")
    for _ in range(50):
        with connect(service) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert closed_by_server(sock)
    # A 404 is an answer, not an event: the service's LOGGING keeps django.request's 4xx lines out.
    assert log_lines(service, "Not Found") == []
    assert len(log_lines(service, "Invalid HTTP request")) == 1


# Kept-alive connections and the limit


def kept_alive(served: Served, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """`count` connections that have each had one answer and are kept alive."""
    connections = []
    for _ in range(count):
        sock = connect(served, source)
        sock.sendall(REQUEST)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        connections.append(sock)
    return connections


def test_kept_alive_connections_do_not_keep_scrapes_away(service):
    flood = kept_alive(service, LIMIT)
    try:
        # At the limit: each scrape's connection is made room for by closing the oldest idle one.
        statuses = [scrape(service) for _ in range(10)]
        assert statuses.count(200) >= 8, statuses
        assert closed_by_server(flood[0])  # the oldest went first (a quiet service keeps 75 s)
    finally:
        for sock in flood:
            sock.close()


def test_kept_alive_connections_time_out_soon_once_the_service_is_busy(tmp_path):
    # A request deadline longer than the wait: only the busy keep-alive timeout can close them.
    env = service_env(tmp_path, DBHEALTH_REQUEST_HEAD_TIMEOUT="600")
    with serve(env, tmp_path / "service.log", "/livez") as served:
        quiet = kept_alive(served, 1)[0]
        busy = kept_alive(served, LIMIT // 2 + 5)  # past half the limit: busy
        try:
            assert closed_by_server(busy[-1])  # within SLACK: not the 75 s of a quiet service
            assert waiting(quiet)  # it went idle while the service was quiet: 75 s
        finally:
            for sock in [quiet, *busy]:
                sock.close()


def test_heads_trickling_in_do_not_keep_scrapes_away(tmp_path):
    # A request deadline longer than the test: only making room can close them.
    env = service_env(tmp_path, DBHEALTH_REQUEST_HEAD_TIMEOUT="600")
    with serve(env, tmp_path / "service.log", "/livez") as served, contextlib.ExitStack() as stack:
        slow = []
        for _ in range(LIMIT):
            sock = stack.enter_context(connect(served))
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
            slow.append(sock)
        statuses = [scrape(served) for _ in range(10)]
        assert statuses.count(200) >= 8, statuses
        # The first scrape was made room for by closing one of them (every slot was theirs);
        # each later one took the slot its predecessor left.
        assert sum(not waiting(sock) for sock in slow) >= 1


class ReconnectingIdleFlood:
    """`count` connections that never send a byte, each opened again as soon as the server closes
    it, from a background thread for at most `max_seconds`."""

    def __init__(self, served: Served, count: int, max_seconds: float = 120.0) -> None:
        self.served, self.count, self.max_seconds = served, count, max_seconds
        self.reconnections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idle-flood", daemon=True)

    def __enter__(self) -> "ReconnectingIdleFlood":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=SLACK)

    def _run(self) -> None:
        sockets: list[socket.socket] = []
        give_up_at = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < give_up_at:
                kept = [sock for sock in sockets if waiting(sock)]
                for sock in set(sockets) - set(kept):
                    sock.close()
                    self.reconnections += 1
                sockets = kept
                while len(sockets) < self.count:
                    with contextlib.suppress(OSError):
                        sockets.append(connect(self.served))
                self._stop.wait(0.05)
        finally:
            for sock in sockets:
                sock.close()


def test_an_idle_flood_that_reconnects_keeps_no_scrape_away(service):
    with ReconnectingIdleFlood(service, LIMIT + 40) as flood:
        wait_for(lambda: flood.reconnections >= 40, "the flood never filled the limit")
        statuses = [scrape(service) for _ in range(10)]
    assert statuses.count(200) >= 8, statuses
    # One line, however many connections were closed for room.
    assert len(log_lines(service, "closed the oldest")) == 1


# One client address


def test_one_address_cannot_take_every_slot(tmp_path):
    env = service_env(tmp_path, DBHEALTH_CONNECTIONS_PER_CLIENT=str(PER_CLIENT))
    with serve(env, tmp_path / "service.log", "/livez") as served:
        prometheus = kept_alive(served, 1, source="127.0.0.2")[0]
        flood = kept_alive(served, LIMIT + 20, source="127.0.0.1")
        try:
            still_open = [sock for sock in flood if waiting(sock)]
            assert len(still_open) == PER_CLIENT, len(still_open)
            # The other address's kept-alive connection was never closed to make room.
            assert waiting(prometheus)
            prometheus.sendall(REQUEST)
            assert one_response(prometheus).startswith(b"HTTP/1.1 200")
            assert scrape(served, source="127.0.0.3") == 200
        finally:
            for sock in [prometheus, *flood]:
                sock.close()


# TLS


@contextlib.contextmanager
def tls_service(tmp_path: Path, request_timeout: str) -> Iterator[Served]:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
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
    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    client = ssl.create_default_context(cafile=str(cert))
    env = service_env(tmp_path, DBHEALTH_WEB_CONFIG_FILE=str(config))
    env["DBHEALTH_REQUEST_HEAD_TIMEOUT"] = request_timeout
    with serve(env, tmp_path / "service.log", "/livez", ssl_context=client) as served:
        yield served


def test_a_tls_handshake_that_never_starts_is_closed_at_the_request_deadline(tmp_path):
    with tls_service(tmp_path, request_timeout="1.5") as served, connect(served) as sock:
        assert closed_by_server(sock)  # no ClientHello, ever: asyncio alone would wait 60 s


def test_tls_handshakes_count_against_the_limit(tmp_path):
    with tls_service(tmp_path, request_timeout="600") as served, contextlib.ExitStack() as stack:
        flood = [stack.enter_context(connect(served)) for _ in range(LIMIT + 20)]
        # The oldest handshakes are closed to make room as soon as the limit is reached.
        assert all(map(closed_by_server, flood[:20]))
        assert waiting(flood[-1])
        status, _ = served.get("/metrics")
        assert status == 200


# Clients that stop reading


def test_a_client_that_stops_reading_its_answers_is_closed_at_the_request_deadline(tmp_path):
    """Pipelined scrapes whose answers are never read: the buffers fill and the server's writes
    stall. Such a connection is being answered, which room is never made from, so it needs a
    deadline of its own."""
    env = service_env(tmp_path, DBHEALTH_REQUEST_HEAD_TIMEOUT="1.5")
    with serve(env, tmp_path / "service.log", "/livez") as served, connect(served) as sock:
        # 1,300 answers of ~25 KiB: far more than the socket buffers hold; 58 KiB of requests.
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 1300)
        wait_for(
            lambda: log_lines(served, "stopped reading its answer"),
            "a connection that reads nothing was never closed",
        )


def test_requests_pipelined_far_ahead_of_their_answers_close_the_connection(service):
    requests = REQUEST * (2**20 // len(REQUEST))  # 1 MiB of them, sent at once
    with connect(service) as sock:
        with contextlib.suppress(ConnectionError):  # closed while still sending
            sock.sendall(requests)
        answers = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                answers += chunk
    assert answers.count(b"HTTP/1.1 200") < requests.count(b"GET ")
    assert log_lines(service, "ahead of answers")
