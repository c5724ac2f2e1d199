"""Top statements on PostgreSQL: the application's shown even when the probe shares its role,
dbhealth's own never (whichever role sent them), texts read only for statements new to the top,
and no label a hash of a text that held a literal."""

import secrets

import pytest
from dbhealth.probing.vendors.postgresql import ACTIVITY_QUERY, MARK, PING

PROBE_WORDS = ("pg_database_size", "set_config", "pg_stat_statements", "pg_stat_activity")


@pytest.fixture
def database(postgres) -> str:
    name = f"stmts_{secrets.token_hex(4)}"
    postgres.create_database(name)
    postgres.sql(
        "CREATE TABLE orders (id serial PRIMARY KEY, note text);"
        " INSERT INTO orders (note) SELECT 'n' FROM generate_series(1, 100)",
        dbname=name,
    )
    return name


@pytest.fixture
def application_role(postgres, database) -> str:
    """The application's own role, holding pg_monitor as a probe that shares it needs."""
    role = f"app_{secrets.token_hex(4)}"
    postgres.create_role(role)
    postgres.sql(f"GRANT SELECT ON orders TO {role}", dbname=database)
    return role


def test_the_applications_statements_show_when_the_probe_shares_its_role(
    postgres, database, application_role, make_harness
):
    password = postgres.passwords[application_role]
    harness = make_harness(
        {
            # The embedded default: the probe logs in as the application does.
            "shared": postgres.django_settings(database, application_role, password),
            # A second monitoring role on the same database, as another dbhealth would use.
            "monitored": postgres.django_settings(database, "monitor", postgres.monitor_password),
        },
        refresh_interval=0.0,
        statement_top_n=50,
    )
    for _ in range(3):
        harness.round()
    with postgres.connect(database, user=application_role, autocommit=True) as application:
        for note in range(3):
            application.execute("SELECT count(*) FROM orders WHERE note = %s", [str(note)])
        application.execute("SELECT 1")
    state = harness.round()

    # dbhealth's own statements are in pg_stat_statements under both roles, marked.
    own = postgres.sql(
        "SELECT DISTINCT userid::regrole::text FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)"
        " AND position(%s in query) = 1",
        params=[database, MARK],
    )
    assert {role for (role,) in own} == {application_role, "monitor"}
    for alias in ("shared", "monitored"):
        texts = {s.query: s.calls for s in state.aliases[alias].statements}
        assert texts.get("SELECT count(*) FROM orders WHERE note = $1") == 3, (alias, texts)
        # The application's `SELECT 1` is its alone: the probe's ping is another statement.
        assert texts.get("SELECT $1") == 1, (alias, texts)
        assert not [text for text in texts if any(word in text for word in PROBE_WORDS)], texts


def test_texts_are_read_again_only_for_statements_new_to_the_top(postgres, database, make_harness):
    harness = make_harness(
        {"main": postgres.django_settings(database, "monitor", postgres.monitor_password)},
        refresh_interval=0.0,
    )

    def text_reads() -> int:
        rows = postgres.sql(
            "SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)"
            " AND query LIKE %s",
            params=[database, f"{MARK}%bool_or(position(%"],
        )
        return rows[0][0]

    # Until every statement of its own is known, a round may meet one it has not seen: it
    # reads texts, and that query is one more of its own, met in the next round.
    harness.round()
    reads = [text_reads()]
    while len(reads) < 2 or reads[-1] != reads[-2]:
        assert len(reads) < 10, reads
        harness.round()
        reads.append(text_reads())
    quiet = reads[-1]
    assert quiet >= 1
    for _ in range(3):
        harness.round()
    assert text_reads() == quiet
    postgres.sql("SELECT note FROM orders WHERE id = 7", dbname=database)
    harness.round()
    assert text_reads() == quiet + 1
    texts = [s.query for s in harness.alias("main").statements]
    assert "SELECT note FROM orders WHERE id = $1" in texts, texts


def test_a_utility_statement_is_labelled_with_a_keyed_id_a_plannable_one_with_the_servers(
    postgres, database, make_harness
):
    harness = make_harness(
        {"main": postgres.django_settings(database, "monitor", postgres.monitor_password)},
        refresh_interval=0.0,
        statement_top_n=50,
    )
    postgres.sql(f"SET application_name = 'Sx{secrets.token_hex(6)}'", dbname=database)
    postgres.sql("SELECT note FROM orders WHERE id = 7", dbname=database)
    harness.round()
    server_ids = dict(
        postgres.sql(
            "SELECT query, queryid::text FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
            params=[database],
        )
    )
    ids = {s.query: s.queryid for s in harness.alias("main").statements}
    assert (
        ids["SELECT note FROM orders WHERE id = $1"]
        == (server_ids["SELECT note FROM orders WHERE id = $1"])
    )
    keyed = ids["SET application_name = ?"]
    assert keyed.startswith("u") and len(keyed) == 17
    assert keyed not in server_ids.values()
    # Stable for the life of the process: the series keep their identity from scrape to scrape.
    harness.round()
    assert {s.query: s.queryid for s in harness.alias("main").statements}[
        "SET application_name = ?"
    ] == keyed


def test_probe_statements_recorded_without_the_mark_are_left_out_too(
    postgres, database, make_harness
):
    # As after an upgrade from a dbhealth that did not mark its statements: the entries exist,
    # begun by unmarked runs, and a comment does not change a queryid, so they keep that text.
    with postgres.connect(database, user="monitor", autocommit=True) as older:
        for _ in range(3):
            older.execute(ACTIVITY_QUERY)
            older.execute(PING)
            older.execute("SELECT pg_database_size(current_database())")
    harness = make_harness(
        {"main": postgres.django_settings(database, "monitor", postgres.monitor_password)},
        refresh_interval=0.0,
        statement_top_n=50,
    )
    postgres.sql("SELECT note FROM orders WHERE id = 7", dbname=database)
    for _ in range(3):
        harness.round()
    texts = [s.query for s in harness.alias("main").statements]
    assert "SELECT note FROM orders WHERE id = $1" in texts, texts
    probe_words = ("mxid_age", "dbhealth_ping", "pg_database_size")
    assert not [text for text in texts if any(word in text for word in probe_words)], texts
