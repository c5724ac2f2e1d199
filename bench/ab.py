"""Before/after figures for one optimisation: an older commit and the working tree, side by side.

    python -m bench.ab --before HEAD~1 --aliases 200

Both run as `manage.py serve` against the same N databases, in alternating blocks so that machine
noise (other jobs on a shared machine included) hits both alike; cold (min_interval 0) then
default. A commit from before `serve` runs as its README ran it, gunicorn with 2 workers x 4
threads (bench.contenders.start_gunicorn), so such a comparison also measures the change of server.
"""

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.compare import COLD, DEFAULT, log, pg_alias, rotations
from bench.contenders import REPO, start_dbhealth
from bench.fleet import start_fleet
from bench.scrape import Samples, scrape_concurrently, scrape_series
from tests.support.process import make_tempdir


def export(revision: str, into: Path) -> Path:
    """The tree of `revision`, unpacked outside the working tree (no git state is touched)."""
    archive = into / "before.tar"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", "--output", str(archive), revision], check=True
    )
    tree = into / "before"
    with tarfile.open(archive) as bundle:
        bundle.extractall(tree, filter="data")
    return tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--before", default="HEAD~1")
    parser.add_argument("--aliases", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=10, help="sequential scrapes per turn")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    workdir = make_tempdir("dbhealth-ab-", None)
    before_tree = export(args.before, Path(tempfile.mkdtemp(dir=workdir)))
    fleet = start_fleet(args.aliases, workdir)
    try:
        password = fleet.pg_role("dbh_ab")
        databases = {
            name: pg_alias(fleet.parts_server, name, "dbh_ab", password) for name in fleet.parts
        }
        for mode, defaults in (("cold", COLD), ("default", DEFAULT)):
            sides = {
                "before": start_dbhealth(
                    f"before-{mode}", databases, defaults, workdir, source=before_tree
                ),
                "after": start_dbhealth(f"after-{mode}", databases, defaults, workdir),
            }
            try:
                for contender in sides.values():
                    contender.wait_ready()
                    scrape_series(contender.port, 5)
                sequential = {name: Samples() for name in sides}
                concurrent = {name: Samples() for name in sides}
                for order in rotations(list(sides), args.rounds):
                    for name in order:
                        port = sides[name].port
                        sequential[name].extend(scrape_series(port, args.block))
                        concurrent[name].extend(scrape_concurrently(port, 8, 2))
                for name, contender in sides.items():
                    seq, conc = sequential[name].summary(), concurrent[name].summary()
                    pss = contender.usage().pss_bytes / 2**20
                    log(
                        f"{args.aliases} aliases {mode:7} {name:6}: median {seq['median_ms']} ms"
                        f" (p95 {seq['p95_ms']}), 8 scrapers median {conc['median_ms']} ms"
                        f" (p95 {conc['p95_ms']}), PSS {pss:.0f} MB"
                    )
            finally:
                for contender in sides.values():
                    contender.stop()
    finally:
        fleet.close()
        # Configs and .my.cnf files in it hold the logins' passwords.
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
