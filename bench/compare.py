"""`make bench`: dbhealth against postgres_exporter and mysqld_exporter on the same databases.

Phases, each with every contender alive at once and taken in rotating order so that machine noise
hits all of them alike:
  1. latency: sequential scrapes, then 8 concurrent scrapers, with server-side cost, CPU and memory;
  2. scale: dbhealth watching 1..200 databases of one PostgreSQL server;
  3. hung: one PostgreSQL server and the MariaDB server SIGSTOPped.
Writes bench/results/results.json, results.md and scale.png.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.contenders import (
    REPO,
    Contender,
    start_dbhealth,
    start_mysqld_exporter,
    start_postgres_exporter,
)
from bench.dbcost import ServerTime, difference
from bench.fleet import MARIADB_DATABASE, MYSQLD_EXPORTER_GRANTS, Fleet, Workload, start_fleet
from bench.scrape import Samples, scrape_concurrently, scrape_series
from tests.support import binaries
from tests.support.process import make_tempdir

RESULTS = Path(__file__).resolve().parent / "results"
COLD = {"min_interval": 0}
DEFAULT: dict[str, Any] = {}
HUNG_DEADLINE = 2.0
HUNG_CLIENT_TIMEOUT = 10.0
# Longer than dbhealth's default min_interval, so that every hung scrape needs a probe round.
HUNG_GAP = 1.2


@dataclass
class Entry:
    """A contender with the logins whose server time is its own, and what was measured."""

    contender: Contender
    pg_logins: list[str] = field(default_factory=list)
    mariadb_logins: list[str] = field(default_factory=list)
    sequential: Samples = field(default_factory=Samples)
    concurrent: Samples = field(default_factory=Samples)
    cpu_seconds: float = 0.0
    server_seconds: float = 0.0
    server_statements: int = 0
    measured_scrapes: int = 0
    rss_peak: int = 0
    pss_peak: int = 0

    @property
    def name(self) -> str:
        return self.contender.name

    def summary(self) -> dict[str, Any]:
        scrapes = max(1, self.measured_scrapes)
        return {
            "sequential": self.sequential.summary(),
            "concurrent_8": self.concurrent.summary(),
            "server_ms_per_scrape": round(self.server_seconds * 1000 / scrapes, 3),
            "server_statements_per_scrape": round(self.server_statements / scrapes, 2),
            "cpu_seconds_per_1000_scrapes": round(self.cpu_seconds * 1000 / scrapes, 3),
            "rss_mb": round(self.rss_peak / 2**20, 1),
            "pss_mb": round(self.pss_peak / 2**20, 1),
        }


def measured_block(entry: Entry, costs: ServerTime, scrape: Callable[[], Samples]) -> Samples:
    """One block of scrapes with CPU, memory and server time accounted to the entry."""
    before_cost = costs.snapshot(entry.pg_logins, entry.mariadb_logins)
    before = entry.contender.usage()
    samples = scrape()
    after = entry.contender.usage()
    after_cost = costs.snapshot(entry.pg_logins, entry.mariadb_logins)
    entry.cpu_seconds += after.cpu_seconds - before.cpu_seconds
    entry.rss_peak = max(entry.rss_peak, after.rss_bytes)
    entry.pss_peak = max(entry.pss_peak, after.pss_bytes)
    for login in entry.pg_logins + entry.mariadb_logins:
        spent, calls = difference(before_cost, after_cost, login)
        entry.server_seconds += spent
        entry.server_statements += calls
    entry.measured_scrapes += samples.count
    return samples


def rotations(entries: list[Entry], rounds: int):
    for index in range(rounds):
        shift = index % len(entries)
        yield entries[shift:] + entries[:shift]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pg_alias(server, database: str, user: str, password: str, **dbhealth: Any) -> dict[str, Any]:
    entry = server.django_settings(database, user, password)
    if dbhealth:
        entry["DBHEALTH"] = dbhealth
    return entry


def reference_aliases(fleet: Fleet, login: str, **dbhealth: Any) -> dict[str, dict[str, Any]]:
    """The six reference aliases: three primary databases, the replica, MariaDB and SQLite."""
    pg_password = fleet.pg_role(login)
    my_password = fleet.mariadb_user(login)
    aliases = {
        name: pg_alias(fleet.primary, name, login, pg_password, **dbhealth)
        for name in ("app", "users", "analytics")
    }
    aliases["replica"] = pg_alias(
        fleet.replica, "app", login, pg_password, replica=True, **dbhealth
    )
    aliases["legacy"] = pg_alias(fleet.mariadb, MARIADB_DATABASE, login, my_password, **dbhealth)
    aliases["local"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(fleet.sqlite_path)}
    if dbhealth:
        aliases["local"]["DBHEALTH"] = dbhealth
    return aliases


def start_latency_contenders(fleet: Fleet, workdir: Path) -> list[Entry]:
    entries: list[Entry] = []
    for label, defaults in (("cold", COLD), ("default", DEFAULT)):
        suffix = "" if label == "default" else "-cold"
        login = f"dbh_pg1_{label}"
        databases = {"app": pg_alias(fleet.primary, "app", login, fleet.pg_role(login))}
        entries.append(
            Entry(start_dbhealth(f"dbhealth-pg1{suffix}", databases, defaults, workdir), [login])
        )
        login = f"dbh_my1_{label}"
        databases = {
            "legacy": pg_alias(fleet.mariadb, MARIADB_DATABASE, login, fleet.mariadb_user(login))
        }
        entries.append(
            Entry(
                start_dbhealth(f"dbhealth-my1{suffix}", databases, defaults, workdir),
                mariadb_logins=[login],
            )
        )
        login = f"dbh_ref6_{label}"
        databases = reference_aliases(fleet, login)
        entries.append(
            Entry(
                start_dbhealth(f"dbhealth-ref6{suffix}", databases, defaults, workdir),
                [login],
                [login],
            )
        )
    password = fleet.pg_role("pgexp")
    dsn = (
        f"postgresql://pgexp:{password}@{fleet.primary.host}:{fleet.primary.port}/app"
        "?sslmode=disable"
    )
    entries.append(Entry(start_postgres_exporter("postgres_exporter", dsn, workdir), ["pgexp"]))
    password = fleet.mariadb_user("myexp", MYSQLD_EXPORTER_GRANTS)
    entries.append(
        Entry(
            start_mysqld_exporter(
                "mysqld_exporter",
                fleet.mariadb.host,
                fleet.mariadb.port,
                "myexp",
                password,
                workdir,
            ),
            mariadb_logins=["myexp"],
        )
    )
    for entry in entries:
        entry.contender.wait_ready()
    return entries


def up_count(contender: Contender) -> int | None:
    """How many aliases a dbhealth contender reports up (None for the other exporters)."""
    if not contender.name.startswith("dbhealth"):
        return None
    with urllib.request.urlopen(contender.url, timeout=30) as response:
        body = response.read().decode()
    return sum(
        1 for line in body.splitlines() if line.startswith("dbhealth_up{") and line.endswith(" 1.0")
    )


def latency_phase(entries: list[Entry], costs: ServerTime, args: argparse.Namespace) -> None:
    log(f"latency: warming up {len(entries)} contenders")
    for entry in entries:
        scrape_series(entry.contender.port, args.warmup)
    rounds = max(1, args.scrapes // args.block)
    log(f"latency: {rounds} rounds x {args.block} sequential scrapes per contender")
    for order in rotations(entries, rounds):
        for entry in order:
            port = entry.contender.port
            entry.sequential.extend(
                measured_block(entry, costs, lambda p=port: scrape_series(p, args.block))
            )
    rounds = max(1, args.concurrent_scrapes // args.concurrent_block)
    log(f"latency: {rounds} rounds x 8 scrapers x {args.concurrent_block} scrapes per contender")
    for order in rotations(entries, rounds):
        for entry in order:
            port = entry.contender.port
            entry.concurrent.extend(
                measured_block(
                    entry, costs, lambda p=port: scrape_concurrently(p, 8, args.concurrent_block)
                )
            )


def scale_phase(fleet: Fleet, workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    login = "dbh_scale"
    password = fleet.pg_role(login)
    costs = ServerTime(fleet)
    rows = []
    for size in args.sizes:
        for label, defaults in (("cold", COLD), ("default", DEFAULT)):
            databases = {
                name: pg_alias(fleet.primary, name, login, password) for name in fleet.parts[:size]
            }
            contender = start_dbhealth(
                f"dbhealth-scale-{size}-{label}", databases, defaults, workdir
            )
            try:
                contender.wait_ready()
                scrape_series(contender.port, args.warmup)
                up = up_count(contender)
                log(f"scale: {size} aliases ({label}), {up} up")
                before_cost = costs.snapshot([login], [])
                before = contender.usage()
                sequential = scrape_series(contender.port, args.scale_scrapes)
                concurrent = scrape_concurrently(contender.port, 8, max(1, args.scale_scrapes // 8))
                usage = contender.usage()
                server_seconds, _ = difference(before_cost, costs.snapshot([login], []), login)
            finally:
                contender.stop()
            rows.append(
                {
                    "aliases": size,
                    "mode": label,
                    "up": up,
                    "sequential": sequential.summary(),
                    "concurrent_8": concurrent.summary(),
                    "rss_mb": round(usage.rss_bytes / 2**20, 1),
                    "pss_mb": round(usage.pss_bytes / 2**20, 1),
                    "cpu_seconds_per_1000_scrapes": per_thousand(
                        usage.cpu_seconds - before.cpu_seconds, sequential, concurrent
                    ),
                    "server_ms_per_scrape": per_thousand(server_seconds, sequential, concurrent),
                }
            )
    return rows


def per_thousand(seconds: float, *samples: Samples) -> float:
    """Seconds per 1,000 scrapes, which is also milliseconds per scrape."""
    return round(seconds * 1000 / max(1, sum(sample.count for sample in samples)), 3)


def hung_phase(
    fleet: Fleet,
    workload: Workload,
    mysqld_exporter: Entry,
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The replica and MariaDB are SIGSTOPped: the kernel still accepts, nothing answers."""
    dbhealth = start_dbhealth(
        "dbhealth-ref6-hung",
        reference_aliases(fleet, "dbh_ref6_hung", deadline=HUNG_DEADLINE),
        DEFAULT,
        workdir,
    )
    password = fleet.pg_role("pgexp")
    replica_exporter = start_postgres_exporter(
        "postgres_exporter-replica",
        f"postgresql://pgexp:{password}@{fleet.replica.host}:{fleet.replica.port}/app"
        "?sslmode=disable",
        workdir,
    )
    contenders = [dbhealth, replica_exporter, mysqld_exporter.contender]
    for contender in contenders:
        contender.wait_ready()
        scrape_series(contender.port, args.warmup)
    baseline = {c.name: scrape_series(c.port, args.hung_scrapes * 4).summary() for c in contenders}
    log("hung: pausing the replica and MariaDB")
    workload.pause_mariadb()
    fleet.replica.pause()
    fleet.mariadb.pause()
    hung: dict[str, Any] = {}
    try:
        for contender in contenders:
            log(f"hung: scraping {contender.name}")
            sequential = scrape_series(
                contender.port, args.hung_scrapes, HUNG_CLIENT_TIMEOUT, HUNG_GAP
            )
            concurrent = scrape_concurrently(contender.port, 8, 2, HUNG_CLIENT_TIMEOUT, HUNG_GAP)
            hung[contender.name] = {
                "sequential": sequential.summary(),
                "concurrent_8": concurrent.summary(),
            }
    finally:
        fleet.mariadb.resume()
        fleet.replica.resume()
        workload.resume_mariadb()
    log("hung: resumed; checking recovery")
    time.sleep(2)
    recovered = {
        c.name: scrape_series(c.port, 3, HUNG_CLIENT_TIMEOUT).summary() for c in contenders
    }
    dbhealth.stop()
    replica_exporter.stop()
    return {
        "deadline_seconds": HUNG_DEADLINE,
        "client_timeout_seconds": HUNG_CLIENT_TIMEOUT,
        "paused": ["postgres replica", "mariadb"],
        "baseline": baseline,
        "hung": hung,
        "after_resume": recovered,
    }


