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

import contextlib
import copy
import functools
import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from dbhealth.configuration.demo import ensure_demo_databases
from dbhealth.configuration.queries import configured_queries
from dbhealth.configuration.targets import (
    DiscoverySpec,
    ServiceOptions,
    Target,
    configured_targets,
    discovery_specs,
    load_targets,
    on_discovery_use,
    publish_discovered,
    service_options,
)
from dbhealth.probing.alias_prober import AliasProber, Progress
from dbhealth.probing.custom_queries import due_queries, record_queries
from dbhealth.probing.discovery import DiscoveryRunner
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
# The probe threads of a whole service, whatever the number of aliases: a thread per probe made
# 10,000 aliases start about 5,500 threads per scrape. A hung server holds at most its
# max_connections_per_server of them (until the deadline or the driver's connect timeout).
PROBE_THREADS = 64
# How long an idle probe thread waits for more work before it ends.
POOL_LINGER = 1.0
IDLE_THREAD_NAME = "dbhealth-probe-idle"
# Rotating aliases are queued this many times the expected queue drain ahead of their
# rotation_interval, so that a burst of them still comes round in time.
LEAD_SAFETY = 2.0

# An alias's state before and after a recording, logged once the service's lock is released.
Change = tuple[Target, AliasState | None, AliasState]


@dataclass(eq=False)
class ProbeRun:
    """One probe of one alias, from its start until its thread ends."""

    target: Target
    prober: AliasProber
    parts: frozenset[str]
    deadline_at: float  # monotonic
    # The run before, whose thread was still alive when this one started: waited for first.
    after: "ProbeRun | None" = None
    # The spare connection slot of its server this run holds, if it is not a kept alias; handed
    # to the next waiting alias of the server, or released, when the run ends.
    slot: threading.BoundedSemaphore | None = None
    progress: Progress = field(default_factory=Progress)
    settled: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    # Set under the service's lock when a pool thread takes the run up. A run still queued for
    # a thread when its deadline comes was never probed: the exporter's own queue is no failure.
    started: bool = False
    # What the thread waits for before it may probe, if anything: said when the deadline comes.
    waiting_for: str | None = None


@dataclass
class ServerConnections:
    """The connection budget of one database server (vendor, host, port).

    Aliases in `kept` hold one connection each between probes. The others (`rotating`) open a
    connection per probe on one of `spare` slots, stalest first, so the server never sees more
    than `limit` connections from this service. A rotating alias due while every slot is taken
    waits in `waiting` (in the order it became due) and keeps its last result meanwhile.
    """

    kept: frozenset[str]
    spare: threading.BoundedSemaphore | None
    spare_count: int
    limit: int
    waiting: dict[str, Target] = field(default_factory=dict)
    # Listings of the server's databases (discovery) waiting for a slot: they go first.
    listings_waiting: int = 0
    rotating: int = 0  # how many aliases take turns on the spare slots
    # How long one turn on a spare slot takes (connect, probe, close), a moving average.
    turn_seconds: float = 0.0

    def lead_time(self, rotation_interval: float) -> float:
        """How long before its rotation_interval is up a rotating alias must be queued so that
        the whole queue is probed in time: every other rotating alias may be ahead of it."""
        if not self.spare_count:
            return 0.0
        ahead = self.rotating * self.turn_seconds / self.spare_count
        return min(rotation_interval, LEAD_SAFETY * ahead)


