"""The probe service: one owner per connection, deadlines that belong to the alias, scrapes that
share probes and never turn their own budget into someone else's failure, counters that only grow.

Time bounds below are derived from the deadline with generous slack (a busy 2-core machine must
not make them flake); waits are for events, not for wall-clock thresholds.
"""

import sqlite3
import threading
import time

import pytest
from dbhealth.probing import service as probe_service_module

from tests.support.latency_proxy import LatencyProxy
from tests.support.peak import Peak, open_connections_to
from tests.support.process import wait_until

# Slack for thread scheduling on a loaded machine: bounds are "deadline + SLACK", never tighter.
SLACK = 1.5


def pg_connections_from_exporter(server) -> int:
    rows = server.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbhealth'")
    return rows[0][0]


def probe_threads(alias: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"dbhealth-probe-{alias}"]


@pytest.fixture
def sqlite_entry(tmp_path):
    path = tmp_path / "cache.sqlite3"
    sqlite3.connect(path).close()
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def test_a_hung_server_costs_one_deadline_and_leaves_the_others_up(
    make_postgres, postgres, mariadb, sqlite_entry, make_harness
):
    hung = make_postgres()
    harness = make_harness(
        {
            "hung": hung.django_settings("app", "monitor", hung.monitor_password),
            "main": postgres.django_settings("app", "monitor", postgres.monitor_password),
            "legacy": mariadb.django_settings("legacy", "monitor", mariadb.monitor_password),
            "cache": sqlite_entry,
        },
        deadline=1.5,
    )
    assert all(alias.up for alias in harness.round().aliases.values())
    hung.pause()
    try:
        started = time.monotonic()
        state = harness.round()
        assert time.monotonic() - started < 1.5 + SLACK
        assert (state.aliases["hung"].up, state.aliases["hung"].reason) == (False, "timeout")
        assert all(state.aliases[alias].up for alias in ("main", "legacy", "cache"))
        # The interrupted probe thread ends on its own; the next round probes again.
        assert wait_until(lambda: not probe_threads("hung"), timeout=10)
        state = harness.round()
        assert state.aliases["hung"].reason == "timeout"
        assert harness.value("dbhealth_probe_failures_total", alias="hung", reason="timeout") == 2
    finally:
        hung.resume()
    state = harness.round()
    assert state.aliases["hung"].up, state.aliases["hung"].message


def test_a_stuck_probe_is_never_stacked(make_postgres, make_harness):
    hung = make_postgres()
    harness = make_harness(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=0.5
    )
    harness.round()
    hung.pause()
    try:
        # Connecting to a stopped server cannot be interrupted: the thread lives until the
        # driver's own connect timeout (2 s, four deadlines here).
        harness.service.close()
        first = harness.round().aliases["hung"]
        assert first.reason == "timeout"
        # The next probe waits for the stuck one instead of opening a connection of its own.
        second = harness.round().aliases["hung"]
        assert second.reason == "timeout"
        assert "for the previous probe of this alias to end" in second.message
        assert wait_until(lambda: len(probe_threads("hung")) == 1, timeout=SLACK)
        assert harness.value("dbhealth_probe_failures_total", alias="hung", reason="timeout") == 2
    finally:
        hung.resume()


def test_a_stopped_server_is_refused_and_comes_back(make_postgres, make_harness):
    server = make_postgres()
    harness = make_harness(
        {"db": server.django_settings("app", "monitor", server.monitor_password)}, deadline=2.0
    )
    assert harness.round().aliases["db"].up
    server.stop()
    alias = harness.round().aliases["db"]
    assert (alias.up, alias.reason) == (False, "refused")
    assert harness.value("dbhealth_up", alias="db", vendor="postgresql") == 0
    assert harness.value("dbhealth_database_size_bytes", alias="db") is None
    server.restart()
    before = time.time()
    alias = harness.round().aliases["db"]
    after = time.time()
    assert alias.up, alias.message
    assert before <= harness.value("dbhealth_last_success_timestamp_seconds", alias="db") <= after


