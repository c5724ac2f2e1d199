"""The dbhealth service's HTTP server: uvicorn, in this process, serving Django's ASGI application.

Why one process: dbhealth.probing.service keeps every database connection, every probe in flight
and all probe state in memory, so exactly one process owns probing and every scrape, from any
number of Prometheus servers, shares its probes. Worker processes would each probe on their own.

Why uvicorn: its asyncio loop holds client connections without a thread each, so idle and slow
("slowloris") clients cost a socket, never the thread a scrape needs (gunicorn's gthread worker
gives every accepted connection a worker thread). Django runs each sync view in a thread of its
own (ThreadSensitiveContext per request).

TLS, basic auth users and response headers come from DBHEALTH_WEB_CONFIG_FILE, the Prometheus
exporter-toolkit's web configuration format (web_config.py). The file is read and every
certificate loaded before anything is bound. TLS is not uvicorn's (its ssl_* options have no
minimum or maximum TLS version, and asyncio's handshakes run outside any connection limit):
http_protocol does the handshake with web_config.ReloadingContext, which gives each new
connection the context of the file as it is now (the file and its certificates are re-read when
they change).

Hostile clients (floods of idle, slow, kept-alive or handshaking connections, request bodies)
are http_protocol's business: its module docstring lists the limits and deadlines.

Embedded in a host project (`python -m django serve` with the host's settings, `exporter` in its
INSTALLED_APPS), this process serves dbhealth's own URLconf and middleware, not the host's: it
runs beside the host's web workers, which then never probe.
"""

import ipaddress
import logging
import resource

import uvicorn

from dbhealth.configuration.environment import env_count, env_seconds
from dbhealth.serving import throttle, web_config
from dbhealth.serving.application import MAX_REQUEST_HEAD_BYTES, service_application
from dbhealth.serving.http_protocol import (
    REQUEST_HEAD_TIMEOUT_SECONDS,
    ConnectionLimits,
    guarded_protocol,
)

# Open client connections at most (idle ones and TLS handshakes count too, so it is generous;
# DBHEALTH_MAX_CONNECTIONS lowers it): at the limit the connection waiting longest is closed to
# make room for a new one (http_protocol), and one that does not send a whole request within
# DBHEALTH_REQUEST_HEAD_TIMEOUT seconds is closed.
MAX_CONNECTIONS = 1000
MAX_CONNECTIONS_SETTING = "DBHEALTH_MAX_CONNECTIONS"
HEAD_TIMEOUT_SETTING = "DBHEALTH_REQUEST_HEAD_TIMEOUT"
# The connections one client address may hold, by default: a quarter of the limit. Behind a
# reverse proxy, or on loopback, every client has the proxy's address (see README).
PER_CLIENT_SETTING = "DBHEALTH_CONNECTIONS_PER_CLIENT"
PER_CLIENT_SHARE = 0.25
# Connections waiting to be accepted, and so the most the event loop accepts in one go (asyncio
# accepts up to the backlog at once, before it can close any beyond the limit).
ACCEPT_BACKLOG = 128
# File descriptors kept for everything but client connections: accept bursts, database
# connections (at most max_connections_per_server per server), log files, the interpreter's own.
# A connection accepted in one turn of the event loop is closed (if it must be) two turns later,
# when its protocol has been made, and its descriptor freed in the turn after: under a flood three
# bursts more are accepted meanwhile (measured: "Too many open files" with one burst kept).
ACCEPT_BURSTS_IN_FLIGHT = 4
RESERVED_FILES = ACCEPT_BURSTS_IN_FLIGHT * ACCEPT_BACKLOG + 128
# On SIGTERM, requests in flight get this long to finish (a scrape ends within its budget).
GRACEFUL_SHUTDOWN_SECONDS = 15


def parse_bind(text: str) -> tuple[str, int]:
    """HOST:PORT, or [IPV6]:PORT, as (host, port); ValueError with a one-line reason."""
    host, separator, port_text = text.strip().rpartition(":")
    if not separator or not host:
        raise ValueError(f"bind address {text!r}: expected HOST:PORT or [IPV6]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bind address {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"bind address {text!r}: write an IPv6 address in brackets, [::]:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bind address {text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def client_connection_limit(connections: int = MAX_CONNECTIONS) -> int:
    """`connections`, or fewer when the open-file limit cannot hold them beside RESERVED_FILES.

    Client connections must never take the descriptors a probe needs: a database connection
    that fails with "too many open files" would report the alias down to every scraper. So the
    soft limit is first raised to the hard one (as Go's runtime does for Go exporters; container
    runtimes often start processes at a soft limit of 1024), and if that is still too low, fewer
    client connections are accepted, with one warning line.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= connections + RESERVED_FILES:
        return connections
    limit = max(soft - RESERVED_FILES, 1)
    logging.getLogger(__name__).warning(
        "open-file limit %d: accepting at most %d client connections (not %d) to keep %d "
        "descriptors for database connections; raise the limit (ulimit -n) to lift this",
        soft,
        limit,
        connections,
        RESERVED_FILES,
    )
    return limit


def connection_limits() -> ConnectionLimits:
    """The limits on client connections, from the environment and the open-file limit;
    ImproperlyConfigured, in one line, for a value that is not a number."""
    request_timeout = env_seconds(HEAD_TIMEOUT_SETTING, default=REQUEST_HEAD_TIMEOUT_SECONDS)
    wanted = env_count(MAX_CONNECTIONS_SETTING, default=MAX_CONNECTIONS)
    per_client = env_count(PER_CLIENT_SETTING, default=max(int(wanted * PER_CLIENT_SHARE), 1))
    connections = client_connection_limit(wanted)
    return ConnectionLimits(
        connections=connections,
        per_client=min(per_client, connections),
        request_timeout=request_timeout,
    )


def build_server(host: str, port: int, *, access_log: bool = False) -> uvicorn.Server:
    """The server for dbhealth's ASGI application; raises ImproperlyConfigured as Django does
    (an unusable token file or web configuration file, for two) before anything is bound."""
    web = web_config.configured_web_config()
    limits = connection_limits()
    application = service_application(web)
    tls = web_config.serving_context() if web is not None and web.tls is not None else None
    if web is not None:
        logging.getLogger(__name__).info("%s %s: %s", web_config.SETTING, web.path, web.summary)
    # log_config=None: uvicorn configures no logging of its own, so `uvicorn.error` propagates to
    # the handlers of Django's LOGGING like every other logger (unless LOGGING says otherwise).
    access = logging.getLogger("uvicorn.access")
    if access_log and access.level == logging.NOTSET:
        # Asked for: one INFO line per request even where the root logger shows warnings only.
        access.setLevel(logging.INFO)
    throttle.install()
    # uvicorn's own connection limit and TLS stay off: guarded_protocol does both (uvicorn would
    # answer 503 past its limit, and asyncio's TLS runs outside it, see http_protocol).
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        loop="asyncio",
        http=guarded_protocol(limits, tls),
        ws="none",
        lifespan="off",
        interface="asgi3",
        server_header=False,
        proxy_headers=False,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        backlog=ACCEPT_BACKLOG,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=None,
        access_log=access_log,
    )
    return uvicorn.Server(config)
