"""Which aliases to probe and how: Django DATABASES entries plus dbhealth's per-alias options.

Resolved once per process; a problem with one alias becomes that alias's `config` failure instead
of an exception, so the other aliases are still probed.
"""

import copy
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePath
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.utils import load_backend

from dbhealth.configuration.options import (
    ALIAS_OPTION_KEYS,
    GLOBAL_DEFAULTS,
    TARGET_DEFAULTS,
    TARGET_OPTION_KEYS,
    key_names,
    non_negative_number,
    positive_number,
    positive_whole_number,
    validated,
)
from dbhealth.configuration.queries import CustomQuery, queries_for

PLACEHOLDER_ENGINES = {"", "django.db.backends.dummy"}
# What to install when Django's own backend cannot import its driver.
MISSING_DRIVER_HINTS = {
    "django.db.backends.mysql": (
        "; the MySQL driver is missing: pip install 'dbhealth[mysql]' (mysqlclient, built with"
        " gcc, pkg-config and libmariadb-dev; scripts/setup installs them)"
    ),
    "django.db.backends.postgresql": "; the PostgreSQL driver is missing: pip install psycopg",
}
MARKER_KEYS = {"config_error", "create_demo"}

# django-prometheus's wrappers count every query and error of a connection in the host's own
# django_db_* metrics: the probe goes through the Django backend they wrap instead. Any other
# third-party backend stays as configured, since it may change how a connection is made
# (authentication tokens, routing, another driver) and the probe must connect as the app does.
INSTRUMENTATION_WRAPPERS = {
    "django_prometheus.db.backends.postgresql": "django.db.backends.postgresql",
    "django_prometheus.db.backends.mysql": "django.db.backends.mysql",
    "django_prometheus.db.backends.sqlite3": "django.db.backends.sqlite3",
    "django_prometheus.db.backends.postgis": "django.contrib.gis.db.backends.postgis",
    "django_prometheus.db.backends.spatialite": "django.contrib.gis.db.backends.spatialite",
}

# libpq cuts a connection string at NUL: a password holding one dropped HOST and PORT and sent
# the probe to another server's local socket. Other C0 controls and DEL are refused too, tab
# included (a conninfo value would need quoting): strict, as no real setting holds them.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT")
# Driver options that carry credentials and would win over a monitoring USER/PASSWORD (MySQL).
DRIVER_USER_OPTIONS = {"user"}
DRIVER_PASSWORD_OPTIONS = {"password", "passwd"}


@dataclass(frozen=True)
class Target:
    alias: str
    vendor: str
    deadline: float
    critical: bool
    statement_top_n: int
    id_headroom_top_n: int
    integrity_interval: float
    # Tables per maintenance signal (the most dead rows, the largest).
    table_top_n: int
    statement_text_length: int
    replica: bool
    # False for an alias nobody migrates: its pending migrations are not read.
    migrations: bool
    host: str
    port: str
    database: str
    problem: str | None = None
    # The custom queries that run on this alias (dbhealth.configuration.queries).
    queries: tuple[CustomQuery, ...] = ()
    # The Django settings entry, secrets included: never rendered anywhere.
    settings: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ServiceOptions:
    refresh_interval: float
    min_interval: float
    scrape_timeout_margin: float
    max_connections_per_server: int
    # How often aliases beyond their server's kept connections are probed, stalest first.
    rotation_interval: float = 30.0
    # Servers whose databases are discovered: each needs one connection for the listing.
    listed_servers: tuple[tuple[str, ...], ...] = ()


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
        rotation_interval=positive_number(options["rotation_interval"], "rotation_interval"),
        listed_servers=tuple(spec.server for spec in discovery_specs() if spec.vendor != "sqlite"),
    )


# The most aliases one service probes, configured and discovered together. Beyond it scrapes no
# longer fit a 10 s scrape timeout on a small machine (docs/scaling.md): shard instead.
MAX_ALIASES = 2000


def load_targets() -> tuple[Target, ...]:
    """The configured aliases, then the discovered ones (configuration/discovery)."""
    configured = configured_targets()
    if not discovery_specs():
        return configured
    if _discovery_start is not None:
        _discovery_start()
    return configured + _discovered


def _clear_target_caches() -> None:
    configured_targets.cache_clear()
    discovery_specs.cache_clear()


