"""SQLite: page count times page size plus the WAL file, opened strictly read-only.

A probe must not create files: a missing database file is a down alias, whether NAME is a path or
a `file:` URI, and a WAL database without its -shm file is opened immutable, because a read-only
open would create it. An immutable open caches what it read, so it is never kept between probes.

A kept connection holds the file it opened, whatever happens to the path: every probe compares
the device and inode of the path with those of the file opened, so a deleted file reads down on
the next probe and a file replaced by another (a restore renamed over it) is opened anew. The
ping reads page 1 (the schema's root), so a file with an SQLite header and no readable database
behind it fails at once, reading a page or a few, never the whole file.

Health signals: the size of the -wal file on every probe (a WAL that only grows means a reader
holds an old snapshot and checkpoints cannot restart it), the rowid headroom of every rowid table
per refresh_interval, and `PRAGMA quick_check` per integrity_interval. SQLite has no statement
timeout: the integrity check, the one long statement, is interrupted when the probe's time is up,
and the rowid reads stop between batches, so both end before the deadline and fail as `timeout`.
"""

import contextlib
import copy
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote, unquote_to_bytes

from dbhealth.probing.state import IdHeadroom, Observations
from dbhealth.probing.vendors.base import VendorProbe, driver_error

WAL_FORMAT = 2
HEADER_MAGIC = b"SQLite format 3\x00"
IMMUTABLE = "immutable=1"
# The largest rowid: an AUTOINCREMENT table (every Django AutoField) fails with SQLITE_FULL past it.
ROWID_LIMIT = 2**63 - 1
# Kept back from the probe's deadline, as the prober keeps it from a server's statement timeout:
# a read stopped by us ends the probe, and says why, before the watchdog settles it.
STOP_HEADROOM = 0.2
# Tables per statement reading max(rowid): one b-tree descent each, well under SQLite's limit of
# 500 terms in a compound SELECT; the deadline is checked between statements.
ROWID_BATCH = 100
# PRAGMA table_list: which tables are rowid tables (not WITHOUT ROWID, not virtual, not shadow).
TABLE_LIST_SINCE = (3, 37, 0)
ROWID_NAMES = ("rowid", "_rowid_", "oid")
SQLITE_CORRUPT = 11
SQLITE_BUSY = 5


class UnusableDatabaseFile(Exception):
    """The configured file cannot be probed as it is: a `config` failure."""


class MissingDatabaseFile(UnusableDatabaseFile):
    """The configured file does not exist: opening it would create an empty database."""


class NotAnSQLiteDatabase(UnusableDatabaseFile):
    """No SQLite header: only the size read would fail, and the alias would look up."""


class DatabaseFileReplaced(Exception):
    """The path names another file than the connection opened: open it anew."""


# Where connection_settings() records the configured path and the device and inode of the file
# it named when checked: (path, (device, inode)), None for an in-memory database.
FILE_IDENTITY = "DBHEALTH_FILE_IDENTITY"
# Touches the schema's root page (page 1) and parses the schema: `SELECT 1` reads no page.
PING = "SELECT 1 FROM sqlite_master LIMIT 1"
BUSY_TIMEOUT = "PRAGMA busy_timeout = {milliseconds}"


