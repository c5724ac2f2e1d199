"""Process plumbing shared by every throwaway server.

Servers run under ``setpriv --pdeathsig KILL`` so they die with the Python
process that started them even if it is SIGKILLed and atexit never runs.
The signal fires when the *thread* that spawned the server exits, so start
servers from the main thread (pytest does).
"""

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from . import binaries
from .ports import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
SHM = "/dev/shm"
SHM_MIN_FREE = 2 * 1024**3
TEMPDIR_PREFIX = "dbhealth-"
OWNER_FILE = ".dbhealth-owner"


class ServerError(RuntimeError):
    """A server failed to start or stop; the message carries its log tail."""


def service_user(name: str) -> str | None:
    """The account to run a server as: name when we are root, else ourselves (None)."""
    return name if os.geteuid() == 0 else None


def as_user(user: str | None, command: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Prefix command so it runs as user and is SIGKILLed if we die."""
    prefix = [str(binaries.setpriv()), "--pdeathsig", "KILL"]
    if user is not None:
        prefix += ["--reuid", user, "--regid", user, "--init-groups"]
    return [*prefix, "--", *map(str, command)]


def run_as(
    user: str | None,
    command: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a one-shot tool as user; raise with its output if it fails."""
    result = subprocess.run(
        as_user(user, command),
        cwd=cwd,
        env={**os.environ, "LC_ALL": "C", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(
            f"{' '.join(map(str, command))} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def _base_tempdir() -> str | None:
    """Parent of all temp dirs: $DBHEALTH_TEST_TMPDIR, else /dev/shm when it is a
    roomy tmpfs, else the system default.

    Every server copies a template data dir and runs with fsync off, so RAM
    beats disk by far (cp of a PostgreSQL cluster: 0.06 s vs 0.8 s on a VM).
    Docker's default 64 MB /dev/shm is too small and is skipped.
    """
    if configured := os.environ.get("DBHEALTH_TEST_TMPDIR"):
        return configured
    try:
        stats = os.statvfs(SHM)
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= SHM_MIN_FREE
    return SHM if roomy and os.access(SHM, os.W_OK | os.X_OK) else None


def _start_time(pid: int) -> str | None:
    """Kernel start time of pid, which tells a live owner from a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _owner_id(pid: int) -> str:
    return f"{pid} {_start_time(pid)}"


def _owner_gone(directory: Path) -> bool:
    """True if directory is one of ours and the process that made it is dead."""
    try:
        owner = (directory / OWNER_FILE).read_text()
    except OSError:
        return False  # not ours, not readable by us, or still being set up
    pid = owner.split()[0]
    return pid.isdigit() and _owner_id(int(pid)) != owner.strip()


def sweep_stale(base: Path) -> None:
    """Kill processes working in, then delete, temp dirs of dead earlier runs.

    Only a SIGKILLed (or OOM-killed) run leaves these: atexit never ran, and
    children of a paused PostgreSQL miss the parent-death signal.
    """
    stale = [path for path in base.glob(f"{TEMPDIR_PREFIX}*") if _owner_gone(path)]
    if not stale:
        return
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(Path(entry.path, "cwd")))
        except OSError:
            continue
        if any(cwd == path or path in cwd.parents for path in stale):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


_swept: set[Path] = set()


def make_tempdir(prefix: str, user: str | None) -> Path:
    """A fresh 0700 temp dir owned by user, so the server can write into it.

    The first call per parent dir also clears what dead runs left there.
    """
    base = Path(_base_tempdir() or tempfile.gettempdir())
    if base not in _swept:
        _swept.add(base)
        sweep_stale(base)
    path = Path(tempfile.mkdtemp(prefix=TEMPDIR_PREFIX + prefix, dir=base))
    (path / OWNER_FILE).write_text(_owner_id(os.getpid()))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def descendants(pid: int) -> list[int]:
    """All live descendants of pid, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after it.
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children.get(queue.pop(0), [])
        found += kids
        queue += kids
    return found


def alive(pid: int) -> bool:
    """True unless pid is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _signal(pids: Sequence[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def http_ready(url: str) -> bool:
    """True once `url` answers 200 (Prometheus's and Alertmanager's /-/ready)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:  # URLError, connection refused, 503 while starting
        return False


def wait_until(
    predicate: Callable[[], object], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Poll predicate until truthy; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


_live: set["ServerProcess"] = set()


@atexit.register
def _close_all() -> None:
    """Safety net: stop whatever the fixtures did not."""
    for server in list(_live):
        with contextlib.suppress(ServerError):  # closed (killed) all the same: close the rest
            server.close()


class ServerProcess:
    """Lifecycle of one server process tree in its own temp dir.

    Subclasses provide the command line, a readiness probe and optionally a
    one-time data directory preparation and their own clean stop().
    """

    name = "server"

    def __init__(self, *, prefix: str, user: str | None, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.user = user
        self.tmpdir = make_tempdir(prefix, user)
        self.logfile = self.tmpdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._paused = False
        _live.add(self)

    # Hooks for subclasses.

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create the data directory; runs once, before the first start."""

    def _ready(self) -> bool:
        raise NotImplementedError

    # Lifecycle.

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and wait until it accepts a login."""
        if self.running:
            raise ServerError(f"{self.name} on port {self.port} is already running")
        if not self._prepared:
            self._prepare()
            self._prepared = True
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                as_user(self.user, self._command()),
                cwd=self.tmpdir,
                env={**os.environ, "LC_ALL": "C"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Keep the terminal's Ctrl-C away from servers: pytest tears them down.
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self._proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self._proc.returncode} during start-up"
                    f"\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} did not accept logins on port {self.port} within "
                    f"{START_TIMEOUT:.0f} s\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Shut the server down cleanly with SIGTERM."""
        self._shutdown(lambda: self._proc.terminate() if self._proc else None)

    def _shutdown(self, request: Callable[[], object]) -> None:
        """Resume if paused, request a clean shutdown and wait; kill on timeout."""
        if not self.running:
            return
        self.resume()
        assert self._proc is not None
        try:
            request()
            self._proc.wait(timeout=STOP_TIMEOUT)
        except (subprocess.TimeoutExpired, ServerError) as exc:
            # What still runs says what kept it (PostgreSQL names each client in its title).
            still_running = self.process_titles()
            self.kill()
            detail = f"{exc}\n" if isinstance(exc, ServerError) else ""
            raise ServerError(
                f"{self.name} ignored the shutdown\n{detail}still running:\n{still_running}\n"
                f"{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the server and every child, like a host crash or the OOM killer."""
        if not self.running:
            return
        assert self._proc is not None
        pids = self.pids()
        _signal(pids, signal.SIGKILL)
        self._proc.wait()
        self._paused = False
        wait_until(lambda: not any(map(alive, pids)), timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop if needed, then start again on the same port with the same data."""
        self.stop()
        self.start()

    def pids(self) -> list[int]:
        """The main process then all its descendants; empty when not running."""
        if not self.running:
            return []
        assert self._proc is not None
        return [self._proc.pid, *descendants(self._proc.pid)]

    def process_titles(self) -> str:
        """One line per process of the tree: pid and command line (a PostgreSQL backend's says
        whose connection it serves)."""
        lines = []
        for pid in self.pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
            except OSError:
                continue
            lines.append(f"  {pid} {title.decode(errors='replace')}")
        return "\n".join(lines)

    def pause(self) -> None:
        """SIGSTOP the whole tree: the kernel still accepts TCP, nothing answers."""
        if not self.running:
            raise ServerError(f"{self.name} is not running")
        stopped: set[int] = set()
        # Stop the parent first so it cannot fork new children, then sweep
        # until no unstopped process is left.
        while pending := [pid for pid in self.pids() if pid not in stopped]:
            _signal(pending, signal.SIGSTOP)
            stopped.update(pending)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT the whole tree after pause(); harmless otherwise."""
        if self._paused:
            _signal(self.pids(), signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        """Stop the server and delete its temp dir. A server that ignores its shutdown is killed
        and the ServerError raised, so that the test leaving it so (a leaked connection, a session
        that never ends) fails instead of passing after a silent kill."""
        try:
            self.stop()
        finally:
            self.kill()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            _live.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log, for error messages."""
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            with contextlib.suppress(ServerError):  # the start-up error is the one to report
                self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} {self.tmpdir}>"