def versions(fleet: Fleet) -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).splitlines()[0].strip()

    return {
        "postgres_exporter": first_line(["prometheus-postgres-exporter", "--version"]),
        "mysqld_exporter": first_line(["prometheus-mysqld-exporter", "--version"]),
        "postgresql": fleet.primary.sql("SHOW server_version")[0][0],
        "mariadb": fleet.mariadb.sql("SELECT VERSION()")[0][0],
        "pgbench": first_line([str(binaries.postgres_bindir() / "pgbench"), "--version"]),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--scrapes", type=int, default=300, help="sequential, per contender")
    parser.add_argument("--block", type=int, default=30, help="sequential scrapes per turn")
    parser.add_argument(
        "--concurrent-scrapes", type=int, default=25, help="per scraper (8 scrapers), per contender"
    )
    parser.add_argument("--concurrent-block", type=int, default=5, help="per scraper per turn")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--scale-scrapes", type=int, default=120, help="per size and mode")
    parser.add_argument("--hung-scrapes", type=int, default=3, help="sequential, per contender")
    parser.add_argument("--skip", nargs="*", default=[], choices=["latency", "scale", "hung"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    workdir = make_tempdir("dbhealth-bench-", None)
    log(f"starting servers in {workdir}")
    fleet = start_fleet(0, workdir)
    workload = Workload(fleet, seconds=3600)
    entries: list[Entry] = []
    results: dict[str, Any] = {"parameters": {k: str(v) for k, v in vars(args).items()}}
    try:
        workload.initialise()
        workload.start()
        results["versions"] = versions(fleet)
        results["commit"] = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        results["machine"] = {"cpus": str(len(os.sched_getaffinity(0)))}
        log("starting contenders")
        entries = start_latency_contenders(fleet, workdir)
        results["up"] = {entry.name: up_count(entry.contender) for entry in entries}
        if "latency" not in args.skip:
            latency_phase(entries, ServerTime(fleet), args)
            results["latency"] = {entry.name: entry.summary() for entry in entries}
        for entry in entries:
            if entry.name != "mysqld_exporter":
                entry.contender.stop()
        if "scale" not in args.skip:
            log(f"creating {max(args.sizes)} part databases")
            fleet.create_parts(max(args.sizes))
            results["scale"] = scale_phase(fleet, workdir, args)
        if "hung" not in args.skip:
            mysqld = next(entry for entry in entries if entry.name == "mysqld_exporter")
            results["hung"] = hung_phase(fleet, workload, mysqld, workdir, args)
        results["workload"] = {"mariadb_queries": workload.mariadb_queries}
    finally:
        workload.stop()
        for entry in entries:
            entry.contender.stop()
        fleet.close()
        # Configs and .my.cnf files in it hold the logins' passwords.
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    args.output.mkdir(parents=True, exist_ok=True)
    report.write(results, args.output)
    (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"done in {results['elapsed_seconds']} s: {args.output / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
