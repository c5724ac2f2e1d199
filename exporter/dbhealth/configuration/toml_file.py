"""The standalone service's TOML configuration, turned into ordinary Django DATABASES entries.

A file that cannot be used at all (missing, unreadable, not TOML, wrong shape) stops start-up with a
one-line message. A single alias that cannot be used keeps its place in DATABASES with the problem
recorded under its DBHEALTH options, so it is reported down with reason `config` and the other
aliases keep working.
"""

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from dbhealth.configuration.options import ALIAS_OPTION_KEYS, GLOBAL_DEFAULTS, key_names, validated
from dbhealth.configuration.queries import parse_queries

ENGINE_BY_SCHEME = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
    "sqlite": "django.db.backends.sqlite3",
}

DJANGO_KEYS = {
    "ENGINE",
    "NAME",
    "USER",
    "PASSWORD",
    "HOST",
    "PORT",
    "OPTIONS",
    "CONN_MAX_AGE",
    "CONN_HEALTH_CHECKS",
    "ATOMIC_REQUESTS",
    "AUTOCOMMIT",
    "TIME_ZONE",
    "TEST",
    "DISABLE_SERVER_SIDE_CURSORS",
}
FILE_ONLY_KEYS = {"URL", "PASSWORD_FILE", "PASSWORD_ENV", "DBHEALTH"}

MAX_ALIAS_LENGTH = 200

# Where the engine is unusable, Django never gets to import anything for the alias.
PLACEHOLDER_ENGINE = "django.db.backends.dummy"


@dataclass(frozen=True)
class LoadedConfig:
    databases: dict[str, dict[str, Any]]
    defaults: dict[str, Any]
    # [discover.<name>] tables, as DBHEALTH_DISCOVER (validated by configuration.targets).
    discover: dict[str, dict[str, Any]] = field(default_factory=dict)
    # [queries.<name>] tables as written (checked): they become settings.DBHEALTH_QUERIES.
    queries: dict[str, Any] = field(default_factory=dict)


class AliasConfigError(ValueError):
    """One alias's entry is unusable; the alias is reported down, the others carry on."""


def load_config_file(path: Path) -> LoadedConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DBHEALTH_CONFIG {path}: cannot read the file ({exc.strerror})"
        ) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ImproperlyConfigured(f"DBHEALTH_CONFIG {path}: not valid TOML: {exc}") from None
    return config_from_document(document, source=str(path), base_dir=path.parent)


def config_from_document(document: dict[str, Any], *, source: str, base_dir: Path) -> LoadedConfig:
    unknown_sections = set(document) - {"dbhealth", "databases", "discover", "queries"}
    if unknown_sections:
        raise ImproperlyConfigured(
            f"{source}: unknown top-level key(s) {key_names(unknown_sections)}; "
            "expected [dbhealth], [databases], [discover] and [queries]"
        )
    discover = discover_tables(document.get("discover", {}), source=source, base_dir=base_dir)
    defaults = document.get("dbhealth", {})
    if not isinstance(defaults, dict):
        raise ImproperlyConfigured(f"{source}: [dbhealth] must be a table")
    try:
        defaults = validated(defaults, set(GLOBAL_DEFAULTS))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{source}: [dbhealth] {exc}") from None
    entries = document.get("databases", {} if discover else None)
    if not isinstance(entries, dict) or not (entries or discover):
        raise ImproperlyConfigured(f"{source}: no [databases.<alias>] entries")

    databases: dict[str, dict[str, Any]] = {}
    for alias, entry in entries.items():
        if not 0 < len(alias) <= MAX_ALIAS_LENGTH or not alias.isprintable():
            # The alias is a label value and a URL parameter; it cannot even name its own failure.
            raise ImproperlyConfigured(
                f"{source}: alias {alias[:40]!r} must be 1 to {MAX_ALIAS_LENGTH} printable "
                "characters"
            )
        try:
            databases[alias] = database_entry(entry, base_dir=base_dir)
        except AliasConfigError as exc:
            databases[alias] = unusable_entry(str(exc))
    if "default" not in databases:
        # Django insists on a `default` alias; an empty one is its documented placeholder.
        databases["default"] = {}
    queries = document.get("queries", {})
    try:
        parse_queries(queries, set(databases))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{source}: [queries] {exc}") from None
    return LoadedConfig(
        databases=databases, defaults=dict(defaults), discover=discover, queries=queries
    )


def discover_tables(tables: Any, *, source: str, base_dir: Path) -> dict[str, dict[str, Any]]:
    """[discover.<name>] tables, each a table; PASSWORD_FILE relative to this file. Their keys
    are checked with the settings they may refer to (`from`), by configuration.targets."""
    if not isinstance(tables, dict):
        raise ImproperlyConfigured(f"{source}: [discover] must hold [discover.<name>] tables")
    result = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ImproperlyConfigured(f"{source}: discover {name!r} must be a table")
        table = dict(table)
        if "PASSWORD_FILE" in table:
            table["PASSWORD_FILE"] = str(base_dir / str(table["PASSWORD_FILE"]))
        result[name] = table
    return result


