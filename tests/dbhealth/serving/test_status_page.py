"""The status page at / as a person sees it: a real headless Chromium against a served exporter.

Aliases on real servers (PostgreSQL primary and replica, MariaDB, SQLite) and one that refuses
connections; the page must show each with its state and figures, and refresh itself.
"""

import os
import shutil
import sqlite3
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.serving import application_statements, serve
from tests.support.ports import free_port

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WINDOW = (1400, 560)


class StatusTable(HTMLParser):
    """Cells of each <tr data-alias> row, and the page's meta refresh."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.refresh: str | None = None
        self._alias: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "meta" and attributes.get("http-equiv") == "refresh":
            self.refresh = attributes.get("content")
        elif tag == "tr" and "data-alias" in attributes:
            self._alias = attributes["data-alias"]
            self.rows[self._alias] = []
        elif tag == "td" and self._alias is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._alias is not None:
            self.rows[self._alias].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._alias = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "Debian package chromium is needed (scripts/setup --test installs it)"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture
def served(tmp_path, postgres, postgres_replica, mariadb):
    cache = tmp_path / "cache.sqlite3"
    with sqlite3.connect(cache) as connection:
        connection.execute("CREATE TABLE entry (key TEXT PRIMARY KEY, value TEXT)")
    connection.close()

    def entry(alias, server, database, engine, password_env, **extra):
        lines = [
            f"[databases.{alias}]",
            f'ENGINE = "{engine}"',
            f'NAME = "{database}"',
            'USER = "monitor"',
            f'PASSWORD_ENV = "{password_env}"',
            f'HOST = "{server.host if server else "127.0.0.1"}"',
            f"PORT = {server.port if server else free_port()}",
        ]
        lines += [f"DBHEALTH = {{ {', '.join(f'{k} = {v}' for k, v in extra.items())} }}"] * bool(
            extra
        )
        return "\n".join(lines) + "\n\n"

    application_statements(postgres, postgres_replica, mariadb)
    postgresql, mysql = "django.db.backends.postgresql", "django.db.backends.mysql"
    config = tmp_path / "dbhealth.toml"
    config.write_text(
        "[dbhealth]\ndeadline = 3\nmin_interval = 0\n\n"
        + entry("default", postgres, "app", postgresql, "PG_PASSWORD")
        + entry("read_replica", postgres_replica, "app", postgresql, "PG_PASSWORD")
        + entry("legacy_db", mariadb, "legacy", mysql, "MARIADB_PASSWORD")
        + f'[databases.cache_db]\nENGINE = "django.db.backends.sqlite3"\nNAME = "{cache}"\n\n'
        # Nothing listens there: refused at once.
        + entry("archive_db", None, "archive", postgresql, "PG_PASSWORD", critical="false")
    )
    environment = {
        "DBHEALTH_CONFIG": str(config),
        "PG_PASSWORD": postgres.monitor_password,
        "MARIADB_PASSWORD": mariadb.monitor_password,
    }
    with serve(environment, tmp_path / "service.log", "/sd") as served:
        yield served


def test_status_page_shows_one_row_per_alias_in_a_real_browser(served, tmp_path):
    dom = chromium("--dump-dom", served.url + "/", profile=tmp_path / "profile-dom").stdout
    page = StatusTable()
    page.feed(dom)

    assert page.refresh == "15"
    assert list(page.rows) == ["default", "read_replica", "legacy_db", "cache_db", "archive_db"]
    columns = ("alias", "vendor", "state", "reason", "ping", "size", "connections", "lag", "top")
    rows = {alias: dict(zip(columns, cells, strict=True)) for alias, cells in page.rows.items()}

    for alias in ("default", "read_replica", "legacy_db", "cache_db"):
        assert rows[alias]["state"] == "up", rows[alias]
        assert rows[alias]["reason"] == "—"
        assert rows[alias]["ping"].endswith(" ms")
    assert rows["default"]["connections"].endswith(" of 50")
    assert rows["default"]["lag"] == "primary"
    assert rows["default"]["size"].endswith("MB")
    assert rows["default"]["top"].endswith(" mean")
    assert rows["read_replica"]["lag"].endswith(("ms", " s", "min", " h"))
    assert rows["legacy_db"]["vendor"] == "mysql"
    assert rows["cache_db"]["size"] == "12.0 KB"  # three 4 KiB pages: schema, table, index
    assert rows["archive_db"]["alias"] == "archive_db (not critical)"
    assert rows["archive_db"]["state"] == "down"
    assert rows["archive_db"]["reason"].startswith("refused")
    assert rows["archive_db"]["ping"] == "—"


def test_status_page_screenshot(served, tmp_path):
    screenshot = tmp_path / "status-page.png"
    chromium(
        f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        served.url + "/",
        profile=tmp_path / "profile-shot",
    )
    data = screenshot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == WINDOW
    # Regenerate the README's picture: DBHEALTH_STATUS_SCREENSHOT=docs/status-page.png pytest ...
    if target := os.environ.get("DBHEALTH_STATUS_SCREENSHOT"):
        shutil.copyfile(screenshot, target)