class SQLiteProbe(VendorProbe):
    vendor: ClassVar[str] = "sqlite"

    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        result = copy.deepcopy(settings)
        configured = str(result["NAME"])
        result["NAME"] = read_only_name(configured)
        result["OPTIONS"]["timeout"] = max(0.05, deadline)
        # The file as it was checked just before the connection opens it: were it replaced in
        # between, the first probe sees a difference and opens the new one. The path as
        # configured, so that a symbolic link pointed elsewhere counts as a replacement.
        path = configured_path(configured) if database_path(result["NAME"]) else None
        result[FILE_IDENTITY] = None if path is None else (path, file_identity(path))
        return result

    def keep_connection(self, settings: dict[str, Any]) -> bool:
        """Whether a connection opened with these connection_settings() may serve later probes.

        Not an immutable one: SQLite trusts the file never to change and answers from what it
        read, so a kept connection reports the old size forever (or reads torn pages).
        """
        name = str(settings["NAME"])
        return not (is_uri(name) and IMMUTABLE in split_uri(name)[1])

    def start_probe(self, wrapper: Any, remaining: float) -> None:
        watched = wrapper.settings_dict.get(FILE_IDENTITY)
        if watched is not None:
            path, opened = watched
            identity = file_identity(path)
            if identity is None:
                raise MissingDatabaseFile(f"database file {path} no longer exists")
            if identity != opened:
                raise DatabaseFileReplaced(f"database file {path} was replaced")
        # A lock held by a writer makes SQLite wait in its busy handler: never past the deadline.
        wrapper.dbhealth_busy_milliseconds = max(1, int(remaining * 1000))
        wrapper.connection.execute(
            BUSY_TIMEOUT.format(milliseconds=wrapper.dbhealth_busy_milliseconds)
        )
        # When this probe's long reads must stop (the wrapper is this alias's alone).
        wrapper.dbhealth_stop_at = time.monotonic() + max(0.0, remaining - STOP_HEADROOM)

    def ping(self, cursor: Any) -> None:
        """Read page 1 without waiting for a lock: a file a writer holds (rollback journal) has
        answered, as the header read before opening it showed; its pages are read next time."""
        wrapper = cursor.db
        wrapper.connection.execute(BUSY_TIMEOUT.format(milliseconds=0))
        try:
            cursor.execute(PING)
            cursor.fetchall()
        except Exception as exc:
            if getattr(driver_error(exc), "sqlite_errorcode", 0) & 0xFF != SQLITE_BUSY:
                raise
        finally:
            wrapper.connection.execute(
                BUSY_TIMEOUT.format(milliseconds=wrapper.dbhealth_busy_milliseconds)
            )

    def read_activity(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        # No query: the file's size, so a reader stuck on an old snapshot cannot hide it.
        path = wal_path(wrapper.settings_dict["NAME"])
        observations.sqlite_wal_bytes = None if path is None else file_size(path)

    def read_ids(self, wrapper: Any, cursor: Any, top_n: int) -> list[IdHeadroom] | None:
        """Every rowid table's headroom: the next rowid is max(rowid) + 1, or for AUTOINCREMENT
        tables one past the larger of that and the high-water mark kept in sqlite_sequence.

        All or nothing: past the probe's time the read fails as `timeout` (and is tried again
        on the next probe) rather than rank only the tables it got to.
        """
        if sqlite3.sqlite_version_info < TABLE_LIST_SINCE:
            return None  # no reliable way to tell WITHOUT ROWID and shadow tables apart
        if top_n <= 0:
            return []
        stop_at = getattr(wrapper, "dbhealth_stop_at", None)
        cursor.execute(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND wr = 0"
        )
        names = [name for (name,) in cursor.fetchall()]
        tables = sorted(name for name in names if not name.lower().startswith("sqlite_"))
        if not tables:
            return []
        used = dict.fromkeys(tables, 0)
        if "sqlite_sequence" in names:
            cursor.execute("SELECT name, seq FROM sqlite_sequence")
            for name, seq in cursor.fetchall():
                if name in used and isinstance(seq, int):
                    used[name] = max(used[name], seq)
        rowid_names = rowid_columns(cursor, tables)
        readable = [table for table in tables if rowid_names[table] is not None]
        for start in range(0, len(readable), ROWID_BATCH):
            if stop_at is not None and time.monotonic() >= stop_at:
                raise TimeoutError(
                    f"the deadline came after reading rowids of {start} of {len(readable)} tables"
                )
            batch = readable[start : start + ROWID_BATCH]
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT {number}, max({rowid_names[table]}) FROM {quote_name(table)}"
                    for number, table in enumerate(batch)
                )
            )
            for number, highest in cursor.fetchall():
                if isinstance(highest, int):
                    used[batch[number]] = max(used[batch[number]], highest)
        found = [
            IdHeadroom(table=table, ratio=(ROWID_LIMIT - max(0, used[table])) / ROWID_LIMIT)
            for table in tables
            if rowid_names[table] is not None or used[table] > 0
        ]
        found.sort(key=lambda item: (item.ratio, item.table))
        return found[:top_n]

    def read_integrity(self, wrapper: Any, cursor: Any) -> bool:
        """PRAGMA quick_check stopped at its first finding: True when it says `ok`.

        Read-only, so it works on mode=ro and immutable opens. Most of its work is one step of
        SQLite's virtual machine, where a progress handler is not called: a timer interrupts
        it at the probe's stop time instead. An interrupted check (by that timer or by the
        watchdog) raises, and the part fails as `timeout`: it is never read as corruption.
        Corruption SQLite reports as an error (SQLITE_CORRUPT) is corruption.
        """
        raw = wrapper.connection
        stop_at = getattr(wrapper, "dbhealth_stop_at", None)
        timer = None
        if stop_at is not None:
            left = stop_at - time.monotonic()
            if left <= 0:
                # An interrupt before the statement starts would be lost: do not start it.
                raise TimeoutError("no time left for PRAGMA quick_check")
            timer = threading.Timer(left, interrupt_quietly, [raw])
            timer.daemon = True
            timer.start()
        try:
            cursor.execute("PRAGMA quick_check(1)")
            rows = cursor.fetchall()
        except Exception as exc:
            cause = driver_error(exc)
            if getattr(cause, "sqlite_errorcode", 0) & 0xFF == SQLITE_CORRUPT:
                return False
            raise
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
        return [tuple(row) for row in rows] == [("ok",)]

    def read_maintenance(
        self, wrapper: Any, cursor: Any, observations: Observations, top_n: int
    ) -> None:
        """Free pages times the page size: what VACUUM would give back (SQLite reuses free
        pages but never shrinks the file by itself, unless auto_vacuum is on)."""
        cursor.execute("PRAGMA freelist_count")
        free_pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        observations.sqlite_freelist_bytes = int(free_pages) * int(cursor.fetchone()[0])

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


