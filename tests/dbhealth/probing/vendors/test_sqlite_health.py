"""SQLite health signals on real files: the -wal file, rowid headroom and PRAGMA quick_check."""

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbhealth.probing.failures import classify
from dbhealth.probing.vendors import sqlite as sqlite_module
from dbhealth.probing.vendors.sqlite import ROWID_LIMIT, STOP_HEADROOM, SQLiteProbe
from django.db import connections
from django.db.utils import OperationalError, load_backend

PAGE_SIZE = 4096


def entry(path: Path | str) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def make_items(path: Path, *, wal: bool = False, rows: int = 300) -> None:
    """A table and an index over it, spanning many pages: the table's leaves come first."""
    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    connection.executemany(
        "INSERT INTO item (payload) VALUES (?)", [(f"{n:05d}" + "x" * 200,) for n in range(rows)]
    )
    connection.execute("CREATE INDEX item_payload ON item (payload)")
    connection.commit()
    connection.close()


@pytest.fixture
def probe_connection() -> Iterator:
    """Open a file as the prober does (read-only, Django's own backend) and start a probe with
    `remaining` seconds left; closed at the end of the test."""
    opened = []

    def open_(path: Path, remaining: float):
        probe = SQLiteProbe()
        configured = connections.configure_settings({"default": {}, "x": entry(path)})["x"]
        settings = probe.connection_settings(configured, 5.0)
        wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, "x")
        wrapper.inc_thread_sharing()
        opened.append(wrapper)
        wrapper.ensure_connection()
        probe.start_probe(wrapper, remaining)
        return probe, wrapper

    yield open_
    for wrapper in opened:
        wrapper.close()


# ------------------------------------------------------------------ the -wal file


def test_wal_bytes_grow_while_a_reader_holds_an_old_snapshot(tmp_path, make_harness):
    path = tmp_path / "starved.sqlite3"
    make_items(path, wal=True)
    wal = Path(f"{path}-wal")
    # A reader in a read transaction pins its snapshot: no checkpoint may restart the WAL.
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM item").fetchone() == (300,)
    writer = sqlite3.connect(path)

    def write(rows: int) -> None:
        writer.executemany("INSERT INTO item (payload) VALUES (?)", [("w" * 1000,)] * rows)
        writer.commit()
        writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    try:
        harness = make_harness({"cache": entry(path)})
        write(200)
        assert harness.round().aliases["cache"].up
        first = harness.value("dbhealth_sqlite_wal_bytes", alias="cache")
        assert first == wal.stat().st_size > 0
        write(2000)  # ~2 MB, beyond the 1000-page autocheckpoint: it cannot restart the WAL
        assert harness.round().aliases["cache"].up
        second = harness.value("dbhealth_sqlite_wal_bytes", alias="cache")
        assert second == wal.stat().st_size >= first + 2000 * 1000
        # The reader lets go: a checkpoint empties the WAL, and the signal says so.
        reader.execute("COMMIT")
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        assert harness.round().aliases["cache"].up
        assert harness.value("dbhealth_sqlite_wal_bytes", alias="cache") == 0
        assert wal.stat().st_size == 0
    finally:
        reader.close()
        writer.close()


