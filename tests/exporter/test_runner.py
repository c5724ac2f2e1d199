"""Probe rounds: concurrent, bounded by deadlines, shared by concurrent scrapes, leak-free."""

import threading
import time

import pytest


def pg_connections_from_exporter(server) -> int:
    rows = server.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbhealth'")
    return rows[0][0]


@pytest.fixture
def sqlite_entry(tmp_path):
    import sqlite3

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
        elapsed = time.monotonic() - started
        assert elapsed < 1.5 + 0.5
        assert (state.aliases["hung"].up, state.aliases["hung"].reason) == (False, "timeout")
        assert all(state.aliases[alias].up for alias in ("main", "legacy", "cache"))
        # The interrupted probe thread ends on its own; the next round probes again, no stacking.
        started = time.monotonic()
        state = harness.round()
        assert time.monotonic() - started < 1.5 + 0.5
        assert state.aliases["hung"].reason == "timeout"
        assert harness.value("dbhealth_probe_failures_total", alias="hung", reason="timeout") == 2
    finally:
        hung.resume()
    state = harness.round()
    assert state.aliases["hung"].up, state.aliases["hung"].message


def test_a_stuck_probe_is_never_stacked(make_postgres, make_harness):
    hung = make_postgres()
    harness = make_harness(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=1.0
    )
    harness.round()
    hung.pause()
    try:
        # Connecting to a stopped server cannot be interrupted: the thread lives until the
        # driver's own connect timeout. Meanwhile rounds report it without a second probe.
        harness.runner.close()
        first = harness.round().aliases["hung"]
        second = harness.round().aliases["hung"]
        assert first.reason == "timeout"
        assert second.reason == "timeout"
        time.sleep(0.1)
        probe_threads = [t for t in threading.enumerate() if t.name == "dbhealth-probe-hung"]
        assert len(probe_threads) == 1
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
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert harness.value("dbhealth_last_success_timestamp_seconds", alias="db") > 0


def test_the_scrape_timeout_budget_caps_every_deadline(make_postgres, make_harness):
    hung = make_postgres()
    harness = make_harness(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=5.0
    )
    harness.round()
    hung.pause()
    try:
        started = time.monotonic()
        assert harness.round(budget=0.8).aliases["hung"].reason == "timeout"
        assert time.monotonic() - started < 0.8 + 0.4
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
        states.append(harness.runner.state_for(harness.targets))

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rounds = {state.rounds for state in states}
    # Eight scrapes arriving together: the first one probes, the rest share its round.
    assert max(rounds) - rounds_before <= 2
    assert len(states) == 8


def test_min_interval_reuses_a_recent_round(postgres, make_harness):
    harness = make_harness(
        {"main": postgres.django_settings("app", "monitor", postgres.monitor_password)},
        min_interval=30.0,
    )
    first = harness.round().rounds
    assert harness.round().rounds == first


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


def test_an_interrupted_probe_ends_instead_of_reconnecting(make_postgres, make_harness):
    hung = make_postgres()
    harness = make_harness(
        {"hung": hung.django_settings("app", "monitor", hung.monitor_password)}, deadline=1.0
    )
    assert harness.round().aliases["hung"].up
    hung.pause()
    try:
        assert harness.round().aliases["hung"].reason == "timeout"
        # A reconnect to the stopped server would sit in the driver's connect timeout (>= 2 s).
        time.sleep(0.5)
        assert not [t for t in threading.enumerate() if t.name == "dbhealth-probe-hung"]
    finally:
        hung.resume()


def test_a_scrape_of_another_alias_is_not_held_up_by_a_hung_one(
    make_postgres, postgres, make_harness
):
    hung = make_postgres()
    harness = make_harness(
        {
            "hung": hung.django_settings("app", "monitor", hung.monitor_password),
            "main": postgres.django_settings("app", "monitor", postgres.monitor_password),
        },
        deadline=3.0,
    )
    hung_target, main_target = harness.targets
    harness.round()
    hung.pause()
    try:
        # Prometheus's /probe?alias=hung and /probe?alias=main arrive together.
        hung_scrape = threading.Thread(target=harness.runner.state_for, args=((hung_target,),))
        hung_scrape.start()
        time.sleep(0.2)
        started = time.monotonic()
        state = harness.runner.state_for((main_target,))
        main_elapsed = time.monotonic() - started
        hung_scrape.join()
    finally:
        hung.resume()
    assert state.aliases["main"].up
    assert main_elapsed < 1.0
    # Both rounds landed in the shared state: neither overwrote the other.
    final = harness.runner.store.load()
    assert final.aliases["hung"].reason == "timeout"
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
