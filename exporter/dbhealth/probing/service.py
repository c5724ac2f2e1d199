"""The one owner of probing in a process: every connection, every probe in flight, all state.

A scrape asks for a snapshot of some aliases. Aliases probed less than `min_interval` ago are
answered from memory; an alias with a probe in flight is waited for (scrapes share probes); the
others are probed now, each in a thread of its own under the alias's own deadline. The scrape waits
at most its budget (Prometheus's scrape timeout), then answers with what is recorded: a probe it
stopped waiting for goes on and is recorded by whoever finishes it. So one scraper's short budget
never becomes a failure that other scrapers see; only an alias's own deadline makes it `timeout`.

The watchdog thread settles a probe whose deadline has passed (recording `timeout`, or `up` with
what was read when the alias had already answered) and interrupts its connection, so that the
probe thread wakes and ends. A probe thread that cannot be woken (a connect to a stopped host)
keeps its alias busy: the next probe of that alias waits for it to end, within its own deadline,
before it touches the database, so probes of one alias are never stacked.

Locks: `_lock` guards the published states, the probes in flight, the server facts and the round
counter; it is held only to read or swap those, never while waiting on a database. Each
AliasProber has its own lock for its connection (see alias_prober.py), and the watchdog one
for its queue. Nothing takes `_lock` while holding another of these locks.
"""

import copy
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dbhealth.configuration.demo import ensure_demo_databases
from dbhealth.configuration.queries import configured_queries
from dbhealth.configuration.targets import ServiceOptions, Target, load_targets, service_options
from dbhealth.probing.alias_prober import AliasProber, Progress
from dbhealth.probing.custom_queries import due_queries, record_queries
from dbhealth.probing.state import (
    ACTIVITY_FIELDS,
    ACTIVITY_PART,
    EXPENSIVE_PARTS,
    INTEGRITY_PART,
    MAINTENANCE_FIELDS,
    MAINTENANCE_PART,
    REFRESHED_PARTS,
    SERVER_FACTS,
    SERVER_PART,
    SESSION_FIELDS,
    AliasState,
    Observations,
    ProbeOutcome,
    ServerFacts,
    ServiceState,
)
from dbhealth.probing.vendors import PROBES, VendorProbe
from dbhealth.project.insight import project_layout

logger = logging.getLogger("dbhealth")

# How long a request without a budget (CLI, /healthz without the header) waits beyond the longest
# deadline: the watchdog settles every probe at its deadline, so this only absorbs scheduling.
UNBUDGETED_GRACE = 0.5


@dataclass(eq=False)
class ProbeRun:
    """One probe of one alias, from its start until its thread ends."""

    target: Target
    prober: AliasProber
    parts: frozenset[str]
    deadline_at: float  # monotonic
    # The run before, whose thread was still alive when this one started: waited for first.
    after: "ProbeRun | None" = None
    progress: Progress = field(default_factory=Progress)
    settled: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    # What the thread waits for before it may probe, if anything: said when the deadline comes.
    waiting_for: str | None = None


@dataclass
class ServerConnections:
    """The connection budget of one database server (vendor, host, port).

    Aliases in `kept` hold one connection each between probes. The others open a connection per
    probe, and at most `spare` of those are open at once, so the server never sees more than
    `max_connections_per_server` connections from this service.
    """

    kept: frozenset[str]
    spare: threading.BoundedSemaphore | None
    limit: int


def plan_connections(
    targets: Iterable[Target], limit: int
) -> dict[tuple[str, ...], ServerConnections]:
    """Up to `limit` aliases of a server keep a connection; with more, the first half of the
    limit keep theirs and the rest take turns on the other half."""
    by_server: dict[tuple[str, ...], list[str]] = {}
    for target in targets:
        by_server.setdefault(server_key(target), []).append(target.alias)
    plan = {}
    for key, aliases in by_server.items():
        keep = len(aliases) if len(aliases) <= limit else limit // 2
        spare = limit - keep if len(aliases) > limit else 0
        plan[key] = ServerConnections(
            kept=frozenset(aliases[:keep]),
            spare=threading.BoundedSemaphore(spare) if spare else None,
            limit=limit,
        )
    return plan


