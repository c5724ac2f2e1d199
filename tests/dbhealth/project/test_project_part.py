"""The Django-project part of a probe: a reading that fails is absent (never the old value),
counted in dbhealth_part_failures_total, and a reading that succeeded has its age."""

import pytest
from dbhealth.exposition import project_families
from dbhealth.project import insight
from dbhealth.project.insight import MigrationNode, OperationTarget, ProjectLayout
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

# As embedded: one migration that would change every alias.
LAYOUT = ProjectLayout(
    migrations=(
        MigrationNode(
            key=("shop", "0001_initial"),
            replaces=(),
            operations=(OperationTarget(app_label="shop", hints=(), changes_schema=True),),
        ),
    ),
    routes=(),
    unmanaged=(),
    models_by_table={},
)


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.setattr(insight, "project_layout", lambda: LAYOUT)
    monkeypatch.setattr(project_families, "project_layout", lambda: LAYOUT)


def samples(name: str, alias: str = "app") -> dict[tuple, float]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("alias") == alias:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_project_read_that_fails_is_absent_and_counted(exporter_settings, embedded, postgres):
    postgres.create_database("project_part")
    postgres.sql(
        "CREATE TABLE django_migrations (id serial PRIMARY KEY, app text, name text)",
        dbname="project_part",
    )
    password = postgres.create_role("project_reader", grants=("pg_monitor",))
    postgres.sql("GRANT SELECT ON django_migrations TO project_reader", dbname="project_part")
    exporter_settings(
        {"app": postgres.django_settings("project_part", "project_reader", password)},
        refresh_interval=0.001,
    )
    assert samples("dbhealth_migrations_pending") == {(("alias", "app"),): 1.0}
    assert (("alias", "app"), ("part", "project")) in samples("dbhealth_part_age_seconds")

    # Applied since, and no longer readable: the old count (1) would now be a lie.
    postgres.sql(
        "INSERT INTO django_migrations (app, name) VALUES ('shop', '0001_initial');"
        " REVOKE SELECT ON django_migrations FROM project_reader",
        dbname="project_part",
    )
    assert samples("dbhealth_migrations_pending") == {}
    assert (("alias", "app"), ("part", "project")) not in samples("dbhealth_part_age_seconds")
    failures = samples("dbhealth_part_failures_total")
    key = (("alias", "app"), ("part", "project"), ("reason", "permission"))
    assert failures.get(key, 0) >= 1, failures

    # Readable again: the true count.
    postgres.sql("GRANT SELECT ON django_migrations TO project_reader", dbname="project_part")
    assert samples("dbhealth_migrations_pending") == {(("alias", "app"),): 0.0}


def test_mariadb_a_project_read_that_fails_is_absent_and_counted(
    exporter_settings, embedded, mariadb
):
    """The issue's case: an alias kept 55 pending after a change made it 54."""
    mariadb.create_database("project_part")
    mariadb.sql(
        "CREATE TABLE django_migrations (id INT AUTO_INCREMENT PRIMARY KEY, app VARCHAR(255),"
        " name VARCHAR(255))",
        db="project_part",
    )
    password = mariadb.create_user(
        "project_reader",
        grants=("SHOW VIEW ON project_part.*", "SELECT ON project_part.django_migrations"),
    )
    exporter_settings(
        {"app": mariadb.django_settings("project_part", "project_reader", password)},
        refresh_interval=0.001,
    )
    assert samples("dbhealth_migrations_pending") == {(("alias", "app"),): 1.0}

    mariadb.sql(
        "INSERT INTO django_migrations (app, name) VALUES ('shop', '0001_initial')",
        db="project_part",
    )
    mariadb.sql("REVOKE SELECT ON project_part.django_migrations FROM 'project_reader'@'%'")
    assert samples("dbhealth_migrations_pending") == {}
    failures = samples("dbhealth_part_failures_total")
    assert any(dict(key)["part"] == "project" for key in failures), failures
