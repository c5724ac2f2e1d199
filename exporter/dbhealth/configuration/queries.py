"""Custom queries: an operator's own SQL, exported as `dbhealth_query_<name>_<column>`.

Defined as `[queries.<name>]` in the TOML file or as the DBHEALTH_QUERIES dict in a host's
settings (same shape). Everything that can be checked without a database is checked here, when
the configuration is loaded, with a one-line error naming the query: a bad definition stops
start-up (and a reload keeps the old configuration) rather than failing on every scrape. How a
query is run, and the limits it runs under, is dbhealth.probing.custom_queries.
"""

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlparse
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dbhealth.configuration.options import key_names, positive_number, positive_whole_number

PREFIX = "dbhealth_query_"
PART_PREFIX = "query:"
NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
MAX_NAME_LENGTH = 100
KINDS = ("gauge", "counter")
VENDORS = ("postgresql", "mysql", "sqlite")
KEYS = {"aliases", "vendors", "sql", "labels", "metrics", "interval", "help", "max_series"}
DEFAULT_MAX_SERIES = 100
# What a query may start with: statements that ask, never ones that change data or the session.
QUERY_WORDS = ("SELECT", "WITH", "SHOW", "VALUES", "TABLE", "PRAGMA")
FIRST_WORD = re.compile(r"[A-Za-z]+")
# Label names every query series carries already, or that Prometheus keeps for itself.
RESERVED_LABELS = {"alias", "job", "instance"}


@dataclass(frozen=True)
class CustomQuery:
    name: str
    sql: str
    # Where it runs: the named aliases, else every alias of `vendors`; both: the named aliases
    # that are of those vendors.
    aliases: tuple[str, ...] | None
    vendors: tuple[str, ...] | None
    labels: tuple[str, ...]
    metrics: tuple[tuple[str, str], ...]  # (column, "gauge" | "counter"), in the order given
    interval: float | None  # None: the service's refresh_interval
    help: str
    max_series: int

    @property
    def part(self) -> str:
        """The part name its failures are counted under."""
        return f"{PART_PREFIX}{self.name}"

    def family_name(self, column: str) -> str:
        return f"{PREFIX}{self.name}_{column}"

    def runs_on(self, alias: str, vendor: str) -> bool:
        if self.aliases is not None and alias not in self.aliases:
            return False
        return self.vendors is None or vendor in self.vendors


def parse_queries(raw: Any, known_aliases: set[str] | None = None) -> tuple[CustomQuery, ...]:
    """Every query of a `queries` table, checked; ValueError with a one-line message naming the
    query otherwise. `known_aliases`, when given, are the aliases a query may name."""
    if not isinstance(raw, dict):
        raise ValueError("queries must be a table of [queries.<name>] entries")
    queries = tuple(parse_query(name, entry, known_aliases) for name, entry in raw.items())
    owners: dict[str, str] = {}
    for query in queries:
        for column, _ in query.metrics:
            family = query.family_name(column)
            if family in owners:
                raise ValueError(
                    f"query {query.name}: metric {family} is also made by query {owners[family]}"
                )
            owners[family] = query.name
    return queries


def parse_query(name: Any, entry: Any, known_aliases: set[str] | None) -> CustomQuery:
    shown = name if isinstance(name, str) and name.isprintable() else repr(name)
    try:
        return build_query(name, entry, known_aliases)
    except ValueError as exc:
        raise ValueError(f"query {shown[:60]}: {exc}") from None


