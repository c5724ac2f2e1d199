"""Discovery: the databases of a server, listed every `refresh_interval`, each an alias of its own.

A `[discover.<name>]` table (DBHEALTH_DISCOVER when embedded) names a server and a glob. Its
databases are listed by one thread of the probe service: PostgreSQL's `pg_database` (those that
allow connections, templates aside), MySQL/MariaDB's schemata (system schemas aside), or the
files an SQLite glob matches. Each matching name becomes an alias named after the database, with
the table's connection settings; a new database appears in /metrics, /sd and the status page at
the next listing, a dropped one leaves. The listing holds one of the server's connection slots
(max_connections_per_server), so discovery never opens a connection beyond the cap.

A listing that fails keeps the aliases found before (a server that is down makes its aliases
down, not absent) and is logged once; at most `max_aliases` aliases come from one table, the
first by name, and `dbhealth_discovery_capped` says when more matched.
"""

import fnmatch
import glob
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db.utils import load_backend

from dbhealth.configuration.targets import (
    MAX_ALIASES,
    DiscoverySpec,
    Target,
    build_target,
    configured_targets,
    discovered_targets,
    publish_discovered,
)
from dbhealth.probing.failures import classify
from dbhealth.probing.redaction import redact, secrets_of
from dbhealth.probing.state import DiscoveryStatus
from dbhealth.probing.vendors import PROBES

logger = logging.getLogger("dbhealth")

POSTGRESQL_DATABASES = (
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
)
MYSQL_SCHEMATA = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME"
MYSQL_SYSTEM_SCHEMAS = {"information_schema", "mysql", "performance_schema", "sys"}
# The database a PostgreSQL listing connects to when the table names none.
POSTGRESQL_LISTING_DATABASE = "postgres"
# How long one listing may take, connection included.
LISTING_DEADLINE = 10.0
MAX_ALIAS_LENGTH = 200


def list_databases(spec: DiscoverySpec, deadline: float = LISTING_DEADLINE) -> list[str]:
    """Every database name of the server (SQLite: every file path the glob matches), sorted."""
    if spec.vendor == "sqlite":
        return sorted(path for path in glob.glob(spec.pattern) if Path(path).is_file())
    entry = dict(spec.entry)
    if spec.vendor == "postgresql":
        entry.setdefault("NAME", POSTGRESQL_LISTING_DATABASE)
    else:
        entry.setdefault("NAME", "information_schema")
    target = build_target(f"discover {spec.name}", entry, spec.alias_options)
    if target.problem is not None:
        raise ValueError(target.problem)
    probe = PROBES[spec.vendor]
    settings = probe.connection_settings(target.settings, deadline)
    wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, target.alias)
    try:
        wrapper.ensure_connection()
        with wrapper.cursor() as cursor:
            if spec.vendor == "postgresql":
                cursor.execute(POSTGRESQL_DATABASES)
                return [name for (name,) in cursor.fetchall()]
            cursor.execute(MYSQL_SCHEMATA)
            return [name for (name,) in cursor.fetchall() if name not in MYSQL_SYSTEM_SCHEMAS]
    finally:
        wrapper.close()


def alias_name(spec: DiscoverySpec, database: str) -> str:
    return Path(database).stem if spec.vendor == "sqlite" else database


def matching(spec: DiscoverySpec, databases: list[str]) -> list[str]:
    """The databases the table asks for, by its glob and its exclusions (on the alias name;
    SQLite's glob is matched by the file system already, its exclusions on name and path)."""
    found = []
    for database in databases:
        name = alias_name(spec, database)
        if spec.vendor != "sqlite" and not fnmatch.fnmatchcase(name, spec.pattern):
            continue
        if any(
            fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(database, pattern)
            for pattern in spec.exclude
        ):
            continue
        if not 0 < len(name) <= MAX_ALIAS_LENGTH or not name.isprintable():
            continue
        found.append(database)
    return found


@dataclass
class Listing:
    """What one table found last, and whether its last listing worked."""

    databases: list[str] = field(default_factory=list)
    targets: tuple[Target, ...] = ()
    ok: bool = False
    capped: bool = False
    listed_at: float | None = None  # monotonic
    problem: str | None = None