def test_a_short_scrape_budget_is_never_recorded_as_a_failure(postgres, make_harness):
    # A healthy server far away: 0.3 s each way, so a fresh connection takes well over a second.
    with LatencyProxy(postgres.port, delay=0.3) as proxy:
        entry = postgres.django_settings("app", "monitor", postgres.monitor_password)
        harness = make_harness({"far": {**entry, "PORT": str(proxy.port)}}, deadline=8.0)
        hurried = harness.round(budget=0.3)
        # The probe goes on after the hurried scrape has answered (with nothing yet).
        assert "far" not in hurried.aliases
        assert len(probe_threads("far")) == 1
        patient = harness.round()
        assert patient.aliases["far"].up, patient.aliases["far"].message
        for _ in range(3):
            harness.round(budget=0.3)
        state = harness.round()
        assert state.aliases["far"].up
        assert state.aliases["far"].failures == {}
        assert harness.value("dbhealth_probe_failures_total", alias="far", reason="timeout") == 0


def test_a_hurried_scrape_answers_within_its_budget_and_the_deadline_decides(
    make_postgres, make_harness
):
    hung = make_postgres()
    harness = make_harness(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=3.0
    )
    assert harness.round().aliases["hung"].up
    hung.pause()
    try:
        started = time.monotonic()
        hurried = harness.round(budget=0.5)
        assert time.monotonic() - started < 3.0
        # Within the budget the alias's deadline has not passed: nothing new is known yet.
        assert hurried.aliases["hung"].up
        patient = harness.round()
        assert (patient.aliases["hung"].up, patient.aliases["hung"].reason) == (False, "timeout")
        assert patient.aliases["hung"].failures == {"timeout": 1}
    finally:
        hung.resume()


def test_concurrent_scrapes_share_one_probe_round(postgres, make_harness):
    harness = make_harness(
        {"main": postgres.django_settings("app", "monitor", postgres.monitor_password)}
    )
    harness.round()
    rounds_before = harness.state.rounds
    states = []
    together = threading.Barrier(8)

    def scrape() -> None:
        together.wait()
        states.append(harness.service.snapshot(harness.targets))

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rounds = {state.rounds for state in states}
    # Eight scrapes arriving together: the first one probes, the rest share its probe.
    assert max(rounds) - rounds_before <= 2
    assert len(states) == 8


def test_min_interval_reuses_a_recent_round(postgres, make_harness):
    harness = make_harness(
        {"main": postgres.django_settings("app", "monitor", postgres.monitor_password)},
        min_interval=30.0,
    )
    first = harness.round().rounds
    assert harness.round().rounds == first


def test_a_wall_clock_stepped_either_way_changes_nothing(make_postgres, make_harness, monkeypatch):
    server = make_postgres()
    harness = make_harness(
        {"db": server.django_settings("app", "monitor", server.monitor_password)},
        min_interval=0.0,
    )
    assert harness.round().aliases["db"].up
    real_time = time.time
    monkeypatch.setattr(probe_service_module.time, "time", lambda: real_time() + 86400)
    assert harness.round().aliases["db"].up
    monkeypatch.setattr(probe_service_module.time, "time", lambda: real_time() - 86400)
    server.stop()
    # A clock stepped back a day must not make the last probe look fresh.
    alias = harness.round().aliases["db"]
    assert (alias.up, alias.reason) == (False, "refused")


def test_connections_stay_flat_over_many_rounds_with_the_server_flapping(
    make_postgres, make_harness
):
    server = make_postgres()
    harness = make_harness(
        {"db": server.django_settings("app", "monitor", server.monitor_password)},
        deadline=2.0,
        refresh_interval=0.0,
    )
    for cycle in range(3):
        for _ in range(100):
            harness.round()
        assert pg_connections_from_exporter(server) == 1
        if cycle < 2:
            server.stop()
            assert harness.round().aliases["db"].reason == "refused"
            server.restart()
    assert harness.round().aliases["db"].up
    assert pg_connections_from_exporter(server) == 1


def test_the_connection_cap_per_server_holds_and_the_aliases_beyond_it_stay_up(
    make_postgres, make_harness
):
    names = [f"db{index}" for index in range(6)]
    server = make_postgres(databases=names)
    password = server.monitor_password
    harness = make_harness(
        {name: server.django_settings(name, "monitor", password) for name in names},
        max_connections_per_server=2,
        refresh_interval=0.0,
    )
    with Peak(lambda: open_connections_to(server.port)) as peak:
        for _ in range(10):
            state = harness.round()
            assert all(state.aliases[name].up for name in names), state.aliases
    assert 1 <= peak.most <= 2
    # One alias keeps its connection; the others connected for their probe and closed again.
    assert open_connections_to(server.port) == 1
    assert wait_until(lambda: pg_connections_from_exporter(server) == 1, timeout=5)