def server_key(target: Target) -> tuple[str, ...]:
    """Aliases with the same key are databases of one server."""
    if target.vendor == "sqlite":
        return ("sqlite", target.alias)
    return (target.vendor, target.host, target.port)


def facts_key(target: Target) -> tuple[str, ...]:
    """Aliases with the same key see the same server facts (same server, same user)."""
    return (*server_key(target), str(target.settings.get("USER") or ""))


class Watchdog:
    """One thread that calls `on_deadline(run)` when a watched time of a run passes, unless the
    run's thread has ended by then."""

    def __init__(self, on_deadline: Callable[[ProbeRun], None]) -> None:
        self._on_deadline = on_deadline
        self._condition = threading.Condition()
        self._queue: list[tuple[float, int, ProbeRun]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, run: ProbeRun, at: float) -> None:
        with self._condition:
            heapq.heappush(self._queue, (at, next(self._order), run))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="dbhealth-watchdog", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def ended(self) -> None:
        """A run's thread ended: its deadlines need no watching any more."""
        with self._condition:
            self._condition.notify()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while True:
                    if any(entry[2].ended.is_set() for entry in self._queue):
                        self._queue = [e for e in self._queue if not e[2].ended.is_set()]
                        heapq.heapify(self._queue)
                    if not self._queue:
                        # Nothing to watch: end; the next watch() starts a new thread.
                        self._thread = None
                        return
                    wait = self._queue[0][0] - time.monotonic()
                    if wait <= 0:
                        run = heapq.heappop(self._queue)[2]
                        break
                    self._condition.wait(wait)
            if not run.ended.is_set():
                try:
                    self._on_deadline(run)
                except Exception:
                    logger.exception("settling the probe of %s at its deadline failed", run.target)


