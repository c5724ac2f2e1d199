"""The scrape path: GET and HEAD of /metrics and /probe answered without Django's request path.

A scrape answered from memory renders in under a millisecond; Django's ASGI handler around it
(a request object, the middleware chain, URL resolving, a thread-sensitive context with an
executor of its own per request, request signals) cost more than the answer itself. The
service's ASGI application (serving/application.py, service_application) therefore puts ScrapePath
in front of Django: it answers these two paths itself and hands everything else to Django.

It answers exactly as Django would (tests/dbhealth/serving/test_scrape_path.py compares both):
the same answer functions as the views (views.metrics_response, views.probe_response), the
same token and basic auth check (auth.decide; a password check is awaited on the event loop, so
a request waiting for one holds no thread), the same headers (never_cache's, SecurityMiddleware's
own process_response, Content-Length as CommonMiddleware sets it); the web configuration's
headers are added around both paths by application.ResponseHeaders. Whatever Django would answer
differently is handed to Django: a Host not in ALLOWED_HOSTS (400), other methods (405), a
query string that is not UTF-8, and settings that change the answer of every path
(DISALLOWED_USER_AGENTS, SECURE_SSL_REDIRECT, PREPEND_WWW, a MIDDLEWARE or URLconf other than
the service's own, FORCE_SCRIPT_NAME).

What differs: django-prometheus's django_http_* metrics do not count these requests (Prometheus
records every scrape itself: scrape_duration_seconds, up), and an error in rendering is logged
on the `dbhealth` logger and answered 500 without Django's technical page.
"""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from django.conf import settings
from django.http import HttpResponse, QueryDict
from django.http.request import split_domain_port, validate_host
from django.middleware.security import SecurityMiddleware
from django.utils.cache import add_never_cache_headers
from django.utils.datastructures import CaseInsensitiveMapping

from dbhealth.serving import auth, views
from dbhealth.serving.service_settings import SERVICE_MIDDLEWARE, SERVICE_URLCONF

logger = logging.getLogger("dbhealth")

# Scrapes rendered at once; more wait for a thread. A scrape waits for probes at most its budget,
# and a /probe job scrapes every alias at the same moment, so this is as many as a large fleet's
# /probe scrapes; idle threads are reused, so steady scraping keeps only a handful.
SCRAPE_THREADS = 256
SAFE_METHODS = frozenset({"GET", "HEAD"})
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]  # Django's own, for DEBUG with no ALLOWED_HOSTS

Answer = Callable[[QueryDict, CaseInsensitiveMapping], HttpResponse]
ANSWERS: dict[str, Answer] = {
    "/metrics": lambda query, headers: views.metrics_response(headers),
    "/probe": views.probe_response,
}


class ScrapePath:
    """ASGI middleware: /metrics and /probe answered here, everything else by `app` (Django)."""

    def __init__(self, app) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(SCRAPE_THREADS, thread_name_prefix="dbhealth-scrape")
        # Built once, as Django builds its middleware once: it reads its settings here.
        self.security = SecurityMiddleware(lambda request: HttpResponse())

    async def __call__(self, scope, receive, send) -> None:
        answer = ANSWERS.get(scope["path"]) if scope["type"] == "http" else None
        if scope.get("root_path"):  # mounted under a prefix: Django resolves what that means
            answer = None
        if answer is None or scope["method"] not in SAFE_METHODS or not answers_as_django():
            return await self.app(scope, receive, send)
        headers = request_headers(scope["headers"])
        try:
            query = QueryDict(scope["query_string"].decode())
        except UnicodeDecodeError:
            return await self.app(scope, receive, send)
        if not host_allowed(headers):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("", 0))[0]
        try:
            challenge = await auth.refused_without_a_thread(
                headers.get("Authorization", ""), client
            )
        except Exception:  # an unreadable token file: Django answers it (500) as for any path
            return await self.app(scope, receive, send)
        if challenge is not None:
            response = auth.challenge_response(challenge)
        else:
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(self.executor, render, answer, query, headers)
        add_never_cache_headers(response)
        self.finish(response, secure=scope.get("scheme") == "https")
        await send_response(response, send)

    def finish(self, response: HttpResponse, *, secure: bool) -> None:
        """The headers Django's service middleware adds: SecurityMiddleware's (its own code) and
        CommonMiddleware's Content-Length."""
        self.security.process_response(SimpleNamespace(is_secure=lambda: secure), response)
        if not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))


def answers_as_django() -> bool:
    """The settings leave Django's answer to these paths what ScrapePath writes (read on every
    request, so overridden settings count as they do for Django)."""
    return (
        settings.ROOT_URLCONF == SERVICE_URLCONF
        and list(settings.MIDDLEWARE) == SERVICE_MIDDLEWARE
        and not settings.DISALLOWED_USER_AGENTS
        and not settings.SECURE_SSL_REDIRECT
        and not settings.PREPEND_WWW
        and settings.FORCE_SCRIPT_NAME is None
        and not settings.USE_X_FORWARDED_HOST
    )


def request_headers(raw: list[tuple[bytes, bytes]]) -> CaseInsensitiveMapping:
    """The request's headers by name, repeated ones joined with "," as Django's ASGIRequest
    does."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin1"), value.decode("latin1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return CaseInsensitiveMapping(headers)


def host_allowed(headers: CaseInsensitiveMapping) -> bool:
    """The Host header passes ALLOWED_HOSTS as in HttpRequest.get_host (without one, Django
    decides)."""
    host = headers.get("Host")
    if not host:
        return False
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = DEBUG_HOSTS
    return bool(domain) and validate_host(domain, allowed)


def render(answer: Answer, query: QueryDict, headers: CaseInsensitiveMapping) -> HttpResponse:
    try:
        return answer(query, headers)
    except Exception:
        logger.exception("rendering a scrape failed")
        return views.plain_error("internal error", 500)


async def send_response(response: HttpResponse, send) -> None:
    headers = [(name.encode("latin1"), value.encode("latin1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
