"""`make bench`: dbhealth against postgres_exporter and mysqld_exporter on the same databases.

dbhealth runs as the README runs it: `manage.py serve`, one process. Phases:
  1. latency: every contender alive at once, taken in rotating order so that machine noise hits
     all of them alike: sequential scrapes, then 8 concurrent scrapers (Prometheus 3's Accept
     header), with server-side cost, CPU, memory and the connections each holds; then sequential
     scrapes with Prometheus 2's Accept header;
  2. hung: one PostgreSQL server and the MariaDB server SIGSTOPped;
  3. scale: dbhealth watching 1..1000 databases of one PostgreSQL server, on the default
     max_connections_per_server (16) and, for some sizes, with a cap above the alias count.
Writes bench/results/results.json, results.md and scale.png.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
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
from bench.dbcost import ServerTime, difference, statements, top_statements
from bench.fleet import (
    MARIADB_DATABASE,
    MAX_CONNECTIONS,
    MYSQLD_EXPORTER_GRANTS,
    PART_STRATEGY,
    SCALE_BASE,
    Fleet,
    Workload,
    start_fleet,
)
from bench.scrape import PROMETHEUS_2_ACCEPT, Samples, scrape_concurrently, scrape_series
from tests.support import binaries
from tests.support.postgres import PostgresServer
from tests.support.process import make_tempdir

RESULTS = Path(__file__).resolve().parent / "results"
COLD = {"min_interval": 0}
DEFAULT: dict[str, Any] = {}
# dbhealth's default max_connections_per_server (dbhealth.configuration.options).
DEFAULT_CAP = 16
MAX_PER_SERVER = "max_connections_per_server"
# A scale case's warm-up stops after this long (the first scrapes read every alias's size and
# statements; a few are enough).
WARMUP_SECONDS = 10.0
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
    prometheus_2: Samples = field(default_factory=Samples)
    cpu_seconds: float = 0.0
    server_seconds: float = 0.0
    server_statements: int = 0
    measured_scrapes: int = 0
    rss_peak: int = 0
    pss_peak: int = 0
    threads_peak: int = 0
    processes: int = 0
    connections: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.contender.name

    @property
    def is_dbhealth(self) -> bool:
        return self.name.startswith("dbhealth")

    def held_connections(self, fleet: Fleet) -> dict[str, int]:
        """dbhealth's are told by login and application_name, the exporters' by login."""
        application_name = "dbhealth" if self.is_dbhealth else None
        return fleet.connections(self.pg_logins, self.mariadb_logins, application_name)

    def summary(self) -> dict[str, Any]:
        scrapes = max(1, self.measured_scrapes)
        return {
            "sequential": self.sequential.summary(),
            "concurrent_8": self.concurrent.summary(),
            "sequential_prometheus_2": self.prometheus_2.summary(),
            "server_ms_per_scrape": round(self.server_seconds * 1000 / scrapes, 3),
            "server_statements_per_scrape": round(self.server_statements / scrapes, 2),
            "cpu_seconds_per_1000_scrapes": round(self.cpu_seconds * 1000 / scrapes, 3),
            "rss_mb": round(self.rss_peak / 2**20, 1),
            "pss_mb": round(self.pss_peak / 2**20, 1),
            "threads": self.threads_peak,
            "processes": self.processes,
            "connections": self.connections,
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
    entry.threads_peak = max(entry.threads_peak, after.threads)
    entry.processes = max(entry.processes, after.processes)
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


# The machine's 1-minute load average at every log line: how busy it was while measuring.
LOAD_AVERAGES: list[float] = []


def log(message: str) -> None:
    load = os.getloadavg()[0]
    LOAD_AVERAGES.append(load)
    print(f"[{time.strftime('%H:%M:%S')}] (load {load:.1f}) {message}", flush=True)


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


def exposition(contender: Contender) -> str:
    """/metrics in the text format (no Accept header), outside any measurement."""
    with urllib.request.urlopen(contender.url, timeout=30) as response:
        return response.read().decode()


def up_count(contender: Contender) -> int | None:
    """How many aliases a dbhealth contender reports up (None for the other exporters)."""
    if not contender.name.startswith("dbhealth"):
        return None
    return sum(
        1
        for line in exposition(contender).splitlines()
        if line.startswith("dbhealth_up{") and line.endswith(" 1.0")
    )


FAILURE_LINE = re.compile(r'^dbhealth_probe_failures_total\{.*reason="([^"]*)".*\} (\S+)$')


def alias_figures(contender: Contender) -> dict[str, Any]:
    """Aliases up, and failed probes by reason since the service started."""
    up = 0
    failures: Counter = Counter()
    for line in exposition(contender).splitlines():
        if line.startswith("dbhealth_up{") and line.endswith(" 1.0"):
            up += 1
        match = FAILURE_LINE.match(line)
        if match and float(match.group(2)):
            failures[match.group(1)] += int(float(match.group(2)))
    return {"up": up, "probe_failures": dict(failures)}


def latency_phase(
    entries: list[Entry], costs: ServerTime, fleet: Fleet, args: argparse.Namespace
) -> None:
    log(f"latency: warming up {len(entries)} contenders")
    for entry in entries:
        scrape_series(entry.contender.port, args.warmup)
    for entry in entries:
        entry.connections["after_warmup"] = entry.held_connections(fleet)
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
    rounds = max(1, args.prometheus_2_scrapes // args.block)
    log(f"latency: {rounds} rounds x {args.block} scrapes with Prometheus 2's Accept header")
    for order in rotations(entries, rounds):
        for entry in order:
            entry.prometheus_2.extend(
                scrape_series(entry.contender.port, args.block, accept=PROMETHEUS_2_ACCEPT)
            )
    for entry in entries:
        entry.connections["after_phase"] = entry.held_connections(fleet)
        usage = entry.contender.usage()
        entry.threads_peak = max(entry.threads_peak, usage.threads)
        entry.pss_peak = max(entry.pss_peak, usage.pss_bytes)
        entry.rss_peak = max(entry.rss_peak, usage.rss_bytes)


class Sampler:
    """Samples a contender's memory and threads, the connections its login holds on a server
    (application_name dbhealth) and every client connection of that server, every `interval`
    seconds in a thread of its own, keeping the highest values."""

    def __init__(
        self, contender: Contender, server: PostgresServer, login: str, interval: float = 0.5
    ):
        self.contender = contender
        self.server = server
        self.login = login
        self.interval = interval
        self.peak = {
            "pss_bytes": 0,
            "rss_bytes": 0,
            "threads": 0,
            "connections": 0,
            "server_clients": 0,
        }
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def take(self) -> None:
        usage = self.contender.usage()
        ((held, clients),) = self.server.sql(
            "SELECT count(*) FILTER (WHERE usename = %s AND application_name = 'dbhealth'),"
            " count(*) FILTER (WHERE backend_type = 'client backend') FROM pg_stat_activity",
            params=[self.login],
        )
        now = {
            "pss_bytes": usage.pss_bytes,
            "rss_bytes": usage.rss_bytes,
            "threads": usage.threads,
            "connections": int(held),
            "server_clients": int(clients),
        }
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.take()
            except Exception:  # a sample lost to a busy server is only a sample
                continue

    def __enter__(self) -> "Sampler":
        self.take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.take()


def scale_cases(args: argparse.Namespace) -> list[tuple[int, str, dict[str, Any], int]]:
    """(aliases, mode, [dbhealth] table, cap), smallest size first: each size on the default cap,
    then, for the sizes to repeat, with a cap at or above their alias count."""
    cases = []
    for size in sorted({*args.sizes, *args.uncapped_sizes}):
        caps = [DEFAULT_CAP] if size in args.sizes else []
        if size in args.uncapped_sizes:
            caps.append(max(args.uncapped_cap, size))
        for cap in caps:
            for label, defaults in (("cold", COLD), ("default", DEFAULT)):
                table = defaults if cap == DEFAULT_CAP else {**defaults, MAX_PER_SERVER: cap}
                cases.append((size, label, table, cap))
    return cases


def held_by(server: PostgresServer, login: str) -> int:
    """dbhealth's connections to the server under that login."""
    rows = server.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
        " AND application_name = 'dbhealth'",
        params=[login],
    )
    return int(rows[0][0])