def test_an_interrupted_probe_ends_instead_of_reconnecting(make_postgres, make_harness):
    hung = make_postgres()
    harness = make_harness(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=1.0
    )
    assert harness.round().aliases["hung"].up
    hung.pause()
    try:
        assert harness.round().aliases["hung"].reason == "timeout"
        # A reconnect to the stopped server would sit in the driver's connect timeout (>= 2 s),
        # far longer than an interrupted read takes to fail.
        assert wait_until(lambda: not probe_threads("hung"), timeout=1.5)
    finally:
        hung.resume()


def test_a_late_interrupt_cannot_reach_the_next_probe(postgres, make_harness):
    harness = make_harness(
        {"main": postgres.django_settings("app", "monitor", postgres.monitor_password)}
    )
    assert harness.round().aliases["main"].up
    prober = harness.service._probers["main"]
    backend = prober._wrapper.connection.info.backend_pid
    prober.interrupt(object())  # meant for a probe that is long over
    state = harness.round()
    assert state.aliases["main"].up
    assert prober._wrapper.connection.info.backend_pid == backend


def test_closing_while_an_sqlite_probe_waits_on_a_lock_is_safe(tmp_path, make_harness):
    path = tmp_path / "locked.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x)")
    setup.close()
    harness = make_harness(
        {"locked": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}},
        deadline=2.0,
        refresh_interval=0.0,  # every probe reads the size, which needs a shared lock
    )
    size_read_at = harness.round().aliases["locked"].size_at
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        started = threading.Thread(target=harness.round)
        started.start()
        assert wait_until(lambda: len(probe_threads("locked")) == 1, timeout=5)
        # The probe is inside SQLite's busy wait; closing must neither crash nor close under it.
        harness.service.close()
        started.join()
        alias = harness.alias("locked")
        # It answered; only the size, behind the lock, was not read this time.
        assert alias.up
        assert alias.size_at == size_read_at
        assert wait_until(lambda: not probe_threads("locked"), timeout=2.0 + SLACK)
    finally:
        writer.rollback()
        writer.close()
    assert harness.round().aliases["locked"].up


def test_a_scrape_of_another_alias_is_not_held_up_by_a_hung_one(
    make_postgres, postgres, make_harness
):
    hung = make_postgres()
    harness = make_harness(
        {
            "hung": hung.django_settings("app", "monitor", hung.monitor_password),
            "main": postgres.django_settings("app", "monitor", postgres.monitor_password),
        },
        deadline=6.0,
    )
    hung_target, main_target = harness.targets
    harness.round()
    hung.pause()
    try:
        # Prometheus's /probe?alias=hung and /probe?alias=main arrive together.
        hung_scrape = threading.Thread(target=harness.service.snapshot, args=((hung_target,),))
        hung_scrape.start()
        assert wait_until(lambda: len(probe_threads("hung")) == 1, timeout=5)
        state = harness.service.snapshot((main_target,))
        # Answered while the hung alias's probe still runs: it did not wait for that one.
        assert hung_scrape.is_alive()
        hung_scrape.join()
    finally:
        hung.resume()
    assert state.aliases["main"].up
    final = harness.service.snapshot(harness.targets)
    assert final.aliases["main"].up


def status_query_calls(server) -> int:
    rows = server.sql(
        "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements "
        "WHERE query LIKE '%pg_stat_wal_receiver%' AND query NOT LIKE '%pg_stat_statements%'"
    )
    return int(rows[0][0])


def test_aliases_on_one_server_read_its_facts_once_per_round(postgres, make_harness):
    password = postgres.monitor_password
    harness = make_harness(
        {
            name: postgres.django_settings(name, "monitor", password)
            for name in ("app", "users", "analytics")
        }
    )
    harness.round()
    before = status_query_calls(postgres)
    for _ in range(5):
        harness.round()
    assert status_query_calls(postgres) - before == 5
    for alias in ("app", "users", "analytics"):
        assert harness.value("dbhealth_connections_max", alias=alias) == 50
        assert harness.value("dbhealth_replica", alias=alias) == 0
        assert harness.value("dbhealth_connections", alias=alias, state="active") >= 1


