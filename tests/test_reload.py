"""Reloading the configuration of the running service: SIGHUP, and POST /-/reload when enabled."""

import signal
import urllib.request
from pathlib import Path

from tests.serving import serve
from tests.support.process import wait_until


def alias_table(name: str, server, dbname: str) -> str:
    return f"""
[databases.{name}]
URL = "postgres://monitor@127.0.0.1:{server.port}/{dbname}"
PASSWORD_FILE = "pg-password"
"""


def write(config: Path, server, *aliases: tuple[str, str]) -> None:
    body = "[dbhealth]\ndeadline = 2\nmin_interval = 0\n"
    config.write_text(body + "".join(alias_table(name, server, db) for name, db in aliases))


def backends(server) -> dict[str, int]:
    rows = server.sql(
        "SELECT datname, pid FROM pg_stat_activity WHERE application_name = 'dbhealth'"
    )
    return {datname: pid for datname, pid in rows}


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_sighup_adds_and_removes_aliases_and_keeps_the_others_connections(make_postgres, tmp_path):
    server = make_postgres()
    (tmp_path / "pg-password").write_text(server.monitor_password)
    config = tmp_path / "dbhealth.toml"
    write(config, server, ("main", "app"), ("users", "users"))
    with serve({"DBHEALTH_CONFIG": str(config)}, tmp_path / "service.log", "/livez") as served:
        text = served.get("/metrics")[1]
        assert 'dbhealth_up{alias="users",vendor="postgresql"} 1.0' in text
        assert sample(text, "dbhealth_config_last_reload_successful") == 1.0
        before = backends(server)
        assert set(before) == {"app", "users"}

        write(config, server, ("main", "app"), ("analytics", "analytics"))
        served.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: 'alias="analytics"' in served.get("/metrics")[1], timeout=15)
        text = served.get("/metrics")[1]
        assert 'alias="users"' not in text
        assert sample(text, "dbhealth_config_last_reload_successful") == 1.0
        # The unchanged alias kept its connection; the removed one closed its own.
        assert wait_until(lambda: "users" not in backends(server), timeout=10)
        assert backends(server)["app"] == before["app"]

        config.write_text("[databases\n")
        served.process.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: (
                sample(served.get("/metrics")[1], "dbhealth_config_last_reload_successful") == 0.0
            ),
            timeout=15,
        )
        # The old configuration keeps serving.
        text = served.get("/metrics")[1]
        assert 'dbhealth_up{alias="analytics",vendor="postgresql"} 1.0' in text
        assert backends(server)["app"] == before["app"]
        # The reload endpoint is off unless asked for.
        assert post(served.url + "/-/reload")[0] == 404
    log = (tmp_path / "service.log").read_text()
    assert log.count("not reloaded, the last good configuration stays in use") == 1
    assert server.monitor_password not in log


def test_the_reload_endpoint_when_enabled(make_postgres, tmp_path):
    server = make_postgres()
    (tmp_path / "pg-password").write_text(server.monitor_password)
    config = tmp_path / "dbhealth.toml"
    write(config, server, ("main", "app"))
    env = {"DBHEALTH_CONFIG": str(config), "DBHEALTH_RELOAD_ENDPOINT": "1"}
    with serve(env, tmp_path / "service.log", "/livez") as served:
        write(config, server, ("main", "app"), ("users", "users"))
        assert post(served.url + "/-/reload") == (200, "reloaded\n")
        assert 'alias="users"' in served.get("/metrics")[1]
        config.write_text("not toml at all = = =\n")
        status, body = post(served.url + "/-/reload")
        assert status == 500 and body.startswith("configuration not reloaded: DBHEALTH_CONFIG")
        assert body.count("\n") == 1
        assert served.get("/-/reload")[0] == 405


def test_a_storm_of_sighups_is_one_pending_reload(exporter_settings, tmp_path, caplog):
    """Signals that arrive while a reload runs become one more reload, in the one reloader
    thread: not a thread, nor a reload, per signal."""
    import logging
    import os
    import threading

    from dbhealth.serving import reload
    from django.test import override_settings

    database = tmp_path / "lite.sqlite3"
    config = tmp_path / "dbhealth.toml"
    config.write_text(f'[databases.lite]\nURL = "sqlite:///{database}"\n')
    exporter_settings({"lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}})
    previous = signal.getsignal(signal.SIGHUP)
    caplog.set_level(logging.INFO, logger="dbhealth")

    def reloads() -> int:
        return sum(r.getMessage().endswith("reloaded: 1 aliases") for r in caplog.records)

    try:
        with override_settings(DBHEALTH_CONFIG_FILE=str(config)):
            reload.install_sighup_handler()
            with reload._reloading:  # a reload in progress: the reloader waits for it
                os.kill(os.getpid(), signal.SIGHUP)
                wait_until(lambda: not reload.reload_asked.is_set(), timeout=30)
                for _ in range(200):
                    os.kill(os.getpid(), signal.SIGHUP)
                names = [thread.name for thread in threading.enumerate()]
                assert names.count("dbhealth-reload") == 1
                assert reload.reload_asked.is_set()
            # The reload that waited, then one for all 200 signals that came meanwhile.
            wait_until(lambda: reloads() == 2 and not reload.reload_asked.is_set(), timeout=30)
            assert reloads() == 2
    finally:
        signal.signal(signal.SIGHUP, previous)
