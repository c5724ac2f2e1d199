"""Custom queries through the standalone service itself: a bad definition in the TOML stops
start-up with one line, and a reload (SIGHUP) swaps definitions or keeps the old ones."""

import signal
import sqlite3
from pathlib import Path

from tests.serving import manage, serve
from tests.support.process import wait_until

QUERY = """
[queries.items]
aliases = ["cache_db"]
sql = "SELECT count(*) AS {column} FROM item"
metrics = {{ {column} = "gauge" }}
"""


def write(config: Path, database: Path, query: str) -> None:
    defaults = "[dbhealth]\nmin_interval = 0\nrefresh_interval = 0.1\n"
    config.write_text(f'{defaults}\n[databases]\ncache_db = "sqlite:///{database}"\n{query}')


def make_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    connection.executemany("INSERT INTO item VALUES (?)", [(n,) for n in range(7)])
    connection.commit()
    connection.close()


def test_a_bad_query_name_stops_start_up_with_one_line(tmp_path):
    database = tmp_path / "cache.sqlite3"
    make_database(database)
    config = tmp_path / "dbhealth.toml"
    write(config, database, QUERY.format(column="n").replace("queries.items", "queries.Items"))
    env = {
        "PATH": "/usr/bin:/bin",
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "DBHEALTH_CONFIG": str(config),
    }
    result = manage(["serve", "--bind", "127.0.0.1:1"], env)
    assert result.returncode == 1
    assert result.stderr == (
        f"dbhealth: {config}: [queries] query Items: the name must be lowercase letters, digits"
        " and _ (at most 100), starting with a letter: it becomes part of metric names\n"
    )


def test_a_reload_swaps_query_definitions_and_keeps_them_when_the_file_is_bad(tmp_path):
    database = tmp_path / "cache.sqlite3"
    make_database(database)
    config = tmp_path / "dbhealth.toml"
    write(config, database, QUERY.format(column="rows"))
    with serve({"DBHEALTH_CONFIG": str(config)}, tmp_path / "service.log", "/livez") as served:
        assert 'dbhealth_query_items_rows{alias="cache_db"} 7.0' in served.get("/metrics")[1]

        write(config, database, QUERY.format(column="Bad Column"))
        served.process.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: "dbhealth_config_last_reload_successful 0.0" in served.get("/metrics")[1],
            timeout=30,
        )
        assert 'dbhealth_query_items_rows{alias="cache_db"} 7.0' in served.get("/metrics")[1]

        write(config, database, QUERY.format(column="entries"))
        served.process.send_signal(signal.SIGHUP)

        def swapped() -> bool:
            text = served.get("/metrics")[1]
            return 'dbhealth_query_items_entries{alias="cache_db"} 7.0' in text

        assert wait_until(swapped, timeout=30)
        assert "dbhealth_query_items_rows" not in served.get("/metrics")[1]
