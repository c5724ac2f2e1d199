"""One way to serve: every entry point that serves the endpoints enforces the web configuration
(basic_auth_users, headers) and the token, or refuses to start.

`uvicorn dbhealth.asgi:application` once answered /metrics 200 without credentials while
`serve` answered 401 for the same DBHEALTH_WEB_CONFIG_FILE.
"""

import base64
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from tests.security.test_web_config import make_ca
from tests.serving import REPO, serve, served_process
from tests.support.ports import free_port

PASSWORD = "entry-point-password"


def web_config_file(directory: Path, tls: bool = False) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    text = (
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    if tls:
        cert, key = make_ca(directory, "server")
        text += f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    path = directory / "web.yml"
    path.write_text(text)
    return path


def command(entry: str, address: str) -> list[str]:
    """The server run as a module of this interpreter (a venv's console scripts may name
    another interpreter in their first line)."""
    host, _, port = address.rpartition(":")
    if entry == "asgi":
        server = ["uvicorn", "dbhealth.asgi:application", "--host", host, "--port", port]
    elif entry == "wsgi":
        server = ["gunicorn", "dbhealth.wsgi", "-b", address, "--workers", "1"]
    else:  # Django's development server loads WSGI_APPLICATION, dbhealth.wsgi
        return [sys.executable, "manage.py", "runserver", "--noreload", address]
    return [sys.executable, "-m", *server]


def environment(tmp_path: Path, web: Path) -> dict[str, str]:
    # runserver checks migrations on the demo database before serving: its directory must exist.
    (tmp_path / "data").mkdir(exist_ok=True)
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "dbhealth.settings",
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "DBHEALTH_WEB_CONFIG_FILE": str(web),
    }


def basic(password: str) -> dict[str, str]:
    token = base64.b64encode(f"prometheus:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("entry", ["serve", "asgi", "wsgi", "runserver"])
def test_every_entry_point_asks_for_the_web_configurations_users(tmp_path, entry):
    web = web_config_file(tmp_path)
    env = environment(tmp_path, web)
    log = tmp_path / f"{entry}.log"
    if entry == "serve":
        context = serve({k: env[k] for k in ("DBHEALTH_DATA_DIR", "DBHEALTH_WEB_CONFIG_FILE")},
                        log, "/livez")  # fmt: skip
    else:
        address = f"127.0.0.1:{free_port()}"
        context = served_process(entry, command(entry, address), env, log, address, "/livez")
    with context as served:
        for path in ("/metrics", "/probe?alias=default", "/healthz", "/"):
            assert served.get(path)[0] == 401, path
            assert served.get(path, headers=basic("wrong"))[0] == 401, path
            status, _ = served.get(path, headers=basic(PASSWORD))
            assert status in (200, 503), path  # /healthz: 503 only if the demo alias were down
        assert served.get("/livez")[0] == 200
        request = urllib.request.Request(served.url + "/metrics", headers=basic(PASSWORD))
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["X-Frame-Options"] == "deny"


@pytest.mark.parametrize("entry", ["asgi", "wsgi", "runserver"])
def test_an_entry_point_that_cannot_serve_tls_refuses_to_start(tmp_path, entry):
    web = web_config_file(tmp_path, tls=True)
    address = f"127.0.0.1:{free_port()}"
    finished = subprocess.run(
        command(entry, address),
        cwd=REPO,
        env=environment(tmp_path, web),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    [line] = [row for row in finished.stderr.splitlines() if row.startswith("dbhealth: ")]
    assert str(web) in line and "TLS" in line and "serve" in line


def test_the_entry_points_need_no_uvicorn(tmp_path):
    """uvicorn is the `serve` extra: dbhealth.wsgi (gunicorn) and dbhealth.asgi (any ASGI server)
    build their application, users and headers included, without it."""
    web = web_config_file(tmp_path)
    script = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "import dbhealth.wsgi, dbhealth.asgi\n"
        "from dbhealth.serving.web_config import active_users\n"
        "assert active_users() is not None and sys.modules['uvicorn'] is None\n"
        "print('built')\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment(tmp_path, web),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "built\n"
