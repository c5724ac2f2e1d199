"""Optional protection of the exporter's endpoints with a bearer token or basic auth.

Prometheus supports both (`authorization` and `basic_auth` in a scrape config). Off when no token
is configured; with one, every endpoint needs it, the status page too (it shows query texts).

The service `serve` runs may also have basic_auth_users from its DBHEALTH_WEB_CONFIG_FILE
(dbhealth.serving.web_config). With both, a request passes with either: the token (as bearer, or as
the basic auth password under any user name), or a user's name and password. Those users exist
only in that service: where a host includes dbhealth.urls, the token settings are the option.

Every exporter view enforces it itself (`token_required`), so the endpoints are protected wherever
a host includes dbhealth.urls, whatever its MIDDLEWARE says. The dbhealth service also keeps
EndpointAuthMiddleware: built at start-up, it makes a bad token file stop the server before it
answers anything, and it guards the service's other paths (404s) as before. The service's scrape
path (serving/scrape_path.py) asks the same `decide` without Django, and awaits a password check
instead of holding a thread for it. Password checks are queued fairly per client address
(serving/bcrypt_queue.py); refusals of wrong credentials are logged at most once a minute.
"""

import asyncio
import base64
import binascii
import hmac
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cache, wraps
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from dbhealth.serving.web_config import active_users

logger = logging.getLogger("dbhealth")

TOKEN_SETTINGS = ("DBHEALTH_AUTH_TOKEN", "DBHEALTH_AUTH_TOKEN_FILE")
View = Callable[..., HttpResponse]


def configured_token() -> str:
    """The token the settings configure ("" for none); an unusable token file raises rather than
    meaning "no token". Read through endpoint_token, and by `manage.py check` (dbhealth.E003)."""
    token = getattr(settings, "DBHEALTH_AUTH_TOKEN", "") or ""
    token_file = getattr(settings, "DBHEALTH_AUTH_TOKEN_FILE", "") or ""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ImproperlyConfigured(
                f"DBHEALTH_AUTH_TOKEN_FILE {token_file}: cannot read ({reason})"
            ) from None
        if not token:
            # An empty file must not silently switch protection off.
            raise ImproperlyConfigured(f"DBHEALTH_AUTH_TOKEN_FILE {token_file}: the file is empty")
    return token


@cache
def endpoint_token() -> str:
    """The token in force, read once per process. A bad token file is not cached: every request
    fails (500) until it is fixed, so the endpoints never open up."""
    return configured_token()


@receiver(setting_changed, dispatch_uid="dbhealth-auth-token")
def forget_token(*, setting: str, **kwargs) -> None:
    if setting in TOKEN_SETTINGS:
        endpoint_token.cache_clear()


def basic_pair(value: str) -> tuple[str, str] | None:
    """(user, password) of the value of a basic auth header, None when it is not one."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None


@dataclass(frozen=True)
class Presented:
    """What an Authorization header carries: a secret to compare with the token (a bearer
    token, or a basic auth password under any user name) and basic auth credentials."""

    secret: str | None
    credentials: tuple[str, str] | None

    @classmethod
    def parse(cls, header: str) -> "Presented":
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return cls(value.strip(), None)
        if scheme.lower() == "basic":
            pair = basic_pair(value)
            return cls(pair[1] if pair else None, pair)
        return cls(None, None)


def decide(authorization: str, client: str) -> str | Future | None:
    """The WWW-Authenticate challenge of a request to refuse, None for one that may pass, or,
    for basic auth credentials not verified before, a future of that answer (the bcrypt check,
    queued fairly for the client's address: dbhealth.serving.bcrypt_queue)."""
    token = endpoint_token()
    users = active_users()
    if not token and users is None:
        return None
    presented = Presented.parse(authorization)
    secret = presented.secret
    if token and secret is not None and hmac.compare_digest(secret.encode(), token.encode()):
        return None
    challenge = 'Basic realm="dbhealth"'
    if token:
        challenge = f'Bearer realm="dbhealth", {challenge}'
    if users is None or presented.credentials is None:
        return failed_login(challenge, client, presented)
    if users.cached(*presented.credentials):
        return None
    answer: Future = Future()

    def settle(check: Future) -> None:
        passed = check.exception() is None and check.result()
        answer.set_result(None if passed else failed_login(challenge, client, presented))

    users.start_check(*presented.credentials, client).add_done_callback(settle)
    return answer


class FailedLogins:
    """Failed logins as WARNING lines, at most one every INTERVAL seconds: the first failure is
    logged at once, later ones are counted into the next line (a flood of wrong passwords once
    wrote one line per request)."""

    INTERVAL = 60.0
    MAX_CLIENTS_COUNTED = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._clients: set[str] = set()
        self._next_line = 0.0

    def note(self, client: str) -> None:
        with self._lock:
            self._count += 1
            if len(self._clients) < self.MAX_CLIENTS_COUNTED:
                self._clients.add(client)
            now = time.monotonic()
            if now < self._next_line:
                return
            count, clients = self._count, len(self._clients)
            self._count, self._clients, self._next_line = 0, set(), now + self.INTERVAL
        logger.warning(
            "refused %d request(s) with a wrong token or password, from %d client address(es), "
            "since the last such line (at most one a minute)",
            count,
            clients,
        )


failed_logins = FailedLogins()


def failed_login(challenge: str, client: str, presented: "Presented") -> str:
    """Counts a refusal for the rate-limited warning when credentials were given (a request
    without any is a client that has not been told to log in: not worth a line)."""
    if presented.secret is not None or presented.credentials is not None:
        failed_logins.note(client)
    return challenge


def refused(authorization: str, client: str) -> str | None:
    """decide, waiting in this thread for a password check."""
    decision = decide(authorization, client)
    return decision.result() if isinstance(decision, Future) else decision


async def refused_without_a_thread(authorization: str, client: str) -> str | None:
    """decide, awaiting a password check on the event loop (no thread held while it waits)."""
    decision = decide(authorization, client)
    if isinstance(decision, Future):
        return await asyncio.wrap_future(decision)
    return decision


def challenge_response(challenge: str) -> HttpResponse:
    response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = challenge
    return response


def refusal(request: HttpRequest) -> HttpResponse | None:
    """The 401 answer for a request without the configured token or a configured user's
    password; None when it may pass (or when neither is configured)."""
    challenge = refused(
        request.headers.get("Authorization", ""), request.META.get("REMOTE_ADDR", "")
    )
    return None if challenge is None else challenge_response(challenge)


def token_required(view: View) -> View:
    """Applied to every exporter view: protection travels with the URLs, into any host."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        denied = refusal(request)
        return denied if denied is not None else view(request, *args, **kwargs)

    return guarded


# The service's liveness and readiness answers say nothing about the databases and must be
# reachable by a kubelet or a container runtime, which carry no token.
OPEN_SERVICE_PATHS = frozenset({"/livez", "/readyz"})


class EndpointAuthMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        endpoint_token()  # a bad token file stops start-up here

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in OPEN_SERVICE_PATHS:
            return self.get_response(request)
        denied = refusal(request)
        if denied is None:
            return self.get_response(request)
        add_never_cache_headers(denied)  # as the views' own 401s (and the ASGI scrape path's)
        return denied
