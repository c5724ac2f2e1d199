"""Probing one alias: the connection dbhealth holds to it, timing, and what a probe reads.

The prober opens the alias through Django's own machinery (its ENGINE and OPTIONS), so wrapper
engines and third-party backends keep working. An alias that keeps its connection costs a few
round trips per probe and no connection set-up; one beyond its server's connection cap opens a
connection per probe and closes it at once (see dbhealth.probing.service).

Only the probe thread of the current run uses the connection. Two calls come from other threads:
`interrupt` (the watchdog, at the deadline) and `retire` (the service closing); both are guarded by
`_connection_lock` and checked against the run they are meant for, so that a late interrupt never
reaches the next run's socket and a connection in use is never closed under its thread.
"""

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from django.db.utils import load_backend

from dbhealth.configuration.queries import CustomQuery
from dbhealth.configuration.targets import Target
from dbhealth.probing.custom_queries import failure_reason, run_query
from dbhealth.probing.failures import classify
from dbhealth.probing.redaction import redact, secrets_of
from dbhealth.probing.state import (
    ACTIVITY_PART,
    EXPENSIVE_PARTS,
    INTEGRITY_PART,
    MAINTENANCE_PART,
    SERVER_PART,
    IdHeadroom,
    Observations,
)
from dbhealth.probing.vendors import PROBES, StatementsUnavailable, VendorProbe
from dbhealth.project.insight import model_of_table, read_project

logger = logging.getLogger(__name__)

# Time kept back from a statement's server-side timeout so that the server cancels it, and says
# so, before the watchdog's interrupt at the deadline.
SERVER_TIMEOUT_HEADROOM = 0.2


@dataclass
class Progress:
    """What a probe has achieved so far; read by whoever settles the run (thread or watchdog)."""

    started: float = field(default_factory=time.monotonic)
    connect_seconds: float | None = None
    ping_seconds: float | None = None
    answered: bool = False
    error_reason: str | None = None
    error_message: str | None = None
    observations: Observations = field(default_factory=Observations)
    # part -> (reason, message) for optional parts that could not be read this time
    parts_failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Optional parts read to the end this time (what they found may still be None: unknown).
    parts_read: set[str] = field(default_factory=set)
    finished_after: float | None = None


