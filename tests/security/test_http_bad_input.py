"""Odd requests get a short 4xx: no traceback, no DEBUG page, nothing echoed back."""

import select
import socket

import pytest

from tests.security.http_client import request

NO_DEBUG = ("Traceback", "DEBUG = True", "URLconf", "Django tried these URL patterns", "<script>")


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/probe", 400),
        ("/probe?alias=", 400),
        ("/probe?alias=pg_good&alias=pg_wrong", 400),
        ("/probe?alias=" + "x" * 3000, 400),
        ("/probe?alias=%ff%fe%00", 404),
        ("/probe?alias=%3Cscript%3Ealert(1)%3C/script%3E", 404),
        ("/probe?alias=pg_good%0d%0aX-Injected:%201", 404),
        ("/metrics?" + "a=b&" * 900, 200),
        # Request lines over 4 KiB are refused before Django sees them (dbhealth.serving.server).
        ("/metrics?" + "a" * 10000, 414),
        ("/nope", 404),
        ("/metrics/../../etc/passwd", 404),
        ("/%ff", 404),
    ],
)
def test_odd_query_strings_and_paths(secured, target, status) -> None:
    reply = request(
        secured.served.address, "GET", target, {"Authorization": f"Bearer {secured.token}"}
    )
    assert reply.status == status, reply.body[:200]
    assert not any(marker in reply.body for marker in NO_DEBUG)
    assert "x-injected" not in reply.headers
    if status == 400 and target.startswith("/probe"):
        assert reply.body == "exactly one alias parameter is required, e.g. /probe?alias=default\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/probe?alias=pg_good", "/"])
def test_unexpected_methods_are_405(secured, method, path) -> None:
    reply = request(
        secured.served.address, method, path, {"Authorization": f"Bearer {secured.token}"}
    )
    assert reply.status == 405
    assert set(reply.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert not any(marker in reply.body for marker in NO_DEBUG)


def test_a_host_outside_allowed_hosts_is_400_without_details(secured) -> None:
    reply = request(
        secured.served.address,
        "GET",
        "/metrics",
        {"Host": "evil.example", "Authorization": f"Bearer {secured.token}"},
    )
    assert reply.status == 400
    assert "evil.example" not in reply.body
    assert not any(marker in reply.body for marker in NO_DEBUG)


def test_headers_over_8_kib_are_431(secured) -> None:
    headers = {"Authorization": f"Bearer {secured.token}", "X-Padding": "p" * 9000}
    reply = request(secured.served.address, "GET", "/metrics", headers)
    assert reply.status == 431
    assert reply.body == "request headers too large\n"


def test_a_request_head_trickling_past_8_kib_is_400(secured) -> None:
    """uvicorn (h11) refuses a head still incomplete past 8 KiB: a slowloris cannot grow it."""
    host, port = secured.served.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for number in range(12):
            # Stop sending once the server has answered, so that its answer is not reset away.
            if select.select([sock], [], [], 0.1)[0]:
                break
            sock.sendall(f"X-Padding-{number}: {'p' * 1000}\r\n".encode())
        answer = sock.recv(4096).decode()
    assert number >= 8  # more than 8 KiB went out before the answer
    assert answer.startswith("HTTP/1.1 400 "), answer


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_health_of_the_process_needs_no_token_and_tells_nothing(secured, path) -> None:
    reply = request(secured.served.address, "GET", path, {})
    assert reply.status == 200
    assert reply.body.startswith("ok")
    assert "pg_" not in reply.body and secured.token not in reply.body