def database_path(name: str) -> str | None:
    """The file that NAME (as connection_settings() made it) opens, or None for an in-memory
    database."""
    if not is_uri(name):
        return None  # ":memory:": every file is named by a URI once connection_settings() ran
    path, parameters = split_uri(name)
    if path in ("", ":memory:") or any(is_memory_mode(parameter) for parameter in parameters):
        return None
    return path


def configured_path(name: str) -> str:
    """The file path NAME gives, before any symbolic link in it is followed."""
    return split_uri(name)[0] if is_uri(name) else name


def wal_path(name: str) -> str | None:
    """The -wal file beside the database that NAME opens, or None for an in-memory database."""
    path = database_path(name)
    return None if path is None else f"{path}-wal"


def file_identity(path: str) -> tuple[int, int] | None:
    """Device and inode of the file the path names now, None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


def file_size(path: str) -> int:
    """Bytes in the file, 0 when there is none (no WAL yet, or the last connection removed it)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def wal_size(name: str) -> int:
    path = wal_path(name)
    return 0 if path is None else file_size(path)


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rowid_columns(cursor: Any, tables: list[str]) -> dict[str, str | None]:
    """The name that reads each table's rowid: `rowid`, unless a column of that name hides it,
    then `_rowid_`, then `oid`; None when columns hide all three."""
    cursor.execute(
        "SELECT t.name, lower(c.name) FROM pragma_table_list AS t"
        " JOIN pragma_table_xinfo(t.name, t.schema) AS c"
        " WHERE t.schema = 'main' AND t.type = 'table' AND t.wr = 0"
        " AND lower(c.name) IN ('rowid', '_rowid_', 'oid')"
    )
    hidden: dict[str, set[str]] = {}
    for table, column in cursor.fetchall():
        hidden.setdefault(table, set()).add(column)
    return {
        table: next((n for n in ROWID_NAMES if n not in hidden.get(table, ())), None)
        for table in tables
    }


def interrupt_quietly(connection: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # closed meanwhile: nothing left to stop
        connection.interrupt()
