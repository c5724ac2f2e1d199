"""Where the dbhealth service spends its time while scraped: py-spy samples of a live process.

    python -m bench.profile --aliases 200 --mode cold --seconds 20

Starts the same servers as bench.compare (no workload), `manage.py serve` watching N databases,
scrapes it back to back while py-spy records, then prints the functions with the most samples
(inclusive and own) and keeps the collapsed stacks in --output (default /tmp/dbhealth-profiles).
"""

import argparse
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from bench.compare import COLD, DEFAULT, log, pg_alias, reference_aliases
from bench.contenders import start_dbhealth
from bench.fleet import start_fleet
from bench.scrape import scrape_series
from tests.support.process import make_tempdir


def summarise(collapsed: Path, top: int) -> str:
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "own:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--aliases", type=int, default=200)
    parser.add_argument(
        "--reference", action="store_true", help="the six reference aliases instead of N parts"
    )
    parser.add_argument("--mode", choices=["cold", "default"], default="cold")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--output", type=Path, default=Path("/tmp/dbhealth-profiles"))
    parser.add_argument(
        "--gil", action="store_true", help="only the thread holding the GIL: CPU, not waiting"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    workdir = make_tempdir("dbhealth-profile-", None)
    fleet = start_fleet(0 if args.reference else args.aliases, workdir)
    try:
        password = fleet.pg_role("dbh_profile")
        databases = {
            name: pg_alias(fleet.parts_server, name, "dbh_profile", password)
            for name in fleet.parts
        }
        if args.reference:
            databases = reference_aliases(fleet, "dbh_profile")
        defaults = COLD if args.mode == "cold" else DEFAULT
        contender = start_dbhealth("dbhealth-profile", databases, defaults, workdir)
        try:
            contender.wait_ready()
            scrape_series(contender.port, 5)
            # The serve process itself (an older tree under gunicorn: its last worker).
            worker = contender.pids()[-1]
            output = args.output / f"profile-{args.aliases}-{args.mode}{'-gil' * args.gil}.txt"
            args.output.mkdir(parents=True, exist_ok=True)
            stop = threading.Event()

            def scrape() -> None:
                while not stop.is_set():
                    scrape_series(contender.port, 1)

            scraper = threading.Thread(target=scrape)
            scraper.start()
            log(f"recording worker {worker} for {args.seconds} s")
            record = [py_spy, "record", "--pid", str(worker), "--duration", str(args.seconds)]
            record += ["--gil"] if args.gil else []
            try:
                subprocess.run(
                    [*record, "--format", "raw", "--output", str(output), "--nonblocking"],
                    check=True,
                    capture_output=True,
                )
            finally:
                stop.set()
                scraper.join()
            print(summarise(output, args.top))
        finally:
            contender.stop()
    finally:
        fleet.close()
        # Configs and .my.cnf files in it hold the logins' passwords.
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
