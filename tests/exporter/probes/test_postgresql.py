"""PostgreSQL probe, read by the least-privilege `pg_monitor` role against a real server."""

import time

import pytest


@pytest.fixture
def primary(postgres, make_harness):
    settings = postgres.django_settings("app", "monitor", postgres.monitor_password)
    return make_harness({"main": settings})


def test_a_healthy_primary_reports_every_cheap_fact(primary):
    state = primary.round()
    main = state.aliases["main"]
    assert main.up, main.message
    assert primary.value("dbhealth_up", alias="main", vendor="postgresql") == 1
    assert primary.value("dbhealth_replica", alias="main") == 0
    assert primary.value("dbhealth_replication_lag_seconds", alias="main") is None
    assert primary.value("dbhealth_connections_max", alias="main") == 50
    assert primary.value("dbhealth_connections", alias="main", state="active") >= 1
    assert main.version.startswith("15.")
    assert 0 < main.ping_seconds < main.probe_seconds
    assert main.connect_seconds > 0


def test_size_grows_after_writing_ten_megabytes(postgres, make_harness):
    postgres.create_database("sizing")
    settings = postgres.django_settings("sizing", "monitor", postgres.monitor_password)
    harness = make_harness({"sizing": settings}, refresh_interval=0.0)
    before = harness.round().aliases["sizing"].size_bytes
    postgres.sql(
        "CREATE TABLE filler AS SELECT repeat(md5(g::text), 32) AS payload "
        "FROM generate_series(1, 10 * 1024 * 1024 / 1024) AS g",
        dbname="sizing",
    )
    postgres.sql("CHECKPOINT", dbname="sizing")
    after = harness.round().aliases["sizing"].size_bytes
    assert after - before >= 10 * 1024 * 1024


def test_size_is_cached_for_the_refresh_interval_and_its_age_is_exported(primary):
    primary.round()
    first_read_at = primary.alias("main").size_at
    time.sleep(0.05)
    primary.round()
    assert primary.alias("main").size_at == first_read_at
    assert primary.value("dbhealth_part_age_seconds", alias="main", part="size") >= 0.05


def test_a_slow_statement_shows_up_in_the_top_n(postgres, make_harness):
    settings = postgres.django_settings("app", "monitor", postgres.monitor_password)
    harness = make_harness({"main": settings}, statement_top_n=3)
    for _ in range(2):
        postgres.sql("SELECT pg_sleep(0.3), 'dbhealth-slow-marker'", dbname="app")
    harness.round()
    statements = harness.alias("main").statements
    assert len(statements) <= 3
    slow = [s for s in statements if "pg_sleep" in s.query]
    assert slow, [s.query for s in statements]
    assert slow[0].calls >= 2
    assert slow[0].mean_seconds >= 0.3
    assert harness.value("dbhealth_statements_available", alias="main") == 1
    labels = {"alias": "main", "queryid": slow[0].queryid}
    assert harness.value("dbhealth_statement_calls_total", **labels) >= 2
    assert harness.value("dbhealth_statement_seconds_total", **labels) >= 0.6


def test_without_pg_stat_statements_the_alias_stays_up_and_says_so(postgres, make_harness):
    postgres.create_database("nostatements")
    postgres.sql("DROP EXTENSION IF EXISTS pg_stat_statements", dbname="nostatements")
    settings = postgres.django_settings("nostatements", "monitor", postgres.monitor_password)
    harness = make_harness({"bare": settings})
    state = harness.round()
    assert state.aliases["bare"].up
    assert harness.value("dbhealth_statements_available", alias="bare") == 0
    assert "not installed" in state.aliases["bare"].statements_problem
    assert not [key for key in harness.samples() if key[0].startswith("dbhealth_statement_")]


def test_replica_reports_its_role_and_lag_that_grows_while_replay_is_paused(
    postgres, postgres_replica, make_harness
):
    settings = postgres_replica.django_settings("app", "monitor", postgres.monitor_password)
    harness = make_harness({"replica": settings})
    harness.round()
    assert harness.value("dbhealth_replica", alias="replica") == 1
    assert harness.value("dbhealth_replica_connected", alias="replica") == 1
    postgres.sql("CREATE TABLE IF NOT EXISTS lag_probe (at timestamptz)", dbname="app")
    postgres_replica.wait_caught_up()
    postgres_replica.pause_replay()
    try:
        postgres.sql("INSERT INTO lag_probe VALUES (now())", dbname="app")
        time.sleep(1.0)
        postgres.sql("INSERT INTO lag_probe VALUES (now())", dbname="app")
        time.sleep(0.5)
        first = harness.round().aliases["replica"].replication_lag_seconds
        time.sleep(1.0)
        second = harness.round().aliases["replica"].replication_lag_seconds
    finally:
        postgres_replica.resume_replay()
    assert first > 0
    assert second >= first + 0.9
    assert harness.value("dbhealth_replication_lag_seconds", alias="replica") == second


def test_the_probe_session_is_read_only_and_named(primary):
    primary.round()
    harness = primary
    prober = harness.service._probers["main"]  # the connection the probes keep
    with prober._wrapper.cursor() as cursor:
        cursor.execute("SHOW default_transaction_read_only")
        assert cursor.fetchone()[0] == "on"
        cursor.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        assert cursor.fetchone()[0] == "dbhealth"


def test_wrong_password_is_an_auth_failure(postgres, make_harness):
    settings = postgres.django_settings("app", "monitor", "not-the-password")
    harness = make_harness({"main": settings})
    main = harness.round().aliases["main"]
    assert not main.up
    assert main.reason == "auth"
    assert "not-the-password" not in (main.message or "")
    assert harness.value("dbhealth_probe_failures_total", alias="main", reason="auth") == 1
    assert harness.value("dbhealth_down_reason", alias="main", reason="auth") == 1
