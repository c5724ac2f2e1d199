"""Which migrations count as pending on an alias, and what a probe reads to know it.

The routers are the sample host project's (tests/hostproject/routers.py); the database is a real
SQLite file opened the way the probe opens it: read-only.
"""

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from dbhealth.configuration.targets import normalized_settings
from dbhealth.probing.vendors.sqlite import SQLiteProbe
from dbhealth.project.insight import (
    NOT_ROUTED,
    MigrationNode,
    ProjectLayout,
    UnmanagedModel,
    operation_target,
    pending_migrations,
    reachable,
    read_project,
    routed,
)
from django.db import migrations, models, router
from django.db.migrations.state import ProjectState
from django.db.utils import load_backend
from django.test import override_settings

HOST_ROUTERS = [
    "tests.hostproject.routers.ReadReplicaRouter",
    "tests.hostproject.routers.DatabaseRouter",
    "tests.hostproject.routers.AnalyticsRouter",
]
# What the routers read of a model (its app label): the host's models are not installed here.
BLOG_POST = SimpleNamespace(_meta=SimpleNamespace(app_label="blog"))


def node(app_label: str, name: str, *operations, replaces=()) -> MigrationNode:
    state = ProjectState()
    targets = []
    for operation in operations:
        targets.append(operation_target(app_label, operation, state))
        operation.state_forwards(app_label, state)
    return MigrationNode(key=(app_label, name), replaces=tuple(replaces), operations=tuple(targets))


def create(name: str, **options) -> migrations.CreateModel:
    fields = [("id", models.AutoField(primary_key=True))]
    return migrations.CreateModel(name, fields, options=options)


USERS = node("users", "0001_initial", create("User"))
BLOG = node("blog", "0001_initial", create("Post"))
LEGACY = node("legacy", "0001_initial", create("LegacyCustomer", managed=False))
ANALYTICS_SQL = node(
    "analytics", "0002_backfill", migrations.RunSQL("SELECT 1", hints={"target_db": "x"})
)
LAYOUT = ProjectLayout(
    migrations=(USERS, BLOG, LEGACY, ANALYTICS_SQL),
    routes=(),
    unmanaged=(UnmanagedModel("legacy", "LegacyCustomer", "customers", ("legacy_db",)),),
    models_by_table={},
)


@pytest.fixture(autouse=True)
def host_routers():
    with override_settings(DATABASE_ROUTERS=HOST_ROUTERS):
        yield


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("default", [("blog", "0001_initial")]),
        ("users_db", [("users", "0001_initial")]),
        ("analytics_db", [("analytics", "0002_backfill")]),
        ("read_replica", []),
        # The legacy migration only declares an unmanaged model: `migrate` never changes it.
        ("legacy_db", []),
    ],
)
def test_nothing_applied_leaves_pending_what_the_routers_send_there(alias, expected):
    assert pending_migrations(LAYOUT, alias, applied=set()) == expected


def test_applied_migrations_are_not_pending():
    assert pending_migrations(LAYOUT, "default", {("blog", "0001_initial")}) == []


def test_a_squashed_migration_is_applied_when_everything_it_replaces_is():
    squashed = node(
        "blog",
        "0001_squashed_0002",
        create("Post"),
        replaces=[("blog", "0001_initial"), ("blog", "0002_more")],
    )
    layout = ProjectLayout(migrations=(squashed,), routes=(), unmanaged=(), models_by_table={})
    replaced = {("blog", "0001_initial"), ("blog", "0002_more")}
    assert pending_migrations(layout, "default", replaced) == []
    partly = {("blog", "0001_initial")}
    assert pending_migrations(layout, "default", partly) == [("blog", "0001_squashed_0002")]


def readonly_wrapper(path: Path):
    settings = SQLiteProbe().connection_settings(
        normalized_settings("cache_db", {"ENGINE": "django.db.backends.sqlite3", "NAME": path}),
        5.0,
    )
    wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, "cache_db")
    wrapper.ensure_connection()
    return wrapper


def read_file(path, alias: str, **options):
    """What a probe reads of the project from the SQLite file at `path`, read-only."""
    wrapper = readonly_wrapper(path)
    try:
        with wrapper.cursor() as cursor:
            return read_project(wrapper, cursor, alias, LAYOUT, **options)
    finally:
        wrapper.close()


def test_a_database_without_django_migrations_has_everything_pending(tmp_path):
    path = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE unrelated (id INTEGER)")
    connection.close()
    reading = read_file(path, "users_db")
    assert reading.migrations_pending == 1
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert tables == {"unrelated"}


def test_recorded_migrations_and_present_tables_are_read_on_a_read_only_connection(tmp_path):
    path = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app TEXT, name TEXT,"
            " applied TEXT)"
        )
        connection.execute(
            "INSERT INTO django_migrations (app, name, applied)"
            " VALUES ('legacy', '0001_initial', '2024-01-01')"
        )
        connection.execute("CREATE TABLE CUSTOMERS (id INTEGER)")
    connection.close()
    reading = read_file(path, "legacy_db")
    assert reading.migrations_pending == 0
    # SQLite ignores the case of table names, as Django's backend feature flag says.
    assert [(t.app_label, t.model, t.present) for t in reading.unmanaged_tables] == [
        ("legacy", "LegacyCustomer", True)
    ]


def test_an_alias_that_opted_out_of_migrations_still_reports_its_unmanaged_tables(tmp_path):
    path = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE unrelated (id INTEGER)")
    connection.close()
    reading = read_file(path, "legacy_db", migrations=False)
    # Unknown, not zero: nothing was compared, so the gauge is absent for this alias.
    assert reading.migrations_pending is None
    assert [(t.model, t.present) for t in reading.unmanaged_tables] == [("LegacyCustomer", False)]


def test_every_replica_of_a_load_balancing_router_is_reachable():
    """A random replica per call: asked ROUTE_SAMPLES times, the router names both."""
    routers = ["tests.hostproject.routers.PinningReplicaRouter", *HOST_ROUTERS]
    with override_settings(DATABASE_ROUTERS=routers):
        assert reachable(router.db_for_read, BLOG_POST) == ("read_replica", "read_replica_2")
        assert reachable(router.db_for_write, BLOG_POST) == ("default",)
    # A router with one answer has one route, as before.
    assert reachable(router.db_for_read, BLOG_POST) == ("read_replica",)


SHOP_PRODUCT = SimpleNamespace(_meta=SimpleNamespace(app_label="shop"))


def test_a_model_no_router_routes_is_not_routed():
    """Its reads go wherever the code sends them (`.using("replica")`), `default` only when the
    code names none: not `default` alone."""
    databases = {"default": {}, "replica": {}}
    with override_settings(DATABASES=databases):
        assert reachable(routed("db_for_read"), SHOP_PRODUCT) == (NOT_ROUTED,)
        assert reachable(routed("db_for_write"), SHOP_PRODUCT) == (NOT_ROUTED,)
        # What a router answers stays its answer.
        assert reachable(routed("db_for_read"), BLOG_POST) == ("read_replica",)
        assert reachable(routed("db_for_write"), BLOG_POST) == ("default",)
    with override_settings(DATABASES=databases, DATABASE_ROUTERS=[]):
        assert reachable(routed("db_for_read"), BLOG_POST) == (NOT_ROUTED,)


def test_with_one_database_every_model_is_routed_there():
    with override_settings(DATABASES={"default": {}}, DATABASE_ROUTERS=[]):
        assert reachable(routed("db_for_read"), SHOP_PRODUCT) == ("default",)