class AliasProber:
    def __init__(self, target: Target, keep_connection: bool = True) -> None:
        self.target = target
        self.keep_connection = keep_connection
        self.vendor_probe: VendorProbe | None = PROBES.get(target.vendor)
        self._secrets = secrets_of(target.settings)
        self._wrapper: Any = None
        # Guards _wrapper, _current and _retired against interrupt/retire from other threads.
        self._connection_lock = threading.Lock()
        self._current: object | None = None
        self._retired = False
        # False when the vendor says the open connection must not serve a later probe.
        self._reusable = True
        # Connection settings the vendor named after the server refused its first ones.
        self._settings: dict[str, Any] | None = None

    def probe(
        self, run: object, deadline_at: float, parts: frozenset[str], progress: Progress
    ) -> None:
        """Probe once for `run`; never raises. The connection is closed afterwards when it is
        not to be kept, when it failed, or when the prober was retired meanwhile."""
        with self._connection_lock:
            self._current = run
        try:
            self._probe(deadline_at, parts, progress)
        except Exception as exc:
            progress.error_reason = classify(exc, self.vendor_probe)
            progress.error_message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self._discard_connection()
            release_frames(exc)
        finally:
            progress.finished_after = time.monotonic() - progress.started
            with self._connection_lock:
                self._current = None
                retired = self._retired
            if retired or not self.keep_connection or not self._reusable:
                self._discard_connection()

    def _probe(self, deadline_at: float, parts: frozenset[str], progress: Progress) -> None:
        if self.vendor_probe is None:
            raise LookupError(f"no probe for vendor {self.target.vendor!r}")
        reused = self._wrapper is not None and self._wrapper.connection is not None
        wrapper = self._connection(deadline_at, progress)
        try:
            cursor = wrapper.cursor()
            self._ping(wrapper, cursor, deadline_at, progress)
        except Exception:
            if not reused or time.monotonic() >= deadline_at:
                # Past the deadline the watchdog has interrupted us: a fresh connection would
                # only keep the alias busy for the driver's connect timeout.
                raise
            # The kept connection went bad (server restarted, idle timeout): one fresh try.
            self._discard_connection()
            wrapper = self._connection(deadline_at, progress)
            cursor = wrapper.cursor()
            self._ping(wrapper, cursor, deadline_at, progress)
        with cursor:
            # The server facts are optional like every part after the ping: a facts statement
            # the server refuses (SHOW REPLICA STATUS before MySQL 8.0.22) leaves the alias up.
            for part in (SERVER_PART, *EXPENSIVE_PARTS):
                if part in parts:
                    self._read_part(part, wrapper, cursor, deadline_at, progress)
        due = [query for query in self.target.queries if query.part in parts]
        for position, query in enumerate(due):
            if not self._run_query(query, wrapper, deadline_at, len(due) - position, progress):
                break

    def _read_part(
        self, part: str, wrapper: Any, cursor: Any, deadline_at: float, progress: Progress
    ) -> None:
        """An optional part: skipped when it cannot fit before the deadline (so that running
        out of time never costs the alias its state or its connection), marked failed when it
        fails, and fatal only when it broke the connection."""
        remaining = deadline_at - time.monotonic()
        # Round trips are what a far-away server makes slow: keep two of them in hand.
        if remaining <= SERVER_TIMEOUT_HEADROOM + 2 * (progress.ping_seconds or 0.0):
            progress.parts_failed[part] = ("timeout", "no time left before the deadline")
            return
        observations = progress.observations
        probe = self.vendor_probe
        try:
            if part == SERVER_PART:
                probe.read_server(wrapper, cursor, observations)
            elif part == ACTIVITY_PART:
                probe.read_activity(wrapper, cursor, observations)
            elif part == "size":
                observations.size_bytes = probe.read_size(wrapper, cursor)
            elif part == "ids":
                observations.id_headroom = name_models(
                    probe.read_ids(wrapper, cursor, self.target.id_headroom_top_n)
                )
            elif part == INTEGRITY_PART:
                observations.integrity_ok = probe.read_integrity(wrapper, cursor)
            elif part == MAINTENANCE_PART:
                probe.read_maintenance(wrapper, cursor, observations, self.target.table_top_n)
                for table in observations.tables or ():
                    table.model = model_of_table(table.table)
            elif part == "statements":
                statements = self.vendor_probe.read_statements(
                    wrapper,
                    cursor,
                    self.target.statement_top_n,
                    self.target.statement_text_length,
                    remaining - SERVER_TIMEOUT_HEADROOM,
                )
                if statements is not None:  # None: the vendor keeps no such statistics
                    observations.statements = statements
                    observations.statements_available = True
            else:
                observations.project = read_project(
                    wrapper, cursor, self.target.alias, migrations=self.target.migrations
                )
        except StatementsUnavailable as exc:
            observations.statements_available = False
            observations.statements_problem = str(exc)
        except Exception as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            progress.parts_failed[part] = (classify(exc, self.vendor_probe), message)
            self._raise_if_connection_broken(exc)
            return
        progress.parts_read.add(part)

    def _run_query(
        self, query: CustomQuery, wrapper: Any, deadline_at: float, left: int, progress: Progress
    ) -> bool:
        """A custom query, as an optional part of its own (`query:<name>`): its failure is its
        own, never the alias's. It may take an equal share of the time left among the `left`
        queries still to run, so that one slow query cannot starve the others. False when it
        broke the connection (nothing more can be read)."""
        remaining = deadline_at - time.monotonic()
        if remaining <= SERVER_TIMEOUT_HEADROOM + 2 * (progress.ping_seconds or 0.0):
            progress.parts_failed[query.part] = ("timeout", "no time left before the deadline")
            return True
        try:
            rows = run_query(
                self.target.vendor,
                wrapper,
                query,
                (remaining - SERVER_TIMEOUT_HEADROOM) / left,
                self.target.deadline,
                self._secrets,
            )
        except Exception as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            progress.parts_failed[query.part] = (failure_reason(exc, self.vendor_probe), message)
            if not wrapper.is_usable():
                self._reusable = False
                return False
            return True
        progress.observations.query_rows[query] = rows
        progress.parts_read.add(query.part)
        return True

    def _connection(self, deadline_at: float, progress: Progress) -> Any:
        if self._wrapper is not None:
            return self._wrapper
        # Driver timeouts and server-side statement timeouts follow the alias's own deadline,
        # the one deadline every probe of it runs under, whoever asked for the probe.
        settings = self._settings or self.vendor_probe.connection_settings(
            self.target.settings, self.target.deadline
        )
        self._reusable = self.vendor_probe.keep_connection(settings)
        wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, self.target.alias)
        # Runs of one alias follow each other but not always on the same thread.
        wrapper.inc_thread_sharing()
        with self._connection_lock:
            self._wrapper = wrapper
        started = time.monotonic()
        try:
            wrapper.ensure_connection()
        except Exception as exc:
            # A server may refuse a start-up setting (PgBouncer refuses `options`): the vendor
            # may name settings without it, which this alias's later connections keep.
            fallback = self.vendor_probe.settings_after_refusal(settings, exc)
            if fallback is None:
                raise
            self._settings = fallback
            self._discard_connection()
            return self._connection(deadline_at, progress)
        progress.connect_seconds = time.monotonic() - started
        self.vendor_probe.prepare_connection(wrapper, self.target.deadline)
        return wrapper

    def _ping(self, wrapper: Any, cursor: Any, deadline_at: float, progress: Progress) -> None:
        self.vendor_probe.start_probe(wrapper, max(0.0, deadline_at - time.monotonic()))
        started = time.monotonic()
        self.vendor_probe.ping(cursor)
        progress.ping_seconds = time.monotonic() - started
        progress.answered = True

    def _raise_if_connection_broken(self, error: Exception) -> None:
        wrapper = self._wrapper
        if wrapper is None or not wrapper.is_usable():
            raise error

    def interrupt(self, run: object) -> None:
        """Wake `run`'s probe thread, blocked past its deadline; a no-op for any other run."""
        with self._connection_lock:
            if self._current is not run:
                return
            raw = getattr(self._wrapper, "connection", None)
            if raw is not None and self.vendor_probe is not None:
                try:
                    self.vendor_probe.interrupt(raw)
                except Exception:
                    logger.debug("interrupting %s failed", self.target.alias, exc_info=True)

    def retire(self) -> None:
        """Close the connection now if no probe uses it, else when that probe ends."""
        with self._connection_lock:
            self._retired = True
            busy = self._current is not None
        if not busy:
            self._discard_connection()

    def _discard_connection(self) -> None:
        with self._connection_lock:
            wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            try:
                wrapper.close()
            except Exception:
                logger.debug("closing %s failed", self.target.alias, exc_info=True)


def release_frames(error: BaseException) -> None:
    """Free what the frames of a failed probe still hold. A connect that timed out leaves
    psycopg's half-open connection in a reference cycle with its traceback: its socket stayed
    open until the garbage collector ran, so a hung server collected one per probe (and, once
    resumed, could not shut down: each held a backend waiting for its startup packet)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def name_models(found: list[IdHeadroom] | None) -> list[IdHeadroom] | None:
    """Name the Django model behind each table, where the project has one (embedded mode)."""
    for item in found or ():
        item.model = model_of_table(item.table)
    return found
