"""Probe rounds: every alias at once, each under its own deadline, shared by concurrent scrapes.

A round never takes longer than the longest deadline in force: a probe thread still blocked when
its alias's deadline passes is interrupted and left to finish on its own, while the alias is
reported as timed out. It keeps the alias's lock until it really ends: the next round waits for
that lock within its own deadline instead of stacking a second probe on a database that does not
answer.
"""

import copy
import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from exporter.prober import AliasProber, Progress
from exporter.project_insight import project_layout
from exporter.results import (
    EXPENSIVE_PARTS,
    SERVER_FACTS,
    SERVER_PART,
    AliasState,
    ProbeOutcome,
    ServiceState,
)
from exporter.state_store import StateStore
from exporter.targets import ServiceOptions, Target, load_targets, service_options

MINIMUM_DEADLINE = 0.05


@dataclass
class Launch:
    target: Target
    prober: AliasProber
    progress: Progress
    deadline_at: float


class ProbeRunner:
    def __init__(self, store: StateStore, options: ServiceOptions) -> None:
        self.store = store
        self.options = options
        self._probers: dict[str, AliasProber] = {}

    def state_for(self, targets: tuple[Target, ...], budget: float | None = None) -> ServiceState:
        """The freshest state of these aliases, probing them unless a round just did."""
        arrival = time.time()
        started = time.monotonic()
        lock_timeout = budget if budget is not None else max_deadline(targets) + 1.0
        aliases = [target.alias for target in targets]
        with self.store.round_lock(aliases, lock_timeout) as acquired:
            state = self.store.load()
            if not acquired:
                return state
            fresh_since = arrival - self.options.min_interval
            stale = [
                t
                for t in targets
                if state.aliases.get(t.alias, AliasState()).probed_at < fresh_since
            ]
            if not stale:
                return state
            if budget is not None:
                # Time spent waiting for another scrape's round comes out of this one's budget.
                budget = max(MINIMUM_DEADLINE, budget - (time.monotonic() - started))
            return self.store.merge(self._run_round(stale, state, budget))

    def _run_round(
        self, targets: list[Target], state: ServiceState, budget: float | None
    ) -> dict[str, AliasState]:
        now = time.time()
        probed = {
            target.alias: state.aliases.get(target.alias, AliasState()).copy() for target in targets
        }
        launches: list[Launch] = []
        outcomes: dict[str, ProbeOutcome] = {}
        usable = [target for target in targets if target.problem is None]
        readers = server_readers(usable, probed)
        for target in targets:
            if target.problem is not None:
                outcomes[target.alias] = ProbeOutcome(
                    up=False, reason="config", message=target.problem
                )
                continue
            deadline = max(MINIMUM_DEADLINE, min(target.deadline, budget or target.deadline))
            parts = due_parts(probed[target.alias], now, self.options)
            if target.alias in readers.values():
                parts |= {SERVER_PART}
            launches.append(self._launch(target, parts, deadline))
        for launch in sorted(launches, key=lambda item: item.deadline_at):
            launch.progress.done.wait(max(0.0, launch.deadline_at - time.monotonic()))
            if not launch.progress.done.is_set():
                launch.prober.interrupt()
            outcomes[launch.target.alias] = outcome_of(launch)
        share_server_facts(usable, readers, outcomes)
        finished = time.time()
        for alias, outcome in outcomes.items():
            record(probed[alias], outcome, finished)
        return probed

    def _launch(self, target: Target, parts: frozenset[str], deadline: float) -> Launch:
        prober = self._probers.get(target.alias)
        if prober is None:
            prober = self._probers[target.alias] = AliasProber(target)
        progress = Progress()
        deadline_at = progress.started + deadline

        def run() -> None:
            lock = self.store.alias_lock(target.alias, deadline_at)
            if lock is None:
                progress.error_reason = "timeout"
                progress.error_message = "the previous probe of this alias has not finished yet"
                progress.done.set()
                return
            try:
                prober.probe(deadline_at, parts, progress)
            finally:
                # Released before `done`: a round that sees the probe done may probe again.
                lock.release()
                progress.done.set()

        threading.Thread(target=run, name=f"dbhealth-probe-{target.alias}", daemon=True).start()
        return Launch(target=target, prober=prober, progress=progress, deadline_at=deadline_at)

    def close(self) -> None:
        for prober in self._probers.values():
            prober.close()


def max_deadline(targets: tuple[Target, ...] | list[Target]) -> float:
    return max((target.deadline for target in targets), default=1.0)


def server_key(target: Target) -> tuple[str, ...]:
    """Aliases with the same key see the same server through the same eyes (same user)."""
    if target.vendor == "sqlite":
        return ("sqlite", target.alias)
    return (target.vendor, target.host, target.port, str(target.settings.get("USER") or ""))