class ProbeService:
    def __init__(self, targets: Iterable[Target], options: ServiceOptions) -> None:
        targets = tuple(targets)
        self.options = options
        self._lock = threading.Lock()
        self._states: dict[str, AliasState] = {}
        self._runs: dict[str, ProbeRun] = {}
        self._facts: dict[tuple[str, ...], ServerFacts] = {}
        self._facts_readers: dict[tuple[str, ...], ProbeRun] = {}
        self._rounds = 0
        self._probers: dict[str, AliasProber] = {}
        self._plan(targets)
        self._watchdog = Watchdog(self._deadline_passed)

    def _plan(self, targets: tuple[Target, ...]) -> None:
        """Connection budgets and fact sharing for this set of targets."""
        self._connections = plan_connections(targets, self.options.max_connections_per_server)
        self._aliases_by_facts: dict[tuple[str, ...], list[Target]] = {}
        for target in targets:
            self._aliases_by_facts.setdefault(facts_key(target), []).append(target)

    # -- what scrapes call --------------------------------------------------------------------

    def snapshot(self, targets: Iterable[Target], budget: float | None = None) -> ServiceState:
        """The state of these aliases, probing those not probed within `min_interval`.

        Returns after at most `budget` seconds (every probe is settled by its own deadline when
        there is no budget), with the latest recorded state of each alias ever probed.
        """
        targets = tuple(targets)
        arrival = time.monotonic()
        waiting: list[ProbeRun] = []
        with self._lock:
            due = []
            fresh_since = arrival - self.options.min_interval
            for target in targets:
                run = self._runs.get(target.alias)
                state = self._states.get(target.alias)
                if run is not None and not run.settled.is_set():
                    waiting.append(run)
                elif state is None or state.checked_at < fresh_since:
                    due.append(target)
            if due:
                self._rounds += 1
                started = self._start(due, arrival)
                waiting.extend(started)
        if budget is None:
            budget = max((t.deadline for t in targets), default=0.0) + UNBUDGETED_GRACE
        wait_until = arrival + budget
        for run in waiting:
            run.settled.wait(max(0.0, wait_until - time.monotonic()))
        with self._lock:
            aliases = {t.alias: self._states[t.alias] for t in targets if t.alias in self._states}
            return ServiceState(rounds=self._rounds, aliases=aliases)

    def reconfigure(self, targets: Iterable[Target], options: ServiceOptions) -> None:
        """Take a reloaded configuration: aliases whose settings and options did not change keep
        their connection, state and counters; removed aliases close theirs; new ones start
        fresh. A changed alias keeps its counters (the series are the same) but reconnects."""
        targets = tuple(targets)
        wanted = {target.alias: target for target in targets}
        with self._lock:
            self.options = options
            self._plan(targets)
            retired = []
            for alias, prober in list(self._probers.items()):
                target = wanted.get(alias)
                keep = self._connections[server_key(target)].kept if target else frozenset()
                unchanged = (
                    target is not None
                    and target == prober.target
                    and target.settings == prober.target.settings
                    and (alias in keep) == prober.keep_connection
                )
                if not unchanged:
                    retired.append(self._probers.pop(alias))
            for alias in list(self._states):
                if alias not in wanted:
                    del self._states[alias]
            self._facts.clear()
        for prober in retired:
            prober.retire()

    def close(self) -> None:
        """Close every connection: at once where idle, else when its probe ends."""
        with self._lock:
            probers, self._probers = list(self._probers.values()), {}
        for prober in probers:
            prober.retire()

    # -- probing -----------------------------------------------------------------------------

    def _start(self, due: list[Target], now: float) -> list[ProbeRun]:
        """Called with `_lock` held: start a probe of every due alias."""
        readers = self._pick_facts_readers(due, now)
        runs = []
        for target in due:
            if target.problem is not None:
                self._record(
                    target, ProbeOutcome(up=False, reason="config", message=target.problem)
                )
                continue
            state = self._states.get(target.alias) or AliasState()
            parts = due_parts(state, now, self.options.refresh_interval, target.integrity_interval)
            if target.alias in readers:
                parts |= {SERVER_PART}
            parts |= due_queries(state, target.queries, now, self.options.refresh_interval)
            run = ProbeRun(
                target=target,
                prober=self._prober(target),
                parts=parts,
                deadline_at=now + target.deadline,
                after=self._runs.get(target.alias),
            )
            if target.alias in readers:
                self._facts_readers[facts_key(target)] = run
            self._runs[target.alias] = run
            runs.append(run)
        for run in runs:
            self._watchdog.watch(run, run.deadline_at)
            threading.Thread(
                target=self._probe, args=(run,), name=f"dbhealth-probe-{run.target.alias}"
            ).start()
        return runs

    def _pick_facts_readers(self, due: list[Target], now: float) -> set[str]:
        """One alias per server reads its facts, when they are older than min_interval and no
        probe in flight is reading them already; preferably one that answered last time."""
        readers: dict[tuple[str, ...], str] = {}
        fresh_since = now - self.options.min_interval
        candidates = [t for t in due if t.problem is None]
        candidates.sort(key=lambda t: not (self._states.get(t.alias) or AliasState()).up)
        for target in candidates:
            key = facts_key(target)
            if key in readers:
                continue
            facts = self._facts.get(key)
            reading = self._facts_readers.get(key)
            if reading is not None and not reading.settled.is_set():
                continue
            if facts is None or facts.read_at < fresh_since:
                readers[key] = target.alias
        return set(readers.values())

    def _prober(self, target: Target) -> AliasProber:
        prober = self._probers.get(target.alias)
        if prober is None:
            plan = self._connections.get(server_key(target))
            keep = plan is None or target.alias in plan.kept
            prober = self._probers[target.alias] = AliasProber(target, keep_connection=keep)
        return prober

    def _probe(self, run: ProbeRun) -> None:
        """The probe thread: wait for the alias's previous probe and for a connection slot (both
        within the deadline), probe, record, end."""
        try:
            if run.after is not None:
                run.waiting_for = "the previous probe of this alias to end"
                if not run.after.ended.wait(max(0.0, run.deadline_at - time.monotonic())):
                    self._settle(run, waited_outcome(run))
                    return
            slot = None
            if not run.prober.keep_connection:
                plan = self._connections[server_key(run.target)]
                slot = plan.spare
                run.waiting_for = (
                    f"one of the server's {plan.limit} connections (max_connections_per_server)"
                )
                if not slot.acquire(timeout=max(0.0, run.deadline_at - time.monotonic())):
                    self._settle(run, waited_outcome(run))
                    return
            run.waiting_for = None
            try:
                run.prober.probe(run, run.deadline_at, run.parts, run.progress)
            finally:
                if slot is not None:
                    slot.release()
            self._settle(run, finished_outcome(run.progress, SERVER_PART in run.parts))
        finally:
            with self._lock:
                if self._runs.get(run.target.alias) is run:
                    previous = run.after
                    if previous is not None and not previous.ended.is_set():
                        # Gave up waiting for it: the next probe must wait for it in turn.
                        self._runs[run.target.alias] = previous
                    else:
                        del self._runs[run.target.alias]
            run.ended.set()
            self._watchdog.ended()

    def _settle(self, run: ProbeRun, outcome: ProbeOutcome) -> None:
        with self._lock:
            if not run.settled.is_set():
                self._record(run.target, outcome)
                run.settled.set()

    def _deadline_passed(self, run: ProbeRun) -> None:
        """The watchdog's call: settle the run as it stands, then wake its thread.

        An alias that answered its ping is only slow in an optional read, which the server's own
        statement timeout ends: its connection is cut only if its thread has not ended one more
        deadline later. Cutting it at once made a far-away alias reconnect on every probe.
        """
        with self._lock:
            first_call = not run.settled.is_set()
            if first_call:
                self._record(run.target, deadline_outcome(run))
                run.settled.set()
        if first_call and run.progress.answered:
            self._watchdog.watch(run, run.deadline_at + run.target.deadline)
            return
        run.prober.interrupt(run)

    # -- recording ---------------------------------------------------------------------------

    def _record(self, target: Target, outcome: ProbeOutcome) -> None:
        """Called with `_lock` held: publish the alias's next state and log a change of it."""
        previous = self._states.get(target.alias)
        state = (previous or AliasState()).evolve()
        now = time.monotonic()
        probe = PROBES.get(target.vendor)
        server_facts = probe.server_facts if probe is not None else SERVER_FACTS
        apply_outcome(state, outcome, wall=time.time(), now=now, server_facts=server_facts)
        if outcome.up:
            record_queries(state, outcome, target.queries, now)
            key = facts_key(target)
            if outcome.read_server:
                facts = {fact: getattr(outcome.observations, fact) for fact in server_facts}
                self._facts[key] = ServerFacts(values=facts, read_at=now)
                self._share_facts(key, target.alias)
            if key in self._facts:
                apply_facts(state, self._facts[key], target.database)
        self._states[target.alias] = state
        log_change(target, previous, state)

    def _share_facts(self, key: tuple[str, ...], reader: str) -> None:
        """Fresh facts of a server go to every alias on it that is up now."""
        facts = self._facts[key]
        for other in self._aliases_by_facts.get(key, ()):
            current = self._states.get(other.alias)
            if other.alias != reader and current is not None and current.up:
                updated = current.evolve()
                apply_facts(updated, facts, other.database)
                self._states[other.alias] = updated