# Settings changed (reload, tests): callers clear what load_targets() is built from.
load_targets.cache_clear = _clear_target_caches  # type: ignore[attr-defined]

# Set by the probing side: starts discovery on first use (so /sd lists discovered aliases before
# any scrape); and the aliases it found, replaced whole by each listing.
_discovery_start: Callable[[], None] | None = None
_discovered: tuple[Target, ...] = ()


def publish_discovered(targets: tuple[Target, ...]) -> None:
    global _discovered
    _discovered = targets


def discovered_targets() -> tuple[Target, ...]:
    return _discovered


def on_discovery_use(start: Callable[[], None]) -> None:
    global _discovery_start
    _discovery_start = start


@cache
def configured_targets() -> tuple[Target, ...]:
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
    if len(targets) > MAX_ALIASES:
        raise ImproperlyConfigured(
            f"{len(targets)} aliases configured; one dbhealth service probes at most "
            f"{MAX_ALIASES}: split them between services (docs/scaling.md, sharding)"
        )
    return tuple(targets)


@dataclass(frozen=True)
class DiscoverySpec:
    """A [discover.<name>] table (or DBHEALTH_DISCOVER entry): every database of one server
    whose name matches `pattern` and none of `exclude` becomes an alias named after it."""

    name: str
    vendor: str
    # Django connection settings for the listing and for every discovered alias, NAME aside.
    entry: dict[str, Any] = field(repr=False)
    pattern: str
    exclude: tuple[str, ...]
    refresh_interval: float
    max_aliases: int
    # DBHEALTH options given to every discovered alias (deadline, user, ...).
    alias_options: dict[str, Any] = field(default_factory=dict)

    @property
    def server(self) -> tuple[str, ...]:
        """The server key of the probe service (vendor, host, port); SQLite has none."""
        return (self.vendor, str(self.entry.get("HOST") or ""), str(self.entry.get("PORT") or ""))

    def target(self, database: str) -> Target:
        """The alias of one discovered database."""
        if self.vendor == "sqlite":
            return build_target(
                Path(database).stem, {**self.entry, "NAME": database}, self.alias_options
            )
        return build_target(database, {**self.entry, "NAME": database}, self.alias_options)


DISCOVERY_KEYS = {
    "ENGINE",
    "HOST",
    "PORT",
    "USER",
    "PASSWORD",
    "PASSWORD_FILE",
    "PASSWORD_ENV",
    "OPTIONS",
    "NAME",
    "from",
    "databases",
    "exclude",
    "refresh_interval",
    "max_aliases",
    "DBHEALTH",
}
DISCOVERY_DEFAULTS = {"refresh_interval": 60.0, "max_aliases": 500}
# What `from = "<alias>"` takes from the alias: how to reach and log in to its server.
INHERITED_KEYS = ("ENGINE", "HOST", "PORT", "USER", "PASSWORD", "OPTIONS", "DBHEALTH")


