"""Validation of dbhealth option values, shared by the config file loader and the alias targets."""

import math
import os
from typing import Any


def positive_number(value: Any, key: str) -> float:
    number = non_negative_number(value, key)
    if number == 0:
        raise ValueError(f"{key} must be greater than 0")
    return number


def non_negative_number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"{key} must not be negative")
    return float(value)


def whole_number(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0, got {value!r}")
    return value


def positive_whole_number(value: Any, key: str) -> int:
    number = whole_number(value, key)
    if number == 0:
        raise ValueError(f"{key} must be at least 1")
    return number


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def text(value: Any, key: str) -> str:
    """A name sent to a driver or looked up in the environment: printable, never empty."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ValueError(f"{key} must be a non-empty string of printable characters")
    return value


def file_path(value: Any, key: str) -> str:
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"{key} must be a file path, got {type(value).__name__}")
    return text(os.fspath(value), key)


GLOBAL_DEFAULTS: dict[str, Any] = {
    "deadline": 5.0,
    "critical": True,
    "refresh_interval": 60.0,
    "min_interval": 1.0,
    "statement_top_n": 10,
    "statement_text_length": 200,
    "scrape_timeout_margin": 0.5,
    "max_connections_per_server": 16,
    "rotation_interval": 30.0,
    "id_headroom_top_n": 10,
    "integrity_interval": 3600.0,
    "table_top_n": 10,
}
# Per-alias options that become Target fields, with the defaults of those not in GLOBAL_DEFAULTS.
TARGET_OPTION_KEYS = {
    "deadline",
    "critical",
    "statement_top_n",
    "statement_text_length",
    "replica",
    "migrations",
    "id_headroom_top_n",
    "integrity_interval",
    "table_top_n",
}
TARGET_DEFAULTS: dict[str, Any] = {"replica": False, "migrations": True}
# Monitoring credentials replacing the application's USER and PASSWORD for the probe.
CREDENTIAL_KEYS = {"user", "password_env", "password_file"}
ALIAS_OPTION_KEYS = TARGET_OPTION_KEYS | CREDENTIAL_KEYS

VALIDATORS = {
    "deadline": positive_number,
    "critical": boolean,
    "refresh_interval": positive_number,
    "min_interval": non_negative_number,
    "statement_top_n": whole_number,
    "statement_text_length": whole_number,
    "scrape_timeout_margin": non_negative_number,
    "max_connections_per_server": positive_whole_number,
    "rotation_interval": positive_number,
    "id_headroom_top_n": whole_number,
    "integrity_interval": positive_number,
    "table_top_n": whole_number,
    "replica": boolean,
    "migrations": boolean,
    "user": text,
    "password_env": text,
    "password_file": file_path,
}


def key_names(keys: set[str]) -> str:
    """Keys as written, quoted where they hold what would break a one-line message."""
    shown = (key if key.isprintable() and key.strip() else repr(key) for key in sorted(keys))
    return ", ".join(shown)


def validated(options: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """Raise ValueError naming the first bad key; return the options with numbers as floats."""
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {key_names(unknown)}")
    return {key: VALIDATORS[key](value, key) for key, value in options.items()}