def test_counters_never_go_backwards_under_interleaved_scrapes(
    make_postgres, postgres, make_harness
):
    flapping = make_postgres()
    hung = make_postgres()
    harness = make_harness(
        {
            "flapping": flapping.django_settings("app", "monitor", flapping.monitor_password),
            "hung": hung.django_settings("app", "monitor", hung.monitor_password),
            "main": postgres.django_settings("app", "monitor", postgres.monitor_password),
        },
        deadline=1.0,
        refresh_interval=0.0,
    )
    service = harness.service
    targets = {target.alias: target for target in harness.targets}
    harness.round()
    hung.pause()
    stop = threading.Event()
    seen: dict[tuple, float] = {}
    decreases: list[str] = []

    def check(state) -> None:
        for alias, alias_state in state.aliases.items():
            values = {(alias, "rounds"): state.rounds}
            for reason, count in alias_state.failures.items():
                values[(alias, "failures", reason)] = count
            for statement in alias_state.statements or ():
                values[(alias, "calls", statement.queryid)] = statement.calls
            for key, value in values.items():
                if value < seen.get(key, 0):
                    decreases.append(f"{key}: {seen[key]} -> {value}")
                seen[key] = max(seen.get(key, 0), value)

    def scraper(subset, budget) -> None:
        while not stop.is_set():
            check(service.snapshot([targets[name] for name in subset], budget))

    loops = [
        threading.Thread(target=scraper, args=(list(targets), None)),
        threading.Thread(target=scraper, args=(["flapping"], 0.3)),
        threading.Thread(target=scraper, args=(["hung", "main"], 0.6)),
        threading.Thread(target=scraper, args=(["main"], None)),
    ]
    try:
        for loop in loops:
            loop.start()
        for _ in range(3):
            flapping.stop()
            time.sleep(1.0)
            flapping.restart()
            time.sleep(1.0)
    finally:
        stop.set()
        for loop in loops:
            loop.join()
        hung.resume()
    assert not decreases, decreases
    assert seen[("flapping", "failures", "refused")] >= 1
    assert seen[("hung", "failures", "timeout")] >= 1


def test_a_far_away_alias_stays_up_on_its_kept_connection(postgres, make_harness):
    # 0.15 s each way: a fresh connection takes about a second, each query 0.3 s, and all the
    # parts together do not fit in the deadline.
    with LatencyProxy(postgres.port, delay=0.15) as proxy:
        entry = postgres.django_settings("app", "monitor", postgres.monitor_password)
        harness = make_harness(
            {"far": {**entry, "PORT": str(proxy.port)}}, deadline=2.5, refresh_interval=0.0
        )
        backends = set()
        for _ in range(6):
            alias = harness.round().aliases["far"]
            assert alias.up, alias.message
            backends.add(harness.service._probers["far"]._wrapper.connection.info.backend_pid)
            wait_until(lambda: not probe_threads("far"), timeout=2.5 + SLACK)
        assert alias.failures == {}
        assert len(backends) == 1, "the kept connection was cut"


def test_a_missing_statements_extension_is_asked_for_once_per_refresh_interval(
    make_postgres, make_harness
):
    server = make_postgres(databases=("bare",))
    server.sql("DROP EXTENSION IF EXISTS pg_stat_statements", dbname="bare")
    harness = make_harness(
        {"bare": server.django_settings("bare", "monitor", server.monitor_password)},
        refresh_interval=60.0,
    )
    log_size = server.logfile.stat().st_size
    for _ in range(5):
        alias = harness.round().aliases["bare"]
        assert alias.up
    assert alias.statements_available is False
    assert harness.value("dbhealth_statements_available", alias="bare") == 0
    log = server.logfile.read_bytes()[log_size:].decode(errors="replace")
    assert log.count("function pg_stat_statements(boolean) does not exist") == 1


def test_every_change_of_an_alias_is_logged_once(make_postgres, make_harness, caplog):
    server = make_postgres()
    harness = make_harness(
        {"db": server.django_settings("app", "monitor", server.monitor_password)}, deadline=2.0
    )
    caplog.set_level("INFO", logger="dbhealth")
    harness.round()
    server.stop()
    for _ in range(3):
        harness.round()
    server.restart()
    for _ in range(3):
        harness.round()
    lines = [record.getMessage() for record in caplog.records if record.name == "dbhealth"]
    assert lines[0] == "alias db (postgresql) is up"
    assert lines[1].startswith("alias db (postgresql) is down: refused: ")
    assert lines[2] == "alias db (postgresql) is up again"
    assert len(lines) == 3, lines
    assert server.monitor_password not in caplog.text
