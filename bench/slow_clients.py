"""Scrape latency with and without slow clients holding connections open.

Starts the six reference aliases' servers (PostgreSQL primary and streaming replica, MariaDB, a
SQLite file; bench/fleet.py) and `manage.py serve` watching them on a free loopback port, then
times sequential /metrics scrapes twice: alone, and while 200 idle connections and 8 slowloris
connections (a request head trickling in, one header line every 2 s) are open. Prints median and
maximum of each, the slow connections still open at the end, and the service's memory (PSS).
Then a flood: more idle connections than the service's connection limit (server.MAX_CONNECTIONS);
it prints how long after the flood a scrape is answered 200 (at the limit the service closes the
connection waiting longest to make room for a new one, and the request deadline closes idle
ones) and how many failed first. bench/floods.py measures floods that never let go.
`--gunicorn` adds the same two runs against gunicorn's gthread worker (the README's old command)
for comparison. Figures only, no assertions; loopback only.

    .venv/bin/python -m bench.slow_clients [--scrapes 50] [--gunicorn] [--databases demo]
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from dbhealth.serving.server import MAX_CONNECTIONS

from bench.compare import reference_aliases
from bench.contenders import REPO, Contender, start_gunicorn, write_config
from bench.fleet import start_fleet
from bench.scrape import Samples, scrape_series
from tests.serving import SlowClients
from tests.support.ports import free_port
from tests.support.process import make_tempdir

CLIENT_TIMEOUT = 10.0
FLOOD_GIVE_UP_SECONDS = 60.0
GIVE_UP_AFTER_ERRORS = 3  # a server that times out scrapes is not timed out 50 times over


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_serve(name: str, config: Path | None, workdir: Path) -> Contender:
    home = workdir / name
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "DBHEALTH_DATA_DIR": str(home),
        "DBHEALTH_LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py's own
    if config is not None:
        env["DBHEALTH_CONFIG"] = str(config)
    command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
    return Contender(name, command, env, port, workdir, cwd=REPO)


def measure(contender: Contender, args: argparse.Namespace) -> dict:
    contender.wait_ready()
    scrape_series(contender.port, 5, CLIENT_TIMEOUT)  # warm-up: connections opened, caches read
    alone = series(contender.port, args)
    address = f"127.0.0.1:{contender.port}"
    with SlowClients(address, idle=args.idle, slow=args.slow, interval=args.interval) as clients:
        # Every slowloris connection has trickled a line in before the first timed scrape.
        time.sleep(args.interval * 1.5)
        crowded = series(contender.port, args)
        idle_open, slow_open = clients.still_open()
        lines = min(clients.lines_sent)
    usage = contender.usage()
    flood = flood_recovery(contender.port, args.flood) if args.flood else None
    return {
        "alone": figures(alone),
        "with_slow_clients": figures(crowded),
        "idle_still_open": idle_open,
        "slow_still_open": slow_open,
        "header_lines_per_slow_connection": lines,
        "processes": len(contender.pids()),
        "pss_mib": round(usage.pss_bytes / 2**20, 1),
        "rss_mib": round(usage.rss_bytes / 2**20, 1),
        "flood": flood,
    }


def flood_recovery(port: int, connections: int) -> dict:
    """Open `connections` idle connections, then scrape until one is answered 200."""
    with SlowClients(f"127.0.0.1:{port}", idle=connections, slow=0) as clients:
        flooded_at = time.monotonic()
        time.sleep(1.0)  # every connection accepted by the server, not just by the kernel
        failed, answered_after = Samples(), None
        while time.monotonic() - flooded_at < FLOOD_GIVE_UP_SECONDS:
            samples = scrape_series(port, 1, CLIENT_TIMEOUT)
            if samples.seconds:
                answered_after = time.monotonic() - flooded_at
                break
            failed.extend(samples)
            time.sleep(0.2)
        idle_open, _ = clients.still_open()
    return {
        "idle_connections": connections,
        "first_200_after_s": None if answered_after is None else round(answered_after, 2),
        "scrapes_failed_before": failed.count,
        "failures": sorted(set(failed.errors))[:3],
        "idle_still_open_after": idle_open,
    }


def series(port: int, args: argparse.Namespace) -> Samples:
    samples = Samples()
    while samples.count < args.scrapes and len(samples.errors) < GIVE_UP_AFTER_ERRORS:
        samples.extend(scrape_series(port, 1, CLIENT_TIMEOUT, args.gap))
    return samples


def figures(samples: Samples) -> dict:
    summary = samples.summary()
    keep = ("scrapes", "errors", "error_examples", "median_ms", "max_ms", "body_bytes")
    return {key: summary[key] for key in keep}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__)
    parser.add_argument("--scrapes", type=int, default=50, help="timed scrapes per run")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds before each scrape")
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--slow", type=int, default=8)
    parser.add_argument("--interval", type=float, default=2.0, help="slowloris line interval")
    parser.add_argument(
        "--flood",
        type=int,
        default=MAX_CONNECTIONS + 100,
        help="idle connections of the flood phase (0: skip it)",
    )
    parser.add_argument("--databases", choices=("reference", "demo"), default="reference")
    parser.add_argument("--gunicorn", action="store_true", help="also gunicorn, 2 x 4 gthread")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    workdir = make_tempdir("dbhealth-slow-", None)
    fleet = None
    results: dict = {"parameters": vars(args)}
    try:
        config = None
        if args.databases == "reference":
            log(f"starting the reference servers in {workdir}")
            fleet = start_fleet(0, workdir)
            aliases = reference_aliases(fleet, "dbh_slow")
            config = write_config(workdir / "dbhealth.toml", aliases, {})
        runs = [("serve", lambda: start_serve("serve", config, workdir))]
        if args.gunicorn:
            if config is None:
                aliases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "demo"}}
                aliases["default"]["NAME"] = str(workdir / "demo.sqlite3")
                (workdir / "demo.sqlite3").touch()
            runs.append(("gunicorn", lambda: start_gunicorn("gunicorn", aliases, {}, workdir)))
        for name, start in runs:
            log(f"measuring {name}")
            contender = start()
            try:
                results[name] = measure(contender, args)
            finally:
                contender.stop()
    finally:
        if fleet is not None:
            fleet.close()
        # The config holds the logins' passwords.
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