class DiscoveryRunner:
    """Lists every table's databases every refresh_interval, in one thread, and hands the
    resulting aliases to the probe service (`on_change`) when they changed."""

    def __init__(
        self,
        specs: tuple[DiscoverySpec, ...],
        slot: Callable[[tuple[str, ...], float], object],
        on_change: Callable[[], None],
    ) -> None:
        self._slot = slot
        self._on_change = on_change
        self._lock = threading.Lock()
        self._specs = specs
        self._listings: dict[str, Listing] = {spec.name: Listing() for spec in specs}
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """List once now (so that the first scrape and /sd see the aliases), then keep listing."""
        self._refresh(force=True)
        self._thread = threading.Thread(target=self._loop, name="dbhealth-discovery", daemon=True)
        self._thread.start()

    @property
    def specs(self) -> tuple[DiscoverySpec, ...]:
        return self._specs

    def stop(self) -> None:
        """No listing publishes after this returns (one in progress is dropped)."""
        with self._lock:
            self._stopped.set()
        self._wake.set()

    def respecify(self, specs: tuple[DiscoverySpec, ...]) -> None:
        """A reload changed the tables: list the new set now."""
        with self._lock:
            self._specs = specs
            self._listings = {spec.name: self._listings.get(spec.name, Listing()) for spec in specs}
        self._refresh(force=True)

    def status(self) -> dict[str, DiscoveryStatus]:
        with self._lock:
            return {
                name: DiscoveryStatus(
                    aliases=len(listing.targets), capped=listing.capped, ok=listing.ok
                )
                for name, listing in self._listings.items()
            }

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._until_next())
            self._wake.clear()
            if not self._stopped.is_set():
                self._refresh(force=False)

    def _until_next(self) -> float:
        now = time.monotonic()
        with self._lock:
            waits = [
                (listing.listed_at or now) + spec.refresh_interval - now
                for spec in self._specs
                for listing in (self._listings[spec.name],)
            ]
        return max(0.0, min(waits, default=60.0))

    def _refresh(self, force: bool) -> None:
        with self._lock:
            specs = self._specs
        now = time.monotonic()
        for spec in specs:
            listing = self._listings.get(spec.name)
            if listing is None:
                continue
            due = listing.listed_at is None or now - listing.listed_at >= spec.refresh_interval
            if force or due:
                self._list(spec, listing)
        self._publish()

    def _list(self, spec: DiscoverySpec, listing: Listing) -> None:
        problem = None
        try:
            if spec.vendor == "sqlite":
                databases = list_databases(spec)
            else:
                with self._slot(spec.server, LISTING_DEADLINE) as got:
                    if not got:
                        raise TimeoutError("no free connection slot of the server to list with")
                    databases = list_databases(spec)
        except Exception as exc:
            reason = classify(exc, PROBES.get(spec.vendor))
            problem = redact(f"{reason}: {type(exc).__name__}: {exc}", secrets_of(spec.entry))
        with self._lock:
            listing.listed_at = time.monotonic()
            if problem is not None:
                if listing.problem != problem:
                    logger.warning("discover %s: cannot list the databases: %s", spec.name, problem)
                listing.ok, listing.problem = False, problem
                return
            if listing.problem is not None:
                logger.info("discover %s: listing the databases again", spec.name)
            listing.ok, listing.problem = True, None
            listing.databases = matching(spec, databases)

    def _publish(self) -> None:
        """Every table's aliases, configured aliases and earlier tables winning a name, within
        each table's max_aliases and the service's MAX_ALIASES; on_change when they changed."""
        configured = configured_targets()
        taken = {target.alias for target in configured}
        room = MAX_ALIASES - len(configured)
        everything: list[Target] = []
        with self._lock:
            for spec in self._specs:
                listing = self._listings[spec.name]
                known = {target.settings.get("NAME"): target for target in listing.targets}
                targets = []
                wanted = [db for db in listing.databases if alias_name(spec, db) not in taken]
                allowed = max(0, min(spec.max_aliases, room))
                capped = len(wanted) > allowed
                if capped and not listing.capped:
                    logger.warning(
                        "discover %s: %d databases match, only the first %d are watched"
                        " (max_aliases)",
                        spec.name,
                        len(wanted),
                        allowed,
                    )
                listing.capped = capped
                for database in wanted[:allowed]:
                    target = known.get(database) or spec.target(database)
                    targets.append(target)
                    taken.add(target.alias)
                room -= len(targets)
                listing.targets = tuple(targets)
                everything += targets
            published = tuple(everything)
            before = {target.alias for target in discovered_targets()}
            changed = [t.alias for t in published] != [t.alias for t in discovered_targets()]
            # A stopped runner (settings changed, service closed) must not publish over the
            # next one's aliases: checked under the lock stop() takes.
            if changed and not self._stopped.is_set():
                publish_discovered(published)
            else:
                changed = False
        if changed:
            added = {t.alias for t in published} - before
            removed = before - {t.alias for t in published}
            if added or removed:
                logger.info(
                    "discovery: %d aliases (%d new, %d gone)",
                    len(published),
                    len(added),
                    len(removed),
                )
            self._on_change()
