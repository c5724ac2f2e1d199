"""A pg_monitor role reads every role's statement texts; no literal in them may leave the exporter,
in a text or in a label computed from one.

pg_stat_statements keeps utility statements as they were sent. A superuser runs hostile ones
carrying a fresh random token wrapped in characters that end, escape or open literals, in every
literal form, in a database a `monitor` alias watches; the token must show nowhere.
"""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.dbhealth_fixtures import Harness

HOSTILE = st.text(alphabet="'\\\"$;-/*#\n eé", max_size=6)


@dataclass
class Watched:
    database: str
    victim: str
    harness: Harness
    connect: psycopg.Connection


@pytest.fixture
def watched(postgres, make_harness) -> Iterator[Watched]:
    database = f"secrets_{secrets.token_hex(4)}"
    victim = f"victim_{secrets.token_hex(4)}"
    postgres.create_database(database)
    postgres.create_role(victim, grants=())
    settings_ = postgres.django_settings(database, "monitor", postgres.monitor_password)
    harness = make_harness({"watched": settings_}, refresh_interval=0.0, statement_top_n=50)
    with psycopg.connect(
        host=str(postgres.tmpdir),
        port=postgres.port,
        dbname=database,
        user=postgres.superuser,
        autocommit=True,
    ) as connection:
        yield Watched(database, victim, harness, connection)
    harness.service.close()
    postgres.sql(f"DROP DATABASE {database} WITH (FORCE)")
    postgres.sql(f"DROP ROLE {victim}")


def standard(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def escaped(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=HOSTILE, after=HOSTILE, tag=st.sampled_from(["", "x", "fn_1", "é"]))
def test_no_literal_of_a_utility_statement_leaves(watched: Watched, before, after, tag):
    token = f"Sk{secrets.token_hex(8)}"
    value = before + token + after
    assume(f"${tag}$" not in value)
    bits = format(secrets.randbits(64) | 1 << 63, "b")
    hexadecimal = secrets.token_hex(16)
    number = str(10**14 + secrets.randbelow(9 * 10**14))
    planted = (token, bits, hexadecimal, number)
    suffix = secrets.token_hex(4)
    run = watched.connect.execute
    run("SELECT pg_stat_statements_reset()")
    run(f"ALTER ROLE {watched.victim} PASSWORD {standard(value)}")
    run(f"CREATE ROLE role_{suffix} PASSWORD E{escaped(value)}")
    run(f"DROP ROLE role_{suffix}")
    run(f"DO ${tag}$BEGIN PERFORM {standard(value)}; END${tag}$")
    run("SET application_name = U&" + standard(value.replace("\\", "\\\\")))
    # Where the server reads a backslash as an escape, a literal ends elsewhere.
    run("SET standard_conforming_strings = off")
    run(f"SET search_path = {escaped(value)}")
    run("RESET standard_conforming_strings")
    run("RESET search_path")
    with watched.connect.cursor().copy(
        f"COPY (SELECT E{escaped(value)}, {number}) TO STDOUT"
    ) as copy:
        for _ in copy:
            pass
    run(
        f"CREATE TABLE t_{suffix} AS SELECT {standard(value)} AS a, B'{bits}' AS b,"
        f" X'{hexadecimal}' AS c, {number} AS d"
    )
    run(f"DROP TABLE t_{suffix}")
    # A utility statement that reads as a query: its text keeps the literal, its id hashes it.
    run(f"SELECT {standard(value)} AS a INTO s_{suffix}")
    run(f"DROP TABLE s_{suffix}")

    watched.harness.round()
    texts = [statement.query for statement in watched.harness.alias("watched").statements]
    exposition = watched.harness.exposition()
    assert not [text for text in texts for secret in planted if secret in text], texts
    assert not [secret for secret in planted if secret in exposition]
    # The statements were there to read: the exporter showed them, up to their first literal
    # (a literal holding a backslash hides all that follows it).
    shown = [
        f"ALTER ROLE {watched.victim} PASSWORD ?",
        f"CREATE ROLE role_{suffix} PASSWORD ?",
        "DO ?",
        "SET application_name = ?",
        "SET search_path = ?",
        "COPY (SELECT ?",
        f"CREATE TABLE t_{suffix} AS SELECT ?",
        "SELECT ?",
    ]
    assert not [start for start in shown if not any(text.startswith(start) for text in texts)]
    # No label is the server's queryid of a text that held a secret: on PostgreSQL 14 and 15
    # that id is an unsalted hash of the whole text, password included (an offline oracle).
    oracles = [
        queryid
        for queryid, query in watched.connect.execute(
            "SELECT queryid::text, query FROM pg_stat_statements WHERE dbid ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        if any(secret in query for secret in planted)
    ]
    assert len(oracles) >= len(shown)
    labels = {
        dict(labels)["queryid"]
        for name, labels in watched.harness.samples()
        if name.startswith("dbhealth_statement_") and name != "dbhealth_statements_available"
    }
    assert not labels.intersection(oracles)
    # The statements keep an id of their own, the same on every series of one statement.
    info = {
        statement.queryid
        for statement in watched.harness.alias("watched").statements
        if statement.query.startswith(f"ALTER ROLE {watched.victim} PASSWORD ?")
    }
    assert len(info) == 1 and info <= labels
