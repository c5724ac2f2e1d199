"""Custom queries on real servers (PostgreSQL, MariaDB, SQLite): exported as defined, and every
limit holds: a write fails and changes nothing, a second statement cannot step out of the
read-only transaction, 5,000 rows fail the query instead of being cut, a query slower than the
deadline fails alone, secret-looking label values are redacted, and the interval is kept."""

import dataclasses
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import MySQLdb
import pytest
from dbhealth.configuration.queries import CustomQuery, parse_queries

from tests.dbhealth_fixtures import promtool_check_metrics

ROWS = 5000
PASSWORD_IN_ROW = "hunter2-row-secret"


@dataclass
class Server:
    """One vendor's database with table `items` (ROWS rows, `kind` a, b or c) and `notes` (two
    rows with secret-looking texts), reached by a role that may write both tables: what stops
    a write is the read-only transaction, not a missing privilege."""

    vendor: str
    settings: dict[str, Any]
    count: Callable[[], int]  # rows in items, read outside dbhealth
    slow_sql: str  # runs far longer than any deadline here


def secret_texts(password: str) -> list[str]:
    return [
        f"postgres://app:{PASSWORD_IN_ROW}@db.example.com/app",
        f"host=db password={PASSWORD_IN_ROW}",
        f"the alias's own password is {password}",
    ]


@pytest.fixture(scope="module")
def pg_server(postgres) -> Server:
    name = f"cq_{secrets.token_hex(4)}"
    postgres.create_database(name)
    role = f"writer_{secrets.token_hex(4)}"
    password = postgres.create_role(role, grants=())
    postgres.sql(
        "CREATE TABLE items (id serial PRIMARY KEY, kind text NOT NULL);"
        f"INSERT INTO items (kind) SELECT (ARRAY['a', 'b', 'c'])[1 + n % 3]"
        f" FROM generate_series(1, {ROWS}) AS n;"
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);"
        f"GRANT ALL ON items, notes TO {role}; GRANT ALL ON SCHEMA public TO {role};",
        dbname=name,
    )
    for number, text in enumerate(secret_texts(password)):
        postgres.sql("INSERT INTO notes VALUES (%s, %s)", dbname=name, params=[number, text])
    return Server(
        vendor="postgresql",
        settings=postgres.django_settings(name, role, password),
        count=lambda: postgres.sql("SELECT count(*) FROM items", dbname=name)[0][0],
        slow_sql="SELECT 1 AS n FROM pg_sleep(30)",
    )


@pytest.fixture(scope="module")
def maria_server(mariadb) -> Server:
    name = f"cq_{secrets.token_hex(4)}"
    mariadb.create_database(name)
    user = f"writer_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=(f"ALL ON `{name}`.*",))
    mariadb.sql(
        "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, kind varchar(8) NOT NULL)",
        db=name,
    )
    mariadb.sql(
        "INSERT INTO items (kind) SELECT ELT(1 + seq % 3, 'a', 'b', 'c') FROM seq_1_to_5000",
        db=name,
    )
    mariadb.sql("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)", db=name)
    for number, text in enumerate(secret_texts(password)):
        mariadb.sql("INSERT INTO notes VALUES (%s, %s)", db=name, params=[number, text])
    return Server(
        vendor="mysql",
        settings=mariadb.django_settings(name, user, password),
        count=lambda: mariadb.sql("SELECT count(*) FROM items", db=name)[0][0],
        slow_sql="SELECT SLEEP(30) AS n",
    )


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory) -> Server:
    path = tmp_path_factory.mktemp("custom-queries") / "cache.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, kind TEXT NOT NULL)")
    connection.executemany(
        "INSERT INTO items (kind) VALUES (?)", [("abc"[n % 3],) for n in range(ROWS)]
    )
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    connection.executemany(
        "INSERT INTO notes VALUES (?, ?)", list(enumerate(secret_texts("no-password")))
    )
    connection.commit()
    connection.close()

    def count() -> int:
        with sqlite3.connect(path) as reader:
            return reader.execute("SELECT count(*) FROM items").fetchone()[0]

    return Server(
        vendor="sqlite",
        settings={"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)},
        count=count,
        # Counts to a billion: minutes of work, stopped only by the interrupt.
        slow_sql=(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
            " SELECT count(*) AS n FROM (SELECT x FROM c LIMIT 1000000000)"
        ),
    )


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def server(request) -> Server:
    fixture = {"postgresql": "pg_server", "mysql": "maria_server", "sqlite": "sqlite_server"}
    return request.getfixturevalue(fixture[request.param])


def queries(**definitions: dict[str, Any]) -> tuple[CustomQuery, ...]:
    return parse_queries({name: {"aliases": ["db"], **d} for name, d in definitions.items()})


def harness_with(make_harness, server: Server, found: tuple[CustomQuery, ...], **options):
    harness = make_harness({"db": server.settings}, **options)
    harness.targets = tuple(dataclasses.replace(t, queries=found) for t in harness.targets)
    return harness


def part_failures(harness, name: str) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (metric, labels), value in harness.samples().items()
        if metric == "dbhealth_part_failures_total" and dict(labels)["part"] == f"query:{name}"
    }


