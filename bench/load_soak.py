"""Load and soak: thousands of scrapes from concurrent clients while one database flaps.

Starts its own PostgreSQL, a second PostgreSQL that is stopped and restarted every few seconds,
MariaDB and a SQLite file (tests/support), and the service (`manage.py serve`, one process) on a
free loopback port. Then:

1. one scraper for a while: probe rounds per second and status-query calls seen by PostgreSQL;
2. N concurrent scrapers (default 8) for a bounded time and count, the flapping server going down
   and up throughout: failed responses, RSS and threads of the service's process tree, and the
   exporter's server-side connections, after warm-up and at the end; rounds per second again.

Prints the figures and writes them to bench/results/load_soak.json. Loopback only.

    .venv/bin/python -m bench.load_soak [--duration 120] [--clients 8] [--max-scrapes 20000]
"""

import argparse
import json
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tests.serving import serve
from tests.support.mariadb import MariaDBServer
from tests.support.postgres import PostgresServer
from tests.support.process import descendants

RESULTS = Path(__file__).resolve().parent / "results" / "load_soak.json"
STATUS_QUERY_MARK = "%pg_last_wal_receive_lsn%"
WATCHER_GRANTS = ("PROCESS, REPLICA MONITOR ON *.*", "SELECT ON legacy.*")


@dataclass
class Tally:
    scrapes: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, error: str | None) -> None:
        with self.lock:
            self.scrapes += 1
            if error is not None and len(self.errors) < 20:
                self.errors.append(error)
            elif error is not None:
                self.errors.append("...")


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
            if response.status != 200 or b"dbhealth_up" not in body:
                return f"status {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def scrapers(url: str, clients: int, seconds: float, max_scrapes: int) -> Tally:
    tally = Tally()
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop_at and tally.scrapes < max_scrapes:
            tally.add(scrape(url))

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def process_figures(service: int) -> dict[str, int]:
    """RSS and threads of the service's process tree (the serve process has no children)."""
    rss_kib = threads = 0
    pids = [service, *descendants(service)]
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kib += int(line.split()[1])
            if line.startswith("Threads:"):
                threads += int(line.split()[1])
    return {"processes": len(pids), "rss_kib": rss_kib, "threads": threads}


def connection_figures(postgres: PostgresServer, mariadb: MariaDBServer) -> dict[str, int]:
    pg = postgres.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbhealth'")
    maria = mariadb.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'watcher'"
    )
    return {"postgres": int(pg[0][0]), "mariadb": int(maria[0][0])}


def rounds_now(url: str) -> float:
    with urllib.request.urlopen(url, timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("dbhealth_probe_rounds_total "):
                return float(line.split()[1])
    raise RuntimeError("no dbhealth_probe_rounds_total in the exposition")


def status_calls(postgres: PostgresServer) -> int:
    rows = postgres.sql(
        "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s",
        params=[STATUS_QUERY_MARK],
    )
    return int(rows[0][0])


def rates(
    url: str, postgres: PostgresServer, run: Callable[[], Tally]
) -> tuple[Tally, dict[str, float]]:
    rounds_before, calls_before, started = rounds_now(url), status_calls(postgres), time.monotonic()
    tally = run()
    elapsed = time.monotonic() - started
    rounds = rounds_now(url) - rounds_before
    calls = status_calls(postgres) - calls_before
    return tally, {
        "seconds": round(elapsed, 1),
        "scrapes_per_second": round(tally.scrapes / elapsed, 1),
        "probe_rounds_per_second": round(rounds / elapsed, 3),
        "status_queries_per_second": round(calls / elapsed, 3),
    }


def flapper(server: PostgresServer, every: float, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(every):
            server.stop()
            if stop.wait(every):
                break
            server.start()
        if not server.running:
            server.start()

    thread = threading.Thread(target=loop, name="flapper")
    thread.start()
    return thread


def write_config(
    directory: Path, postgres: PostgresServer, flappy: PostgresServer, mariadb: MariaDBServer
) -> Path:
    sqlite_path = directory / "cache.sqlite3"
    sqlite3.connect(sqlite_path).close()
    (directory / "pg-password").write_text(postgres.monitor_password)
    (directory / "flappy-password").write_text(flappy.monitor_password)
    config = directory / "dbhealth.toml"
    config.write_text(
        f"""
[dbhealth]
deadline = 2
min_interval = 1

[databases.default]
URL = "postgres://monitor@127.0.0.1:{postgres.port}/app"
PASSWORD_FILE = "pg-password"
[databases.flappy]
URL = "postgres://monitor@127.0.0.1:{flappy.port}/app"
PASSWORD_FILE = "flappy-password"
DBHEALTH = {{ critical = false }}
[databases.legacy]
URL = "mysql://watcher:{mariadb.passwords["watcher"]}@127.0.0.1:{mariadb.port}/legacy"
[databases]
cache = "sqlite:///{sqlite_path}"
"""
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of the soak")
    parser.add_argument("--warmup", type=float, default=20.0, help="soak seconds before baseline")
    parser.add_argument("--single", type=float, default=20.0, help="seconds with one scraper")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-scrapes", type=int, default=20000)
    parser.add_argument("--flap-every", type=float, default=3.0, help="seconds down, then up")
    args = parser.parse_args()

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dbh-soak-")))
        postgres = stack.enter_context(PostgresServer())
        postgres.create_database("app")
        postgres.create_role("monitor")
        flappy = stack.enter_context(PostgresServer())
        flappy.create_database("app")
        flappy.create_role("monitor")
        mariadb = stack.enter_context(MariaDBServer())
        mariadb.create_database("legacy")
        mariadb.create_user("watcher", grants=WATCHER_GRANTS)
        config = write_config(directory, postgres, flappy, mariadb)
        env = {"DBHEALTH_CONFIG": str(config)}
        served = stack.enter_context(serve(env, directory / "serve.log", "/"))
        url = served.url + "/metrics"
        service = served.process.pid

        single, single_rates = rates(
            url, postgres, lambda: scrapers(url, 1, args.single, args.max_scrapes)
        )
        stop = threading.Event()
        flapping = flapper(flappy, args.flap_every, stop)
        try:
            warmup = scrapers(url, args.clients, args.warmup, args.max_scrapes)
            before = {
                **process_figures(service),
                "connections": connection_figures(postgres, mariadb),
            }
            soak, soak_rates = rates(
                url,
                postgres,
                lambda: scrapers(url, args.clients, args.duration, args.max_scrapes),
            )
            after = {
                **process_figures(service),
                "connections": connection_figures(postgres, mariadb),
            }
        finally:
            stop.set()
            flapping.join()

    errors = single.errors + warmup.errors + soak.errors
    figures = {
        "clients": args.clients,
        "flap_every_seconds": args.flap_every,
        "scrapes": single.scrapes + warmup.scrapes + soak.scrapes,
        "failed_responses": len(errors),
        "error_samples": errors[:20],
        "one_scraper": single_rates,
        "many_scrapers": soak_rates,
        "after_warmup": before,
        "at_end": after,
        "rss_growth_kib": after["rss_kib"] - before["rss_kib"],
        "thread_growth": after["threads"] - before["threads"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