def due_parts(
    state: AliasState, now: float, refresh_interval: float, integrity_interval: float
) -> frozenset[str]:
    """Activity on every probe; the refreshed parts at most once per refresh interval, the
    integrity check once per integrity interval; failures are never cached."""
    read_at = {
        "size": state.size_at,
        "statements": state.statements_at,
        "project": state.project_at,
        "ids": state.ids_at,
        MAINTENANCE_PART: state.maintenance_at,
    }
    due = {ACTIVITY_PART}
    due.update(
        part
        for part in REFRESHED_PARTS
        if read_at[part] is None or now - read_at[part] >= refresh_interval
    )
    if state.integrity_at is None or now - state.integrity_at >= integrity_interval:
        due.add(INTEGRITY_PART)
    return frozenset(due)


def finished_outcome(progress: Progress, read_server: bool) -> ProbeOutcome:
    common = {
        "probe_seconds": progress.finished_after or 0.0,
        "connect_seconds": progress.connect_seconds,
        "ping_seconds": progress.ping_seconds,
    }
    if progress.error_reason is None:
        return ProbeOutcome(
            up=True,
            observations=progress.observations,
            read_server=read_server,
            parts_failed=dict(progress.parts_failed),
            parts_read=frozenset(progress.parts_read),
            **common,
        )
    return ProbeOutcome(
        up=False, reason=progress.error_reason, message=progress.error_message, **common
    )