def test_a_query_is_exported_as_defined(server, make_harness):
    found = queries(
        per_kind={
            "sql": "SELECT kind, count(*) AS items, max(id) AS last_id FROM items GROUP BY kind",
            "labels": ["kind"],
            "metrics": {"items": "gauge", "last_id": "counter"},
            "help": "Items per kind",
        }
    )
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert alias.failing_parts == {}
    for kind in "abc":
        assert harness.value("dbhealth_query_per_kind_items", alias="db", kind=kind) in (
            ROWS // 3,
            ROWS // 3 + 1,
        )
    total = sum(
        harness.value("dbhealth_query_per_kind_items", alias="db", kind=kind) for kind in "abc"
    )
    assert total == ROWS
    assert harness.value("dbhealth_query_per_kind_last_id_total", alias="db", kind="c") > 0
    exposition = harness.exposition()
    assert "# HELP dbhealth_query_per_kind_items Items per kind" in exposition
    assert re.search(r"# TYPE dbhealth_query_per_kind_last_id(_total)? counter", exposition)
    checked = promtool_check_metrics(exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_write_fails_and_changes_nothing(server, make_harness):
    """Refused at load; a definition built past that check (or a write the check cannot see,
    PostgreSQL's data-modifying WITH) fails in the read-only transaction."""
    before = server.count()
    with pytest.raises(
        ValueError, match="query wipe: sql must be a query: it starts with 'DELETE'"
    ):
        queries(wipe={"sql": "DELETE FROM items", "metrics": {"n": "gauge"}})
    (kinds,) = queries(
        kinds={"sql": "SELECT count(DISTINCT kind) AS n FROM items", "metrics": {"n": "gauge"}}
    )
    wipe = dataclasses.replace(kinds, name="wipe", sql="DELETE FROM items")
    found = (wipe, kinds)
    if server.vendor == "postgresql":
        (hidden,) = queries(
            hidden={
                "sql": "WITH gone AS (DELETE FROM items RETURNING id)"
                " SELECT count(*) AS n FROM gone",
                "metrics": {"n": "gauge"},
            }
        )
        found = (*found, hidden)
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert part_failures(harness, "wipe") == {"read_only": 1}
    if server.vendor == "postgresql":
        assert part_failures(harness, "hidden") == {"read_only": 1}
    assert [query.name for query in alias.query_rows] == ["kinds"]
    # The other query on the same connection is unharmed.
    assert harness.value("dbhealth_query_kinds_n", alias="db") == 3
    assert server.count() == before == ROWS


def test_a_second_statement_cannot_step_out_of_the_read_only_transaction(server, make_harness):
    """Refused at load; a definition built past that check is refused by the driver too."""
    with pytest.raises(ValueError, match="one statement"):
        queries(
            escape={"sql": "SELECT 1 AS n; COMMIT; DELETE FROM items", "metrics": {"n": "gauge"}}
        )
    (template,) = queries(escape={"sql": "SELECT 1 AS n", "metrics": {"n": "gauge"}})
    escapes = {
        "postgresql": "SELECT 1 AS n; COMMIT; SET default_transaction_read_only = off;"
        " DELETE FROM items",
        "mysql": "SELECT 1 AS n; COMMIT; SET SESSION TRANSACTION READ WRITE; DELETE FROM items",
        "sqlite": "SELECT 1 AS n; PRAGMA query_only = 0; DELETE FROM items",
    }
    escape = dataclasses.replace(template, sql=escapes[server.vendor])
    harness = harness_with(make_harness, server, (escape,))
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert "query:escape" in alias.failing_parts
    assert harness.value("dbhealth_query_escape_n", alias="db") is None
    assert server.count() == ROWS


def test_a_result_beyond_max_series_fails_the_query_instead_of_being_cut(server, make_harness):
    found = queries(
        every_item={
            "sql": "SELECT id, 1 AS one FROM items",
            "labels": ["id"],
            "metrics": {"one": "gauge"},
        },
        small={
            "sql": "SELECT kind, count(*) AS n FROM items GROUP BY kind",
            "labels": ["kind"],
            "metrics": {"n": "gauge"},
            "max_series": 3,
        },
    )
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert part_failures(harness, "every_item") == {"series_limit": 1}
    assert "max_series = 100" in alias.failing_parts["query:every_item"]
    assert not [key for key in harness.samples() if key[0] == "dbhealth_query_every_item_one"]
    # Exactly at the cap is fine.
    assert harness.value("dbhealth_query_small_n", alias="db", kind="a") is not None


def test_a_query_slower_than_the_deadline_fails_alone(server, make_harness):
    found = queries(
        slow={"sql": server.slow_sql, "metrics": {"n": "gauge"}},
        kinds={"sql": "SELECT count(DISTINCT kind) AS n FROM items", "metrics": {"n": "gauge"}},
    )
    harness = harness_with(make_harness, server, found, deadline=1.5)
    # Without a budget the round waits for every probe to be settled: up, the query timed out.
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert part_failures(harness, "slow") == {"timeout": 1}
    assert harness.value("dbhealth_query_kinds_n", alias="db") == 3
    assert harness.value("dbhealth_probe_failures_total", alias="db", reason="timeout") == 0
    # The query ran at most once per interval: the next round does not run it again, and the
    # alias still answers (the server cancelled the query; the connection was kept or rebuilt).
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert part_failures(harness, "slow") == {"timeout": 1}


def test_secret_looking_label_values_are_redacted(server, make_harness):
    found = queries(
        notes={
            "sql": "SELECT body, id AS n FROM notes",
            "labels": ["body"],
            "metrics": {"n": "gauge"},
        }
    )
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    exposition = harness.exposition()
    assert PASSWORD_IN_ROW not in exposition
    password = server.settings.get("PASSWORD")
    if password:
        assert password not in exposition
    bodies = {
        dict(labels)["body"]
        for (metric, labels), _ in harness.samples().items()
        if metric == "dbhealth_query_notes_n"
    }
    assert bodies == {
        "postgres://***@db.example.com/app",
        "host=db password=***",
        "the alias's own password is ***"
        if password
        else "the alias's own password is no-password",
    }


def test_a_query_runs_at_most_once_per_interval(server, make_harness):
    found = queries(
        total={
            "sql": "SELECT count(*) AS n FROM items",
            "metrics": {"n": "gauge"},
            "interval": 3600,
        },
    )
    harness = harness_with(make_harness, server, found, refresh_interval=0.0)
    harness.round()
    first = harness.alias("db").queries_at[found[0]]
    harness.round()
    assert harness.alias("db").queries_at[found[0]] == first
    assert harness.value("dbhealth_query_total_n", alias="db") == ROWS


def test_a_reloaded_definition_replaces_the_old_ones_rows_at_once(sqlite_server, make_harness):
    """Same name, other labels: rows the old definition read are never shown as the new one's
    (they would not even fit its labels), and the new one runs at once."""
    old = queries(
        q={
            "sql": "SELECT kind, count(*) AS n FROM items GROUP BY kind",
            "labels": ["kind"],
            "metrics": {"n": "gauge"},
            "interval": 3600,
        }
    )
    harness = harness_with(make_harness, sqlite_server, old)
    harness.round()
    assert harness.value("dbhealth_query_q_n", alias="db", kind="a") is not None
    new = queries(
        q={"sql": "SELECT count(*) AS n FROM items", "metrics": {"n": "gauge"}, "interval": 3600}
    )
    harness.targets = tuple(dataclasses.replace(t, queries=new) for t in harness.targets)
    harness.service.reconfigure(harness.targets, harness.service.options)
    harness.round()
    assert harness.value("dbhealth_query_q_n", alias="db") == ROWS
    assert harness.value("dbhealth_query_q_n", alias="db", kind="a") is None
    assert list(harness.alias("db").queries_at) == list(new)


def test_percent_signs_in_the_sql_reach_the_server_as_written(server, make_harness):
    """No parameters are passed, so no driver reads `%` as a placeholder."""
    found = queries(
        like={
            "sql": "SELECT count(*) AS n FROM items WHERE kind LIKE '%a%'",
            "metrics": {"n": "gauge"},
        }
    )
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.failing_parts == {}
    assert harness.value("dbhealth_query_like_n", alias="db") in (ROWS // 3, ROWS // 3 + 1)


def test_an_empty_result_exports_nothing_and_is_no_failure(server, make_harness):
    found = queries(
        none={
            "sql": "SELECT kind, count(*) AS n FROM items WHERE id < 0 GROUP BY kind",
            "labels": ["kind"],
            "metrics": {"n": "gauge"},
        }
    )
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert alias.failing_parts == {}
    assert alias.query_rows == {found[0]: []}
    assert not [key for key in harness.samples() if key[0] == "dbhealth_query_none_n"]


def test_columns_missing_from_the_result_fail_the_query_with_their_names(server, make_harness):
    found = queries(
        wrong={
            "sql": "SELECT kind FROM items LIMIT 1",
            "labels": ["kind"],
            "metrics": {"n": "gauge"},
        },
        text={"sql": "SELECT kind AS n FROM items LIMIT 1", "metrics": {"n": "gauge"}},
    )
    harness = harness_with(make_harness, server, found)
    alias = harness.round().aliases["db"]
    assert alias.up, alias.message
    assert "no column(s) n" in alias.failing_parts["query:wrong"]
    assert "not numbers" in alias.failing_parts["query:text"]
    assert part_failures(harness, "wrong") == {"config": 1}


def test_mysql_connection_keeps_its_multi_statement_option(maria_server, make_harness):
    """The option is switched off around a custom query only: Django's own use is untouched."""
    found = queries(one={"sql": "SELECT 1 AS n", "metrics": {"n": "gauge"}})
    harness = harness_with(make_harness, maria_server, found)
    harness.round()
    prober = harness.service._probers["db"]
    raw = prober._wrapper.connection
    with raw.cursor() as cursor:
        cursor.execute("SELECT 1; SELECT 2")
        assert cursor.fetchall() == ((1,),)
    assert isinstance(raw, MySQLdb.connections.Connection)


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            {
                "bad-name": {
                    "vendors": ["sqlite"],
                    "sql": "SELECT 1 AS n",
                    "metrics": {"n": "gauge"},
                }
            },
            "query bad-name: the name must be lowercase",
        ),
        (
            {"q": {"vendors": ["sqlite"], "sql": "SELECT 1 AS n", "metrics": {"N x": "gauge"}}},
            "query q: column 'N x' must be lowercase",
        ),
        (
            {"q": {"vendors": ["sqlite"], "sql": "SELECT 1", "metrics": {"n": "histogram"}}},
            'query q: metric column n: kind must be "gauge" or "counter"',
        ),
        (
            {"q": {"vendors": ["oracle"], "sql": "SELECT 1", "metrics": {"n": "gauge"}}},
            "query q: vendor 'oracle' is not one of",
        ),
        ({"q": {"sql": "SELECT 1", "metrics": {"n": "gauge"}}}, "query q: needs aliases"),
        (
            {"q": {"aliases": ["nowhere"], "sql": "SELECT 1", "metrics": {"n": "gauge"}}},
            "query q: no database alias nowhere",
        ),
        (
            {
                "q": {
                    "vendors": ["sqlite"],
                    "sql": "SELECT 1",
                    "labels": ["alias"],
                    "metrics": {"n": "gauge"},
                }
            },
            "query q: label column(s) alias would clash",
        ),
        (
            {"q": {"vendors": ["sqlite"], "sql": "SELECT 1", "metrics": {"n_total": "counter"}}},
            "query q: metric column n_total: a counter gets _total added",
        ),
        (
            {
                "q": {
                    "vendors": ["sqlite"],
                    "sql": "SELECT 1",
                    "metrics": {"n": "gauge"},
                    "max_series": 0,
                }
            },
            "query q: max_series must be at least 1",
        ),
        (
            {
                "q": {
                    "vendors": ["sqlite"],
                    "sql": "SELECT 1",
                    "metrics": {"n": "gauge"},
                    "limit": 3,
                }
            },
            "query q: unknown key(s) limit",
        ),
        (
            {
                "q": {
                    "vendors": ["mysql"],
                    "sql": "SET SESSION sql_mode = ''",
                    "metrics": {"n": "gauge"},
                }
            },
            "query q: sql must be a query: it starts with 'SET'",
        ),
        (
            {
                "q": {
                    "vendors": ["sqlite"],
                    "sql": "PRAGMA query_only = 0",
                    "metrics": {"n": "gauge"},
                }
            },
            "query q: sql must be a query: it starts with 'PRAGMA'",
        ),
        (
            {
                "q": {
                    "vendors": ["sqlite"],
                    "sql": "SELECT 1 AS n; SELECT 2",
                    "metrics": {"n": "gauge"},
                }
            },
            "query q: sql must be exactly one statement",
        ),
        (
            {
                "a": {"vendors": ["sqlite"], "sql": "SELECT 1", "metrics": {"b_c": "gauge"}},
                "a_b": {"vendors": ["sqlite"], "sql": "SELECT 1", "metrics": {"c": "gauge"}},
            },
            "query a_b: metric dbhealth_query_a_b_c is also made by query a",
        ),
    ],
)
def test_a_bad_definition_stops_start_up_with_one_line_naming_it(
    definition, message, tmp_path: Path
):
    from dbhealth.configuration.toml_file import load_config_file
    from django.core.exceptions import ImproperlyConfigured

    lines = ['[databases]\ncache_db = "sqlite:///x.sqlite3"\n']
    for name, entry in definition.items():
        lines.append(f'[queries."{name}"]')
        for key, value in entry.items():
            lines.append(f"{key} = {toml_value(value)}")
    path = tmp_path / "dbhealth.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImproperlyConfigured) as raised:
        load_config_file(path)
    text = str(raised.value)
    assert "\n" not in text
    assert f"{path}: [queries] {message}" in text


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return str(value)


