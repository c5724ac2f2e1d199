"""Error texts made safe to show: no password, no DSN credentials, bounded length.

Driver messages are useful to operators (which host refused, which role failed), but some drivers
echo the connection string; everything shown outside the process passes through here first.
"""

import re
from typing import Any

MAX_MESSAGE_LENGTH = 300
# Up to the last `@` of the address: a password may hold `@` or `/` of its own.
_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)\S*@", re.IGNORECASE)
_PASSWORD_ASSIGNMENT = re.compile(
    r"(?P<key>password|passwd|pwd)(?P<separator>\s*[=:]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|\S+)",
    re.IGNORECASE,
)
# MySQL's "Access denied for user 'x'@'h' (using password: YES)" says only whether one was sent.
_PASSWORD_USED = re.compile(r"(?:YES|NO)\W*")


def secrets_of(settings: dict[str, Any]) -> list[str]:
    candidates = [settings.get("PASSWORD")]
    options = settings.get("OPTIONS") or {}
    if isinstance(options, dict):
        candidates += [options.get(key) for key in ("password", "passwd", "sslpassword")]
    return [str(value) for value in candidates if value]


def redact(message: str, secrets: list[str]) -> str:
    # Longest first, so that a secret containing another is removed whole.
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    message = _CREDENTIALS_IN_URL.sub(r"\g<scheme>***@", message)
    message = _PASSWORD_ASSIGNMENT.sub(_password_redacted, message)
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    return message


def _password_redacted(match: re.Match[str]) -> str:
    if match["separator"].strip() == ":" and _PASSWORD_USED.fullmatch(match["value"]):
        return match.group()
    return f"{match['key']}=***"
