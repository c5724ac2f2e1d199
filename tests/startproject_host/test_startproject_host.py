"""dbhealth in the project `django-admin startproject` makes, as real projects run it: admin
installed, DEBUG off, ADMINS set, django-prometheus engines, a replica read with `.using()`,
no monitoring secret in CI; in the list and the tuple form of its settings."""

import pytest

from tests.serving import gunicorn, serve
from tests.startproject_host.conftest import SETTINGS, mails, run
from tests.support.ports import free_port

# What a migration job or CI runs, and must be able to run whether dbhealth is installed or not.
HOST_COMMANDS = (
    ("check",),
    ("migrate", "--no-input"),
    ("makemigrations", "--check", "--dry-run"),
    ("showmigrations",),
    ("sqlmigrate", "shop", "0001"),
    ("test", "tests.startproject_host.shop"),
)


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_hosts_commands_run_without_the_monitoring_secret(shop, settings):
    for command in HOST_COMMANDS:
        result = run(shop, settings, *command)
        # Said, not fatal: the alias is reported down with reason `config` where dbhealth runs.
        if command == ("check",):
            assert "(dbhealth.W003) database alias 'default'" in result.stderr, result.stderr
            assert "SHOP_MONITOR_PASSWORD" in result.stderr


@pytest.mark.parametrize("settings", SETTINGS)
def test_serve_starts_in_the_host_and_probes_its_aliases(monitored_shop, settings, tmp_path):
    with serve(monitored_shop, tmp_path / "serve.log", "/livez", settings_module=settings) as s:
        status, text = s.get("/metrics")
    assert status == 200, text
    assert 'dbhealth_up{alias="default",vendor="postgresql"} 1.0' in text
    assert 'dbhealth_up{alias="replica",vendor="postgresql"} 1.0' in text
    assert 'dbhealth_migrations_pending{alias="default"} 0.0' in text
    # No router: the shop reads the replica with .using(), which only its code knows.
    route = 'app_label="shop",model="Product",read_alias="not routed",write_alias="not routed"'
    assert f"dbhealth_route_info{{{route}}} 1.0" in text
    log = (tmp_path / "serve.log").read_text()
    assert "admin.E4" not in log and "Traceback" not in log, log


def test_a_host_check_that_fails_still_stops_serve(monitored_shop, tmp_path):
    """The host's own checks still count: an error the host's `check` reports stops `serve`."""
    broken = monitored_shop
    bind = f"127.0.0.1:{free_port()}"
    # A host without the session middleware that its admin needs: its own check fails.
    result = run(
        broken,
        "tests.startproject_host.settings_without_sessions",
        "serve",
        "--bind",
        bind,
        expect=1,
    )
    assert "admin.E410" in result.stderr, result.stderr
    assert "not serving: 1 system check error(s) above" in result.stderr
    run(broken, "tests.startproject_host.settings_without_sessions", "check", expect=1)


def test_healthz_in_an_outage_mails_nobody_under_gunicorn(monitored_shop, tmp_path):
    outage = {**monitored_shop, "SHOP_REPLICA_PORT": str(free_port())}
    with gunicorn(
        "tests.startproject_host.wsgi:application",
        {**outage, "DJANGO_SETTINGS_MODULE": SETTINGS[0]},
        tmp_path / "gunicorn.log",
        "/dbhealth/livez",
        workers=1,
    ) as served:
        for _ in range(3):
            status, body = served.get("/dbhealth/healthz")
            assert status == 503, body
            assert '"replica"' in body and '"refused"' in body
        # The host's own server error is mailed as before: mail works, and it is the only one.
        status, _ = served.get("/broken")
        assert status == 500
    assert mails(outage) == ["[Django] ERROR (EXTERNAL IP): Internal Server Error: /broken"]


def test_healthz_in_an_outage_mails_nobody_under_serve(monitored_shop, tmp_path):
    outage = {**monitored_shop, "SHOP_REPLICA_PORT": str(free_port())}
    with serve(outage, tmp_path / "serve.log", "/livez", settings_module=SETTINGS[0]) as served:
        for _ in range(3):
            status, body = served.get("/healthz")
            assert status == 503, body
    assert mails(outage) == []
    assert "Service Unavailable" not in (tmp_path / "serve.log").read_text()


def test_the_replica_read_through_using_serves_under_gunicorn(monitored_shop, tmp_path):
    with gunicorn(
        "tests.startproject_host.wsgi:application",
        {**monitored_shop, "DJANGO_SETTINGS_MODULE": SETTINGS[0]},
        tmp_path / "gunicorn.log",
        "/dbhealth/livez",
        workers=1,
    ) as served:
        status, body = served.get("/products")
        assert (status, body) == (200, '{"products": 0}')
        status, text = served.get("/dbhealth/metrics")
    assert status == 200
    assert 'dbhealth_up{alias="replica",vendor="postgresql"} 1.0' in text


def test_check_deploy_database_names_the_grant_the_monitoring_role_lacks(monitored_shop, postgres):
    postgres.sql("REVOKE SELECT ON django_migrations FROM shop_monitor", dbname="shop")
    try:
        result = run(monitored_shop, SETTINGS[0], "check", "--deploy", "--database", "default")
    finally:
        postgres.sql("GRANT SELECT ON django_migrations TO shop_monitor", dbname="shop")
    lines = [line for line in result.stderr.splitlines() if "dbhealth.W110" in line]
    assert len(lines) == 1, result.stderr
    assert (
        "database alias 'default': role shop_monitor lacks SELECT on django_migrations" in lines[0]
    )
    assert 'HINT: GRANT SELECT ON django_migrations TO "shop_monitor";' in result.stderr
    # With the grant back, nothing is missing.
    result = run(monitored_shop, SETTINGS[0], "check", "--deploy", "--database", "default")
    assert "dbhealth.W110" not in result.stderr, result.stderr