def test_wal_bytes_are_zero_without_a_wal_file_and_absent_in_memory(tmp_path, make_harness):
    path = tmp_path / "rollback.sqlite3"
    make_items(path)
    harness = make_harness(
        {
            "cache": entry(path),
            "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        }
    )
    state = harness.round()
    assert state.aliases["cache"].up and state.aliases["memory"].up
    assert harness.value("dbhealth_sqlite_wal_bytes", alias="cache") == 0
    assert not Path(f"{path}-wal").exists()
    assert harness.value("dbhealth_sqlite_wal_bytes", alias="memory") is None


# ------------------------------------------------------------------ PRAGMA quick_check


def corrupt_page_3(path: Path) -> None:
    """Overwrite the middle of page 3, a leaf of `item`, with a fixed pattern of garbage."""
    with path.open("r+b") as handle:
        handle.seek(2 * PAGE_SIZE)
        assert handle.read(1) == b"\x0d"  # a table b-tree leaf page, not page 1
        handle.seek(2 * PAGE_SIZE + 1792)
        handle.write(b"garbage!" * 64)


def test_a_healthy_database_passes_the_integrity_check(tmp_path, make_harness):
    path = tmp_path / "healthy.sqlite3"
    make_items(path)
    harness = make_harness({"cache": entry(path)})
    before = time.time()
    assert harness.round().aliases["cache"].up
    assert harness.value("dbhealth_integrity_ok", alias="cache") == 1
    checked = harness.value("dbhealth_integrity_checked_timestamp_seconds", alias="cache")
    assert before <= checked <= time.time()


def test_a_corrupted_page_fails_the_integrity_check(tmp_path, make_harness):
    path = tmp_path / "corrupt.sqlite3"
    make_items(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA page_count").fetchone()[0] > 10
        assert connection.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    connection.close()
    corrupt_page_3(path)
    harness = make_harness({"cache": entry(path)})
    before = time.time()
    alias = harness.round().aliases["cache"]
    after = time.time()
    assert alias.up  # a damaged page is not an outage: the file opens and answers
    assert alias.integrity_ok is False and "integrity" not in alias.failing_parts
    assert harness.value("dbhealth_integrity_ok", alias="cache") == 0
    checked = harness.value("dbhealth_integrity_checked_timestamp_seconds", alias="cache")
    assert before <= checked <= after  # this round's check


def test_the_check_runs_once_per_integrity_interval(tmp_path, make_harness):
    path = tmp_path / "healthy.sqlite3"
    make_items(path)
    hourly = make_harness({"cache": entry(path)}, integrity_interval=3600)
    hourly.round()
    first = hourly.value("dbhealth_integrity_checked_timestamp_seconds", alias="cache")
    time.sleep(0.02)
    assert hourly.round().aliases["cache"].up
    assert hourly.value("dbhealth_integrity_checked_timestamp_seconds", alias="cache") == first
    assert hourly.value("dbhealth_integrity_ok", alias="cache") == 1  # still shown, not re-read

    often = make_harness({"cache": entry(path)}, integrity_interval=0.001)
    often.round()
    first = often.value("dbhealth_integrity_checked_timestamp_seconds", alias="cache")
    time.sleep(0.02)
    often.round()
    assert often.value("dbhealth_integrity_checked_timestamp_seconds", alias="cache") > first
    assert often.value("dbhealth_integrity_ok", alias="cache") == 1


@pytest.fixture(scope="module")
def slow_to_check(big_to_check) -> tuple[Path, float]:
    """big_to_check, where quick_check takes long enough for timed interrupts to mean something."""
    path, took = big_to_check
    if took < 0.05:
        pytest.skip("quick_check is too fast here for the interrupt tests to mean anything")
    return path, took


@pytest.fixture(scope="module")
def big_to_check(tmp_path_factory) -> tuple[Path, float]:
    """A 64 MB file of 512-byte overflow pages: quick_check takes a noticeable time on it. Gives
    the path and how long one check took here (on a warm page cache)."""
    path = tmp_path_factory.mktemp("slow-check") / "big.sqlite3"
    connection = sqlite3.connect(path)
    for pragma in ("page_size=512", "journal_mode=OFF", "synchronous=OFF", "cache_size=-300000"):
        connection.execute(f"PRAGMA {pragma}")
    connection.execute("CREATE TABLE blob (id INTEGER PRIMARY KEY, body BLOB)")
    connection.executemany("INSERT INTO blob (body) VALUES (zeroblob(?))", [(16_000_000,)] * 4)
    connection.commit()
    connection.close()
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = time.monotonic()
    assert reader.execute("PRAGMA quick_check(1)").fetchall() == [("ok",)]
    took = time.monotonic() - started
    reader.close()
    return path, took


def test_an_interrupted_check_raises_and_is_a_timeout_not_corruption(
    slow_to_check, probe_connection
):
    """The watchdog's interrupt (connection.interrupt() from another thread) lands during the
    check: it raises, and reads as `timeout`; it never becomes integrity_ok = 0."""
    path, _ = slow_to_check
    probe, wrapper = probe_connection(path, remaining=60.0)
    done = threading.Event()

    def watchdog() -> None:
        # An interrupt before the statement starts is lost: repeat until the check has ended.
        while not done.wait(0.002):
            wrapper.connection.interrupt()

    thread = threading.Thread(target=watchdog)
    thread.start()
    try:
        with wrapper.cursor() as cursor, pytest.raises(OperationalError) as raised:
            probe.read_integrity(wrapper, cursor)
    finally:
        done.set()
        thread.join()
    assert "interrupted" in str(raised.value)
    assert classify(raised.value, probe) == "timeout"


def test_the_check_stops_at_the_probes_stop_time(slow_to_check, probe_connection):
    path, _ = slow_to_check
    probe, wrapper = probe_connection(path, remaining=STOP_HEADROOM + 0.01)
    # Interrupted, not finished: the check would otherwise have answered "ok".
    with wrapper.cursor() as cursor, pytest.raises(OperationalError, match="interrupted"):
        probe.read_integrity(wrapper, cursor)
    # The connection is fine for the next probe, and no stray interrupt is left behind.
    probe.start_probe(wrapper, 60.0)
    with wrapper.cursor() as cursor:
        assert probe.read_integrity(wrapper, cursor) is True


def test_with_no_time_left_the_check_does_not_start(tmp_path, probe_connection):
    path = tmp_path / "healthy.sqlite3"
    make_items(path)
    probe, wrapper = probe_connection(path, remaining=0.0)
    with wrapper.cursor() as cursor, pytest.raises(TimeoutError) as raised:
        probe.read_integrity(wrapper, cursor)
    assert classify(raised.value, probe) == "timeout"


class StopTimeDuringTheCheck:
    """Stands in for the check's threading.Timer: the probe's stop time comes while the check
    runs, whatever this machine's speed. It interrupts at once and again until cancelled, as an
    interrupt that lands before the statement has started is lost. (A deadline derived from one
    timing of the check failed 2 of 33 runs on a loaded machine.)"""

    def __init__(self, interval, function, args):
        self._function, self._args = function, args
        self._cancelled = threading.Event()
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self.daemon = True

    def _run(self) -> None:
        self._running.set()
        while not self._cancelled.wait(0.001):
            self._function(*self._args)

    def start(self) -> None:
        """Returns once the interrupts run, before the check starts."""
        self._thread.start()
        self._running.wait()

    def cancel(self) -> None:
        self._cancelled.set()

    def join(self) -> None:
        self._thread.join()


def test_a_check_cut_by_the_deadline_fails_the_part_and_keeps_the_alias_up(
    big_to_check, make_harness, monkeypatch
):
    path, _ = big_to_check
    monkeypatch.setattr(sqlite_module.threading, "Timer", StopTimeDuringTheCheck)
    deadline = 30.0
    harness = make_harness({"big": entry(path)}, deadline=deadline)
    alias = harness.round().aliases["big"]
    assert alias.up
    assert alias.integrity_ok is None and alias.integrity_checked is None
    assert "interrupted" in alias.failing_parts["integrity"]
    assert alias.probe_seconds < deadline  # it ended by itself, before the watchdog's settling
    assert harness.value("dbhealth_integrity_ok", alias="big") is None
    assert (
        harness.value(
            "dbhealth_part_failures_total", alias="big", part="integrity", reason="timeout"
        )
        == 1
    )


# ------------------------------------------------------------------ rowid headroom


def headroom(used: int) -> float:
    return (ROWID_LIMIT - used) / ROWID_LIMIT


def make_id_tables(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        CREATE TABLE ticket (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);
        CREATE TABLE archive (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);
        CREATE TABLE note (body TEXT);
        CREATE TABLE "odd ""name"" %s" (body TEXT);
        CREATE TABLE shadowed (rowid TEXT, body TEXT);
        CREATE TABLE empty (id INTEGER PRIMARY KEY);
        CREATE TABLE setting (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
        CREATE VIEW recent AS SELECT * FROM ticket;
        CREATE INDEX note_body ON note (body);
        """
    )
    connection.execute("INSERT INTO ticket (id, body) VALUES (?, 'near the end')", [2**63 - 1000])
    # Rows gone, high-water mark kept: AUTOINCREMENT never hands out an id below it again.
    connection.execute("INSERT INTO archive (id, body) VALUES (?, 'gone')", [2**62])
    connection.execute("DELETE FROM archive")
    connection.execute("INSERT INTO note (rowid, body) VALUES (?, 'n')", [2**50])
    connection.execute("""INSERT INTO "odd ""name"" %s" (rowid, body) VALUES (?, 'o')""", [2**60])
    # A column named rowid hides the rowid: 'zzz' is not an id, the hidden rowid 2^61 is.
    connection.execute(
        "INSERT INTO shadowed (_rowid_, rowid, body) VALUES (?, 'zzz', 's')", [2**61]
    )
    connection.execute("INSERT INTO setting VALUES ('a', ?)", [str(2**63)])
    connection.commit()
    connection.close()


def test_id_headroom_of_every_rowid_table(tmp_path, make_harness):
    path = tmp_path / "ids.sqlite3"
    make_id_tables(path)
    harness = make_harness({"cache": entry(path)})
    alias = harness.round().aliases["cache"]
    assert alias.up and "ids" not in alias.failing_parts
    expected = {
        "ticket": headroom(2**63 - 1000),  # from sqlite_sequence: 999 / (2^63 - 1)
        "archive": headroom(2**62),  # sqlite_sequence, though the table is empty
        "shadowed": headroom(2**61),  # max(_rowid_)
        'odd "name" %s': headroom(2**60),  # max(rowid)
        "note": headroom(2**50),
        "empty": 1.0,
    }
    assert [(item.table, item.ratio) for item in alias.id_headroom] == list(expected.items())
    assert expected["ticket"] == 999 / (2**63 - 1) and expected["ticket"] < 1.1e-16
    for table, ratio in expected.items():
        # The standalone service has no models: the model label is empty.
        assert (
            harness.value("dbhealth_id_headroom_ratio", alias="cache", table=table, model="")
            == ratio
        )
    # Not rowid tables, or not tables: WITHOUT ROWID, views, SQLite's own.
    tables = {
        labels for (name, labels) in harness.samples() if name == "dbhealth_id_headroom_ratio"
    }
    assert len(tables) == len(expected)


def test_id_headroom_keeps_the_top_n_tables_with_the_least(tmp_path, make_harness):
    path = tmp_path / "ids.sqlite3"
    make_id_tables(path)
    harness = make_harness({"cache": entry(path)}, id_headroom_top_n=2)
    alias = harness.round().aliases["cache"]
    assert [item.table for item in alias.id_headroom] == ["ticket", "archive"]


def test_virtual_tables_and_their_shadow_tables_are_left_out(tmp_path, make_harness):
    path = tmp_path / "search.sqlite3"
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE VIRTUAL TABLE search USING fts5(body)")
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no FTS5")
    connection.execute("CREATE TABLE page (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT)")
    connection.execute("INSERT INTO search (body) VALUES ('hello')")
    connection.commit()
    connection.close()
    alias = make_harness({"cache": entry(path)}).round().aliases["cache"]
    assert [item.table for item in alias.id_headroom] == ["page"]


def test_reading_ids_past_the_stop_time_fails_as_timeout(tmp_path, probe_connection):
    """All or nothing: no partial ranking of the tables it had time for."""
    path = tmp_path / "ids.sqlite3"
    make_id_tables(path)
    probe, wrapper = probe_connection(path, remaining=0.0)
    with wrapper.cursor() as cursor, pytest.raises(TimeoutError) as raised:
        probe.read_ids(wrapper, cursor, 10)
    assert classify(raised.value, probe) == "timeout"


# ------------------------------------------------------------------ read only


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_probes_with_every_part_change_no_byte_and_no_mtime(tmp_path, make_harness):
    rollback = tmp_path / "rollback.sqlite3"
    make_id_tables(rollback)
    wal = tmp_path / "wal.sqlite3"
    make_items(wal, wal=True)
    # A live writer keeps -wal (with frames) and -shm: the probe opens it mode=ro, not immutable.
    writer = sqlite3.connect(wal)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executemany("INSERT INTO item (payload) VALUES (?)", [("y" * 300,)] * 100)
    writer.commit()
    watched = [rollback, wal, Path(f"{wal}-wal")]
    try:
        before = {path.name: fingerprint(path) for path in watched}
        files = sorted(os.listdir(tmp_path))
        harness = make_harness(
            {"rollback": entry(rollback), "wal": entry(wal)},
            refresh_interval=0.0,
            integrity_interval=0.001,
        )
        for _ in range(3):
            state = harness.round()
            for alias in ("rollback", "wal"):
                assert state.aliases[alias].up
                assert state.aliases[alias].integrity_ok is True
                assert state.aliases[alias].id_headroom
                assert not state.aliases[alias].failing_parts
            time.sleep(0.002)
        harness.service.close()
        # -shm is SQLite's shared-memory index, where every reader leaves its read mark.
        assert {path.name: fingerprint(path) for path in watched} == before
        assert sorted(os.listdir(tmp_path)) == files
    finally:
        writer.close()