@cache
def discovery_specs() -> tuple[DiscoverySpec, ...]:
    """DBHEALTH_DISCOVER validated; a bad entry stops start-up (or a reload) with one line."""
    raw = getattr(settings, "DBHEALTH_DISCOVER", None) or {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("DBHEALTH_DISCOVER must be a mapping of name to settings")
    specs = []
    for name, table in raw.items():
        try:
            specs.append(discovery_spec(str(name), table))
        except ValueError as exc:
            raise ImproperlyConfigured(f"discover {name!r}: {exc}") from None
    return tuple(specs)


def discovery_spec(name: str, table: Any) -> DiscoverySpec:
    if not isinstance(table, dict):
        raise ValueError("must be a table")
    unknown = set(table) - DISCOVERY_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {key_names(unknown)}")
    entry: dict[str, Any] = {}
    if "from" in table:
        source = settings.DATABASES.get(table["from"])
        if not isinstance(source, dict) or not source.get("ENGINE"):
            raise ValueError(f"from: no configured alias {str(table['from'])[:40]!r}")
        entry.update({key: copy.deepcopy(source[key]) for key in INHERITED_KEYS if key in source})
    entry.update({key: table[key] for key in ("ENGINE", "HOST", "USER", "OPTIONS") if key in table})
    if "PORT" in table:
        entry["PORT"] = str(table["PORT"])
    if "PASSWORD" in table:
        entry["PASSWORD"] = table["PASSWORD"]
    if "PASSWORD_ENV" in table:
        variable = str(table["PASSWORD_ENV"])
        if variable not in os.environ:
            raise ValueError(f"PASSWORD_ENV: environment variable {variable} is not set")
        entry["PASSWORD"] = os.environ[variable]
    if "PASSWORD_FILE" in table:
        path = Path(str(table["PASSWORD_FILE"]))
        try:
            entry["PASSWORD"] = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ValueError(f"PASSWORD_FILE {path}: cannot read ({reason})") from None
    if "NAME" in table:  # the database the listing connects to (PostgreSQL: postgres)
        entry["NAME"] = table["NAME"]
    if not entry.get("ENGINE"):
        raise ValueError("needs ENGINE (or from = an alias)")
    try:
        vendor = vendor_of(entry["ENGINE"])
    except Exception as exc:
        raise ValueError(
            f"ENGINE {entry['ENGINE']!r} cannot be loaded: {type(exc).__name__}"
        ) from None
    pattern = table.get("databases")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError('databases must be a glob such as "tenant_*"')
    exclude = table.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(item, str) for item in exclude):
        raise ValueError("exclude must be a glob or a list of globs")
    options = {**DISCOVERY_DEFAULTS, **{k: table[k] for k in DISCOVERY_DEFAULTS if k in table}}
    refresh_interval = positive_number(options["refresh_interval"], "refresh_interval")
    max_aliases = positive_whole_number(options["max_aliases"], "max_aliases")
    alias_options = entry.pop("DBHEALTH", None) or {}
    if "DBHEALTH" in table:
        alias_options = {**alias_options, **validated(table["DBHEALTH"], ALIAS_OPTION_KEYS)}
    return DiscoverySpec(
        name=name,
        vendor=vendor,
        entry=entry,
        pattern=pattern,
        exclude=tuple(exclude),
        refresh_interval=refresh_interval,
        max_aliases=min(max_aliases, MAX_ALIASES),
        alias_options=alias_options,
    )


def target_by_alias(alias: str) -> Target | None:
    return next((target for target in load_targets() if target.alias == alias), None)


def build_target(alias: str, entry: dict[str, Any], extra_options: dict[str, Any]) -> Target:
    own_options = {**(entry.get("DBHEALTH") or {}), **extra_options}
    problem = own_options.get("config_error")
    own_options = {key: value for key, value in own_options.items() if key not in MARKER_KEYS}
    unknown = set(own_options) - ALIAS_OPTION_KEYS
    if unknown and problem is None:
        problem = f"DBHEALTH has unknown key(s) {key_names(unknown)}"
    normalized = normalized_settings(alias, entry)
    vendor = "unknown"
    if problem is None:
        try:
            vendor = vendor_of(normalized["ENGINE"])
        except Exception as exc:  # any import-time failure of a third-party backend
            problem = f"ENGINE {normalized['ENGINE']!r} cannot be loaded: {type(exc).__name__}"
            if "Error loading" in str(exc):  # Django's words for a driver it cannot import
                problem += MISSING_DRIVER_HINTS.get(normalized["ENGINE"], "")
    if problem is None:
        problem = settings_problem(normalized)
    try:
        options = validated(
            {**global_options(), **TARGET_DEFAULTS, **own_options},
            ALIAS_OPTION_KEYS | set(GLOBAL_DEFAULTS),
        )
    except ValueError as exc:
        problem = problem or f"DBHEALTH {exc}"
        options = {**GLOBAL_DEFAULTS, **TARGET_DEFAULTS}
    if problem is None:
        try:
            normalized = with_monitoring_credentials(normalized, options)
        except ValueError as exc:
            problem = f"DBHEALTH {exc}"
    if problem is None and vendor == "postgresql":
        problem = pool_problem(alias, normalized)
    return Target(
        alias=alias,
        vendor=vendor,
        host=str(normalized.get("HOST") or ""),
        port=str(normalized.get("PORT") or ""),
        database=str(normalized.get("NAME") or ""),
        problem=problem,
        queries=queries_for(alias, vendor) if problem is None else (),
        settings=normalized,
        **{key: options[key] for key in TARGET_OPTION_KEYS},
    )


