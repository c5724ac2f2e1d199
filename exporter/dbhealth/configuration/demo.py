"""The demo SQLite database that lets the service run on a bare machine.

Only the standalone service's own demo alias is ever created, when the probe service is built
(the first scrape, `dbhealth probe`), never by a probe: a probe that finds a configured SQLite
file missing reports the alias down. Commands that do not probe (check, dashboards, rules,
migrate, --version) write nothing.
"""

import sqlite3
from pathlib import Path

from django.conf import settings


def ensure_demo_databases() -> None:
    for entry in settings.DATABASES.values():
        if is_demo(entry):
            create_demo_database(Path(entry["NAME"]))


def is_demo(entry: dict) -> bool:
    return bool((entry.get("DBHEALTH") or {}).get("create_demo"))


def demo_database() -> Path | None:
    """The demo database's file when the service watches it (it had no configuration): `serve`
    says so at start and dbhealth_build_info carries demo="true", since an exporter watching
    only its demo looks healthy while it watches none of the operator's databases."""
    for entry in settings.DATABASES.values():
        if is_demo(entry):
            return Path(entry["NAME"])
    return None


def create_demo_database(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS visit (id INTEGER PRIMARY KEY, at TEXT)")
        connection.execute("INSERT INTO visit (at) VALUES (datetime('now'))")
    connection.close()
