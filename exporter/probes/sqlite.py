"""SQLite: page count times page size plus the WAL file, opened strictly read-only.

A probe must not create files: a missing database file is a down alias, and a WAL database
without its -wal/-shm files is opened immutable, because a read-only open would create them.
"""

import copy
import os
import sqlite3
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from exporter.probes.base import VendorProbe, driver_error
from exporter.state import Observations

WAL_FORMAT = 2
HEADER_MAGIC = b"SQLite format 3\x00"


class MissingDatabaseFile(Exception):
    """The configured file does not exist: opening it would create an empty database."""


class SQLiteProbe(VendorProbe):
    vendor: ClassVar[str] = "sqlite"

    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        result = copy.deepcopy(settings)
        name = str(result["NAME"])
        if not name.startswith("file:") and name != ":memory:":
            path = Path(name).resolve()
            if not path.is_file():
                raise MissingDatabaseFile(f"database file {path} does not exist")
            mode = "immutable=1" if needs_immutable_open(path) else "mode=ro"
            result["NAME"] = f"file:{quote(str(path))}?{mode}"
        result["OPTIONS"]["timeout"] = max(0.05, deadline)
        return result

    def start_probe(self, wrapper: Any, remaining: float) -> None:
        # A lock held by a writer makes SQLite wait in its busy handler: never past the deadline.
        wrapper.connection.execute(f"PRAGMA busy_timeout = {max(1, int(remaining * 1000))}")

    def read_server(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        observations.version = sqlite3.sqlite_version
        observations.replica = False

    def read_size(self, wrapper: Any, cursor: Any) -> float:
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        page_size = cursor.fetchone()[0]
        return float(pages * page_size + wal_size(wrapper.settings_dict["NAME"]))

    def classify(self, error: BaseException) -> str | None:
        cause = driver_error(error)
        if isinstance(cause, MissingDatabaseFile):
            return "config"
        text = str(cause).lower()
        if "interrupted" in text or "database is locked" in text:
            return "timeout"
        if "unable to open" in text or "not a database" in text:
            return "config"
        return None

    def interrupt(self, raw_connection: Any) -> None:
        raw_connection.interrupt()


def needs_immutable_open(path: Path) -> bool:
    with path.open("rb") as handle:
        header = handle.read(20)
    in_wal_mode = header[:16] == HEADER_MAGIC and header[18] == WAL_FORMAT
    return in_wal_mode and not os.path.exists(f"{path}-shm")


def wal_size(name: str) -> int:
    path = name.removeprefix("file:").split("?", 1)[0]
    try:
        return os.stat(f"{unquote(path)}-wal").st_size
    except OSError:
        return 0
