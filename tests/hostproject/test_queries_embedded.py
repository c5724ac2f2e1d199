"""Custom queries in embedded mode: DBHEALTH_QUERIES in the host's own settings, served by
`python -m django serve` with those settings; a bad definition stops it with a check error."""

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.serving import REPO, serve
from tests.support.ports import free_port

EXPIRED = {
    "aliases": ["cache_db"],
    "sql": "SELECT count(*) AS entries FROM cache_cacheentry WHERE expires_at < datetime('now')",
    "metrics": {"entries": "gauge"},
    "help": "Expired CacheEntry rows",
}


def host_settings(directory: Path, package: str, queries: dict) -> dict[str, str]:
    """A settings module that is the sample host's plus DBHEALTH_QUERIES; its PYTHONPATH."""
    (directory / package).mkdir()
    (directory / package / "__init__.py").write_text("")
    (directory / package / "settings.py").write_text(
        f"from tests.hostproject.settings import *  # noqa: F403\nDBHEALTH_QUERIES = {queries!r}\n"
    )
    return {"PYTHONPATH": f"{directory}:{REPO}"}


def cache_database(path: Path) -> None:
    """The cache app's table as Django makes it, two entries expired and one not."""
    now = datetime.now(UTC).replace(tzinfo=None)
    connection = sqlite3.connect(path)
    connection.execute(
        'CREATE TABLE "cache_cacheentry" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,'
        ' "key" varchar(255) NOT NULL UNIQUE, "value" text NOT NULL,'
        ' "expires_at" datetime NOT NULL, "created_at" datetime NOT NULL)'
    )
    connection.executemany(
        "INSERT INTO cache_cacheentry (key, value, expires_at, created_at) VALUES (?, 'v', ?, ?)",
        [
            (key, (now + timedelta(minutes=offset)).isoformat(" "), now.isoformat(" "))
            for key, offset in (("a", -30), ("b", -1), ("c", 30))
        ],
    )
    connection.commit()
    connection.close()


def test_the_hosts_dbhealth_queries_are_exported(host_environment, tmp_path):
    cache = tmp_path / "cache.sqlite3"
    cache_database(cache)
    environment = {
        **host_environment,
        **host_settings(tmp_path, "hostwithqueries", {"expired_cache_entries": EXPIRED}),
        "HOSTPROJECT_CACHE_PATH": str(cache),
    }
    with serve(
        environment,
        tmp_path / "service.log",
        ready_path="/sd",
        settings_module="hostwithqueries.settings",
    ) as served:
        status, text = served.get("/probe?alias=cache_db")
    assert status == 200, text
    assert 'dbhealth_query_expired_cache_entries_entries{alias="cache_db"} 2.0' in text
    assert "# HELP dbhealth_query_expired_cache_entries_entries Expired CacheEntry rows" in text


def test_a_bad_definition_in_the_hosts_settings_stops_serve_with_a_check_error(
    host_environment, tmp_path
):
    environment = {
        **os.environ,
        **host_environment,
        **host_settings(tmp_path, "hostwithbadqueries", {"Expired": EXPIRED}),
        "DJANGO_SETTINGS_MODULE": "hostwithbadqueries.settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "serve", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert (
        "(dbhealth.E001) dbhealth cannot read its configuration: DBHEALTH_QUERIES: query Expired:"
        " the name must be lowercase" in result.stderr
    ), result.stderr
    assert "not serving: 1 system check error(s) above" in result.stderr