def deadline_outcome(run: ProbeRun) -> ProbeOutcome:
    progress = run.progress
    common = {
        "probe_seconds": time.monotonic() - progress.started,
        "connect_seconds": progress.connect_seconds,
        "ping_seconds": progress.ping_seconds,
    }
    if progress.answered:
        # It answered the ping; only the slower reads ran out of time. Report what was read;
        # the server facts, possibly half read, come from the server's last full reading.
        observed = answered_observations(progress, run.prober.vendor_probe)
        read = frozenset(progress.parts_read)
        failed = dict(progress.parts_failed)
        for part in (*EXPENSIVE_PARTS, *(query.part for query in run.target.queries)):
            if part in run.parts and part not in failed and part not in read:
                failed[part] = ("timeout", "the deadline passed while reading it")
        return ProbeOutcome(
            up=True, observations=observed, parts_failed=failed, parts_read=read, **common
        )
    if run.waiting_for is not None:
        return waited_outcome(run)
    message = f"no answer within the {run.target.deadline:.2f} s deadline"
    return ProbeOutcome(up=False, reason="timeout", message=message, **common)


def answered_observations(progress: Progress, probe: VendorProbe | None) -> Observations:
    """What a probe past its deadline had read, less any half-read server facts."""
    observed = copy.copy(progress.observations)
    for fact in probe.server_facts if probe is not None else SERVER_FACTS:
        setattr(observed, fact, None)
    return observed


def waited_outcome(run: ProbeRun) -> ProbeOutcome:
    return ProbeOutcome(
        up=False,
        reason="timeout",
        message=f"waited the whole {run.target.deadline:.2f} s deadline for {run.waiting_for}",
        probe_seconds=time.monotonic() - run.progress.started,
    )


