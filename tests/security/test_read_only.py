"""Probes only read, even as a superuser: nothing is written, created or changed."""

import hashlib
import re
import secrets
import sqlite3
from pathlib import Path

import pytest
from dbhealth.probing.vendors.mysql import MySQLProbe
from dbhealth.probing.vendors.postgresql import MARK
from django.db import OperationalError, connections
from django.db.utils import load_backend

WRITE_STATEMENTS = {
    "insert",
    "insert_select",
    "update",
    "update_multi",
    "delete",
    "delete_multi",
    "replace",
    "replace_select",
    "create_table",
    "drop_table",
    "alter_table",
    "create_db",
    "truncate",
    "create_index",
    "load",
}


def pg_write_figures(postgres, dbname: str) -> tuple:
    database = postgres.sql(
        "SELECT tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = %s",
        params=[dbname],
    )
    tables = postgres.sql(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables ORDER BY 1",
        dbname=dbname,
    )
    oid = postgres.sql("SELECT oid FROM pg_database WHERE datname = %s", params=[dbname])[0][0]
    files = sorted(path.name for path in (postgres.datadir / "base" / str(oid)).iterdir())
    return database, tables, files


def test_postgres_superuser_probes_write_nothing(postgres, make_harness) -> None:
    dbname = f"readonly_{secrets.token_hex(4)}"
    postgres.create_database(dbname)
    postgres.sql("CREATE TABLE ledger (id int PRIMARY KEY, note text)", dbname=dbname)
    postgres.sql("INSERT INTO ledger SELECT g, 'x' FROM generate_series(1, 100) g", dbname=dbname)
    postgres.sql(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = %s), 0)",
        params=[dbname],
    )
    postgres.sql("SELECT pg_stat_force_next_flush()", dbname=dbname)
    before = pg_write_figures(postgres, dbname)
    harness = make_harness(
        {"super": postgres.django_settings(dbname, "postgres", postgres.superuser_password)},
        refresh_interval=0.001,
    )
    for _ in range(3):
        assert harness.round().aliases["super"].up
    harness.service.close()

    # A backend reports its statistics when it exits; the counters are then final.
    statements = postgres.sql(
        "SELECT query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
        params=[dbname],
    )
    assert statements
    for (query,) in statements:
        words = set(re.findall(r"[a-z_]+", query.lower()))
        # Probe statements start with dbhealth's mark (a comment), then the statement.
        first = query.removeprefix(MARK).lstrip().split()[0].upper()
        assert first in {"SELECT", "SET", "RESET", "SHOW", "WITH", "EXPLAIN"}, query
        # EXPLAIN plans a query to learn its queryid; with ANALYZE it would run it.
        assert first != "EXPLAIN" or "analyze" not in words, query
        # A WITH query may only read: no data-modifying common table expression.
        assert first != "WITH" or not words & {"insert", "update", "delete", "merge"}, query
    assert pg_write_figures(postgres, dbname) == before


def test_mariadb_admin_probes_issue_no_write_statements(mariadb, make_harness) -> None:
    user = f"admin_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=("ALL PRIVILEGES ON *.*",))
    harness = make_harness(
        {"admin": mariadb.django_settings("legacy", user, password)}, refresh_interval=0.001
    )
    for _ in range(3):
        assert harness.round().aliases["admin"].up
    counts = dict(
        mariadb.sql(
            "SELECT s.EVENT_NAME, s.COUNT_STAR"
            " FROM performance_schema.events_statements_summary_by_thread_by_event_name s"
            " JOIN performance_schema.threads t USING (THREAD_ID)"
            " WHERE t.PROCESSLIST_USER = %s AND s.COUNT_STAR > 0",
            params=[user],
        )
    )
    assert counts["statement/sql/select"] >= 3
    assert not {name for name in counts if name.split("/")[-1] in WRITE_STATEMENTS}, counts
    harness.service.close()


def test_mariadb_probe_session_refuses_writes(mariadb) -> None:
    """The session the prober prepares is READ ONLY: even an admin's write fails on the server."""
    user = f"admin_{secrets.token_hex(4)}"
    password = mariadb.create_user(user, grants=("ALL PRIVILEGES ON *.*",))
    probe = MySQLProbe()
    settings = probe.connection_settings(
        connections.configure_settings(
            {"default": {}, "x": mariadb.django_settings("legacy", user, password)}
        )["x"],
        1.0,
    )
    wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, "x")
    try:
        wrapper.ensure_connection()
        probe.prepare_connection(wrapper, 1.0)
        with wrapper.cursor() as cursor, pytest.raises(OperationalError, match="READ ONLY"):
            cursor.execute("CREATE TABLE should_not_exist (id int)")
    finally:
        wrapper.close()
    assert mariadb.sql("SHOW TABLES LIKE 'should_not_exist'", db="legacy") == []


def directory_fingerprint(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in directory.iterdir()
    }


def test_sqlite_files_stay_byte_for_byte_the_same(tmp_path, make_harness) -> None:
    tmp_path = tmp_path / "databases"
    tmp_path.mkdir()
    for name, journal in (("rollback.sqlite3", "DELETE"), ("wal.sqlite3", "WAL")):
        with sqlite3.connect(tmp_path / name) as connection:
            connection.execute(f"PRAGMA journal_mode={journal}")
            connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, body TEXT)")
            connection.executemany("INSERT INTO item (body) VALUES (?)", [("x",)] * 50)
        connection.close()
    before = directory_fingerprint(tmp_path)
    harness = make_harness(
        {
            alias: {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / name)}
            for alias, name in (("rollback", "rollback.sqlite3"), ("wal", "wal.sqlite3"))
        },
        refresh_interval=0.001,
    )
    for _ in range(3):
        state = harness.round()
        assert state.aliases["rollback"].up and state.aliases["wal"].up
    harness.service.close()
    assert directory_fingerprint(tmp_path) == before


def test_postgres_session_refuses_writes(postgres, make_harness) -> None:
    """Every statement a probe's connection sends runs read-only on the server, even as a
    superuser that may write."""
    from django.db.utils import InternalError

    settings = postgres.django_settings("app", "postgres", postgres.superuser_password)
    harness = make_harness({"superuser": settings})
    assert harness.round().aliases["superuser"].up
    wrapper = harness.service._probers["superuser"]._wrapper  # the connection probes keep
    with wrapper.cursor() as cursor:
        try:
            cursor.execute("CREATE TABLE should_not_exist (id int)")
        except InternalError as error:
            assert "read-only transaction" in str(error)
        else:
            raise AssertionError("a probe session accepted DDL")
