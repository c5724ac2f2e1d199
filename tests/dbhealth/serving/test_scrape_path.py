"""The scrape path answers /metrics and /probe as Django's request path does, without it.

Each request goes to the service's ASGI stack twice, in this process: once through ScrapePath
in front of Django, once to Django alone. Status, headers (Expires is a time) and body must be
equal, and Django's request path must have run only for the requests the scrape path hands on.
"""

import asyncio
import base64
import logging
import re
import sqlite3

import bcrypt
import pytest
from dbhealth.serving import web_config
from dbhealth.serving.scrape_path import ScrapePath
from django.core.asgi import get_asgi_application
from django.core.signals import request_started
from django.test import override_settings

PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PASSWORD = "scrape-path-password"
AGE_VALUE = re.compile(rb"^(\w+_age_seconds\{[^}]*\}) \S+$", re.MULTILINE)


def call(app, method: str, path: str, headers: dict[str, str], client: str = "127.0.0.1"):
    """(status, headers, body, Expires given) of one request to an ASGI app, for comparing: the
    Content-Length checked against the body and left out, Expires (a time) left out, and ages
    (times too) without their values."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": (client, 40000),
        "server": ("127.0.0.1", 10433),
    }
    messages = []

    async def run():
        delivered = False

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)  # the client stays until the answer is sent

        async def send(message):
            messages.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    start = messages[0]
    head = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert int(head.pop("content-length", len(body))) == len(body)
    expires = head.pop("expires", None) is not None
    return start["status"], head, AGE_VALUE.sub(rb"\1", body), expires


@pytest.fixture
def served(exporter_settings, tmp_path):
    """Both stacks on one SQLite alias answered from memory (so both bodies are the same)."""
    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    exporter_settings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}},
        min_interval=3600.0,
    )
    # The process registry counts requests (django_http_*): its values differ between two calls.
    with override_settings(DBHEALTH_EXPORT_PROCESS_METRICS=False):
        django_app = get_asgi_application()
        fast = ScrapePath(django_app)
        call(django_app, "GET", "/metrics", {})  # the first probe; later scrapes read memory
        yield fast, django_app
        fast.executor.shutdown()


@pytest.fixture
def django_requests():
    seen = []

    def count(**kwargs):
        seen.append(1)

    request_started.connect(count)
    yield seen
    request_started.disconnect(count)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


REQUESTS = [
    ("GET", "/metrics", {"Accept": PROMETHEUS_3_ACCEPT}),
    ("GET", "/metrics", {"Accept": "text/plain", "X-Prometheus-Scrape-Timeout-Seconds": "4"}),
    ("HEAD", "/metrics", {}),
    ("GET", "/probe?alias=default", {"Accept": PROMETHEUS_3_ACCEPT}),
    ("GET", "/probe?alias=nowhere", {}),
    ("GET", "/probe", {}),
    ("GET", "/probe?alias=default&alias=default", {}),
]


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
def test_the_scrape_path_answers_as_django_does(served, django_requests, method, path, headers):
    fast, django_app = served
    ours = call(fast, method, path, headers)
    assert django_requests == []  # answered without Django's request path
    theirs = call(django_app, method, path, headers)
    assert django_requests == [1]
    assert ours == theirs
    assert ours[3]  # Expires, with never_cache's Cache-Control
    assert ours[1]["cache-control"] == "max-age=0, no-cache, no-store, must-revalidate, private"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer the-token", "Bearer not-the-token", basic("x", "the-token")]
)
def test_the_token_is_asked_for_as_django_asks(served, django_requests, authorization):
    fast, django_app = served
    headers = {"Authorization": authorization} if authorization else {}
    with override_settings(DBHEALTH_AUTH_TOKEN="the-token"):
        ours = call(fast, "GET", "/metrics", headers)
        assert django_requests == []
        theirs = call(django_app, "GET", "/metrics", headers)
    assert ours == theirs
    expected = 200 if authorization and "not" not in authorization else 401
    assert ours[0] == expected


@pytest.fixture
def users(tmp_path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    web_config.activate(web_config.load_web_config(path))
    yield
    web_config.activate(None)


@pytest.mark.parametrize(
    "authorization",
    [None, basic("prometheus", PASSWORD), basic("prometheus", "wrong"), basic("nobody", PASSWORD)],
)
def test_basic_auth_users_are_asked_for_as_django_asks(
    served, users, django_requests, authorization
):
    fast, django_app = served
    headers = {"Authorization": authorization} if authorization else {}
    ours = call(fast, "GET", "/probe?alias=default", headers)
    assert django_requests == []
    theirs = call(django_app, "GET", "/probe?alias=default", headers)
    assert ours == theirs
    assert ours[0] == (200 if authorization == basic("prometheus", PASSWORD) else 401)


@pytest.mark.parametrize(
    ("method", "path", "headers", "settings"),
    [
        ("POST", "/metrics", {}, {}),
        ("GET", "/metrics", {}, {"ALLOWED_HOSTS": ["elsewhere"]}),
        ("GET", "/metrics", {}, {"SECURE_SSL_REDIRECT": True}),
        ("GET", "/livez", {}, {}),
    ],
)
def test_what_django_would_answer_otherwise_is_left_to_django(
    served, django_requests, method, path, headers, settings
):
    fast, django_app = served
    with override_settings(**settings):
        ours = call(fast, method, path, headers)
        assert django_requests == [1]
        theirs = call(django_app, method, path, headers)
    assert ours == theirs
    assert ours[0] in (200, 301, 400, 405)


def test_a_security_setting_changes_both_paths_alike(served, django_requests):
    with override_settings(SECURE_REFERRER_POLICY="no-referrer", SECURE_CONTENT_TYPE_NOSNIFF=False):
        django_app = get_asgi_application()
        ours = call(ScrapePath(django_app), "GET", "/metrics", {})
        theirs = call(django_app, "GET", "/metrics", {})
    assert django_requests == [1]
    assert ours == theirs
    assert ours[1]["referrer-policy"] == "no-referrer"
    assert "x-content-type-options" not in ours[1]


def test_a_flood_of_wrong_tokens_is_one_warning_line(served, caplog, monkeypatch):
    from dbhealth.serving import auth

    fast, _ = served
    monkeypatch.setattr(auth, "failed_logins", auth.FailedLogins())
    with override_settings(DBHEALTH_AUTH_TOKEN="the-token"):
        for _ in range(50):
            assert call(fast, "GET", "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        assert call(fast, "GET", "/metrics", {})[0] == 401  # no credentials: not a failed login
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.getMessage().split(",")[0] for record in warnings] == [
        "refused 1 request(s) with a wrong token or password"
    ]
