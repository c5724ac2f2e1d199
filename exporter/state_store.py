"""Probe state shared by every process of one service, so that worker processes add no load.

gunicorn runs several worker processes; each scrape may land in any of them. They share one
directory: a lock file per set of aliases serialises their probe rounds (scrapes that arrive
together share one round), per-alias lock files keep at most one probe of an alias in flight
across the whole service, and a JSON file holds the latest state, counters included, so every
worker reports the same numbers; rounds merge their aliases into it under a short write lock.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from exporter.results import AliasState, ServiceState

LOCK_POLL_SECONDS = 0.005
# Writing the state takes milliseconds; a lock held this long means a wedged process.
MERGE_TIMEOUT = 10.0


class AliasLock:
    """Held by a probe thread from start to finish, however long past its deadline that is."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        ensure_private_directory(directory)
        self._state_path = directory / "state.json"
        self._thread_locks: dict[str, threading.Lock] = {}
        self._thread_locks_guard = threading.Lock()
        self._cached: tuple[tuple[int, int, int], ServiceState] | None = None

    @contextlib.contextmanager
    def round_lock(self, aliases: Iterable[str], timeout: float) -> Iterator[bool]:
        """Yield True once this thread may run the round for exactly these aliases.

        Scrapes asking for the same aliases share a round; a scrape of other aliases (another
        /probe target) has a lock of its own, so a hung alias never holds it up.
        """
        key = "\0".join(sorted(aliases))
        with self._exclusive(f"round-{digest(key)}", timeout) as acquired:
            yield acquired

    @contextlib.contextmanager
    def _exclusive(self, name: str, timeout: float) -> Iterator[bool]:
        """A lock shared by the threads of this process and by every other process."""
        give_up_at = time.monotonic() + max(0.0, timeout)
        with self._thread_locks_guard:
            thread_lock = self._thread_locks.setdefault(name, threading.Lock())
        if not thread_lock.acquire(timeout=max(0.0, timeout)):
            yield False
            return
        try:
            fd = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= give_up_at:
                            yield False
                            return
                        time.sleep(LOCK_POLL_SECONDS)
                try:
                    yield True
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            thread_lock.release()

    def alias_lock(self, alias: str, give_up_at: float) -> AliasLock | None:
        """The alias's lock, waited for until `give_up_at` (monotonic); None if still held."""
        fd = os.open(self.directory / f"alias-{digest(alias)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return AliasLock(fd)
            except BlockingIOError:
                if time.monotonic() >= give_up_at:
                    os.close(fd)
                    return None
                time.sleep(LOCK_POLL_SECONDS)

    def load(self) -> ServiceState:
        try:
            info = os.stat(self._state_path)
        except FileNotFoundError:
            return ServiceState()
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        try:
            state = ServiceState.from_json(json.loads(self._state_path.read_bytes()))
        except (OSError, ValueError, TypeError):
            # A damaged file costs the history (counters restart), never the service.
            state = ServiceState()
        self._cached = (key, state)
        return state

    def save(self, state: ServiceState) -> None:
        payload = json.dumps(state.to_json(), separators=(",", ":")).encode()
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".state-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(temporary, self._state_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        info = os.stat(self._state_path)
        self._cached = ((info.st_ino, info.st_mtime_ns, info.st_size), state)

    def merge(self, probed: dict[str, AliasState]) -> ServiceState:
        """Write one round's aliases over the latest state, keeping what other rounds wrote."""
        with self._exclusive("write", timeout=MERGE_TIMEOUT) as acquired:
            if not acquired:
                raise TimeoutError(f"state in {self.directory} stayed locked for {MERGE_TIMEOUT} s")
            current = self.load()
            state = ServiceState(rounds=current.rounds + 1, aliases={**current.aliases, **probed})
            self.save(state)
            return state


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def ensure_private_directory(directory: Path) -> None:
    """The state steers what the service reports: refuse a directory others could write."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ImproperlyConfigured(
            f"DBHEALTH_STATE_DIR {directory} must be owned by this user and not writable by others"
        )
