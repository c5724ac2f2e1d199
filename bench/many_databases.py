"""Many databases on one server, every one its own alias, the service at its defaults.

    python -m bench.many_databases --vendor postgresql --count 200 --seconds 70
    python -m bench.many_databases --vendor sqlite --count 1000 --seconds 70

Starts the server (PostgreSQL: a throwaway one from tests/support, its data on disk under
--base; SQLite: N files), writes one TOML alias per database with nothing but the connection
(every option at its default), runs `manage.py serve`, then scrapes /metrics back to back for
--seconds the way Prometheus does (its Accept and scrape-timeout headers, 10 s). Every database
is healthy the whole time, so any `dbhealth_up ... 0` sample is a false down. Prints the scrape
latencies, the false downs, the slot waits, and the service's memory and threads; asserts
nothing (figures go in docs/scaling.md).
"""

import argparse
import http.client
import json
import os
import re
import sqlite3
import statistics
import time
from pathlib import Path

from bench.contenders import REPO, Contender, dbhealth_home
from bench.scrape import ACCEPT, SCRAPE_TIMEOUT, percentile
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.process import make_tempdir

DOWN = re.compile(r"^dbhealth_up\{[^}]*\} 0(\.0)?$", re.MULTILINE)
UP = re.compile(r"^dbhealth_up\{", re.MULTILINE)
SLOT_WAITS = re.compile(r"^dbhealth_probe_slot_waits_total\{[^}]*\} (\S+)$", re.MULTILINE)
PROBE_SECONDS = re.compile(r"^dbhealth_probe_duration_seconds\{[^}]*\} (\S+)$", re.MULTILINE)
CONNECT_SECONDS = re.compile(r"^dbhealth_connect_duration_seconds\{[^}]*\} (\S+)$", re.MULTILINE)
PROBE_AGE = re.compile(r"^dbhealth_probe_age_seconds\{[^}]*\} (\S+)$", re.MULTILINE)


def scrape(port: int) -> tuple[float, str]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT + 5)
    try:
        connection.request(
            "GET",
            "/metrics",
            headers={
                "Accept": ACCEPT,
                "X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT),
            },
        )
        response = connection.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started, body


def postgres_databases(count: int, base: Path) -> tuple[PostgresServer, dict[str, dict]]:
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    saved = os.environ.get("DBHEALTH_TEST_TMPDIR")
    os.environ["DBHEALTH_TEST_TMPDIR"] = str(base)
    try:
        server = PostgresServer(max_connections=100)
    finally:
        if saved is None:
            del os.environ["DBHEALTH_TEST_TMPDIR"]
        else:
            os.environ["DBHEALTH_TEST_TMPDIR"] = saved
    server.start()
    password = server.create_role("dbh_many")
    databases = {}
    for index in range(count):
        name = f"tenant_{index:04d}"
        server.sql(f'CREATE DATABASE "{name}" STRATEGY = FILE_COPY')
        databases[name] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "HOST": "127.0.0.1",
            "PORT": str(server.port),
            "USER": "dbh_many",
            "PASSWORD": password,
        }
    return server, databases


def sqlite_databases(count: int, directory: Path) -> dict[str, dict]:
    databases = {}
    for index in range(count):
        path = directory / f"tenant_{index:05d}.sqlite3"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS note (id INTEGER PRIMARY KEY, body)")
        connection.close()
        databases[path.stem] = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    return databases


def start_service(name: str, databases: dict[str, dict], workdir: Path) -> Contender:
    """`manage.py serve` as the README runs it, at the defaults (an empty [dbhealth] table)."""
    _, env = dbhealth_home(name, databases, {}, workdir)
    port = free_port()
    python = str(REPO / ".venv" / "bin" / "python")
    command = [python, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
    return Contender(name, command, env, port, workdir, cwd=REPO)


def measure(service: Contender, seconds: float, count: int) -> dict:
    latencies: list[float] = []
    false_downs = 0
    incomplete = 0
    errors: list[str] = []
    peak_threads = 0
    body = ""
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        try:
            elapsed, body = scrape(service.port)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:120])
            continue
        latencies.append(elapsed)
        false_downs += len(DOWN.findall(body))
        incomplete += len(UP.findall(body)) < count
        peak_threads = max(peak_threads, service.usage().threads)
    usage = service.usage()
    ordered = sorted(latencies)
    ages = [float(value) for value in PROBE_AGE.findall(body)]

    def median_ms(pattern: re.Pattern) -> float | None:
        values = [float(value) for value in pattern.findall(body)]
        return round(statistics.median(values) * 1000, 1) if values else None

    return {
        "aliases": count,
        "scrapes": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "median_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p95_ms": round((percentile(ordered, 0.95) or 0) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        "false_downs": false_downs,
        "scrapes_missing_an_alias": incomplete,
        "slot_waits_total": sum(float(value) for value in SLOT_WAITS.findall(body)),
        "oldest_probe_age_s": round(max(ages), 1) if ages else None,
        "probe_median_ms": median_ms(PROBE_SECONDS),
        "connect_median_ms": median_ms(CONNECT_SECONDS),
        "rss_mb": round(usage.rss_bytes / 2**20, 1),
        "threads_at_end": usage.threads,
        "threads_peak_sampled": peak_threads,
        "cpu_seconds": round(usage.cpu_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendor", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=70.0)
    parser.add_argument("--base", type=Path, default=Path("/var/tmp/dbhealth-bench"))
    args = parser.parse_args()
    workdir = make_tempdir("dbhealth-many-", None)
    server = None
    started = time.monotonic()
    if args.vendor == "postgresql":
        server, databases = postgres_databases(args.count, args.base)
    else:
        databases = sqlite_databases(args.count, workdir)
    prepared = time.monotonic() - started
    service = start_service(f"many-{args.vendor}-{args.count}", databases, workdir)
    try:
        started = time.monotonic()
        service.wait_ready()
        first = time.monotonic() - started
        result = measure(service, args.seconds, args.count)
        result.update(
            vendor=args.vendor,
            first_answer_s=round(first, 2),
            prepare_s=round(prepared, 1),
            rss_mb_idle_after=round(service.usage().rss_bytes / 2**20, 1),
        )
        print(json.dumps(result, indent=2))
    finally:
        service.stop()
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