def normalized_settings(alias: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Django's own defaults applied (TIME_ZONE, CONN_MAX_AGE, ...), as a private copy."""
    databases = {"default": {}, alias: copy.deepcopy(entry)}
    normalized = connections.configure_settings(databases)[alias]
    engine = normalized["ENGINE"]
    normalized["ENGINE"] = INSTRUMENTATION_WRAPPERS.get(engine, engine)
    return normalized


def vendor_of(engine: str) -> str:
    if engine in PLACEHOLDER_ENGINES:
        raise ValueError("no ENGINE")
    return load_backend(engine).DatabaseWrapper.vendor


def settings_problem(entry: dict[str, Any]) -> str | None:
    if not isinstance(entry.get("OPTIONS"), dict):
        return "OPTIONS must be a mapping"
    problem = control_character_problem(entry)
    if problem is not None:
        return problem
    port = str(entry.get("PORT") or "")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        return f"PORT {port!r} is not a TCP port number"
    name = entry.get("NAME")
    if not name and "service" not in entry["OPTIONS"]:
        return "NAME is missing"
    return None


def control_character_problem(entry: dict[str, Any]) -> str | None:
    """Names the setting, never its value: it may be a password."""
    labelled = [(key, entry.get(key)) for key in CONNECTION_KEYS]
    for key, value in entry["OPTIONS"].items():
        name = key_names({str(key)})
        labelled += [(f"OPTIONS key {name}", key), (f"OPTIONS {name}", value)]
    for label, value in labelled:
        character = control_character(value)
        if character is not None:
            return f"{label} contains a control character ({character}), which no setting may hold"
    return None


def control_character(value: Any) -> str | None:
    """The first C0 control or DEL in a string or path, as U+XXXX."""
    if isinstance(value, PurePath):
        value = str(value)
    found = CONTROL_CHARACTER.search(value) if isinstance(value, str) else None
    return f"U+{ord(found.group()):04X}" if found else None


def with_monitoring_credentials(entry: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The probe may log in as a monitoring role (pg_monitor) rather than the application's.

    A monitoring `user` without a password of its own drops the application's password, which
    belongs to another role; the driver may still find one (.pgpass, client certificates).
    """
    password = monitoring_password(options)
    if "user" not in options and password is None:
        return entry
    result = {**entry, "OPTIONS": dict(entry["OPTIONS"])}
    dropped = DRIVER_PASSWORD_OPTIONS
    if "user" in options:
        result["USER"] = options["user"]
        result["PASSWORD"] = ""
        dropped = dropped | DRIVER_USER_OPTIONS
    if password is not None:
        result["PASSWORD"] = password
    for key in dropped:
        result["OPTIONS"].pop(key, None)
    return result


def monitoring_password(options: dict[str, Any]) -> str | None:
    """From the environment or a file, never from settings; errors name the source only."""
    if "password_env" in options and "password_file" in options:
        raise ValueError("password_env and password_file exclude each other")
    if "password_env" in options:
        source = f"password_env {options['password_env']}"
        if options["password_env"] not in os.environ:
            raise ValueError(f"{source}: environment variable is not set")
        password = os.environ[options["password_env"]]
    elif "password_file" in options:
        path = Path(options["password_file"])
        source = f"password_file {key_names({str(path)})}"
        if not path.is_absolute():
            raise ValueError(f"{source}: must be an absolute path")
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ValueError(f"{source}: cannot read ({reason})") from None
    else:
        return None
    character = control_character(password)
    if character is not None:
        raise ValueError(f"{source}: the password contains a control character ({character})")
    return password


def pool_problem(alias: str, entry: dict[str, Any]) -> str | None:
    """Django refuses a pool it cannot build on every request of the application (psycopg_pool
    missing, persistent connections asked for too): tried once here, in Django's own words.
    The probe itself never pools (dbhealth.probing.vendors.postgresql drops the option)."""
    if not entry["OPTIONS"].get("pool"):
        return None
    wrapper = load_backend(entry["ENGINE"]).DatabaseWrapper(copy.deepcopy(entry), alias)
    # Django keeps pools in a dict shared by every wrapper of the class, keyed by alias: this
    # trial's pool (built unopened) goes to a dict of its own, never to the application's.
    wrapper._connection_pools = {}
    try:
        wrapper.pool  # noqa: B018 - the property builds the pool, raising what Django raises
    except Exception as exc:
        return f"OPTIONS pool: {' '.join(str(exc).split())}"
    return None