def scale_phase(fleet: Fleet, workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    server = fleet.parts_server
    login = "dbh_scale"
    password = fleet.pg_role(login, server)
    costs = ServerTime(fleet, [server])
    rows = []
    for size, label, defaults, cap in scale_cases(args):
        databases = {name: pg_alias(server, name, login, password) for name in fleet.parts[:size]}
        name = f"dbhealth-scale-{size}-{label}-cap{cap}"
        # Each case starts from an empty pg_stat_statements, so that no case reads (in its
        # statements part) the entries an earlier, larger case left there.
        server.sql("SELECT pg_stat_statements_reset()")
        contender = start_dbhealth(name, databases, defaults, workdir)
        try:
            started = time.monotonic()
            contender.wait_ready()
            ready_seconds = time.monotonic() - started
            seconds = args.large_scale_seconds if size >= args.large_size else args.scale_seconds
            scrape_series(contender.port, args.warmup, seconds=min(seconds, WARMUP_SECONDS))
            up = up_count(contender)
            log(f"scale: {size} aliases ({label}, cap {cap}), {up} up")
            before_cost = costs.snapshot([login], [])
            before_statements = statements(server, login)
            before = contender.usage()
            with Sampler(contender, server, login) as sampler:
                sequential = scrape_series(contender.port, args.scale_scrapes, seconds=seconds)
                concurrent = scrape_concurrently(
                    contender.port, 8, max(1, args.scale_scrapes // 8), seconds=seconds
                )
            usage = contender.usage()
            server_seconds, _ = difference(before_cost, costs.snapshot([login], []), login)
            costliest = top_statements(
                before_statements,
                statements(server, login),
                sequential.count + concurrent.count,
            )
            # The probes of the last scrape have ended; what is still open is what it keeps.
            time.sleep(1.0)
            held_after = held_by(server, login)
            threads_after = contender.usage().threads
            figures = alias_figures(contender)
        finally:
            contender.stop()
        log(
            f"scale: {size} aliases ({label}, cap {cap}): median "
            f"{sequential.summary()['median_ms']} ms, 8 scrapers "
            f"{concurrent.summary()['median_ms']} ms, {held_after} connections held"
        )
        rows.append(
            {
                "aliases": size,
                "mode": label,
                "max_connections_per_server": cap,
                "up": up,
                "up_at_end": figures["up"],
                "probe_failures": figures["probe_failures"],
                "ready_seconds": round(ready_seconds, 1),
                "sequential": sequential.summary(),
                "concurrent_8": concurrent.summary(),
                "rss_mb": round(max(usage.rss_bytes, sampler.peak["rss_bytes"]) / 2**20, 1),
                "pss_mb": round(max(usage.pss_bytes, sampler.peak["pss_bytes"]) / 2**20, 1),
                "pss_at_end_mb": round(usage.pss_bytes / 2**20, 1),
                "threads_peak": max(usage.threads, sampler.peak["threads"]),
                "threads_after": threads_after,
                "connections_peak": sampler.peak["connections"],
                "connections_after": held_after,
                "server_clients_peak": sampler.peak["server_clients"],
                "samples": sampler.samples,
                "cpu_seconds_per_1000_scrapes": per_thousand(
                    usage.cpu_seconds - before.cpu_seconds, sequential, concurrent
                ),
                "server_ms_per_scrape": per_thousand(server_seconds, sequential, concurrent),
                "costliest_statements": costliest,
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
    parser.add_argument(
        "--prometheus-2-scrapes",
        type=int,
        default=90,
        help="sequential, per contender, with Prometheus 2's Accept header",
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200, 1000])
    parser.add_argument(
        "--uncapped-sizes",
        type=int,
        nargs="*",
        default=[200],
        help="sizes run again with max_connections_per_server >= the alias count",
    )
    parser.add_argument("--uncapped-cap", type=int, default=256)
    parser.add_argument("--scale-scrapes", type=int, default=120, help="per size and mode")
    parser.add_argument(
        "--scale-seconds",
        type=float,
        default=15.0,
        help="a scale case's sequential series, and its 8 scrapers, stop after this long",
    )
    parser.add_argument(
        "--large-size", type=int, default=1000, help="from this many aliases on: --large-seconds"
    )
    parser.add_argument(
        "--large-seconds",
        dest="large_scale_seconds",
        type=float,
        default=20.0,
        help="--scale-seconds for the large sizes, whose scrapes take seconds each",
    )
    parser.add_argument(
        "--scale-dir",
        type=Path,
        default=SCALE_BASE,
        help="the scale server's data directory (on disk: 1,000 databases take about 7 GB)",
    )
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
        results["postgresql_max_connections"] = MAX_CONNECTIONS
        log("starting contenders")
        entries = start_latency_contenders(fleet, workdir)
        results["up"] = {entry.name: up_count(entry.contender) for entry in entries}
        if "latency" not in args.skip:
            latency_phase(entries, ServerTime(fleet), fleet, args)
            results["latency"] = {entry.name: entry.summary() for entry in entries}
        for entry in entries:
            if entry.name != "mysqld_exporter":
                entry.contender.stop()
        # Before the part databases exist: postgres_exporter would report on every one of them.
        if "hung" not in args.skip:
            mysqld = next(entry for entry in entries if entry.name == "mysqld_exporter")
            results["hung"] = hung_phase(fleet, workload, mysqld, workdir, args)
        for entry in entries:
            entry.contender.stop()
        if "scale" not in args.skip:
            log(f"starting the scale server under {args.scale_dir}")
            fleet.start_scale_server(args.scale_dir)
            count = max([*args.sizes, *args.uncapped_sizes])
            log(f"creating {count} part databases")
            creating = time.monotonic()
            fleet.create_parts(count)
            seconds = time.monotonic() - creating
            results["parts"] = {
                "databases": count,
                "seconds": round(seconds, 1),
                "ms_per_database": round(seconds * 1000 / max(1, count), 1),
                "strategy": PART_STRATEGY,
                "template": "template1",
            }
            log(f"created {count} databases in {seconds:.1f} s")
            results["scale"] = scale_phase(fleet, workdir, args)
        results["workload"] = {"mariadb_queries": workload.mariadb_queries}
    finally:
        workload.stop()
        for entry in entries:
            entry.contender.stop()
        fleet.close()
        # Configs and .my.cnf files in it hold the logins' passwords.
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    if LOAD_AVERAGES:
        results["load_average_1m"] = {
            "min": round(min(LOAD_AVERAGES), 1),
            "median": round(sorted(LOAD_AVERAGES)[len(LOAD_AVERAGES) // 2], 1),
            "max": round(max(LOAD_AVERAGES), 1),
        }
    args.output.mkdir(parents=True, exist_ok=True)
    report.write(results, args.output)
    (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"done in {results['elapsed_seconds']} s: {args.output / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
