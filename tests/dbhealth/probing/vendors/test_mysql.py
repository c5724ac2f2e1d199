"""MySQL/MariaDB probe, read by the least-privilege `monitor` user against a real MariaDB."""

import secrets

import MySQLdb
import pytest
from dbhealth.exposition.families import label_text
from dbhealth.probing.statement_text import sanitize
from dbhealth.probing.vendors.mysql import is_own_statement


@pytest.fixture
def legacy(mariadb, make_harness):
    settings = mariadb.django_settings("legacy", "monitor", mariadb.monitor_password)
    return make_harness({"legacy": settings}, refresh_interval=0.0)


def test_a_healthy_server_reports_every_cheap_fact(legacy):
    state = legacy.round()
    alias = state.aliases["legacy"]
    assert alias.up, alias.message
    assert "MariaDB" in alias.version
    assert legacy.value("dbhealth_up", alias="legacy", vendor="mysql") == 1
    assert legacy.value("dbhealth_connections_max", alias="legacy") == 50
    assert legacy.value("dbhealth_connections", alias="legacy", state="active") >= 1
    assert legacy.value("dbhealth_replica", alias="legacy") == 0


def test_size_grows_after_writing_ten_megabytes(mariadb, make_harness):
    mariadb.create_database("sizing")
    mariadb.sql("GRANT SHOW VIEW ON sizing.* TO monitor@'%'")
    settings = mariadb.django_settings("sizing", "monitor", mariadb.monitor_password)
    harness = make_harness({"sizing": settings}, refresh_interval=0.0)
    before = harness.round().aliases["sizing"].size_bytes
    mariadb.sql(
        "CREATE TABLE filler (id INT PRIMARY KEY AUTO_INCREMENT, payload TEXT)", db="sizing"
    )
    mariadb.sql(
        "INSERT INTO filler (payload) SELECT REPEAT(MD5(seq), 32) FROM seq_1_to_10240", db="sizing"
    )
    mariadb.sql("ANALYZE TABLE filler", db="sizing")
    after = harness.round().aliases["sizing"].size_bytes
    assert after - before >= 10 * 1024 * 1024


def test_a_slow_statement_shows_up_in_the_top_n(mariadb, legacy):
    for _ in range(2):
        mariadb.sql("SELECT SLEEP(0.3), 'dbhealth-slow-marker'", db="legacy")
    legacy.round()
    statements = legacy.alias("legacy").statements
    slow = [s for s in statements if "SLEEP" in s.query.upper()]
    assert slow, [s.query for s in statements]
    assert slow[0].calls >= 2
    assert slow[0].mean_seconds >= 0.3
    assert legacy.value("dbhealth_statements_available", alias="legacy") == 1
    exported_text = label_text(slow[0].query)
    assert "SLEEP" in exported_text
    labels = {"alias": "legacy", "queryid": slow[0].queryid, "query": exported_text}
    assert legacy.value("dbhealth_statement_info", **labels) == 1


def test_without_performance_schema_privilege_the_alias_stays_up(mariadb, make_harness):
    password = mariadb.create_user("nopfs", grants=("PROCESS ON *.*", "SHOW VIEW ON legacy.*"))
    settings = mariadb.django_settings("legacy", "nopfs", password)
    harness = make_harness({"legacy": settings})
    state = harness.round()
    assert state.aliases["legacy"].up, state.aliases["legacy"].message
    assert harness.value("dbhealth_statements_available", alias="legacy") == 0


def test_the_probe_session_is_read_only(legacy):
    legacy.round()
    prober = legacy.service._probers["legacy"]  # the connection the probes keep
    with prober._wrapper.cursor() as cursor:
        cursor.execute("SELECT @@session.tx_read_only")
        assert cursor.fetchone()[0] == 1


def test_wrong_password_is_an_auth_failure(mariadb, make_harness):
    harness = make_harness({"legacy": mariadb.django_settings("legacy", "monitor", "wrong-pw")})
    alias = harness.round().aliases["legacy"]
    assert (alias.up, alias.reason) == (False, "auth")
    assert "wrong-pw" not in (alias.message or "")


