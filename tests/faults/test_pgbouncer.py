"""Aliases behind PgBouncer (Debian's pgbouncer, in front of the session's PostgreSQL) in session
and in transaction pooling: probed like direct ones, with their limits on every statement, and
nothing left on a pooled server session for the next client."""

import secrets

import psycopg
import pytest
from dbhealth.probing.vendors.postgresql import PostgreSQLProbe
from django.db.utils import OperationalError

from tests.support.pgbouncer import POOL_MODES


@pytest.fixture
def database(postgres) -> str:
    name = f"pooled_{secrets.token_hex(4)}"
    postgres.create_database(name)
    postgres.sql(
        "CREATE TABLE orders (id serial PRIMARY KEY, note text);"
        " INSERT INTO orders (note) SELECT 'n' FROM generate_series(1, 10);"
        " GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO monitor",
        dbname=name,
    )
    return name


def test_pgbouncer_refuses_the_options_start_up_parameter(make_pgbouncer):
    # Why dbhealth sends its limits in front of each statement instead of at start-up.
    bouncer = make_pgbouncer("transaction")
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(
            **bouncer.connection_keywords("postgres", "monitor"),
            options="-c statement_timeout=1000",
        )


@pytest.mark.parametrize("pool_mode", POOL_MODES)
def test_an_alias_behind_pgbouncer_reads_every_part(
    pool_mode, postgres, database, make_pgbouncer, make_harness
):
    bouncer = make_pgbouncer(pool_mode)
    postgres.sql("SELECT count(*) FROM orders WHERE id = 3", dbname=database)
    harness = make_harness(
        {"pooled": bouncer.django_settings(database, "monitor")}, refresh_interval=0.0
    )
    for _ in range(3):  # kept connection: every round after the first reuses it
        pooled = harness.round().aliases["pooled"]
        assert pooled.up, pooled.message
        assert pooled.failing_parts == {}, pooled.failing_parts
    assert pooled.version.startswith("15.")
    assert pooled.size_bytes > 0
    assert pooled.transactions["commit"] > 0
    assert pooled.connections_max == 50
    assert sum(pooled.connections.values()) >= 1
    assert [item.table for item in pooled.id_headroom] == ["orders"]
    assert pooled.statements_available is True
    texts = [statement.query for statement in pooled.statements]
    assert "SELECT count(*) FROM orders WHERE id = $1" in texts, texts
    # dbhealth's own statements, limits in front of each included, are left out here too.
    probe_words = ("set_config", "pg_stat_statements", "pg_stat_activity", "pg_database_size")
    assert not [text for text in texts if any(word in text for word in probe_words)], texts
    assert harness.value("dbhealth_up", alias="pooled", vendor="postgresql") == 1


@pytest.mark.parametrize("pool_mode", POOL_MODES)
def test_a_statement_through_pgbouncer_is_cut_by_its_own_limit(
    pool_mode, database, make_pgbouncer, make_harness
):
    bouncer = make_pgbouncer(pool_mode)
    harness = make_harness({"pooled": bouncer.django_settings(database, "monitor")})
    assert harness.round().aliases["pooled"].up
    wrapper = harness.service._probers["pooled"]._wrapper
    # Refused at start-up, the limits left the connection's settings.
    assert "options" not in wrapper.settings_dict["OPTIONS"]
    PostgreSQLProbe().start_probe(wrapper, 0.5)
    with wrapper.cursor() as cursor:
        with pytest.raises(OperationalError, match="statement timeout"):
            cursor.execute("SELECT pg_sleep(3)")
        cursor.execute("SELECT current_setting('transaction_read_only')")
        assert cursor.fetchone() == ("on",)
    assert harness.round().aliases["pooled"].up


def test_transaction_pooling_leaves_nothing_set_for_the_next_client(
    database, make_pgbouncer, make_harness
):
    # One server session for the role: whatever a probe left set there, this client gets.
    bouncer = make_pgbouncer("transaction", pool_size=1)
    harness = make_harness(
        {"pooled": bouncer.django_settings(database, "monitor")}, refresh_interval=0.0
    )
    for _ in range(2):
        assert harness.round().aliases["pooled"].up
    with psycopg.connect(
        **bouncer.connection_keywords(database, "monitor"), autocommit=True
    ) as client:
        backends = {client.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(3)}
        settings = client.execute(
            "SELECT current_setting('transaction_read_only'),"
            " current_setting('default_transaction_read_only'),"
            " current_setting('statement_timeout'), current_setting('lock_timeout')"
        ).fetchone()
    assert len(backends) == 1
    assert settings == ("off", "off", "0", "0")


@pytest.mark.parametrize("pool_mode", POOL_MODES)
def test_sessions_seen_through_pgbouncer_are_the_servers(
    pool_mode, database, make_pgbouncer, make_harness
):
    bouncer = make_pgbouncer(pool_mode)
    harness = make_harness({"pooled": bouncer.django_settings(database, "monitor")})
    assert harness.round().aliases["pooled"].oldest_transaction_seconds == 0
    # An application's transaction, open through PgBouncer: it holds a server session, which
    # is what the probe sees (PgBouncer's own clients are not PostgreSQL's sessions).
    with psycopg.connect(**bouncer.connection_keywords(database, "postgres")) as application:
        application.execute("SELECT 1")
        assert harness.round_until(
            lambda: (harness.alias("pooled").oldest_transaction_seconds or 0) > 0
        )
        application.rollback()


def test_an_alias_with_options_pgbouncer_refuses_is_down_with_reason_config(
    database, make_pgbouncer, make_harness
):
    bouncer = make_pgbouncer("transaction")
    settings = {
        **bouncer.django_settings(database, "monitor"),
        "OPTIONS": {"options": "-c search_path=public"},
    }
    harness = make_harness({"pooled": settings})
    pooled = harness.round().aliases["pooled"]
    assert not pooled.up
    assert pooled.reason == "config"
    assert "unsupported startup parameter: options" in pooled.message
    # The alias's own options were kept: dbhealth dropped only its own limits before retrying.
    prober = harness.service._probers["pooled"]
    assert prober._settings["OPTIONS"]["options"] == "-c search_path=public"
