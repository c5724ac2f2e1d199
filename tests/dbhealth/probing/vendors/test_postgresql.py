"""PostgreSQL probe, read by the least-privilege `pg_monitor` role against a real server."""

import secrets
import time

import pytest
from dbhealth.probing.vendors.postgresql import MARK, PostgreSQLProbe
from django.db.utils import DataError, InternalError


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


def test_a_direct_session_is_read_only_limited_marked_and_named(primary):
    primary.round()
    wrapper = primary.service._probers["main"]._wrapper  # the connection the probes keep
    # Set once at start-up on the connection's own session (behind PgBouncer, which refuses
    # that, they go with every statement instead: tests/faults/test_pgbouncer.py).
    with wrapper.connection.cursor() as raw:
        raw.execute(
            "SELECT current_setting('default_transaction_read_only'),"
            " current_setting('statement_timeout'), current_setting('lock_timeout')"
        )
        assert raw.fetchone() == ("on", "5s", "5s")
    with wrapper.cursor() as cursor:
        cursor.execute(
            "SELECT query, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        query, application_name = cursor.fetchone()
        assert query.startswith(MARK)
        assert application_name == "dbhealth"
        with pytest.raises(InternalError, match="read-only transaction"):
            cursor.execute("CREATE TABLE probe_wrote_this (a int)")


def test_wrong_password_is_an_auth_failure(postgres, make_harness):
    settings = postgres.django_settings("app", "monitor", "not-the-password")
    harness = make_harness({"main": settings})
    main = harness.round().aliases["main"]
    assert not main.up
    assert main.reason == "auth"
    assert "not-the-password" not in (main.message or "")
    assert harness.value("dbhealth_probe_failures_total", alias="main", reason="auth") == 1
    assert harness.value("dbhealth_down_reason", alias="main", reason="auth") == 1


def test_the_probing_roles_own_statements_are_left_out(postgres, make_harness):
    database = f"quiet_{secrets.token_hex(4)}"
    postgres.create_database(database)
    settings = postgres.django_settings(database, "monitor", postgres.monitor_password)
    harness = make_harness({"quiet": settings}, refresh_interval=0.0)
    for _ in range(3):
        harness.round()
    # The same statement as the probe's ping, by another role: its row and only its row shows.
    for _ in range(2):
        postgres.sql("SELECT 1", dbname=database)
    harness.round()
    own = postgres.sql(
        "SELECT count(*) FROM pg_stat_statements JOIN pg_database d ON d.oid = dbid"
        " WHERE userid = 'monitor'::regrole AND d.datname = %s",
        params=[database],
    )[0][0]
    assert own >= 5  # ping, status, size, set_config, the statements query, ...
    texts = {s.query: s.calls for s in harness.alias("quiet").statements}
    assert texts.get("SELECT $1") == 2, texts
    probe_words = ("pg_database_size", "set_config", "pg_stat_statements", "pg_stat_wal_receiver")
    assert not [text for text in texts if any(word in text for word in probe_words)], texts


def test_utility_statement_texts_are_exported_without_their_literals(postgres, make_harness):
    database = f"texts_{secrets.token_hex(4)}"
    postgres.create_database(database)
    settings = postgres.django_settings(database, "monitor", postgres.monitor_password)
    harness = make_harness({"texts": settings}, refresh_interval=0.0, statement_text_length=30)
    secret = f"Sx{secrets.token_hex(8)}"
    postgres.sql(f"SET application_name = '{secret}'", dbname=database)
    postgres.sql(f"DO $$BEGIN PERFORM '{secret}'; END$$", dbname=database)
    harness.round()
    texts = [s.query for s in harness.alias("texts").statements]
    assert "SET application_name = ?" in texts, texts
    assert "DO ?" in texts, texts
    assert all(len(text) <= 30 for text in texts)
    assert secret not in harness.exposition()


def test_a_statements_view_that_fails_fails_the_part_and_the_alias_stays_up(postgres, make_harness):
    database = f"broken_{secrets.token_hex(4)}"
    postgres.create_database(database)
    # Where the extension is absent, a function of that name is what the query finds; this one
    # fails when read, as one whose server-side source breaks would.
    postgres.sql("DROP EXTENSION pg_stat_statements", dbname=database)
    postgres.sql(
        "CREATE FUNCTION pg_stat_statements(showtext boolean) RETURNS TABLE (queryid bigint,"
        " query text, calls bigint, total_exec_time float8, rows bigint, dbid oid, userid oid)"
        " LANGUAGE sql AS $$SELECT 1::bigint, ''::text, (1 / g)::bigint, 0::float8, 0::bigint,"
        " d.oid, 0::oid FROM generate_series(0, 0) AS g, pg_database AS d"
        " WHERE d.datname = current_database()$$",
        dbname=database,
    )
    settings = postgres.django_settings(database, "monitor", postgres.monitor_password)
    harness = make_harness({"broken": settings}, refresh_interval=0.0)
    state = harness.round().aliases["broken"]
    assert state.up, state.message
    # Not "unavailable": a failure, so nothing is claimed about the statements at all.
    assert state.statements_available is None
    assert state.statements is None
    assert "division by zero" in state.failing_parts["statements"]
    assert harness.value("dbhealth_statements_available", alias="broken") is None
    assert harness.value("dbhealth_up", alias="broken", vendor="postgresql") == 1

    prober = harness.service._probers["broken"]
    with prober._wrapper.cursor() as cursor, pytest.raises(DataError, match="division by zero"):
        PostgreSQLProbe().read_statements(prober._wrapper, cursor, 10, 200, 1.0)


def test_replica_connected_is_unknown_to_a_role_that_cannot_see_the_wal_receiver(
    postgres, postgres_replica, make_harness
):
    role = f"plain_{secrets.token_hex(4)}"
    password = postgres.create_role(role, grants=())
    postgres_replica.wait_caught_up()
    harness = make_harness(
        {
            "plain": postgres_replica.django_settings("app", role, password),
            "monitored": postgres_replica.django_settings(
                "app", "monitor", postgres.monitor_password
            ),
        }
    )
    state = harness.round()
    plain, monitored = state.aliases["plain"], state.aliases["monitored"]
    assert plain.up, plain.message
    # Without pg_read_all_stats the receiver's status reads NULL: unknown, so no series at all
    # (a 0 would page someone about a replica that is streaming).
    assert (plain.replica, plain.replica_connected) == (True, None)
    assert harness.value("dbhealth_replica", alias="plain") == 1
    assert harness.value("dbhealth_replica_connected", alias="plain") is None
    assert (monitored.replica, monitored.replica_connected) == (True, True)
    assert harness.value("dbhealth_replica_connected", alias="monitored") == 1
