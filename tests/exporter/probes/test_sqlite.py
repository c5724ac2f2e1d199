"""SQLite probe: real files, opened read-only, never created."""

import sqlite3
from pathlib import Path

import pytest


def make_database(path: Path, *, wal: bool = False, rows: int = 100) -> None:
    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, payload TEXT)")
    connection.executemany(
        "INSERT INTO item (payload) VALUES (?)", [("x" * 500,) for _ in range(rows)]
    )
    connection.commit()
    connection.close()


def entry(path: Path) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def test_size_is_pages_times_page_size(tmp_path, make_harness):
    path = tmp_path / "cache.sqlite3"
    make_database(path)
    harness = make_harness({"cache": entry(path)})
    state = harness.round()
    assert state.aliases["cache"].up
    assert harness.value("dbhealth_database_size_bytes", alias="cache") == path.stat().st_size
    assert harness.value("dbhealth_up", alias="cache", vendor="sqlite") == 1
    assert harness.value("dbhealth_connections", alias="cache", state="active") is None
    assert harness.value("dbhealth_replica", alias="cache") == 0


def test_size_includes_the_write_ahead_log_of_a_live_writer(tmp_path, make_harness):
    path = tmp_path / "wal.sqlite3"
    make_database(path, wal=True)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executemany("INSERT INTO item (payload) VALUES (?)", [("y" * 500,)] * 200)
    writer.commit()
    try:
        harness = make_harness({"cache": entry(path)})
        size = harness.round().aliases["cache"].size_bytes
        wal = Path(f"{path}-wal").stat().st_size
        assert wal > 0
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        page_size = writer.execute("PRAGMA page_size").fetchone()[0]
        assert size == pages * page_size + wal
    finally:
        writer.close()


@pytest.mark.parametrize("wal", [False, True])
def test_the_probe_creates_no_file_and_changes_no_byte(tmp_path, make_harness, wal):
    path = tmp_path / "quiet.sqlite3"
    make_database(path, wal=wal)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    harness = make_harness({"cache": entry(path)}, refresh_interval=0.0)
    for _ in range(3):
        assert harness.round().aliases["cache"].up
    harness.service.close()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith("state")}
    assert after == before


def test_a_missing_file_is_a_down_alias_and_is_not_created(tmp_path, make_harness):
    path = tmp_path / "missing.sqlite3"
    harness = make_harness({"cache": entry(path)})
    alias = harness.round().aliases["cache"]
    assert (alias.up, alias.reason) == (False, "config")
    assert "does not exist" in alias.message
    assert not path.exists()
    assert harness.value("dbhealth_down_reason", alias="cache", reason="config") == 1
