"""Maintenance signals on real servers: PostgreSQL dead rows, vacuum and analyze times and table
sizes; MariaDB table sizes and free space; SQLite free pages. Bounded to table_top_n tables,
read at most once per refresh_interval, and absent where unknown (never vacuumed: no series)."""

import secrets
import sqlite3
from pathlib import Path

import pytest
from django.test import override_settings

from tests.dbhealth_fixtures import promtool_check_metrics

DEAD = 20_000


def table_samples(harness, name: str) -> dict[str, float]:
    return {
        dict(labels)["table"]: value
        for (metric, labels), value in harness.samples().items()
        if metric == name
    }


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def maintenance_db(postgres) -> str:
    name = f"maint_{secrets.token_hex(4)}"
    postgres.create_database(name)
    return name


def test_postgresql_dead_rows_vacuum_and_size(postgres, maintenance_db, make_harness):
    db = maintenance_db
    # `piled`: autovacuum off, 20,000 dead rows. `swept`: the same, then VACUUM ANALYZE.
    # `untouched`: a few rows, never touched again.
    for table in ("piled", "swept"):
        postgres.sql(
            f"CREATE TABLE {table} (id int PRIMARY KEY, body text)"
            " WITH (autovacuum_enabled = off);"
            f"INSERT INTO {table} SELECT n, repeat('x', 100) FROM generate_series(1, {DEAD + 500})"
            " AS n",
            dbname=db,
        )
        postgres.sql(f"DELETE FROM {table} WHERE id <= {DEAD}", dbname=db)
    postgres.sql(
        "CREATE TABLE untouched (id int PRIMARY KEY) WITH (autovacuum_enabled = off);"
        "INSERT INTO untouched VALUES (1), (2)",
        dbname=db,
    )
    (before_vacuum,) = postgres.sql("SELECT EXTRACT(EPOCH FROM now())::float8")[0]
    postgres.sql("VACUUM ANALYZE swept", dbname=db)
    (after_vacuum,) = postgres.sql("SELECT EXTRACT(EPOCH FROM now())::float8")[0]

    settings = postgres.django_settings(db, "monitor", postgres.monitor_password)
    harness = make_harness({"app": settings}, refresh_interval=0.0, table_top_n=2)

    def counted() -> bool:
        dead = table_samples(harness, "dbhealth_table_dead_rows")
        return dead.get("piled") == DEAD and dead.get("swept") == 0

    # The statistics reach pg_stat_user_tables a moment after the sessions end.
    assert harness.round_until(counted), harness.alias("app").failing_parts
    alias = harness.alias("app")
    assert alias.up and "maintenance" not in alias.failing_parts
    live = table_samples(harness, "dbhealth_table_live_rows")
    assert live["piled"] == 500
    assert live["swept"] == 500
    # Bounded: of three tables, the two with the most dead rows (`swept` and `untouched` have
    # none: ties go by name).
    assert set(table_samples(harness, "dbhealth_table_dead_rows")) == {"piled", "swept"}

    vacuumed = table_samples(harness, "dbhealth_table_last_vacuum_timestamp_seconds")
    analyzed = table_samples(harness, "dbhealth_table_last_analyze_timestamp_seconds")
    # Never vacuumed nor analyzed: absent, not 0.
    assert "piled" not in vacuumed and "piled" not in analyzed
    assert before_vacuum <= vacuumed["swept"] <= after_vacuum
    assert before_vacuum <= analyzed["swept"] <= after_vacuum

    sizes = table_samples(harness, "dbhealth_table_size_bytes")
    expected = dict(
        postgres.sql(
            "SELECT relname, pg_total_relation_size(relid)::float8 FROM pg_stat_user_tables"
            " ORDER BY 2 DESC, 1 LIMIT 2",
            dbname=db,
        )
    )
    assert sizes == expected
    assert table_samples(harness, "dbhealth_table_free_bytes") == {}
    # Every series carries the model label; no project here, so it is empty.
    models = {
        dict(labels)["model"]
        for (metric, labels), _ in harness.samples().items()
        if metric.startswith("dbhealth_table_")
    }
    assert models == {""}
    checked = promtool_check_metrics(harness.exposition())
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_postgresql_maintenance_never_waits_behind_an_exclusive_lock(
    postgres, maintenance_db, make_harness
):
    """Measuring a table takes an ACCESS SHARE lock: behind an ACCESS EXCLUSIVE one it would wait
    until the deadline and cost the probe every part it had read. The locked table goes
    unmeasured that time; the rest is read."""
    db = maintenance_db
    postgres.sql(
        "CREATE TABLE busy (id int); CREATE TABLE calm (id int); INSERT INTO calm VALUES (1)",
        dbname=db,
    )
    holder = postgres.connect(db)
    try:
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        settings = postgres.django_settings(db, "monitor", postgres.monitor_password)
        harness = make_harness({"app": settings}, refresh_interval=0.0, table_top_n=5)
        harness.round()
        alias = harness.alias("app")
        assert alias.up and alias.failing_parts == {}, alias.failing_parts
        sizes = table_samples(harness, "dbhealth_table_size_bytes")
        assert "calm" in sizes and "busy" not in sizes
    finally:
        holder.close()


