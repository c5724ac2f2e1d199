"""Which aliases to probe and how: Django DATABASES entries plus dbhealth's per-alias options.

Resolved once per process; a problem with one alias becomes that alias's `config` failure instead
of an exception, so the other aliases are still probed.
"""

import copy
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.utils import load_backend

from exporter.option_types import (
    ALIAS_OPTION_KEYS,
    GLOBAL_DEFAULTS,
    key_names,
    non_negative_number,
    positive_number,
    positive_whole_number,
    validated,
)

PLACEHOLDER_ENGINES = {"", "django.db.backends.dummy"}
MARKER_KEYS = {"config_error", "create_demo"}


@dataclass(frozen=True)
class Target:
    alias: str
    vendor: str
    deadline: float
    critical: bool
    statement_top_n: int
    statement_text_length: int
    replica: bool
    host: str
    port: str
    database: str
    problem: str | None = None
    # The Django settings entry, secrets included: never rendered anywhere.
    settings: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ServiceOptions:
    refresh_interval: float
    min_interval: float
    scrape_timeout_margin: float
    max_connections_per_server: int


def global_options() -> dict[str, Any]:
    configured = dict(getattr(settings, "DBHEALTH_DEFAULTS", {}) or {})
    return {**GLOBAL_DEFAULTS, **configured}


@cache
def service_options() -> ServiceOptions:
    options = global_options()
    return ServiceOptions(
        refresh_interval=positive_number(options["refresh_interval"], "refresh_interval"),
        min_interval=non_negative_number(options["min_interval"], "min_interval"),
        scrape_timeout_margin=non_negative_number(
            options["scrape_timeout_margin"], "scrape_timeout_margin"
        ),
        max_connections_per_server=positive_whole_number(
            options["max_connections_per_server"], "max_connections_per_server"
        ),
    )


@cache
def load_targets() -> tuple[Target, ...]:
    wanted = getattr(settings, "DBHEALTH_ALIASES", None)
    databases = settings.DATABASES
    aliases = [alias for alias in databases if wanted is None or alias in wanted]
    extra_options = getattr(settings, "DBHEALTH_ALIAS_OPTIONS", {}) or {}
    targets = []
    for alias in aliases:
        entry = databases[alias]
        if entry.get("ENGINE", "") in PLACEHOLDER_ENGINES and "DBHEALTH" not in entry:
            continue
        targets.append(build_target(alias, entry, extra_options.get(alias, {})))
    return tuple(targets)


def target_by_alias(alias: str) -> Target | None:
    return next((target for target in load_targets() if target.alias == alias), None)


def build_target(alias: str, entry: dict[str, Any], extra_options: dict[str, Any]) -> Target:
    own_options = {**(entry.get("DBHEALTH") or {}), **extra_options}
    problem = own_options.get("config_error")
    own_options = {key: value for key, value in own_options.items() if key not in MARKER_KEYS}
    unknown = set(own_options) - ALIAS_OPTION_KEYS
    if unknown and problem is None:
        problem = f"DBHEALTH has unknown key(s) {key_names(unknown)}"
    options = {**global_options(), "replica": False, **own_options}
    normalized = normalized_settings(alias, entry)
    vendor = "unknown"
    if problem is None:
        try:
            vendor = vendor_of(normalized["ENGINE"])
        except Exception as exc:  # any import-time failure of a third-party backend
            problem = f"ENGINE {normalized['ENGINE']!r} cannot be loaded: {type(exc).__name__}"
    if problem is None:
        problem = settings_problem(normalized)
    try:
        per_alias = alias_options(options)
    except ValueError as exc:
        problem = problem or f"DBHEALTH {exc}"
        per_alias = alias_options({**GLOBAL_DEFAULTS, "replica": False})
    return Target(
        alias=alias,
        vendor=vendor,
        host=str(normalized.get("HOST") or ""),
        port=str(normalized.get("PORT") or ""),
        database=str(normalized.get("NAME") or ""),
        problem=problem,
        settings=normalized,
        **per_alias,
    )


def normalized_settings(alias: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Django's own defaults applied (TIME_ZONE, CONN_MAX_AGE, ...), as a private copy."""
    databases = {"default": {}, alias: copy.deepcopy(entry)}
    return connections.configure_settings(databases)[alias]


def vendor_of(engine: str) -> str:
    if engine in PLACEHOLDER_ENGINES:
        raise ValueError("no ENGINE")
    return load_backend(engine).DatabaseWrapper.vendor


def settings_problem(entry: dict[str, Any]) -> str | None:
    if not isinstance(entry.get("OPTIONS"), dict):
        return "OPTIONS must be a mapping"
    port = str(entry.get("PORT") or "")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        return f"PORT {port!r} is not a TCP port number"
    name = entry.get("NAME")
    if not name and "service" not in entry["OPTIONS"]:
        return "NAME is missing"
    return None


def alias_options(options: dict[str, Any]) -> dict[str, Any]:
    checked = validated(options, ALIAS_OPTION_KEYS | set(GLOBAL_DEFAULTS))
    return {key: checked[key] for key in ALIAS_OPTION_KEYS}
