"""Probing one alias: the connection dbhealth keeps to it, timing, and what a probe reads.

The prober opens the alias through Django's own machinery (its ENGINE and OPTIONS), so wrapper
engines and third-party backends keep working. It keeps that one connection between probes, so a
healthy scrape costs a few round trips and no connection set-up.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db.utils import load_backend

from exporter.failures import classify
from exporter.probes import PROBES, StatementsUnavailable, VendorProbe
from exporter.project_insight import read_project
from exporter.redaction import redact, secrets_of
from exporter.results import SERVER_PART, Observations
from exporter.targets import Target

logger = logging.getLogger(__name__)

# Time kept back from a statement's server-side timeout so that the server cancels it, and says
# so, before the runner's own deadline passes.
SERVER_TIMEOUT_HEADROOM = 0.2


@dataclass
class Progress:
    """What a probe thread has achieved so far; the runner reads it when the deadline comes."""

    started: float = field(default_factory=time.monotonic)
    connect_seconds: float | None = None
    ping_seconds: float | None = None
    answered: bool = False
    error_reason: str | None = None
    error_message: str | None = None
    observations: Observations = field(default_factory=Observations)
    parts_failed: dict[str, str] = field(default_factory=dict)
    finished_after: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


class AliasProber:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.vendor_probe: VendorProbe | None = PROBES.get(target.vendor)
        self._secrets = secrets_of(target.settings)
        self._wrapper: Any = None
        # Held while the connection is swapped or closed, so that `interrupt` from the runner's
        # thread never touches a file descriptor that has been closed and reused.
        self._connection_lock = threading.Lock()

    def probe(self, deadline_at: float, parts: frozenset[str], progress: Progress) -> None:
        try:
            self._probe(deadline_at, parts, progress)
        except Exception as exc:
            progress.error_reason = classify(exc, self.vendor_probe)
            progress.error_message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self._discard_connection()
        finally:
            progress.finished_after = time.monotonic() - progress.started

    def _probe(self, deadline_at: float, parts: frozenset[str], progress: Progress) -> None:
        if self.vendor_probe is None:
            raise LookupError(f"no probe for vendor {self.target.vendor!r}")
        probe = self.vendor_probe
        reused = self._wrapper is not None and self._wrapper.connection is not None
        wrapper = self._connection(deadline_at, progress)
        try:
            cursor = wrapper.cursor()
            self._ping(cursor, progress)
        except Exception:
            if not reused or time.monotonic() >= deadline_at:
                # Past the deadline the runner has interrupted us: a fresh connection would only
                # keep the alias's lock for the driver's connect timeout.
                raise
            # The kept connection went bad (server restarted, idle timeout): one fresh try.
            self._discard_connection()
            wrapper = self._connection(deadline_at, progress)
            cursor = wrapper.cursor()
            self._ping(cursor, progress)
        with cursor:
            observations = progress.observations
            if SERVER_PART in parts:
                probe.read_server(wrapper, cursor, observations)
            if "size" in parts:
                self._read_size(wrapper, cursor, progress)
            if "statements" in parts:
                self._read_statements(wrapper, cursor, deadline_at, progress)
            if "project" in parts:
                self._read_project(wrapper, cursor, progress)

    def _connection(self, deadline_at: float, progress: Progress) -> Any:
        if self._wrapper is not None:
            return self._wrapper
        remaining = max(0.05, deadline_at - time.monotonic())
        settings = self.vendor_probe.connection_settings(self.target.settings, remaining)
        wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, self.target.alias)
        # Probes of one alias run one at a time but not always on the same thread.
        wrapper.inc_thread_sharing()
        with self._connection_lock:
            self._wrapper = wrapper
        started = time.monotonic()
        wrapper.ensure_connection()
        progress.connect_seconds = time.monotonic() - started
        self.vendor_probe.prepare_connection(wrapper, self.target.deadline)
        return wrapper

    def _ping(self, cursor: Any, progress: Progress) -> None:
        started = time.monotonic()
        self.vendor_probe.ping(cursor)
        progress.ping_seconds = time.monotonic() - started
        progress.answered = True

    def _read_size(self, wrapper: Any, cursor: Any, progress: Progress) -> None:
        try:
            progress.observations.size_bytes = self.vendor_probe.read_size(wrapper, cursor)
        except Exception as exc:
            progress.parts_failed["size"] = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self._raise_if_connection_broken(exc)

    def _read_project(self, wrapper: Any, cursor: Any, progress: Progress) -> None:
        try:
            progress.observations.project = read_project(wrapper, cursor, self.target.alias)
        except Exception as exc:
            progress.parts_failed["project"] = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            self._raise_if_connection_broken(exc)

    def _read_statements(
        self, wrapper: Any, cursor: Any, deadline_at: float, progress: Progress
    ) -> None:
        observations = progress.observations
        timeout = deadline_at - time.monotonic() - SERVER_TIMEOUT_HEADROOM
        if timeout <= 0:
            progress.parts_failed["statements"] = "no time left before the deadline"
            return
        try:
            statements = self.vendor_probe.read_statements(
                wrapper,
                cursor,
                self.target.statement_top_n,
                self.target.statement_text_length,
                timeout,
            )
        except StatementsUnavailable as exc:
            observations.statements_available = False
            observations.statements_problem = str(exc)
            return
        except Exception as exc:
            progress.parts_failed["statements"] = redact(
                f"{type(exc).__name__}: {exc}", self._secrets
            )
            self._raise_if_connection_broken(exc)
            return
        if statements is not None:
            observations.statements = statements
            observations.statements_available = True

    def _raise_if_connection_broken(self, error: Exception) -> None:
        wrapper = self._wrapper
        if wrapper is None or not wrapper.is_usable():
            raise error

    def interrupt(self) -> None:
        """Called from the runner's thread when this alias's deadline has passed."""
        with self._connection_lock:
            raw = getattr(self._wrapper, "connection", None)
            if raw is not None and self.vendor_probe is not None:
                try:
                    self.vendor_probe.interrupt(raw)
                except Exception:
                    logger.debug("interrupting %s failed", self.target.alias, exc_info=True)

    def _discard_connection(self) -> None:
        with self._connection_lock:
            wrapper, self._wrapper = self._wrapper, None
            if wrapper is not None:
                try:
                    wrapper.close()
                except Exception:
                    logger.debug("closing %s failed", self.target.alias, exc_info=True)

    def close(self) -> None:
        self._discard_connection()