def unusable_entry(problem: str) -> dict[str, Any]:
    return {"ENGINE": PLACEHOLDER_ENGINE, "DBHEALTH": {"config_error": problem}}


def database_entry(entry: Any, *, base_dir: Path) -> dict[str, Any]:
    if isinstance(entry, str):
        return parse_database_url(entry)
    if not isinstance(entry, dict):
        raise AliasConfigError("must be a table of Django keys or a database URL string")
    unknown = set(entry) - DJANGO_KEYS - FILE_ONLY_KEYS
    if unknown:
        raise AliasConfigError(f"unknown key(s) {key_names(unknown)}")
    result: dict[str, Any] = {}
    if "URL" in entry:
        result.update(parse_database_url(entry["URL"]))
    result.update({key: value for key, value in entry.items() if key in DJANGO_KEYS})
    if "DBHEALTH" in entry:
        if not isinstance(entry["DBHEALTH"], dict):
            raise AliasConfigError("DBHEALTH must be a table")
        try:
            result["DBHEALTH"] = validated(entry["DBHEALTH"], ALIAS_OPTION_KEYS)
        except ValueError as exc:
            raise AliasConfigError(f"DBHEALTH {exc}") from None
        own = result["DBHEALTH"]
        if "password_file" in own:
            # Relative to this file, as PASSWORD_FILE is; read when the alias becomes a target.
            own["password_file"] = str(base_dir / own["password_file"])
    password = password_from_indirection(entry, base_dir=base_dir)
    if password is not None:
        result["PASSWORD"] = password
    if "PORT" in result:
        result["PORT"] = str(result["PORT"])
    return result


def password_from_indirection(entry: dict[str, Any], *, base_dir: Path) -> str | None:
    """Secrets stay out of the config file: read them from a file or an environment variable."""
    if "PASSWORD_FILE" in entry:
        secret_path = base_dir / str(entry["PASSWORD_FILE"])
        try:
            return secret_path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise AliasConfigError(f"PASSWORD_FILE {secret_path}: cannot read ({reason})") from None
    if "PASSWORD_ENV" in entry:
        variable = str(entry["PASSWORD_ENV"])
        if variable not in os.environ:
            raise AliasConfigError(f"PASSWORD_ENV: environment variable {variable} is not set")
        return os.environ[variable]
    return None


def parse_database_url(url: Any) -> dict[str, Any]:
    """Read a dj-database-url style URL; errors never echo it, as it may hold a password."""
    if not isinstance(url, str):
        raise AliasConfigError("URL must be a string")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AliasConfigError("URL is malformed (bad host or port)") from None
    engine = ENGINE_BY_SCHEME.get(parts.scheme.lower())
    if engine is None:
        raise AliasConfigError(
            f"URL scheme {parts.scheme!r} is not one of {', '.join(sorted(ENGINE_BY_SCHEME))}"
        )
    if engine.endswith("sqlite3") and parts.path[1:].startswith("file:"):
        # An SQLite URI (sqlite:///file:/path?mode=ro) keeps its own percent-encoding and
        # parameters: SQLite reads them, and the probe checks them (probing.vendors.sqlite).
        query = f"?{parts.query}" if parts.query else ""
        return {"ENGINE": engine, "NAME": f"{parts.path[1:]}{query}", "OPTIONS": {}}
    options = {key: coerce_option(value) for key, value in parse_qsl(parts.query)}
    if engine.endswith("sqlite3"):
        name = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        return {"ENGINE": engine, "NAME": name or unquote(parts.netloc), "OPTIONS": options}
    if "@" in parts.path:
        # A '/' left unencoded in the user name or password ends the host part early: the
        # password would become the database name, which is shown (a name's '@' is %40).
        raise AliasConfigError(
            "URL is malformed: percent-encode '/', '?', '#' and '@' in the user name and password"
        )
    entry: dict[str, Any] = {
        "ENGINE": engine,
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(port) if port else "",
        "OPTIONS": options,
    }
    if "%2f" in parts.netloc.lower():
        # A percent-encoded socket directory keeps its case, which urlsplit would lower.
        entry["HOST"] = unquote(parts.netloc.rsplit("@", 1)[-1].split(":")[0])
    return entry


def coerce_option(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def demo_databases(data_dir: Path) -> dict[str, dict[str, Any]]:
    """An embedded SQLite database so that a bare machine has something to watch."""
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(data_dir / "demo.sqlite3"),
            "DBHEALTH": {"create_demo": True},
        }
    }
