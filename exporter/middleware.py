"""Optional protection of the exporter's endpoints with a bearer token or basic auth.

Prometheus supports both (`authorization` and `basic_auth` in a scrape config). Off when no token
is configured; with one, every endpoint needs it, the status page too (it shows query texts).
"""

import base64
import binascii
import hmac
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse


def configured_token() -> str:
    """Read once, when the middleware is built: a bad token file stops start-up, not requests."""
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


class EndpointAuthMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.token = configured_token()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = self.token
        if token:
            secret = presented_secret(request.headers.get("Authorization", ""))
            if secret is None or not hmac.compare_digest(secret.encode(), token.encode()):
                response = HttpResponse(
                    "authentication required\n", status=401, content_type="text/plain"
                )
                response["WWW-Authenticate"] = 'Bearer realm="dbhealth", Basic realm="dbhealth"'
                return response
        return self.get_response(request)