def server_readers(targets: list[Target], states: dict[str, AliasState]) -> dict[tuple, str]:
    """One alias per server reads its facts: preferably one that answered last time."""
    readers: dict[tuple, str] = {}
    for target in sorted(targets, key=lambda item: (not states[item.alias].up, item.alias)):
        readers.setdefault(server_key(target), target.alias)
    return readers


def share_server_facts(
    targets: list[Target], readers: dict[tuple, str], outcomes: dict[str, ProbeOutcome]
) -> None:
    for target in targets:
        reader = readers[server_key(target)]
        outcome, source = outcomes[target.alias], outcomes[reader]
        if reader == target.alias or not (outcome.up and source.up):
            continue
        for fact in SERVER_FACTS:
            setattr(outcome.observations, fact, getattr(source.observations, fact))


def due_parts(state: AliasState, now: float, options: ServiceOptions) -> frozenset[str]:
    """Expensive parts are read at most once per refresh interval; failures are never cached."""
    collected_at = {
        "size": state.size_at,
        "statements": state.statements_at,
        "project": state.project_at,
    }
    return frozenset(
        part
        for part in EXPENSIVE_PARTS
        if collected_at[part] is None or now - collected_at[part] >= options.refresh_interval
    )


def outcome_of(launch: Launch) -> ProbeOutcome:
    progress = launch.progress
    finished = progress.done.is_set()
    elapsed = progress.finished_after if finished else time.monotonic() - progress.started
    common = {
        "probe_seconds": elapsed,
        "connect_seconds": progress.connect_seconds,
        "ping_seconds": progress.ping_seconds,
    }
    if finished and progress.error_reason is None:
        return ProbeOutcome(up=True, observations=progress.observations, **common)
    if finished:
        return ProbeOutcome(
            up=False, reason=progress.error_reason, message=progress.error_message, **common
        )
    if progress.answered:
        # It answered the ping; only the slower reads ran out of time. Report what was read.
        return ProbeOutcome(up=True, observations=copy.copy(progress.observations), **common)
    return ProbeOutcome(
        up=False,
        reason="timeout",
        message=f"no answer within the {launch.deadline_at - progress.started:.2f} s deadline",
        **common,
    )


def record(state: AliasState, outcome: ProbeOutcome, now: float) -> None:
    state.probed_at = now
    state.probe_seconds = outcome.probe_seconds
    if outcome.connect_seconds is not None:
        state.connect_seconds = outcome.connect_seconds
    state.ping_seconds = outcome.ping_seconds
    if not outcome.up:
        reason = outcome.reason or "error"
        state.up = False
        state.reason = reason
        state.message = outcome.message
        state.failures[reason] = state.failures.get(reason, 0) + 1
        state.last_failure[reason] = now
        return
    observed = outcome.observations
    state.up = True
    state.reason = None
    state.message = None
    state.last_success = now
    # Server facts are read on every round; the version is kept when a round could not read it.
    version = state.version
    for fact in SERVER_FACTS:
        setattr(state, fact, getattr(observed, fact))
    state.version = observed.version or version
    if observed.size_bytes is not None:
        state.size_bytes = observed.size_bytes
        state.size_at = now
    if observed.statements_available is not None:
        state.statements_available = observed.statements_available
        state.statements_problem = observed.statements_problem
    if observed.statements is not None:
        state.statements = observed.statements
        state.statements_at = now
    if observed.project is not None:
        state.project = observed.project
        state.project_at = now


_runners: dict[int, ProbeRunner] = {}
_runners_lock = threading.Lock()


def runner() -> ProbeRunner:
    """The runner of this process; a forked worker builds its own connections and locks."""
    pid = os.getpid()
    with _runners_lock:
        if pid not in _runners:
            _runners.clear()
            store = StateStore(state_directory())
            _runners[pid] = ProbeRunner(store, service_options())
        return _runners[pid]


def state_directory() -> Path:
    """DBHEALTH_STATE_DIR, else a private directory per project, so an embedding host needs none.

    Worker processes of one project derive the same name and so share one state.
    """
    configured = getattr(settings, "DBHEALTH_STATE_DIR", None)
    if configured:
        return Path(configured)
    project = f"{settings.SETTINGS_MODULE}:{sorted(settings.DATABASES)}:{Path.cwd()}"
    digest = hashlib.sha256(project.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"dbhealth-{os.geteuid()}-{digest}"


def forget_configuration(**kwargs) -> None:
    """Settings changed (tests, reloads): re-read targets and options, drop kept connections."""
    load_targets.cache_clear()
    service_options.cache_clear()
    project_layout.cache_clear()
    with _runners_lock:
        for existing in _runners.values():
            existing.close()
        _runners.clear()


def current_state(
    aliases: list[str] | None = None, budget: float | None = None
) -> tuple[tuple[Target, ...], ServiceState]:
    targets = load_targets()
    if aliases is not None:
        targets = tuple(target for target in targets if target.alias in aliases)
    return targets, runner().state_for(targets, budget)
