"""The service keeps file descriptors for its database connections, whatever clients do: it
raises its open-file limit as far as it may, and accepts no more client connections than the
limit leaves room for (at the limit, the connection waiting longest is closed for a new one)."""

import os
import socket
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest
from dbhealth.serving.server import MAX_CONNECTIONS, RESERVED_FILES

from tests.serving import manage, serve

WITH_LIMIT = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[3:]])"
)
WAIT = 30.0


def serve_with_open_file_limit(tmp_path: Path, soft: int, hard: int):
    env = {"DBHEALTH_DATA_DIR": str(tmp_path / "data")}
    python = [sys.executable, "-c", WITH_LIMIT, str(soft), str(hard)]
    return serve(env, tmp_path / "service.log", "/livez", python=python)


def open_file_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit")


def sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with suppress(FileNotFoundError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path):
    with serve_with_open_file_limit(tmp_path, 300, 5000) as served:
        assert open_file_limit(served.process.pid) == (5000, 5000)
        assert "open-file limit" not in served.log.read_text()


def test_a_flood_of_connections_leaves_descriptors_for_the_databases(tmp_path):
    soft = RESERVED_FILES + 150
    limit = soft - RESERVED_FILES
    assert limit < MAX_CONNECTIONS
    with serve_with_open_file_limit(tmp_path, soft, soft) as served, ExitStack() as stack:
        pid = served.process.pid
        warnings = [line for line in served.log.read_text().splitlines() if "open-file" in line]
        assert len(warnings) == 1 and f"at most {limit} client connections" in warnings[0]
        host, _, port = served.address.rpartition(":")
        flood = [
            stack.enter_context(socket.create_connection((host, int(port)), timeout=WAIT))
            for _ in range(soft + 50)  # more than the process could hold descriptors for
        ]
        # As many as go beyond the limit are closed by the server (the oldest, to make room).
        give_up_at = time.monotonic() + WAIT
        while sum(map(closed_by_peer, flood)) < len(flood) - limit:
            assert time.monotonic() < give_up_at, sum(map(closed_by_peer, flood))
            time.sleep(0.2)
        # Besides them: the listening socket, the event loop's self-pipe pair, one being accepted.
        assert sockets(pid) <= limit + 4
        # Room for a scrape again: its probe opens the SQLite database without running out.
        for sock in [sock for sock in flood if not closed_by_peer(sock)][:5]:
            sock.close()
        give_up_at = time.monotonic() + WAIT
        while True:
            try:
                status, body = served.get("/metrics", timeout=WAIT)
                break
            except OSError:  # the slots freed are not seen yet
                assert time.monotonic() < give_up_at
                time.sleep(0.2)
        assert status == 200
        assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in body
        assert "Too many open files" not in served.log.read_text()


def closed_by_peer(sock: socket.socket) -> bool:
    if sock.fileno() < 0:
        return False
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize("name", ["DBHEALTH_MAX_CONNECTIONS", "DBHEALTH_CONNECTIONS_PER_CLIENT"])
@pytest.mark.parametrize("value", ["many", "0", "-5", "2.5"])
def test_a_bad_connection_count_is_one_line(tmp_path, name, value):
    env = {"PATH": "/usr/bin:/bin", "DBHEALTH_DATA_DIR": str(tmp_path), name: value}
    result = manage(["serve", "--bind", "127.0.0.1:1"], env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"dbhealth: {name} must be a whole number of at least 1; got {value!r}"
    )