def plan_connections(
    targets: Iterable[Target],
    limit: int,
    listed: Iterable[tuple[str, ...]] = (),
    previous: dict[tuple[str, ...], ServerConnections] | None = None,
) -> dict[tuple[str, ...], ServerConnections]:
    """All aliases of a server keep a connection while they fit under `limit`; with more, half
    the limit (at least one) becomes spare slots that the rest take turns on: a probe on a
    fresh connection costs a login (about 10 ms of both sides' CPU with SCRAM), and 1,000
    databases on a server need eight such lanes to be probed every 30 s.

    A server whose databases are discovered (`listed`) needs one slot for the listing, taken
    from the spare ones. A server whose spare count did not change keeps its semaphore and its
    waiting aliases, so that a reload never lets more than `limit` connections be open at once.
    """
    by_server: dict[tuple[str, ...], list[Target]] = {}
    for target in targets:
        by_server.setdefault(server_key(target), []).append(target)
    for key in listed:
        by_server.setdefault(key, [])
    listing = set(listed)
    plan = {}
    for key, members in by_server.items():
        needed = len(members) + (1 if key in listing else 0)
        spare = 0 if needed <= limit else max(1, limit // 2)
        if key in listing and spare == 0:
            spare = 1
        keep = min(len(members), limit - spare)
        kept = frozenset(target.alias for target in members[:keep])
        old = (previous or {}).get(key)
        if old is not None and old.spare_count == spare and old.spare is not None:
            semaphore = old.spare
            rotating = {t.alias: t for t in members if t.alias not in kept}
            waiting = {alias: rotating[alias] for alias in old.waiting if alias in rotating}
        else:
            semaphore = threading.BoundedSemaphore(spare) if spare else None
            waiting = {}
        plan[key] = ServerConnections(
            kept=kept,
            spare=semaphore,
            spare_count=spare,
            limit=limit,
            waiting=waiting,
            rotating=len(members) - len(kept),
            turn_seconds=old.turn_seconds if old is not None else 0.0,
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


class ProbePool:
    """At most `size` probe threads for the whole service, whatever the number of aliases.

    Threads start when work arrives and end when there is none, so an idle service holds none.
    A thread is named after the alias it probes (`dbhealth-probe-<alias>`) while it probes it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._condition = threading.Condition()
        self._work: deque[Callable[[], None]] = deque()
        self._threads = 0
        self._idle = 0

    def submit(self, work: Callable[[], None]) -> None:
        with self._condition:
            self._work.append(work)
            if self._idle:
                self._condition.notify()
            # Idle threads take one piece of work each: more work than that needs new threads
            # (else work queued behind a hung probe while the pool had room).
            if len(self._work) <= self._idle or self._threads >= self.size:
                return
            self._threads += 1
        threading.Thread(target=self._loop, name=IDLE_THREAD_NAME, daemon=True).start()

    def _loop(self) -> None:
        while True:
            with self._condition:
                if not self._work:
                    self._idle += 1
                    self._condition.wait(POOL_LINGER)
                    self._idle -= 1
                if not self._work:
                    self._threads -= 1
                    return
                work = self._work.popleft()
            try:
                work()
            except Exception:
                logger.exception("a probe thread failed")
            finally:
                threading.current_thread().name = IDLE_THREAD_NAME


class ProbeService:
    def __init__(self, targets: Iterable[Target], options: ServiceOptions) -> None:
        targets = tuple(targets)
        self.options = options
        self._lock = threading.Lock()
        # Notified whenever a state is recorded or a run settles: what waiting scrapes wait on.
        self._recorded = threading.Condition(self._lock)
        self._states: dict[str, AliasState] = {}
        self._runs: dict[str, ProbeRun] = {}
        self._facts: dict[tuple[str, ...], ServerFacts] = {}
        self._facts_readers: dict[tuple[str, ...], ProbeRun] = {}
        self._rounds = 0
        self._slot_waits: dict[str, int] = {}
        self._probers: dict[str, AliasProber] = {}
        self._connections: dict[tuple[str, ...], ServerConnections] = {}
        self._plan(targets)
        self._pool = ProbePool(PROBE_THREADS)
        self._watchdog = Watchdog(self._deadline_passed)
        self._discovery: DiscoveryRunner | None = None

    def _plan(self, targets: tuple[Target, ...]) -> None:
        """Connection budgets and fact sharing for this set of targets."""
        self._connections = plan_connections(
            targets,
            self.options.max_connections_per_server,
            self.options.listed_servers,
            self._connections,
        )
        self._aliases_by_facts: dict[tuple[str, ...], list[Target]] = {}
        for target in targets:
            self._aliases_by_facts.setdefault(facts_key(target), []).append(target)

    # -- what scrapes call --------------------------------------------------------------------

    def snapshot(self, targets: Iterable[Target], budget: float | None = None) -> ServiceState:
        """The state of these aliases, probing those not probed within `min_interval` (aliases
        beyond their server's kept connections: `rotation_interval`).

        Returns after at most `budget` seconds (every probe is settled by its own deadline when
        there is no budget), with the latest recorded state of each alias ever probed. A
        rotating alias that waits for a connection slot is not waited for, unless it was never
        probed: it keeps its last result, and the wait is counted.
        """
        targets = tuple(targets)
        arrival = time.monotonic()
        if budget is None:
            budget = max((t.deadline for t in targets), default=0.0) + UNBUDGETED_GRACE
        wait_until = arrival + budget
        to_start: list[ProbeRun] = []
        changes: list[Change] = []
        with self._lock:
            waiting, queued, due = self._sort_out(targets, arrival)
            if due:
                self._rounds += 1
                started, newly_queued = self._start(due, arrival, changes)
                to_start += started
                waiting += started
                queued += newly_queued
            # Never probed: waited for (within the budget) so that the alias is not absent.
            first_time = [alias for alias in queued if alias not in self._states]
        self._submit(to_start)
        log_changes(changes)
        for run in waiting:
            run.settled.wait(max(0.0, wait_until - time.monotonic()))

        def first_time_recorded() -> bool:
            # Recorded aliases leave the list: each wake-up checks only those still missing.
            first_time[:] = [alias for alias in first_time if alias not in self._states]
            return not first_time

        with self._recorded:
            self._recorded.wait_for(
                first_time_recorded, timeout=max(0.0, wait_until - time.monotonic())
            )
            for alias in queued:
                state = self._states.get(alias)
                if state is None or state.checked_at < arrival:
                    self._slot_waits[alias] = self._slot_waits.get(alias, 0) + 1
            aliases = {t.alias: self._states[t.alias] for t in targets if t.alias in self._states}
            slot_waits = {t.alias: self._slot_waits.get(t.alias, 0) for t in targets}
            rounds = self._rounds
        discovery = self._discovery
        return ServiceState(
            rounds=rounds,
            aliases=aliases,
            slot_waits=slot_waits,
            discoveries=discovery.status() if discovery is not None else {},
        )

    def _sort_out(
        self, targets: tuple[Target, ...], now: float
    ) -> tuple[list[ProbeRun], list[str], list[Target]]:
        """Called with `_lock` held: the runs in flight to wait for, the aliases already
        waiting for a connection slot, and the aliases due for a probe."""
        waiting, queued, due = [], [], []
        fresh_since = now - self.options.min_interval
        rotation = self.options.rotation_interval
        for target in targets:
            run = self._runs.get(target.alias)
            state = self._states.get(target.alias)
            plan = self._connections.get(server_key(target))
            rotating = plan is not None and target.alias not in plan.kept
            since = fresh_since
            if rotating:
                since = min(fresh_since, now - (rotation - plan.lead_time(rotation)))
            if run is not None and not run.settled.is_set():
                waiting.append(run)
            elif rotating and target.alias in plan.waiting:
                queued.append(target.alias)
            elif state is None or state.checked_at < since:
                due.append(target)
        return waiting, queued, due

    def reconfigure(self, targets: Iterable[Target], options: ServiceOptions) -> None:
        """Take a reloaded configuration: aliases whose settings and options did not change keep
        their connection, state and counters; removed aliases close theirs and are forgotten
        (a probe of one still in flight is dropped when it ends); new ones start fresh. A
        changed alias keeps its counters (the series are the same) but reconnects."""
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
                    self._slot_waits.pop(alias, None)
            self._facts.clear()
        for prober in retired:
            prober.retire()

    def close(self) -> None:
        """Close every connection: at once where idle, else when its probe ends."""
        self.sync_discovery(())
        with self._lock:
            probers, self._probers = list(self._probers.values()), {}
        for prober in probers:
            prober.retire()

    # -- discovery ---------------------------------------------------------------------------

    def sync_discovery(self, specs: tuple[DiscoverySpec, ...]) -> None:
        """Run discovery for these tables: started on the first, listed again when they change
        (a reload), stopped (its aliases dropped) when there are none."""
        runner = self._discovery
        if not specs:
            if runner is not None:
                self._discovery = None
                runner.stop()
                publish_discovered(())
            return
        if runner is None:
            self._discovery = DiscoveryRunner(specs, self.listing_slot, self._discovered_changed)
            self._discovery.start()
        elif runner.specs != specs:
            runner.respecify(specs)

    def _discovered_changed(self) -> None:
        """Discovery found other databases: take them as a reload would (others unchanged)."""
        self.reconfigure(load_targets(), self.options)

    # -- probing -----------------------------------------------------------------------------

    def _start(
        self, due: list[Target], now: float, changes: list[Change]
    ) -> tuple[list[ProbeRun], list[str]]:
        """Called with `_lock` held: a run for every due alias that has a connection for it;
        the rotating aliases without a free slot wait for one, stalest first."""
        readers = self._pick_facts_readers(due, now)
        runs, queued = [], []
        by_age = sorted(due, key=lambda t: (self._states.get(t.alias) or AliasState()).checked_at)
        for target in by_age:
            if target.problem is not None:
                self._record(
                    target, ProbeOutcome(up=False, reason="config", message=target.problem), changes
                )
                continue
            plan = self._connections.get(server_key(target))
            slot = None
            if plan is not None and target.alias not in plan.kept:
                if plan.spare is None or not plan.spare.acquire(blocking=False):
                    plan.waiting[target.alias] = target
                    queued.append(target.alias)
                    continue
                slot = plan.spare
            runs.append(self._new_run(target, now, slot, reads_facts=target.alias in readers))
        return runs, queued

    def _new_run(
        self, target: Target, now: float, slot: threading.BoundedSemaphore | None, reads_facts: bool
    ) -> ProbeRun:
        """Called with `_lock` held: a run of this alias, registered and watched."""
        state = self._states.get(target.alias) or AliasState()
        parts = due_parts(state, now, self.options.refresh_interval, target.integrity_interval)
        if reads_facts:
            parts |= {SERVER_PART}
        parts |= due_queries(state, target.queries, now, self.options.refresh_interval)
        run = ProbeRun(
            target=target,
            prober=self._prober(target),
            parts=parts,
            deadline_at=now + target.deadline,
            after=self._runs.get(target.alias),
            slot=slot,
        )
        if reads_facts:
            self._facts_readers[facts_key(target)] = run
        self._runs[target.alias] = run
        self._watchdog.watch(run, run.deadline_at)
        return run

    def _submit(self, runs: list[ProbeRun]) -> None:
        for run in runs:
            self._pool.submit(functools.partial(self._probe, run))

    def _pick_facts_readers(self, due: list[Target], now: float) -> set[str]:
        """One alias per server reads its facts, when they are older than min_interval and no
        probe in flight is reading them already; preferably one that answered last time and
        keeps its connection (it will not wait for a slot)."""
        readers: dict[tuple[str, ...], str] = {}
        fresh_since = now - self.options.min_interval

        def preference(target: Target) -> tuple[bool, bool]:
            plan = self._connections.get(server_key(target))
            kept = plan is None or target.alias in plan.kept
            return (not (self._states.get(target.alias) or AliasState()).up, not kept)

        candidates = sorted((t for t in due if t.problem is None), key=preference)
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
        """A pool thread's work: the run unless its deadline came while it queued, then its end."""
        threading.current_thread().name = f"dbhealth-probe-{run.target.alias}"
        try:
            with self._lock:
                run.started = not run.settled.is_set()
            if run.started:
                self._probe_now(run)
        finally:
            self._end(run)

    def _probe_now(self, run: ProbeRun) -> None:
        """Wait for the alias's previous probe (within the deadline), probe, record."""
        if run.after is not None:
            run.waiting_for = "the previous probe of this alias to end"
            if not run.after.ended.wait(max(0.0, run.deadline_at - time.monotonic())):
                self._settle(run, waited_outcome(run))
                return
        run.waiting_for = None
        run.prober.probe(run, run.deadline_at, run.parts, run.progress)
        self._settle(run, finished_outcome(run.progress))

    def _end(self, run: ProbeRun) -> None:
        """The run's thread is done: forget it, and hand its connection slot to the stalest
        alias of its server that waits for one (or give the slot back)."""
        following = None
        with self._lock:
            if self._runs.get(run.target.alias) is run:
                previous = run.after
                if previous is not None and not previous.ended.is_set():
                    # Gave up waiting for it: the next probe must wait for it in turn.
                    self._runs[run.target.alias] = previous
                else:
                    del self._runs[run.target.alias]
            if run.slot is not None:
                following = self._pass_on(run.slot, run.progress.started if run.started else None)
            self._recorded.notify_all()
        run.ended.set()
        self._watchdog.ended()
        if following is not None:
            self._submit([following])

    def _pass_on(
        self, slot: threading.BoundedSemaphore, turn_started: float | None = None
    ) -> ProbeRun | None:
        """Called with `_lock` held: a connection slot is free (after a turn that began at
        `turn_started`, if it was a probe). A listing of the server's databases waiting for one
        gets it (it would starve behind the aliases otherwise), else the alias that waited
        longest (its run is returned, to be submitted), else nobody."""
        plan = next((p for p in self._connections.values() if p.spare is slot), None)
        if plan is not None and turn_started is not None:
            took = time.monotonic() - turn_started
            plan.turn_seconds = (
                took if not plan.turn_seconds else 0.8 * plan.turn_seconds + 0.2 * took
            )
        following = None
        if plan is not None and not plan.listings_waiting:
            following = self._next_waiting(plan, slot)
        if following is None:
            slot.release()
        return following

    @contextlib.contextmanager
    def listing_slot(self, server: tuple[str, ...], timeout: float) -> Iterator[bool]:
        """One of the server's connection slots for listing its databases (discovery), within
        `timeout`; yields False when none came. The listing counts against the server's cap."""
        with self._recorded:
            plan = self._connections.get(server)
            slot = plan.spare if plan is not None else None
            got = False
            if slot is not None:
                plan.listings_waiting += 1
                try:
                    got = self._recorded.wait_for(
                        lambda: slot.acquire(blocking=False), timeout=max(0.0, timeout)
                    )
                finally:
                    plan.listings_waiting -= 1
        try:
            yield got
        finally:
            if got:
                with self._lock:
                    following = self._pass_on(slot)
                    self._recorded.notify_all()
                if following is not None:
                    self._submit([following])

    def _next_waiting(
        self, plan: ServerConnections, slot: threading.BoundedSemaphore
    ) -> ProbeRun | None:
        """Called with `_lock` held: a run for the alias of this plan that has waited longest
        for a slot; None when none waits."""
        while plan.waiting:
            alias = next(iter(plan.waiting))
            target = plan.waiting.pop(alias)
            run = self._runs.get(alias)
            if run is not None and not run.settled.is_set():
                continue  # probed meanwhile by another way in (a reload made it kept)
            now = time.monotonic()
            reads_facts = bool(self._pick_facts_readers([target], now))
            return self._new_run(target, now, slot, reads_facts=reads_facts)
        return None

    def _settle(self, run: ProbeRun, outcome: ProbeOutcome) -> None:
        changes: list[Change] = []
        with self._lock:
            if not run.settled.is_set():
                self._record_run(run, outcome, changes)
                run.settled.set()
                self._recorded.notify_all()
        log_changes(changes)

    def _deadline_passed(self, run: ProbeRun) -> None:
        """The watchdog's call: settle the run as it stands, then wake its thread.

        A run no thread took up yet was never probed: it is settled without an outcome, as a
        wait for the exporter's own resources. An alias that answered its ping is only slow in
        an optional read, which the server's own statement timeout ends: its connection is cut
        only if its thread has not ended one more deadline later. Cutting it at once made a
        far-away alias reconnect on every probe.
        """
        changes: list[Change] = []
        with self._lock:
            first_call = not run.settled.is_set()
            if first_call:
                if run.started:
                    self._record_run(run, deadline_outcome(run), changes)
                else:
                    alias = run.target.alias
                    self._slot_waits[alias] = self._slot_waits.get(alias, 0) + 1
                run.settled.set()
                self._recorded.notify_all()
            started = run.started
        log_changes(changes)
        if not started:
            return
        if first_call and run.progress.answered:
            self._watchdog.watch(run, run.deadline_at + run.target.deadline)
            return
        run.prober.interrupt(run)

    # -- recording ---------------------------------------------------------------------------

    def _record_run(self, run: ProbeRun, outcome: ProbeOutcome, changes: list[Change]) -> None:
        """Called with `_lock` held: record a run's outcome, unless its alias was removed or
        changed by a reload meanwhile (its prober retired): a removed alias stays removed."""
        if self._probers.get(run.target.alias) is run.prober:
            self._record(run.target, outcome, changes)

    def _record(self, target: Target, outcome: ProbeOutcome, changes: list[Change]) -> None:
        """Called with `_lock` held: publish the alias's next state; the change is logged by the
        caller once the lock is released."""
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
        changes.append((target, previous, state))

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


def finished_outcome(progress: Progress) -> ProbeOutcome:
    common = {
        "probe_seconds": progress.finished_after or 0.0,
        "connect_seconds": progress.connect_seconds,
        "ping_seconds": progress.ping_seconds,
    }
    if progress.error_reason is None:
        return ProbeOutcome(
            up=True,
            observations=progress.observations,
            read_server=SERVER_PART in progress.parts_read,
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
        for part in (SERVER_PART, *EXPENSIVE_PARTS, *(query.part for query in run.target.queries)):
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


# The values each optional part replaces, dropped when it fails (statements: above).
FAILED_PART_FIELDS = {
    "size": ("size_bytes",),
    "project": ("project",),
    "ids": ("id_headroom",),
    INTEGRITY_PART: ("integrity_ok",),
}


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
        # Nor any other part's old values (a count of pending migrations that has since
        # changed, a size): what failed to read is absent until it is read again.
        for name in FAILED_PART_FIELDS.get(part, ()):
            setattr(state, name, None)


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


def log_changes(changes: list[Change]) -> None:
    for target, previous, state in changes:
        log_change(target, previous, state)


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
# Re-entrant: the first discovery listing, inside the building of the service, hands its aliases
# to the service through load_targets(), which asks for the service again.
_service_lock = threading.RLock()


def probe_service() -> ProbeService:
    """The probe service of this process, built on first use from the configured targets (and
    the discovered ones, listed once before it answers)."""
    global _service, _service_pid
    with _service_lock:
        if _service is None or _service_pid != os.getpid():
            # A forked child must not touch connections inherited from its parent: drop them.
            ensure_demo_databases()
            publish_discovered(())
            _service = ProbeService(configured_targets(), service_options())
            _service_pid = os.getpid()
            _service.sync_discovery(discovery_specs())
        return _service


# Asking for the targets starts discovery, so that /sd lists discovered aliases before a scrape.
on_discovery_use(probe_service)


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
    publish_discovered(())


class RenderingCost:
    """What turning a snapshot into bytes costs per alias, learnt from the answers served, so
    that a scrape keeps that time out of its budget: rendering 10,000 aliases took seconds past
    Prometheus's scrape timeout when only probing was counted.

    The estimate follows the slowest recent rendering and decays slowly, so one fast answer does
    not undo the margin a loaded machine needs.
    """

    DECAY = 0.95
    # Never more than this share of a budget goes to rendering: probing needs the rest.
    MOST = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.per_alias = 0.0

    def note(self, aliases: int, seconds: float) -> None:
        if aliases <= 0:
            return
        with self._lock:
            self.per_alias = max(self.per_alias * self.DECAY, seconds / aliases)

    def reserve(self, aliases: int, budget: float) -> float:
        """The part of `budget` to keep for rendering `aliases` aliases."""
        return min(budget * self.MOST, 1.5 * self.per_alias * aliases)


rendering_cost = RenderingCost()


def current_state(
    aliases: list[str] | None = None, budget: float | None = None
) -> tuple[tuple[Target, ...], ServiceState]:
    """The state of the aliases asked for (all by default) within `budget`, less the time that
    rendering them is expected to take (see RenderingCost)."""
    targets = load_targets()
    if aliases is not None:
        targets = tuple(target for target in targets if target.alias in aliases)
    if budget is not None:
        budget -= rendering_cost.reserve(len(targets), budget)
    return targets, probe_service().snapshot(targets, budget)