def test_postgresql_maintenance_is_read_once_per_refresh_interval(
    postgres, maintenance_db, make_harness
):
    postgres.sql("CREATE TABLE t (id int)", dbname=maintenance_db)
    settings = postgres.django_settings(maintenance_db, "monitor", postgres.monitor_password)
    harness = make_harness({"app": settings}, refresh_interval=3600.0)
    harness.round()
    first = harness.alias("app").maintenance_at
    assert first is not None
    harness.round()
    assert harness.alias("app").maintenance_at == first
    assert table_samples(harness, "dbhealth_table_size_bytes").keys() == {"t"}


def test_postgresql_tables_name_their_django_model_in_embedded_mode(
    postgres, maintenance_db, make_harness
):
    postgres.sql("CREATE TABLE django_content_type (id int PRIMARY KEY)", dbname=maintenance_db)
    settings = postgres.django_settings(maintenance_db, "monitor", postgres.monitor_password)
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "dbhealth"]):
        harness = make_harness({"app": settings})
        harness.round()
        assert harness.value(
            "dbhealth_table_size_bytes",
            alias="app",
            table="django_content_type",
            model="contenttypes.ContentType",
        )


# ------------------------------------------------------------------ MariaDB


def test_mariadb_table_sizes_and_free_space(mariadb, make_harness):
    db = f"maint_{secrets.token_hex(4)}"
    mariadb.create_database(db)
    mariadb.sql(f"GRANT SHOW VIEW ON `{db}`.* TO monitor@'%'")
    for table, rows in (("big", 4000), ("middle", 1000), ("small", 10)):
        mariadb.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, body text) ENGINE=InnoDB", db=db)
        mariadb.sql(f"INSERT INTO {table} SELECT seq, REPEAT('x', 500) FROM seq_1_to_{rows}", db=db)
    mariadb.sql("ANALYZE TABLE big, middle, small", db=db)
    settings = mariadb.django_settings(db, "monitor", mariadb.monitor_password)
    harness = make_harness({"legacy": settings}, table_top_n=2)
    alias = harness.round().aliases["legacy"]
    assert alias.up, alias.message
    assert "maintenance" not in alias.failing_parts
    # What the server says, read as root, for the two largest.
    rows = mariadb.sql(
        "SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH, DATA_FREE FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = %s ORDER BY 2 DESC, 1 LIMIT 2",
        params=[db],
    )
    assert table_samples(harness, "dbhealth_table_size_bytes") == {
        name: float(size) for name, size, _ in rows
    }
    assert table_samples(harness, "dbhealth_table_free_bytes") == {
        name: float(free) for name, _, free in rows
    }
    assert set(table_samples(harness, "dbhealth_table_size_bytes")) == {"big", "middle"}
    # PostgreSQL's signals are not made up for MariaDB.
    assert table_samples(harness, "dbhealth_table_dead_rows") == {}


# ------------------------------------------------------------------ SQLite


def test_sqlite_freelist_after_a_large_delete_and_after_vacuum(tmp_path: Path, make_harness):
    path = tmp_path / "cache.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE entry (id INTEGER PRIMARY KEY, body TEXT)")
    connection.executemany(
        "INSERT INTO entry (body) VALUES (?)", [("x" * 1000,) for _ in range(5000)]
    )
    connection.commit()
    harness = make_harness(
        {"cache": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}},
        refresh_interval=0.0,
    )
    harness.round()
    assert harness.value("dbhealth_sqlite_freelist_bytes", alias="cache") == 0

    connection.execute("DELETE FROM entry WHERE id > 100")
    connection.commit()
    (free_pages,) = connection.execute("PRAGMA freelist_count").fetchone()
    (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    assert free_pages > 1000
    harness.round()
    assert harness.value("dbhealth_sqlite_freelist_bytes", alias="cache") == free_pages * page_size
    size = harness.value("dbhealth_database_size_bytes", alias="cache")
    assert free_pages * page_size < size

    connection.execute("VACUUM")
    connection.close()
    harness.round()
    assert harness.value("dbhealth_sqlite_freelist_bytes", alias="cache") == 0
    # SQLite has no per-table signals here.
    assert table_samples(harness, "dbhealth_table_size_bytes") == {}
