"""The exporter served for real: gunicorn in a child process, as users run it."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
START_TIMEOUT = 30.0


@dataclass
class Served:
    url: str
    address: str
    log: Path

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@contextmanager
def gunicorn(
    wsgi: str, env: dict[str, str], log: Path, ready_path: str, workers: int = 2
) -> Iterator[Served]:
    """Serve `wsgi` on a free port for the block; `ready_path` should answer without probing."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(GUNICORN), wsgi, "-b", address, "--workers", str(workers), "--threads", "4"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Served(url=f"http://{address}", address=address, log=log)
    try:
        give_up_at = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-4000:]}")
            try:
                if served.get(ready_path, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > give_up_at:
                raise RuntimeError(f"gunicorn did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
