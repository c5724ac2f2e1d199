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
answers anything, and it guards the service's other paths (404s) as before.
"""

import base64
import binascii
import hmac
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from dbhealth.serving.web_config import active_users

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


def presented_secret(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a basic auth header, None for anything else."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None


def refusal(request: HttpRequest) -> HttpResponse | None:
    """The 401 answer for a request without the configured token or a configured user's
    password; None when it may pass (or when neither is configured)."""
    token = endpoint_token()
    users = active_users()
    if not token and users is None:
        return None
    header = request.headers.get("Authorization", "")
    if token:
        secret = presented_secret(header)
        if secret is not None and hmac.compare_digest(secret.encode(), token.encode()):
            return None
    if users is not None:
        credentials = basic_credentials(header)
        if credentials is not None and users.check(*credentials):
            return None
    response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
    challenge = 'Basic realm="dbhealth"'
    response["WWW-Authenticate"] = f'Bearer realm="dbhealth", {challenge}' if token else challenge
    return response


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
        return denied if denied is not None else self.get_response(request)
