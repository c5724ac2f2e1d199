"""The most of something seen while a block runs: connections open to a server, threads alive.

A test of a bound (at most N connections, at most N threads) polls the quantity in a thread of
its own for the whole block, so a short-lived excess between two rounds is seen too.
"""

import contextlib
import os
import threading
from collections.abc import Callable


class Peak:
    """`with Peak(measure) as peak:` ... then `peak.most`, the highest value measure returned."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.measure = measure
        self.most = 0
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="test-peak")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.measure())

    def __enter__(self) -> "Peak":
        self._watcher.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._watcher.join()


def open_connections_to(port: int) -> int:
    """Established TCP connections from this process to `port`, seen from the client side
    (the server still lists a closed connection's backend for a moment while it exits)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[8:-1])
    count = 0
    with open("/proc/self/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in ours:
                count += 1
    return count
