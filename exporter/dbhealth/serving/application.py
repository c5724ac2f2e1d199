"""The application every entry point serves: the service's URLs, middleware and web
configuration, and the scrape path in front of Django.

`serve` (serving/server.py) runs it under its own uvicorn; `dbhealth.asgi` hands it to any ASGI
server, and `dbhealth.wsgi` builds its WSGI twin from apply_service_settings. Nothing here needs
uvicorn (the `serve` extra): the other entry points work without it.
"""

from django.conf import settings
from django.urls import clear_url_caches

from dbhealth.serving import web_config
from dbhealth.serving.scrape_path import ScrapePath
from dbhealth.serving.service_settings import SERVICE_MIDDLEWARE, SERVICE_URLCONF

# Request heads larger than these never reach Django (see RequestHeadLimit).
MAX_REQUEST_TARGET_BYTES = 4 * 1024
MAX_REQUEST_HEAD_BYTES = 8 * 1024


def apply_service_settings() -> None:
    """Serve dbhealth's URLs through dbhealth's middleware, whatever the settings module says.

    With a host project's settings, its DBHEALTH_ALLOWED_HOSTS (when set) replaces ALLOWED_HOSTS.
    This process is dbhealth's own, so /metrics carries its process registry (process_*,
    python_*, django_http_*) unless the settings say otherwise. Call before the ASGI application
    is built: Django reads MIDDLEWARE when it builds the handler.
    """
    settings.ROOT_URLCONF = SERVICE_URLCONF
    settings.MIDDLEWARE = list(SERVICE_MIDDLEWARE)
    if not hasattr(settings, "DBHEALTH_EXPORT_PROCESS_METRICS"):
        settings.DBHEALTH_EXPORT_PROCESS_METRICS = True
    hosts = getattr(settings, "DBHEALTH_ALLOWED_HOSTS", None)
    if hosts is not None:
        if isinstance(hosts, str):
            hosts = [host.strip() for host in hosts.split(",") if host.strip()]
        settings.ALLOWED_HOSTS = list(hosts)
    clear_url_caches()


class RequestHeadLimit:
    """ASGI middleware: 414 for a request target over MAX_REQUEST_TARGET_BYTES, 431 for headers
    over MAX_REQUEST_HEAD_BYTES, before Django sees the request.

    uvicorn's h11_max_incomplete_event_size (400) stops only a head still incomplete after a read:
    one that arrives whole in a single read passes h11 at any size up to the read size.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope["path"].encode()
            target = len(path) + 1 + len(scope["query_string"])
            head = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if target > MAX_REQUEST_TARGET_BYTES:
                return await refuse(send, 414, "request line too long")
            if head > MAX_REQUEST_HEAD_BYTES:
                return await refuse(send, 431, "request headers too large")
        await self.app(scope, receive, send)


class ResponseHeaders:
    """ASGI middleware: set the web configuration's headers (http_server_config.headers) on every
    response, replacing any of the same name, as the toolkit's Header().Set does. They are those
    of the file as it is when the request starts (web_config re-reads it when it changes)."""

    def __init__(self, app) -> None:
        self.app = app
        self._source: tuple[tuple[str, str], ...] = ()
        self._encoded: tuple[list[tuple[bytes, bytes]], set[bytes]] = ([], set())

    def current(self) -> tuple[list[tuple[bytes, bytes]], set[bytes]]:
        """The headers, encoded, and their lower-case names (encoded again only on a change)."""
        headers = web_config.active_headers()
        if headers is not self._source:  # runs on the event loop only: no lock needed
            encoded = [(name.encode(), value.encode()) for name, value in headers]
            self._source, self._encoded = headers, (encoded, {name.lower() for name, _ in encoded})
        return self._encoded

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers, names = self.current()
        if not headers:
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def refuse(send, status: int, message: str) -> None:
    body = f"{message}\n".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def service_application(web: web_config.WebConfig | None):
    """dbhealth's ASGI application as every entry point serves it (serve, dbhealth.asgi): the
    service's URLs and middleware, the web configuration's users and headers in force, and
    /metrics and /probe on the scrape path (serving/scrape_path.py) in front of Django."""
    from django.core.asgi import get_asgi_application

    apply_service_settings()
    web_config.activate(web)
    application = RequestHeadLimit(ScrapePath(get_asgi_application()))
    if web is not None:  # headers may come with a later version of the file
        application = ResponseHeaders(application)
    return application
