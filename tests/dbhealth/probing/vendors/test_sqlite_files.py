"""SQLite files that move under a kept connection (deleted, replaced by a restore) and files that
look like SQLite databases without being readable ones: real files, real SQLite."""

import os
import random
import sqlite3
from pathlib import Path

import pytest

SEED = 21
HEADER_BYTES = 100


def make_database(path: Path, rows: int) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, payload TEXT)")
    connection.executemany("INSERT INTO item (payload) VALUES (?)", [("x" * 500,)] * rows)
    connection.commit()
    connection.close()


def entry(path: Path) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def bytes_read() -> int:
    """Bytes this process has read through read(2) and friends so far (page cache included)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_deleted_file_reads_down_on_the_next_probe(tmp_path, make_harness):
    path = tmp_path / "cache.sqlite3"
    make_database(path, rows=10)
    harness = make_harness({"cache": entry(path)})
    assert harness.round().aliases["cache"].up
    path.unlink()  # the kept connection still holds the unlinked file open
    alias = harness.round().aliases["cache"]
    assert (alias.up, alias.reason) == (False, "config")
    assert "no longer exists" in alias.message or "does not exist" in alias.message
    assert not path.exists()  # and the probe did not create it


def test_a_file_replaced_by_a_restore_is_opened_anew(tmp_path, make_harness):
    path = tmp_path / "cache.sqlite3"
    make_database(path, rows=10)
    harness = make_harness({"cache": entry(path)}, refresh_interval=0.0)
    assert harness.round().aliases["cache"].up
    old_size = path.stat().st_size

    restored = tmp_path / "restore.sqlite3"
    make_database(restored, rows=400)
    os.rename(restored, path)  # as a restore does: the old inode lives on in the connection
    assert path.stat().st_size > old_size

    alias = harness.round().aliases["cache"]
    assert alias.up, alias.message
    assert alias.size_bytes == path.stat().st_size
    prober = harness.service._probers["cache"]
    with prober._wrapper.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM item")
        assert cursor.fetchone()[0] == 400


def sqlite_header(tmp_path: Path) -> bytes:
    """The first 100 bytes of a real database file: a valid header."""
    path = tmp_path / "real.sqlite3"
    make_database(path, rows=1)
    return path.read_bytes()[:HEADER_BYTES]


@pytest.mark.parametrize("megabytes", [0, 64])
def test_an_sqlite_header_then_random_bytes_reads_down_on_the_first_probe(
    tmp_path, make_harness, megabytes
):
    path = tmp_path / "garbage.sqlite3"
    tail = random.Random(SEED).randbytes(4096 + megabytes * 1024 * 1024)
    path.write_bytes(sqlite_header(tmp_path) + tail)
    before = path.read_bytes()
    harness = make_harness({"garbage": entry(path)}, refresh_interval=3600.0)

    read_before = bytes_read()
    alias = harness.round().aliases["garbage"]
    read_during = bytes_read() - read_before

    assert alias.up is False
    assert alias.reason in ("config", "error"), (alias.reason, alias.message)
    assert "malformed" in alias.message or "not a database" in alias.message, alias.message
    # A page or a few were read, not the file.
    assert read_during < 1024 * 1024, read_during
    assert path.read_bytes() == before  # nothing written


def test_a_good_file_replaced_by_garbage_reads_down_on_the_next_probe(tmp_path, make_harness):
    path = tmp_path / "cache.sqlite3"
    make_database(path, rows=10)
    harness = make_harness({"cache": entry(path)})
    assert harness.round().aliases["cache"].up
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(sqlite_header(tmp_path) + random.Random(SEED).randbytes(8192))
    os.rename(garbage, path)
    alias = harness.round().aliases["cache"]
    assert (alias.up, alias.reason) in ((False, "config"), (False, "error")), alias.message


def test_a_symbolic_link_pointed_at_another_file_is_followed(tmp_path, make_harness):
    """A deploy that points `current.sqlite3` at a new release's file: the configured path
    names another file now, so it is opened anew."""
    first, second = tmp_path / "release-1.sqlite3", tmp_path / "release-2.sqlite3"
    make_database(first, rows=10)
    make_database(second, rows=300)
    link = tmp_path / "current.sqlite3"
    link.symlink_to(first)
    harness = make_harness({"cache": entry(link)}, refresh_interval=0.0)
    assert harness.round().aliases["cache"].size_bytes == first.stat().st_size

    staged = tmp_path / "staged.sqlite3"
    staged.symlink_to(second)
    os.rename(staged, link)
    alias = harness.round().aliases["cache"]
    assert alias.up, alias.message
    assert alias.size_bytes == second.stat().st_size != first.stat().st_size
