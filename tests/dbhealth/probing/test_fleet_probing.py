"""Many databases per server under the connection cap, a bounded pool of probe threads, reloads
racing scrapes, and server facts that may fail like any other part.

Probes are held where a test needs a race to happen in one order: a probe blocks on an event the
test sets, never on a sleep.
"""

import gc
import logging
import socket
import sqlite3
import threading

import pytest
from dbhealth.configuration.targets import MAX_ALIASES, load_targets
from dbhealth.probing import service as service_module
from dbhealth.probing.alias_prober import AliasProber
from dbhealth.probing.service import server_key
from dbhealth.probing.state import ServiceState
from dbhealth.probing.vendors.postgresql import PostgreSQLProbe
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.support.peak import Peak, open_connections_to
from tests.support.process import wait_until


class HeldProbes:
    """Probes of the named aliases wait, inside their probe thread, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, aliases: set[str]) -> None:
        self.aliases = aliases
        self.release = threading.Event()
        self.entered: set[str] = set()
        original = AliasProber.probe
        held = self

        def probe(prober, run, deadline_at, parts, progress):
            if prober.target.alias in held.aliases:
                held.entered.add(prober.target.alias)
                assert held.release.wait(60), "the test never released the probe"
            return original(prober, run, deadline_at, parts, progress)

        monkeypatch.setattr(AliasProber, "probe", probe)


def many_databases(server, count: int) -> list[str]:
    names = [f"tenant_{index:02d}" for index in range(count)]
    for name in names:
        server.create_database(name)
    return names


def test_an_alias_waiting_for_a_slot_keeps_its_last_result_and_counts_the_wait(
    make_postgres, make_harness, monkeypatch
):
    server = make_postgres(databases=())
    names = many_databases(server, 10)
    password = server.monitor_password
    # A cap of 2: one alias keeps a connection, the other nine take turns on one slot.
    harness = make_harness(
        {name: server.django_settings(name, "monitor", password) for name in names},
        max_connections_per_server=2,
    )
    state = harness.round()
    assert all(state.aliases[name].up for name in names), state.aliases
    plan = harness.service._connections[server_key(harness.targets[0])]
    rotating = sorted(set(names) - plan.kept)
    assert len(rotating) == 9 and plan.spare_count == 1
    assert all(state.slot_waits[name] == 0 for name in names)

    # Every rotating alias is due again; the first to get the slot holds it.
    assert wait_until(lambda: not harness.service._runs, timeout=10)
    harness.service.options = type(harness.service.options)(
        **{**vars(harness.service.options), "rotation_interval": 0.001}
    )
    held = HeldProbes(monkeypatch, set(rotating))
    checked = {name: state.aliases[name].checked_at for name in names}
    state = harness.round(budget=0.5)
    assert len(held.entered) == 1
    holder = next(iter(held.entered))
    for name in rotating:
        alias = state.aliases[name]
        # Not probed this round, and not down for it: the last result, with its age.
        assert alias.up, (name, alias.reason, alias.message)
        assert alias.checked_at == checked[name]
        assert state.slot_waits[name] == (0 if name == holder else 1), (holder, state.slot_waits)
    assert harness.value("dbhealth_probe_slot_waits_total", alias=rotating[-1]) == 1
    assert harness.value("dbhealth_probe_age_seconds", alias=rotating[-1]) > 0
    assert harness.value("dbhealth_up", alias=rotating[-1], vendor="postgresql") == 1
    assert open_connections_to(server.port) <= 2

    held.release.set()
    # The slot passes from alias to alias, stalest first, without another scrape.
    assert wait_until(
        lambda: all(harness.service._states[name].checked_at > checked[name] for name in rotating),
        timeout=30,
    )
    state = harness.round()
    assert all(state.aliases[name].up for name in names)
    assert all(alias.failures == {} for alias in state.aliases.values())
    assert open_connections_to(server.port) <= 2


def test_many_databases_on_one_server_stay_within_the_cap_and_are_all_probed(
    make_postgres, make_harness
):
    server = make_postgres(databases=())
    names = many_databases(server, 24)
    password = server.monitor_password
    harness = make_harness(
        {name: server.django_settings(name, "monitor", password) for name in names},
        max_connections_per_server=4,
        refresh_interval=0.0,
    )
    with Peak(lambda: open_connections_to(server.port)) as peak:
        for _ in range(5):
            state = harness.round()
            assert all(state.aliases[name].up for name in names), state.aliases
            assert all(alias.failures == {} for alias in state.aliases.values())
    assert 1 <= peak.most <= 4
    # The server's facts were read by one alias and given to all of them.
    for name in names:
        assert harness.value("dbhealth_connections_max", alias=name) == 50


def test_the_probe_threads_are_a_bounded_pool(tmp_path, make_harness, monkeypatch):
    monkeypatch.setattr(service_module, "PROBE_THREADS", 3)
    databases = {}
    for index in range(30):
        path = tmp_path / f"file_{index}.sqlite3"
        sqlite3.connect(path).close()
        databases[f"file_{index}"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    harness = make_harness(databases)

    def probe_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("dbhealth-probe")]

    # Idle threads of earlier tests' services end within a second.
    assert wait_until(lambda: not probe_threads(), timeout=10)
    with Peak(lambda: len(probe_threads())) as peak:
        for _ in range(3):
            state = harness.round()
            assert all(alias.up for alias in state.aliases.values())
            assert len(state.aliases) == 30
    assert 1 <= peak.most <= 3


def test_a_reload_racing_a_scrape_settles_the_scrape(postgres, make_harness, monkeypatch, tmp_path):
    names = ("app", "users", "analytics")
    password = postgres.monitor_password
    # A cap of 1: every alias takes turns on the one slot, the path that looked its server up.
    harness = make_harness(
        {name: postgres.django_settings(name, "monitor", password) for name in names},
        max_connections_per_server=1,
        deadline=20.0,
    )
    assert all(alias.up for alias in harness.round().aliases.values())
    harness.service.options = type(harness.service.options)(
        **{**vars(harness.service.options), "rotation_interval": 0.001}
    )
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    held = HeldProbes(monkeypatch, set(names))
    answered = threading.Event()
    scrape = threading.Thread(target=lambda: (harness.round(), answered.set()))
    scrape.start()
    assert wait_until(lambda: held.entered, timeout=10)
    harness.service.reconfigure((), harness.service.options)
    held.release.set()
    # Answered when its probe ended, long before the 20 s deadline it would otherwise wait out.
    assert answered.wait(10)
    scrape.join()
    assert errors == []
    assert wait_until(lambda: not harness.service._runs, timeout=10)


def test_a_removed_alias_whose_probe_was_in_flight_stays_removed(
    make_postgres, make_harness, monkeypatch
):
    server = make_postgres()
    harness = make_harness(
        {"db": server.django_settings("app", "monitor", server.monitor_password)}, deadline=5.0
    )
    targets = harness.targets
    assert harness.round().aliases["db"].up
    server.stop()
    held = HeldProbes(monkeypatch, {"db"})
    scrape = threading.Thread(target=harness.round, kwargs={"budget": 0.2})
    scrape.start()
    assert wait_until(lambda: held.entered, timeout=10)
    scrape.join()
    harness.service.reconfigure((), harness.service.options)
    held.release.set()  # the probe goes on, finds the server stopped, and ends
    assert wait_until(lambda: not harness.service._runs, timeout=10)
    assert "db" not in harness.service._states
    server.restart()
    held.aliases.clear()
    harness.service.reconfigure(targets, harness.service.options)
    alias = harness.round().aliases["db"]
    # Re-added, it starts fresh: the refused probe of its removed self was not written back.
    assert alias.up, alias.message
    assert alias.failures == {}
    assert harness.value("dbhealth_probe_failures_total", alias="db", reason="refused") == 0


def test_a_failing_server_facts_statement_leaves_the_alias_up(postgres, make_harness, monkeypatch):
    def broken_read_server(self, wrapper, cursor, observations):
        cursor.execute("SELECT replica_status FROM dbhealth_no_such_relation")

    monkeypatch.setattr(PostgreSQLProbe, "read_server", broken_read_server)
    harness = make_harness(
        {"main": postgres.django_settings("app", "monitor", postgres.monitor_password)}
    )
    alias = harness.round().aliases["main"]
    assert alias.up, alias.message
    assert "server" in alias.failing_parts
    assert harness.value("dbhealth_up", alias="main", vendor="postgresql") == 1
    # Counted under part "server" with the reason its error was classified as.
    ((part, reason),) = alias.part_failures
    assert part == "server"
    assert (
        harness.value("dbhealth_part_failures_total", alias="main", part=part, reason=reason) == 1
    )
    # Unknown, not 0: the facts it could not read are absent.
    assert harness.value("dbhealth_connections_max", alias="main") is None
    # The other parts were still read on the same connection.
    assert "activity" not in alias.failing_parts
    assert harness.value("dbhealth_deadlocks_total", alias="main") is not None


def test_changes_are_logged_outside_the_service_lock(make_postgres, make_harness):
    server = make_postgres()
    harness = make_harness(
        {"db": server.django_settings("app", "monitor", server.monitor_password)}, deadline=2.0
    )
    lock_free_while_logging = []

    class LockProbe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            acquired = harness.service._lock.acquire(blocking=False)
            if acquired:
                harness.service._lock.release()
            lock_free_while_logging.append(acquired)

    handler = LockProbe()
    logger = logging.getLogger("dbhealth")
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        harness.round()
        server.stop()
        harness.round()
        server.restart()
        harness.round()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    assert len(lock_free_while_logging) >= 3
    assert all(lock_free_while_logging)


def test_more_aliases_than_one_service_supports_is_refused_in_one_line(tmp_path):
    databases = {
        f"file_{index}": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "x")}
        for index in range(MAX_ALIASES + 1)
    }
    many = override_settings(DATABASES={"default": {}, **databases}, DBHEALTH_ALIASES=None)
    with many, pytest.raises(ImproperlyConfigured) as refused:
        load_targets()
    message = str(refused.value)
    assert "\n" not in message
    assert f"{MAX_ALIASES + 1} aliases configured" in message
    assert f"at most {MAX_ALIASES}" in message


def test_a_scrape_keeps_time_for_rendering(monkeypatch, tmp_path):
    cost = service_module.RenderingCost()
    assert cost.reserve(1000, 9.5) == 0.0  # nothing learnt yet
    cost.note(1000, 2.0)  # 2 ms per alias
    assert cost.reserve(1000, 9.5) == pytest.approx(3.0)
    # Never more than half the budget: probing needs the rest.
    assert cost.reserve(10_000, 9.5) == pytest.approx(4.75)
    # A fast answer after a slow one lowers the estimate slowly.
    cost.note(1000, 0.1)
    assert cost.reserve(1000, 9.5) == pytest.approx(3.0 * cost.DECAY)

    budgets = []

    class Service:
        def snapshot(self, targets, budget):
            budgets.append(budget)
            return ServiceState()

    path = tmp_path / "one.sqlite3"
    sqlite3.connect(path).close()
    monkeypatch.setattr(service_module, "rendering_cost", cost)
    monkeypatch.setattr(service_module, "probe_service", Service)
    databases = {"one": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}}
    with override_settings(DATABASES={"default": {}, **databases}, DBHEALTH_ALIASES=None):
        service_module.current_state(budget=9.5)
    assert budgets == [pytest.approx(9.5 - cost.reserve(1, 9.5))]
    assert budgets[0] < 9.5


def test_a_connect_that_timed_out_leaves_no_socket_open(make_harness):
    # A server that accepts TCP and never answers, as a SIGSTOPped one does.
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = listener.getsockname()[1]
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "app",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "USER": "monitor",
        "PASSWORD": "x",
    }
    harness = make_harness({"silent": entry}, deadline=0.5)
    # Only the garbage collector would have closed it: keep it from running meanwhile.
    gc.disable()
    try:
        alias = harness.round().aliases["silent"]
        assert (alias.up, alias.reason) == (False, "timeout")
        # The probe thread lives on until the driver's connect timeout, then fails and ends.
        assert wait_until(
            lambda: not [t for t in threading.enumerate() if t.name == "dbhealth-probe-silent"],
            timeout=30,
        )
        assert open_connections_to(port) == 0
    finally:
        gc.enable()
        listener.close()


def test_the_pool_starts_threads_for_work_beyond_its_idle_ones():
    pool = service_module.ProbePool(4)
    done = threading.Event()
    for _ in range(2):
        pool.submit(done.wait)
    done.set()
    # Two threads, idle now (they linger a second for more work).
    assert wait_until(lambda: pool._idle == 2, timeout=10)
    release = threading.Event()
    started = []

    def blocking() -> None:
        started.append(1)
        release.wait(30)

    try:
        for _ in range(4):
            pool.submit(blocking)
        # Four at once: the two idle threads and two new ones; none waits behind a blocked one.
        assert wait_until(lambda: len(started) == 4, timeout=10), len(started)
    finally:
        release.set()
