"""SQLite probe: real files, opened read-only, never created."""

import random
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from dbhealth.configuration.toml_file import parse_database_url
from dbhealth.probing.vendors.sqlite import SQLiteProbe


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


def uri_entry(name: str) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}


@pytest.mark.parametrize(
    "uri",
    [
        "file:{path}",
        "file://{path}",
        "file://localhost{path}",
        "file:{path}?mode=rwc",
        "file:{path}?cache=shared&mode=rwc#fragment",
    ],
)
def test_a_missing_file_named_by_a_uri_is_config_and_is_not_created(tmp_path, make_harness, uri):
    path = tmp_path / "new db.sqlite3"
    harness = make_harness({"cache": uri_entry(uri.format(path=quote(str(path))))})
    alias = harness.round().aliases["cache"]
    assert (alias.up, alias.reason) == (False, "config")
    assert f"database file {path} does not exist" in alias.message
    harness.service.close()
    assert list(tmp_path.iterdir()) == []  # no database, no -wal, -shm or -journal


def test_a_sqlite_file_url_in_the_toml_creates_nothing_either(tmp_path, make_harness):
    path = tmp_path / "new.sqlite3"
    entry = parse_database_url(f"sqlite:///file:{path}?mode=rwc")
    assert entry["NAME"] == f"file:{path}?mode=rwc"
    alias = make_harness({"cache": entry}).round().aliases["cache"]
    assert (alias.up, alias.reason) == (False, "config")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_named_by_a_uri_is_opened_read_only(tmp_path, make_harness):
    path = tmp_path / "odd name%?#.sqlite3"
    make_database(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    name = f"file://localhost{quote(str(path))}?cache=private&mode=rwc&immutable=0"
    settings = SQLiteProbe().connection_settings(uri_entry(name) | {"OPTIONS": {}}, 1.0)
    assert settings["NAME"] == f"file:{quote(str(path))}?cache=private&mode=ro"
    harness = make_harness({"cache": uri_entry(name)}, refresh_interval=0.0)
    for _ in range(2):
        assert harness.round().aliases["cache"].up
    assert harness.value("dbhealth_database_size_bytes", alias="cache") == path.stat().st_size
    harness.service.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("name", [":memory:", "file::memory:", "file:x?mode=memory&cache=shared"])
def test_in_memory_databases_stay_allowed(tmp_path, make_harness, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    harness = make_harness({"memory": uri_entry(name)})
    assert harness.round().aliases["memory"].up
    harness.service.close()
    assert list(tmp_path.iterdir()) == []


def test_a_uri_with_another_host_is_config(tmp_path, make_harness):
    path = tmp_path / "cache.sqlite3"
    make_database(path)
    alias = make_harness({"cache": uri_entry(f"file://fileserver{path}")}).round().aliases["cache"]
    assert (alias.up, alias.reason) == (False, "config")
    assert "authority 'fileserver'" in alias.message


def test_a_file_that_is_not_an_sqlite_database_is_config(tmp_path, make_harness):
    path = tmp_path / "random.sqlite3"
    path.write_bytes(random.Random(7).randbytes(8192))
    harness = make_harness({"cache": entry(path)})
    alias = harness.round().aliases["cache"]
    assert (alias.up, alias.reason) == (False, "config")
    assert "not an SQLite database" in alias.message
    assert harness.value("dbhealth_down_reason", alias="cache", reason="config") == 1


def test_an_empty_file_is_an_empty_database(tmp_path, make_harness):
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")
    harness = make_harness({"cache": entry(path)})
    assert harness.round().aliases["cache"].up
    assert harness.value("dbhealth_database_size_bytes", alias="cache") == 0
    assert path.stat().st_size == 0


def test_an_immutable_open_is_not_to_be_kept(tmp_path):
    path = tmp_path / "wal.sqlite3"
    make_database(path, wal=True)
    probe = SQLiteProbe()
    immutable = probe.connection_settings(entry(path) | {"OPTIONS": {}}, 1.0)
    assert immutable["NAME"].endswith("?immutable=1")
    assert probe.keep_connection(immutable) is False
    # A live reader keeps -shm in place, and a read-only open is safe.
    shm_holder = sqlite3.connect(path)
    shm_holder.execute("SELECT count(*) FROM item").fetchone()
    try:
        read_only = probe.connection_settings(entry(path) | {"OPTIONS": {}}, 1.0)
    finally:
        shm_holder.close()
    assert read_only["NAME"].endswith("?mode=ro")
    assert probe.keep_connection(read_only) is True


def test_the_size_of_a_wal_database_without_shm_follows_its_growth(tmp_path, make_harness):
    path = tmp_path / "wal.sqlite3"
    make_database(path, wal=True)
    harness = make_harness({"cache": entry(path)}, refresh_interval=0.0)
    assert harness.round().aliases["cache"].up
    first = harness.value("dbhealth_database_size_bytes", alias="cache")
    make_database_grow(path, megabytes=3)
    assert not Path(f"{path}-shm").exists()  # so the probe opens it immutable again
    assert harness.round().aliases["cache"].up
    second = harness.value("dbhealth_database_size_bytes", alias="cache")
    assert second == path.stat().st_size >= first + 3 * 1024 * 1024


def make_database_grow(path: Path, *, megabytes: int) -> None:
    writer = sqlite3.connect(path)
    rows = megabytes * 1024
    writer.executemany("INSERT INTO item (payload) VALUES (?)", [("z" * 1024,)] * rows)
    writer.commit()
    writer.close()  # the last connection checkpoints and removes -wal and -shm
