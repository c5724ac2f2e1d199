"""The container image's recipe: lint-clean, a minimal build context, and a HEALTHCHECK that
tells a dead exporter from a live one watching a dead database.

No Docker engine is needed: hadolint reads the Dockerfile, and the healthcheck script runs here
against a served exporter exactly as the image runs it.
"""

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serving import REPO, serve
from tests.support.ports import free_port

HADOLINT = Path(sys.executable).parent / "hadolint"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_build_context_is_exactly_what_the_image_copies():
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = {
        source.rstrip("/").removeprefix("./")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    }
    patterns = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert included == copied


def test_image_runs_the_serve_command_as_a_numeric_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert 'CMD ["python", "-m", "django", "serve", "--access-log"]' in dockerfile
    assert "DJANGO_SETTINGS_MODULE=config.settings" in dockerfile
    assert "DBHEALTH_CONFIG=/etc/dbhealth/dbhealth.toml" in dockerfile
    # The service listens where it is exposed, and the HEALTHCHECK follows DBHEALTH_BIND there.
    [port] = re.findall(r"DBHEALTH_BIND=0\.0\.0\.0:(\d+)", dockerfile)
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.MULTILINE)
    # One process keeps its state in memory: no worker settings, no state directory.
    for gone in ("gunicorn", "GUNICORN_CMD_ARGS", "DBHEALTH_STATE_DIR", "/state"):
        assert gone not in dockerfile, gone


def healthcheck(url: str | None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={"DBHEALTH_HEALTHCHECK_URL": url, **env} if url else env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_passes_while_a_database_is_down_and_fails_without_the_exporter(tmp_path):
    config = tmp_path / "dbhealth.toml"
    # A critical alias whose file is missing: /healthz answers 503.
    config.write_text(
        f'[databases.default]\nENGINE = "django.db.backends.sqlite3"\n'
        f'NAME = "{tmp_path / "missing.sqlite3"}"\n'
    )
    environment = {"DBHEALTH_CONFIG": str(config), "DBHEALTH_AUTH_TOKEN": "s3cret"}
    with serve(environment, tmp_path / "service.log", "/sd") as served:
        assert served.get("/healthz")[0] == 401
        url = served.url + "/healthz"
        authorized = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(authorized, timeout=30)
        assert answer.value.code == 503
        assert healthcheck(url, DBHEALTH_AUTH_TOKEN="s3cret").returncode == 0
        token_file = tmp_path / "token"
        token_file.write_text("s3cret\n")
        assert healthcheck(url, DBHEALTH_AUTH_TOKEN_FILE=str(token_file)).returncode == 0
        refused = healthcheck(url)
        assert refused.returncode == 1
        assert "answered 401" in refused.stderr
    nobody = healthcheck(f"http://127.0.0.1:{free_port()}/healthz")
    assert nobody.returncode == 1
    assert "does not answer" in nobody.stderr


def test_healthcheck_calls_the_address_in_dbhealth_bind(tmp_path):
    with serve(
        {"DBHEALTH_DATA_DIR": str(tmp_path / "data")}, tmp_path / "service.log", "/sd"
    ) as served:
        port = served.address.rpartition(":")[2]
        # As in the image: the service listens on every address, the check calls the loopback one.
        assert healthcheck(None, DBHEALTH_BIND=f"0.0.0.0:{port}").returncode == 0
        assert healthcheck(None, DBHEALTH_BIND=served.address).returncode == 0
    gone = healthcheck(None, DBHEALTH_BIND=served.address)
    assert gone.returncode == 1
    assert f"does not answer at http://{served.address}/healthz" in gone.stderr
