"""SQLite: page count times page size plus the WAL file, opened strictly read-only.

A probe must not create files: a missing database file is a down alias, whether NAME is a path or
a `file:` URI, and a WAL database without its -shm file is opened immutable, because a read-only
open would create it. An immutable open caches what it read, so it is never kept between probes.
"""

import copy
import os
import sqlite3
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote, unquote_to_bytes

from exporter.probes.base import VendorProbe, driver_error
from exporter.state import Observations

WAL_FORMAT = 2
HEADER_MAGIC = b"SQLite format 3\x00"
IMMUTABLE = "immutable=1"


class UnusableDatabaseFile(Exception):
    """The configured file cannot be probed as it is: a `config` failure."""


class MissingDatabaseFile(UnusableDatabaseFile):
    """The configured file does not exist: opening it would create an empty database."""


class NotAnSQLiteDatabase(UnusableDatabaseFile):
    """No SQLite header: only the size read would fail, and the alias would look up."""


class SQLiteProbe(VendorProbe):
    vendor: ClassVar[str] = "sqlite"

    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        result = copy.deepcopy(settings)
        result["NAME"] = read_only_name(str(result["NAME"]))
        result["OPTIONS"]["timeout"] = max(0.05, deadline)
        return result

    def keep_connection(self, settings: dict[str, Any]) -> bool:
        """Whether a connection opened with these connection_settings() may serve later probes.

        Not an immutable one: SQLite trusts the file never to change and answers from what it
        read, so a kept connection reports the old size forever (or reads torn pages).
        """
        name = str(settings["NAME"])
        return not (is_uri(name) and IMMUTABLE in split_uri(name)[1])

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
        if isinstance(cause, UnusableDatabaseFile):
            return "config"
        text = str(cause).lower()
        if "interrupted" in text or "database is locked" in text:
            return "timeout"
        if "unable to open" in text or "not a database" in text:
            return "config"
        return None

    def interrupt(self, raw_connection: Any) -> None:
        raw_connection.interrupt()


def read_only_name(name: str) -> str:
    """NAME as a `file:` URI opening an existing SQLite file read-only, whatever NAME asked for:
    the URI's own `mode` and `immutable` give way to ours; in-memory databases stay as they are."""
    if name == ":memory:":
        return name
    if is_uri(name):
        path, parameters = split_uri(name)
        if path == ":memory:" or any(is_memory_mode(parameter) for parameter in parameters):
            return name
        kept = [p for p in parameters if uri_key(p) not in ("mode", "immutable")]
        if not path:
            raise MissingDatabaseFile("the file: URI names no database file")
        if "\x00" in path:
            raise UnusableDatabaseFile("the file: URI's path contains %00")
    else:
        path, kept = name, []
    resolved = Path(path).resolve()
    if not resolved.exists():
        raise MissingDatabaseFile(f"database file {resolved} does not exist")
    if not resolved.is_file():
        raise UnusableDatabaseFile(f"database file {resolved} is not a regular file")
    query = "&".join([*kept, open_mode(resolved)])
    return f"file:{quote(os.fsencode(resolved))}?{query}"


def is_uri(name: str) -> bool:
    """As SQLite decides: only a lowercase `file:` prefix makes a URI."""
    return name.startswith("file:")


def split_uri(name: str) -> tuple[str, list[str]]:
    """A `file:` URI read as SQLite reads it (sqlite.org/uri.html): the percent-decoded path and
    the raw `key=value` parameters. The authority must be empty or `localhost`."""
    rest = name[len("file:") :].split("#", 1)[0]
    raw_path, _, query = rest.partition("?")
    if raw_path.startswith("//"):
        authority, slash, path = raw_path[2:].partition("/")
        if authority not in ("", "localhost"):
            raise UnusableDatabaseFile(f"file: URI authority {authority!r} is not localhost")
        raw_path = slash + path
    return os.fsdecode(unquote_to_bytes(raw_path)), [p for p in query.split("&") if p]


def uri_key(parameter: str) -> str:
    return unquote(parameter.split("=", 1)[0])


def is_memory_mode(parameter: str) -> bool:
    key, _, value = parameter.partition("=")
    return unquote(key) == "mode" and unquote(value) == "memory"


def open_mode(path: Path) -> str:
    """`mode=ro`, or immutable for a WAL database without -shm; refuses a file that is not an
    SQLite database (an empty file is one: SQLite's own empty database)."""
    with path.open("rb") as handle:
        header = handle.read(20)
    if header and not header.startswith(HEADER_MAGIC):
        raise NotAnSQLiteDatabase(f"{path} is not an SQLite database (no SQLite header)")
    in_wal_mode = header[18:19] == bytes([WAL_FORMAT])
    return IMMUTABLE if in_wal_mode and not os.path.exists(f"{path}-shm") else "mode=ro"


def wal_size(name: str) -> int:
    if not is_uri(name):
        return 0
    try:
        return os.stat(f"{split_uri(name)[0]}-wal").st_size
    except OSError:
        return 0