def build_query(name: Any, entry: Any, known_aliases: set[str] | None) -> CustomQuery:
    if not isinstance(name, str) or not NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"the name must be lowercase letters, digits and _ (at most {MAX_NAME_LENGTH}), "
            "starting with a letter: it becomes part of metric names"
        )
    if not isinstance(entry, dict):
        raise ValueError("must be a table")
    unknown = set(entry) - KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {key_names(unknown)}")
    sql = single_statement(entry.get("sql"))
    aliases = names_list(entry, "aliases")
    vendors = names_list(entry, "vendors")
    if aliases is None and vendors is None:
        raise ValueError('needs aliases = [...] or vendors = [...] (one of "postgresql", ...)')
    for vendor in vendors or ():
        if vendor not in VENDORS:
            raise ValueError(f"vendor {vendor!r} is not one of {', '.join(VENDORS)}")
    if known_aliases is not None:
        missing = set(aliases or ()) - known_aliases
        if missing:
            raise ValueError(f"no database alias {key_names(missing)}")
    labels = names_list(entry, "labels") or ()
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError('needs metrics = { <column> = "gauge" | "counter", ... }')
    for column in (*labels, *metrics):
        column_name(column)
    reserved = RESERVED_LABELS.intersection(labels)
    if reserved:
        raise ValueError(f"label column(s) {key_names(reserved)} would clash with dbhealth's own")
    if len(set(labels)) != len(labels):
        raise ValueError("a label column is named twice")
    both = set(labels) & set(metrics)
    if both:
        raise ValueError(f"column(s) {key_names(both)} cannot be both a label and a metric")
    for column, kind in metrics.items():
        if kind not in KINDS:
            raise ValueError(f'metric column {column}: kind must be "gauge" or "counter"')
        if kind == "counter" and column.endswith("_total"):
            raise ValueError(f"metric column {column}: a counter gets _total added; drop it")
    interval = entry.get("interval")
    help_text = entry.get("help", f"Custom query {name}.")
    if not isinstance(help_text, str) or not help_text.strip():
        raise ValueError("help must be a non-empty string")
    return CustomQuery(
        name=name,
        sql=sql,
        aliases=aliases,
        vendors=vendors,
        labels=tuple(labels),
        metrics=tuple(metrics.items()),
        interval=None if interval is None else positive_number(interval, "interval"),
        help=" ".join(help_text.split()),
        max_series=positive_whole_number(entry.get("max_series", DEFAULT_MAX_SERIES), "max_series"),
    )


def single_statement(sql: Any) -> str:
    """One statement that asks (QUERY_WORDS), without a trailing semicolon. The drivers refuse a
    second statement and the read-only transaction any write (see custom_queries); refusing them
    here says so at start-up instead of on every probe, and keeps out statements that change the
    session (SET, PRAGMA x = y), which a rollback would not always undo."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError('needs sql = "SELECT ..."')
    statements = [s for s in sqlparse.split(sql) if s.strip().rstrip(";").strip()]
    if len(statements) != 1:
        raise ValueError("sql must be exactly one statement")
    statement = statements[0].strip().rstrip(";").rstrip()
    first = sqlparse.parse(statement)[0].token_first(skip_cm=True, skip_ws=True)
    word = FIRST_WORD.match(str(first or ""))
    verb = word.group().upper() if word else ""
    if verb not in QUERY_WORDS or (verb == "PRAGMA" and "=" in statement):
        raise ValueError(
            f"sql must be a query: it starts with {verb or 'no word'!r}, not one of "
            f"{', '.join(QUERY_WORDS)} (PRAGMA without =)"
        )
    return statement


def names_list(entry: dict[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in entry:
        return None
    value = entry[key]
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item and item.isprintable() for item in value
    ):
        raise ValueError(f"{key} must be a list of names")
    if key != "labels" and not value:
        raise ValueError(f"{key} must name at least one")
    return tuple(value)


def column_name(column: Any) -> str:
    if not isinstance(column, str) or not NAME.match(column) or len(column) > MAX_NAME_LENGTH:
        shown = column if isinstance(column, str) and column.isprintable() else repr(column)
        raise ValueError(
            f"column {shown[:60]!r} must be lowercase letters, digits and _, starting with a "
            "letter (alias it in the SQL: AS some_name): it becomes a metric or label name"
        )
    return column


@cache
def configured_queries() -> tuple[CustomQuery, ...]:
    """DBHEALTH_QUERIES of the settings in use (the TOML file's [queries], or a host's own);
    ImproperlyConfigured when it cannot be used."""
    raw = getattr(settings, "DBHEALTH_QUERIES", None) or {}
    try:
        return parse_queries(raw, set(settings.DATABASES))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DBHEALTH_QUERIES: {exc}") from None


def queries_for(alias: str, vendor: str) -> tuple[CustomQuery, ...]:
    return tuple(query for query in configured_queries() if query.runs_on(alias, vendor))
