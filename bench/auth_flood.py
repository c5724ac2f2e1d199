"""A legitimate user's first scrape while 250 threads guess basic auth passwords (issue 21).

    python -m bench.auth_flood [--before REV] [--guessers 250] [--users 5]

The service runs as `manage.py serve` with DBHEALTH_WEB_CONFIG_FILE naming users whose bcrypt
hashes have cost 10 (what `htpasswd -nBC 10` writes). The guessers send wrong passwords for a
real user as fast as they are answered, from 127.0.0.1; while they do, each legitimate user in
turn sends its first scrape (its password is not cached yet) from 127.0.0.2, another client
address; then as many other users do so from 127.0.0.1, the flood's own address. Printed: how
long each first scrape took and its status, and how many guesses were answered meanwhile. With
--before,
an older commit is measured the same way first (bench.ab exports its tree). Figures, never
asserted: tests/dbhealth/serving/test_bcrypt_queue.py holds the property.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import bcrypt

from bench.ab import export
from bench.contenders import REPO
from tests.support.ports import free_port

COST = 10
CLIENT_TIMEOUT = 60.0


def authorization(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def scrape(port: int, headers: dict[str, str], source: str) -> tuple[float, int]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=CLIENT_TIMEOUT, source_address=(source, 0)
    )
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        response.read()
        return time.perf_counter() - started, response.status
    finally:
        connection.close()


def start(source: Path, workdir: Path, users: dict[str, str]) -> tuple[subprocess.Popen, int]:
    web = workdir / "web.yml"
    lines = ["basic_auth_users:"]
    lines += [
        f"  {user}: '{bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST)).decode()}'"
        for user, password in users.items()
    ]
    web.write_text("\n".join(lines) + "\n")
    port = free_port()
    env = {
        **os.environ,
        "DBHEALTH_WEB_CONFIG_FILE": str(web),
        "DBHEALTH_DATA_DIR": str(workdir / "data"),
        "DBHEALTH_LOG_LEVEL": "ERROR",
        "DJANGO_SETTINGS_MODULE": "dbhealth.settings",
    }
    if (source / "exporter" / "dbhealth").is_dir():
        env["PYTHONPATH"] = str(source / "exporter")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=source,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2).read()
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{source}: the service did not start")


def measure(source: Path, label: str, guessers: int, user_count: int) -> None:
    users = {f"user{n}": f"password-{n}" for n in range(2 * user_count + 1)}
    with tempfile.TemporaryDirectory(prefix="dbhealth-auth-flood-") as workdir:
        process, port = start(source, Path(workdir), users)
        stop = threading.Event()
        answered = [0]

        def guess() -> None:
            while not stop.is_set():
                try:
                    scrape(port, authorization("user0", "wrong"), "127.0.0.1")
                    answered[0] += 1
                except OSError:
                    pass

        threads = [threading.Thread(target=guess, daemon=True) for _ in range(guessers)]
        try:
            for thread in threads:
                thread.start()
            time.sleep(3)  # the flood is under way
            firsts, shared = [], []
            guesses_before = answered[0]
            flood_started = time.perf_counter()
            for n in range(1, user_count + 1):
                headers = authorization(f"user{n}", f"password-{n}")
                firsts.append(scrape(port, headers, "127.0.0.2"))
            for n in range(user_count + 1, 2 * user_count + 1):
                headers = authorization(f"user{n}", f"password-{n}")
                shared.append(scrape(port, headers, "127.0.0.1"))
            rate = (answered[0] - guesses_before) / (time.perf_counter() - flood_started)
        finally:
            stop.set()
            process.terminate()
            process.wait(timeout=30)
            for thread in threads:
                thread.join(timeout=CLIENT_TIMEOUT)
        seconds = [s for s, _ in firsts]
        print(
            f"{label}: {guessers} guessing threads from 127.0.0.1 ({rate:.0f} answers/s); "
            f"first scrapes from 127.0.0.2: median {statistics.median(seconds) * 1000:.0f} ms, "
            f"max {max(seconds) * 1000:.0f} ms, statuses {[status for _, status in firsts]}; "
            f"first scrapes from the flood's own address: median "
            f"{statistics.median(s for s, _ in shared) * 1000:.0f} ms, "
            f"statuses {[status for _, status in shared]}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auth_flood", description=__doc__)
    parser.add_argument("--before", help="an older commit to measure first")
    parser.add_argument("--guessers", type=int, default=250)
    parser.add_argument("--users", type=int, default=5)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.before:
        with tempfile.TemporaryDirectory(prefix="dbhealth-auth-flood-before-") as into:
            tree = export(args.before, Path(into))
            measure(tree, f"before ({args.before})", args.guessers, args.users)
    measure(REPO, "after", args.guessers, args.users)
    return 0


if __name__ == "__main__":
    sys.exit(main())
