"""Odd requests get a short 4xx: no traceback, no DEBUG page, nothing echoed back."""

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
        # gunicorn refuses request lines over 4094 bytes before Django sees them.
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