def apply_outcome(
    state: AliasState,
    outcome: ProbeOutcome,
    wall: float,
    now: float,
    server_facts: tuple[str, ...] = SERVER_FACTS,
) -> None:
    state.checked_at = now
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
        state.last_failure[reason] = wall
        return
    observed = outcome.observations
    state.up = True
    state.reason = None
    state.message = None
    state.last_success = wall
    read = outcome.parts_read
    if ACTIVITY_PART in read:
        # Replaced whole: a signal that could not be seen this time is unknown, not old.
        for name in ACTIVITY_FIELDS:
            if name not in server_facts:
                setattr(state, name, getattr(observed, name))
    if "size" in read:
        state.size_bytes = observed.size_bytes
        state.size_at = now
    if "statements" in read:
        state.statements_available = observed.statements_available
        state.statements_problem = observed.statements_problem
        # Known to be unavailable (no extension, no privilege): asked again only after
        # refresh_interval, not on every probe.
        state.statements = observed.statements
        state.statements_at = now
    if "project" in read:
        state.project = observed.project
        state.project_at = now
    if "ids" in read:
        state.id_headroom = observed.id_headroom
        state.ids_at = now
    if MAINTENANCE_PART in read:
        for name in MAINTENANCE_FIELDS:
            setattr(state, name, getattr(observed, name))
        state.maintenance_at = now
    if INTEGRITY_PART in read:
        state.integrity_ok = observed.integrity_ok
        state.integrity_at = now
        state.integrity_checked = wall if observed.integrity_ok is not None else None
    for part in read:
        state.failing_parts.pop(part, None)
    for part, (reason, message) in outcome.parts_failed.items():
        state.failing_parts[part] = message
        if part == INTEGRITY_PART:
            # A check that does not fit the deadline would take the whole deadline of every
            # probe: it is tried again after integrity_interval, like a successful one.
            state.integrity_at = now
        key = (part, reason)
        state.part_failures[key] = state.part_failures.get(key, 0) + 1
        if part == "statements":
            # Old statements are not shown as current: a failed read drops them.
            state.statements = None


def apply_facts(state: AliasState, facts: ServerFacts, database: str) -> None:
    version = state.version
    for fact, value in facts.values.items():
        setattr(state, fact, value)
    # The version is kept when a reading could not get it.
    state.version = state.version or version
    if "sessions_by_database" in facts.values:
        # The server's per-database readings: this alias takes its own database's, and a
        # database with no session at all reads 0 (the role could see them all).
        by_database = state.sessions_by_database
        row = None if by_database is None else by_database.get(database, (0, 0, 0, 0))
        for name, value in zip(SESSION_FIELDS, row or (None,) * len(SESSION_FIELDS), strict=True):
            setattr(state, name, value)


def log_change(target: Target, previous: AliasState | None, state: AliasState) -> None:
    """One line per change of an alias's condition, never per probe; messages are redacted."""
    was_failing = previous.failing_parts if previous is not None else {}
    for part, message in state.failing_parts.items():
        if part not in was_failing:
            logger.warning("alias %s: its %s cannot be read: %s", target.alias, part, message)
    for part in was_failing.keys() - state.failing_parts.keys():
        logger.info("alias %s: its %s can be read again", target.alias, part)
    if previous is not None and previous.up == state.up and previous.reason == state.reason:
        return
    if state.up:
        again = " again" if previous is not None else ""
        logger.info("alias %s (%s) is up%s", target.alias, target.vendor, again)
    else:
        logger.warning(
            "alias %s (%s) is down: %s: %s",
            target.alias,
            target.vendor,
            state.reason,
            state.message or "no details",
        )


_service: ProbeService | None = None
_service_pid: int | None = None
_service_lock = threading.Lock()


def probe_service() -> ProbeService:
    """The probe service of this process, built on first use from the configured targets."""
    global _service, _service_pid
    with _service_lock:
        if _service is None or _service_pid != os.getpid():
            # A forked child must not touch connections inherited from its parent: drop them.
            ensure_demo_databases()
            _service = ProbeService(load_targets(), service_options())
            _service_pid = os.getpid()
        return _service


def forget_configuration(**kwargs) -> None:
    """Settings changed (tests, reloads): re-read targets and options, close kept connections."""
    global _service
    load_targets.cache_clear()
    service_options.cache_clear()
    project_layout.cache_clear()
    configured_queries.cache_clear()
    with _service_lock:
        previous, _service = _service, None
    if previous is not None and _service_pid == os.getpid():
        previous.close()


def current_state(
    aliases: list[str] | None = None, budget: float | None = None
) -> tuple[tuple[Target, ...], ServiceState]:
    targets = load_targets()
    if aliases is not None:
        targets = tuple(target for target in targets if target.alias in aliases)
    return targets, probe_service().snapshot(targets, budget)