def test_the_example_configuration_carries_the_guides_two_questions():
    from dbhealth.configuration.toml_file import load_config_file

    example = Path(__file__).resolve().parents[3] / "config" / "dbhealth.example.toml"
    loaded = load_config_file(example)
    found = {query.name: query for query in parse_queries(loaded.queries)}
    assert found["expired_cache_entries"].aliases == ("cache_db",)
    assert found["old_analytics_events"].aliases == ("analytics_db",)


def test_the_guides_two_questions_answer_on_real_databases(postgres, tmp_path, make_harness):
    """The example's queries, as written, on tables shaped as Django creates them for the
    guide's CacheEntry (SQLite) and AnalyticsEvent (PostgreSQL) models."""
    from dbhealth.configuration.toml_file import load_config_file

    example = Path(__file__).resolve().parents[3] / "config" / "dbhealth.example.toml"
    found = {q.name: q for q in parse_queries(load_config_file(example).queries)}
    now = datetime.now(UTC)

    cache = tmp_path / "cache.sqlite3"
    connection = sqlite3.connect(cache)
    connection.execute(
        'CREATE TABLE "cache_cacheentry" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,'
        ' "key" varchar(255) NOT NULL UNIQUE, "value" text NOT NULL,'
        ' "expires_at" datetime NOT NULL, "created_at" datetime NOT NULL)'
    )
    # As Django writes aware datetimes to SQLite: UTC, without an offset.
    stamps = [now + timedelta(minutes=m) for m in (-90, -5, -1, 5, 60)]
    connection.executemany(
        "INSERT INTO cache_cacheentry (key, value, expires_at, created_at) VALUES (?, ?, ?, ?)",
        [
            (f"k{n}", "v", stamp.replace(tzinfo=None).isoformat(" "), now.isoformat(" "))
            for n, stamp in enumerate(stamps)
        ],
    )
    connection.commit()
    connection.close()

    database = f"analytics_{secrets.token_hex(4)}"
    postgres.create_database(database)
    postgres.sql(
        'CREATE TABLE "analytics_analyticsevent" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY'
        ' DEFAULT AS IDENTITY, "event_type" varchar(50) NOT NULL, "user_id" integer NULL,'
        ' "session_id" varchar(100) NOT NULL, "timestamp" timestamp with time zone NOT NULL,'
        ' "data" jsonb NOT NULL);'
        "INSERT INTO analytics_analyticsevent (event_type, session_id, timestamp, data)"
        " SELECT kind, 's', now() - make_interval(days => age), '{}'"
        " FROM (VALUES ('login', 120), ('login', 91), ('login', 30), ('click', 200),"
        " ('click', 1)) AS e (kind, age);"
        "GRANT SELECT ON analytics_analyticsevent TO monitor",
        dbname=database,
    )
    harness = make_harness(
        {
            "cache_db": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(cache)},
            "analytics_db": postgres.django_settings(
                database, "monitor", postgres.monitor_password
            ),
        }
    )
    harness.targets = tuple(
        dataclasses.replace(
            t, queries=tuple(q for q in found.values() if q.runs_on(t.alias, t.vendor))
        )
        for t in harness.targets
    )
    state = harness.round()
    for alias in ("cache_db", "analytics_db"):
        assert state.aliases[alias].up, state.aliases[alias].message
        assert state.aliases[alias].failing_parts == {}
    assert harness.value("dbhealth_query_expired_cache_entries_entries", alias="cache_db") == 3
    events = "dbhealth_query_old_analytics_events_events"
    assert harness.value(events, alias="analytics_db", event_type="login") == 2
    assert harness.value(events, alias="analytics_db", event_type="click") == 1


def test_embedded_queries_come_from_dbhealth_queries_and_a_bad_one_is_a_check_error(
    exporter_settings, tmp_path
):
    from dbhealth.configuration.system_checks import check_targets
    from dbhealth.configuration.targets import load_targets
    from django.test import override_settings

    path = tmp_path / "cache.sqlite3"
    sqlite3.connect(path).close()
    exporter_settings({"cache_db": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}})
    good = {
        "pages": {
            "vendors": ["sqlite"],
            "sql": "PRAGMA page_count",
            "metrics": {"page_count": "gauge"},
        }
    }
    with override_settings(DBHEALTH_QUERIES=good):
        (target,) = load_targets()
        assert [query.name for query in target.queries] == ["pages"]
    with override_settings(DBHEALTH_QUERIES={"Pages": good["pages"]}):
        (error,) = check_targets()
        assert error.id == "dbhealth.E001"
        assert "DBHEALTH_QUERIES: query Pages: the name must be lowercase" in error.msg
