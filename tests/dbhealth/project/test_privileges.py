"""`check --deploy --database ALIAS` names, per alias, each grant its probe role lacks, the
signals absent for want of it and the statement that grants it; on real servers, with roles
holding exactly what the README lists and less."""

import pytest
from dbhealth.project import database_checks
from dbhealth.project.database_checks import check_grants_on_databases
from dbhealth.project.insight import MigrationNode, ProjectLayout

from tests.support.mariadb import MONITOR_GRANTS

# As embedded: a project with a migration, so django_migrations is read.
LAYOUT = ProjectLayout(
    migrations=(MigrationNode(key=("shop", "0001_initial"), replaces=(), operations=()),),
    routes=(),
    unmanaged=(),
    models_by_table={},
)


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.setattr(database_checks, "project_layout", lambda: LAYOUT)


def findings(alias: str) -> list[tuple[str, str]]:
    """(message, hint) of each missing grant of `alias`."""
    messages = check_grants_on_databases(databases=[alias])
    assert all(message.id == "dbhealth.W110" for message in messages), messages
    return [(message.msg, message.hint) for message in messages]


@pytest.fixture(scope="module")
def pg_database(postgres):
    """A database holding what a migrated project holds: django_migrations, a serial id."""
    postgres.create_database("grants_app")
    postgres.sql(
        "CREATE TABLE django_migrations (id serial PRIMARY KEY, app text, name text);"
        " CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        dbname="grants_app",
    )
    return "grants_app"


def test_postgresql_a_bare_role_is_told_every_grant(
    exporter_settings, embedded, postgres, pg_database
):
    password = postgres.create_role("grants_bare", grants=())
    exporter_settings({"app": postgres.django_settings(pg_database, "grants_bare", password)})
    found = findings("app")
    assert len(found) == 3, found
    hints = [hint for _, hint in found]
    assert hints == [
        'GRANT pg_monitor TO "grants_bare";',
        None,  # the sequences: the message names the grant
        'GRANT SELECT ON django_migrations TO "grants_bare";',
    ]
    assert "lacks SELECT on 1 sequence(s)" in found[1][0] and "id headroom" in found[1][0]
    message = found[-1][0]
    assert message.startswith("database alias 'app': role grants_bare lacks SELECT on")
    assert "pending migrations" in message


def test_postgresql_the_readmes_grants_leave_nothing_missing(
    exporter_settings, embedded, postgres, pg_database
):
    password = postgres.create_role("grants_full", grants=("pg_monitor",))
    for grant in (
        "SELECT ON ALL SEQUENCES IN SCHEMA public",
        "SELECT ON django_migrations",
    ):
        postgres.sql(f"GRANT {grant} TO grants_full", dbname=pg_database)
    exporter_settings({"app": postgres.django_settings(pg_database, "grants_full", password)})
    assert findings("app") == []


def test_postgresql_without_the_project_django_migrations_is_not_asked_for(
    exporter_settings, postgres, pg_database
):
    """The standalone service reads no migrations: nothing to grant there."""
    password = postgres.create_role("grants_standalone", grants=("pg_monitor",))
    postgres.sql(
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO grants_standalone", dbname=pg_database
    )
    exporter_settings({"app": postgres.django_settings(pg_database, "grants_standalone", password)})
    assert findings("app") == []


@pytest.fixture(scope="module")
def legacy_schema(mariadb):
    mariadb.create_database("grants_legacy")
    mariadb.sql(
        "CREATE TABLE django_migrations (id INT AUTO_INCREMENT PRIMARY KEY, app VARCHAR(255),"
        " name VARCHAR(255))",
        db="grants_legacy",
    )
    return "grants_legacy"


def test_mariadb_a_role_that_can_only_connect_is_told_every_grant(
    exporter_settings, embedded, mariadb, legacy_schema
):
    password = mariadb.create_user("grants_bare", grants=(f"SHOW VIEW ON {legacy_schema}.*",))
    exporter_settings({"legacy": mariadb.django_settings(legacy_schema, "grants_bare", password)})
    hints = [hint for _, hint in findings("legacy")]
    assert hints == [
        "GRANT PROCESS ON *.* TO 'grants_bare'@'%';",
        "GRANT REPLICA MONITOR ON *.* TO 'grants_bare'@'%';",
        "GRANT SELECT ON performance_schema.* TO 'grants_bare'@'%';",
        "GRANT REFERENCES ON `grants_legacy`.* TO 'grants_bare'@'%';",
        "GRANT SELECT ON `grants_legacy`.`django_migrations` TO 'grants_bare'@'%';",
    ]


def test_mariadb_the_readmes_grants_leave_nothing_missing(
    exporter_settings, embedded, mariadb, legacy_schema
):
    password = mariadb.create_user(
        "grants_full",
        grants=(
            *MONITOR_GRANTS,
            f"SHOW VIEW, REFERENCES ON {legacy_schema}.*",
            f"SELECT ON {legacy_schema}.django_migrations",
        ),
    )
    exporter_settings({"legacy": mariadb.django_settings(legacy_schema, "grants_full", password)})
    assert findings("legacy") == []


def test_an_alias_that_cannot_connect_says_so(exporter_settings, embedded, postgres, pg_database):
    exporter_settings({"app": postgres.django_settings(pg_database, "grants_nobody", "wrong")})
    [message] = check_grants_on_databases(databases=["app"])
    assert message.id == "dbhealth.W111"
    assert "grants could not be read (auth: OperationalError)" in message.msg


def test_sqlite_has_no_grants_to_name(exporter_settings, tmp_path):
    """Its access is the file's: a missing file is the probe's own `config` reason."""
    missing = tmp_path / "nowhere.sqlite3"
    exporter_settings({"cache": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(missing)}})
    assert check_grants_on_databases(databases=["cache"]) == []


def test_mariadb_a_grant_held_through_a_role_is_not_missing(
    exporter_settings, embedded, mariadb, legacy_schema
):
    mariadb.sql("CREATE ROLE grants_monitoring")
    for grant in (
        *MONITOR_GRANTS,
        f"REFERENCES ON {legacy_schema}.*",
        f"SELECT ON {legacy_schema}.django_migrations",
    ):
        mariadb.sql(f"GRANT {grant} TO grants_monitoring")
    password = mariadb.create_user("grants_by_role", grants=(f"SHOW VIEW ON {legacy_schema}.*",))
    mariadb.sql("GRANT grants_monitoring TO 'grants_by_role'@'%'")
    mariadb.sql("SET DEFAULT ROLE grants_monitoring FOR 'grants_by_role'@'%'")
    exporter_settings(
        {"legacy": mariadb.django_settings(legacy_schema, "grants_by_role", password)}
    )
    assert findings("legacy") == []