def test_the_probes_own_statements_are_left_out(mariadb, make_harness):
    schema = f"quiet_{secrets.token_hex(4)}"
    mariadb.create_database(schema)
    mariadb.sql(f"GRANT SHOW VIEW ON `{schema}`.* TO monitor@'%'")
    harness = make_harness(
        {"quiet": mariadb.django_settings(schema, "monitor", mariadb.monitor_password)},
        refresh_interval=0.0,
    )
    for _ in range(3):
        harness.round()
    mariadb.sql("SELECT CONCAT('quiet', 'marker')", db=schema)
    harness.round()
    digests = mariadb.sql(
        "SELECT DIGEST_TEXT FROM performance_schema.events_statements_summary_by_digest"
        " WHERE SCHEMA_NAME = %s",
        params=[schema],
    )
    own = [text for (text,) in digests if is_own_statement(text)]
    # Everything the probe sends (and Django and mysqlclient on its connection) is recognized...
    assert len(own) >= 10, digests
    assert not [text for (text,) in digests if not is_own_statement(text) and "CONCAT" not in text]
    # ...and left out: on a quiet schema only the other client's statement remains.
    texts = [s.query for s in harness.alias("quiet").statements]
    assert len(texts) == 1 and "CONCAT" in texts[0], texts


def test_statement_texts_pass_through_sanitize(mariadb, legacy):
    mariadb.sql("SELECT 'dbhealth-literal' /* dbhealth-comment */ -- dbhealth-line", db="legacy")
    legacy.round()
    exposition = legacy.exposition()
    assert "dbhealth-" not in exposition
    assert all(
        statement.query == sanitize(statement.query, "mysql")
        for statement in legacy.alias("legacy").statements
    )


def test_a_probe_sharing_the_applications_user_shows_its_statements_not_its_own(
    mariadb, make_harness
):
    """The embedded default: no monitoring user, the probe uses the application's. Statements
    are left out by what they are, so the application's show and no probe's does, neither the
    shared user's probe nor a second alias's probe on the same schema under `monitor`."""
    suffix = secrets.token_hex(4)
    schema, user = f"shared_{suffix}", f"app_{suffix}"
    mariadb.create_database(schema)
    password = mariadb.create_user(
        user,
        grants=(
            f"ALL ON `{schema}`.*",
            "PROCESS, REPLICATION CLIENT, REPLICA MONITOR ON *.*",
            "SELECT ON performance_schema.*",
        ),
    )
    mariadb.sql(f"GRANT SHOW VIEW, REFERENCES ON `{schema}`.* TO monitor@'%'")
    harness = make_harness(
        {
            "app": mariadb.django_settings(schema, user, password),
            "monitoring": mariadb.django_settings(schema, "monitor", mariadb.monitor_password),
        },
        refresh_interval=0.0,
    )
    application = MySQLdb.connect(
        host=mariadb.host, port=mariadb.port, user=user, password=password, db=schema
    )
    try:
        with application.cursor() as cursor:
            cursor.execute("CREATE TABLE orders (id INT PRIMARY KEY, total INT)")
            cursor.execute("INSERT INTO orders VALUES (1, 10), (2, 20)")
            application.commit()
            for number in range(3):
                cursor.execute("SELECT total FROM orders WHERE id = %s", [number])
                cursor.fetchall()
    finally:
        application.close()
    for _ in range(3):
        harness.round()
    digests = [
        text
        for (text,) in mariadb.sql(
            "SELECT DIGEST_TEXT FROM performance_schema.events_statements_summary_by_digest"
            " WHERE SCHEMA_NAME = %s",
            params=[schema],
        )
    ]
    # Both probes ran their statements on the schema: there was something to leave out.
    assert len([text for text in digests if is_own_statement(text)]) >= 10, digests
    for alias in ("app", "monitoring"):
        shown = {statement.query.split()[0] for statement in harness.alias(alias).statements}
        # The application's four statements, and nothing else.
        assert len(harness.alias(alias).statements) == 4, harness.alias(alias).statements
        assert shown == {"CREATE", "INSERT", "SELECT", "COMMIT"}, alias
        selects = [s.query for s in harness.alias(alias).statements if s.query.startswith("SELECT")]
        assert selects == ["SELECT `total` FROM `orders` WHERE ID = ? "], selects
