"""A client gets DBHEALTH_REQUEST_HEAD_TIMEOUT seconds to send a whole request head; idle time
between requests on a kept-alive connection is the keep-alive timeout's business, not this one's.
The ConnectionTable's choice of which connection makes room is tested here on its own; the
floods themselves are in tests/security/test_floods.py.

Each test waits for the server to close a connection (an event) within a generous bound; none
compares durations.
"""

import contextlib
import socket
import time

import h11
import pytest
from dbhealth.serving.http_protocol import ConnectionLimits, ConnectionTable, announces_body

from tests.security.http_client import one_response
from tests.serving import manage, serve

HEAD_TIMEOUT = 1.5
# How long a test waits for the server to act on a deadline it should have passed by then.
SLACK = 15.0
REQUEST = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("head_deadline")
    env = {
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "DBHEALTH_REQUEST_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
    }
    with serve(env, tmp_path / "service.log", "/livez") as served:
        yield served


def connect(service) -> socket.socket:
    host, _, port = service.address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=SLACK)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_connection_that_sends_nothing_is_closed(service):
    with connect(service) as sock:
        assert read_until_closed(sock) == b""


def test_a_head_trickling_in_is_closed_although_bytes_keep_coming(service):
    with connect(service) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        give_up_at = time.monotonic() + SLACK
        closed = False
        lines = 0
        while time.monotonic() < give_up_at and not closed:
            try:
                sock.sendall(f"X-Slow-{lines}: 1\r\n".encode())
                lines += 1
            except OSError:  # reset: the server closed it
                closed = True
                break
            sock.settimeout(HEAD_TIMEOUT / 5)
            with contextlib.suppress(TimeoutError):
                closed = sock.recv(1) == b""
        assert closed, f"still open after {lines} header lines"
        assert lines >= 2  # it was sending all along, so the deadline is not an idle timeout


def test_a_kept_alive_connection_may_idle_longer_than_the_head_deadline(service):
    with connect(service) as sock:
        sock.sendall(REQUEST)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(HEAD_TIMEOUT * 2)  # idle between requests: the keep-alive timeout (75 s) rules
        sock.sendall(REQUEST)
        assert one_response(sock).startswith(b"HTTP/1.1 200")


def test_a_head_sent_in_pieces_within_the_deadline_is_answered(service):
    with connect(service) as sock:
        for piece in (REQUEST[:10], REQUEST[10:25], REQUEST[25:]):
            sock.sendall(piece)
            time.sleep(HEAD_TIMEOUT / 10)
        assert one_response(sock).startswith(b"HTTP/1.1 200")


def test_the_unfinished_head_of_a_pipelined_request_is_closed(service):
    with connect(service) as sock:
        sock.sendall(REQUEST + b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        assert read_until_closed(sock) == b""


def test_a_bad_timeout_is_one_line(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DBHEALTH_DATA_DIR": str(tmp_path),
        "DBHEALTH_REQUEST_HEAD_TIMEOUT": "soon",
    }
    result = manage(["serve", "--bind", "127.0.0.1:1"], env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "dbhealth: DBHEALTH_REQUEST_HEAD_TIMEOUT must be a positive number of seconds; got 'soon'"
    )


class FakeConnection:
    """What ConnectionTable needs of a connection: its client's address and a way to close it."""

    def __init__(self, table, client: str = "10.0.0.1") -> None:
        self.table, self.client_address, self.closed = table, client, False

    def close_connection(self) -> None:
        self.closed = True
        self.table.release(self)


def table_of(connections: int, per_client: int) -> ConnectionTable:
    return ConnectionTable(ConnectionLimits(connections=connections, per_client=per_client))


def admitted(table, client: str = "10.0.0.1") -> FakeConnection:
    connection = FakeConnection(table, client)
    assert table.admit(connection)
    return connection


def test_room_is_made_from_the_longest_waiting_then_the_longest_receiving_never_the_answered():
    table = table_of(connections=4, per_client=4)
    answered, receiving, idle_old, idle_new = (admitted(table) for _ in range(4))
    table.set_answering(answered)
    table.set_receiving(receiving)
    table.set_waiting(idle_old)  # kept alive after an answer: waiting again, newest of the three
    table.set_waiting(idle_new)
    # Each newcomer is answered at once, as a scrape is, so it is never the one to go.
    table.set_answering(admitted(table))
    assert idle_old.closed and not idle_new.closed
    table.set_answering(admitted(table))
    assert idle_new.closed and not receiving.closed
    table.set_answering(admitted(table))
    assert receiving.closed
    assert not answered.closed and len(table.open) == 4
    assert not table.admit(FakeConnection(table))  # every one is being answered


def test_a_new_connection_is_refused_when_every_other_is_being_answered():
    table = table_of(connections=2, per_client=2)
    for connection in (admitted(table), admitted(table)):
        table.set_answering(connection)
    assert not table.admit(FakeConnection(table))
    assert len(table.open) == 2


def test_a_client_at_its_share_makes_room_among_its_own_connections_only():
    table = table_of(connections=10, per_client=2)
    other = admitted(table, "10.0.0.2")  # idle longest of all
    mine = [admitted(table, "10.0.0.1") for _ in range(2)]
    admitted(table, "10.0.0.1")
    assert mine[0].closed and not mine[1].closed and not other.closed
    assert table.per_client["10.0.0.1"] == 2


def test_only_a_body_that_is_announced_is_refused():
    def request(*headers: tuple[str, str]) -> h11.Request:
        return h11.Request(method="POST", target="/", headers=[("Host", "x"), *headers])

    assert announces_body(request(("Content-Length", "1")))
    assert announces_body(request(("Transfer-Encoding", "chunked")))
    assert not announces_body(request(("Content-Length", "0")))
    assert not announces_body(request())
