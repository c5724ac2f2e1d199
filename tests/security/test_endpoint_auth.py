"""Bearer token or basic auth on every endpoint, configured from a file; off by default."""

import base64

import pytest

from tests.security.http_client import request
from tests.serving import manage, serve
from tests.support.ports import free_port

PATHS = ["/", "/metrics", "/healthz", "/probe?alias=pg_good"]


@pytest.mark.parametrize("path", PATHS)
def test_without_credentials_every_endpoint_says_401(secured, path) -> None:
    reply = request(secured.served.address, "GET", path)
    assert reply.status == 401
    assert reply.body == "authentication required\n"
    assert "Bearer" in reply.headers["www-authenticate"]
    assert "Basic" in reply.headers["www-authenticate"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        "Bearer ",
        "Bearer scrape-token-for-tests-and-more",
        "Basic " + base64.b64encode(b"prometheus:wrong").decode(),
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Token scrape-token-for-tests",
        "scrape-token-for-tests",
    ],
)
def test_wrong_credentials_are_refused(secured, authorization) -> None:
    reply = request(secured.served.address, "GET", "/healthz", {"Authorization": authorization})
    assert reply.status == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer scrape-token-for-tests",
        "bearer scrape-token-for-tests",
        "Basic " + base64.b64encode(b"prometheus:scrape-token-for-tests").decode(),
    ],
)
def test_the_token_from_the_file_opens_the_metrics(secured, authorization) -> None:
    reply = request(secured.served.address, "GET", "/metrics", {"Authorization": authorization})
    assert reply.status == 200
    assert 'dbhealth_up{alias="pg_good",vendor="postgresql"} 1.0' in reply.body


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"\n", "the file is empty"),
        (None, "No such file or directory"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_an_unusable_token_file_stops_start_up_instead_of_opening_up(tmp_path, content, reason):
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_bytes(content)
    env = {
        "DBHEALTH_AUTH_TOKEN_FILE": str(token_file),
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
    }
    # Were it to serve, it would serve here until the timeout fails the test.
    served = manage(["serve", "--bind", f"127.0.0.1:{free_port()}"], env)
    assert served.returncode == 1
    assert served.stderr.startswith(f"dbhealth: DBHEALTH_AUTH_TOKEN_FILE {token_file}: ")
    assert reason in served.stderr and served.stderr.count("\n") == 1, served.stderr
    check = manage(["check", "--deploy"], env)  # secrets: deploy checks
    assert check.returncode == 1
    assert f"(dbhealth.E003) DBHEALTH_AUTH_TOKEN_FILE {token_file}: " in check.stderr
    assert reason in check.stderr


def test_off_by_default(tmp_path) -> None:
    env = {"DBHEALTH_DATA_DIR": str(tmp_path / "data")}
    with serve(env, tmp_path / "service.log", "/sd") as served:
        reply = request(served.address, "GET", "/metrics")
    assert reply.status == 200
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in reply.body
