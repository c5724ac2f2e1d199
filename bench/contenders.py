"""The processes under test: dbhealth (`manage.py serve`) and the two Debian exporters.

Each runs on a free loopback port, started from the main thread under a parent-death signal so
that it never outlives the benchmark. CPU, memory and threads are read from /proc for the whole
process tree: the serve process has no children, but the tree is measured all the same, so that
a service that forked (or an older tree under gunicorn: master and every worker) is counted whole.
"""

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.process import as_user, descendants

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ContenderError(RuntimeError):
    """A contender did not start or did not serve /metrics."""


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int
    pss_bytes: int
    threads: int = 0
    processes: int = 0


class Contender:
    """One exporter process tree serving /metrics on 127.0.0.1:port."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        logdir: Path,
        *,
        cwd: Path = REPO,
    ):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.logfile = logdir / f"{name}.log"
        with self.logfile.open("ab") as log:
            self.process = subprocess.Popen(
                as_user(None, command),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ContenderError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ContenderError(f"{self.name} did not serve {self.url}:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        if self.process.poll() is not None:
            return []
        # The tree starts at setpriv, which execs the real program in place.
        return [self.process.pid, *descendants(self.process.pid)]

    def usage(self) -> Usage:
        cpu = rss = pss = threads = processes = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            processes += 1
            # utime and stime are fields 14 and 15 of stat; after the command name: 12 and 13.
            cpu += int(fields[11]) + int(fields[12])
            # num_threads is field 20; after the command name: 18.
            threads += int(fields[17])
            for line in rollup.splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0]) * 1024
                elif key == "Pss":
                    pss += int(value.split()[0]) * 1024
        return Usage(
            cpu_seconds=cpu / CLOCK_TICKS,
            rss_bytes=rss,
            pss_bytes=pss,
            threads=threads,
            processes=processes,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in self.pids():
                    os.kill(pid, 9)
                self.process.wait(timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_config(
    path: Path, databases: dict[str, dict[str, Any]], defaults: dict[str, Any]
) -> Path:
    """A DBHEALTH_CONFIG TOML file (0600: it holds passwords)."""
    lines = ["[dbhealth]", *(f"{key} = {toml_value(value)}" for key, value in defaults.items())]
    for alias, entry in databases.items():
        lines += ["", f"[databases.{alias}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def dbhealth_home(
    name: str, databases: dict[str, dict[str, Any]], defaults: dict[str, Any], workdir: Path
) -> tuple[Path, dict[str, str]]:
    """The contender's own directory, TOML config and environment."""
    home = workdir / name
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = write_config(home / "dbhealth.toml", databases, defaults)
    env = {
        **os.environ,
        "DBHEALTH_CONFIG": str(config),
        "DBHEALTH_DATA_DIR": str(home),
        "DBHEALTH_LOG_LEVEL": "WARNING",
    }
    # Each tree's manage.py names its own settings module (config.settings before the package
    # was renamed dbhealth, dbhealth.settings since).
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return home, env


def serves_itself(source: Path) -> bool:
    """Whether the tree has `manage.py serve` (the one-process service), in the package where
    it lives now (exporter/dbhealth) or was (dbhealth, exporter)."""
    return any(
        (source / package / "management" / "commands" / "serve.py").exists()
        for package in ("exporter/dbhealth", "dbhealth", "exporter")
    )


def wsgi_module(source: Path) -> str:
    return "dbhealth.wsgi" if (source / "dbhealth" / "wsgi.py").exists() else "config.wsgi"


def start_dbhealth(
    name: str,
    databases: dict[str, dict[str, Any]],
    defaults: dict[str, Any],
    workdir: Path,
    source: Path = REPO,
) -> Contender:
    """The service as the README runs it: `manage.py serve --bind 127.0.0.1:PORT`, one process,
    with its own TOML config (`defaults` is its `[dbhealth]` table).

    `source` is the tree whose code it runs (its directory comes first on sys.path), so that
    bench.ab can run an older commit beside the working tree. A tree from before `serve` is run
    the way its README ran it, under gunicorn (start_gunicorn).
    """
    if not serves_itself(source):
        return start_gunicorn(name, databases, defaults, workdir, source)
    _, env = dbhealth_home(name, databases, defaults, workdir)
    if (source / "exporter" / "dbhealth").is_dir():
        # The editable install points at this working tree: the source's own package goes first.
        env["PYTHONPATH"] = str(source / "exporter")
    port = free_port()
    command = [
        str(REPO / ".venv" / "bin" / "python"),
        "manage.py",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    return Contender(name, command, env, port, workdir, cwd=source)


def start_gunicorn(
    name: str,
    databases: dict[str, dict[str, Any]],
    defaults: dict[str, Any],
    workdir: Path,
    source: Path = REPO,
) -> Contender:
    """The service as it was run before `manage.py serve`: gunicorn with 2 workers x 4 threads
    and a DBHEALTH_STATE_DIR (ignored by trees that no longer have one). For bench.ab against
    such a tree, and for bench.slow_clients' comparison."""
    home, env = dbhealth_home(name, databases, defaults, workdir)
    env["DBHEALTH_STATE_DIR"] = str(home / "state")
    port = free_port()
    command = [
        str(REPO / ".venv" / "bin" / "gunicorn"),
        wsgi_module(source),
        "-b",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--timeout",
        "60",
    ]
    return Contender(name, command, env, port, workdir, cwd=source)


def exporter_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ContenderError(f"{name} not found: apt-get install {name}")
    return found


def start_postgres_exporter(name: str, dsn: str, workdir: Path) -> Contender:
    """postgres_exporter with its default collectors, one DSN."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "DATA_SOURCE_NAME": dsn}
    command = [
        exporter_binary("prometheus-postgres-exporter"),
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return Contender(name, command, env, port, workdir)


def start_mysqld_exporter(
    name: str, host: str, port_number: int, user: str, password: str, workdir: Path
) -> Contender:
    """mysqld_exporter with its default collectors, credentials in its own .my.cnf."""
    my_cnf = workdir / f"{name}.my.cnf"
    my_cnf.write_text(
        f"[client]\nuser={user}\npassword={password}\nhost={host}\nport={port_number}\n"
    )
    my_cnf.chmod(0o600)
    port = free_port()
    command = [
        exporter_binary("prometheus-mysqld-exporter"),
        f"--web.listen-address=127.0.0.1:{port}",
        f"--config.my-cnf={my_cnf}",
        "--log.level=warn",
    ]
    return Contender(name, command, {"PATH": os.environ.get("PATH", "")}, port, workdir)
