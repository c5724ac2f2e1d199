"""dbhealth installs beside a host project's own pin of uvicorn (one popular project pins
uvicorn<0.33): uvicorn is the `serve` extra, and `serve` without it says what to install.

Installs into a virtualenv of its own with pip, as a host's deployment would; pip's cache makes
a second run work offline.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.serving import REPO
from tests.support.ports import free_port

HOST_PIN = "uvicorn<0.33"
# What pip needs of the checkout to build dbhealth (no tests, no virtualenvs, no results).
SOURCE = ("pyproject.toml", "README.md", "LICENSE", "exporter", "config")


@pytest.fixture(scope="module")
def host_venv(tmp_path_factory) -> Path:
    """A virtualenv holding the host's pin and dbhealth installed from this checkout."""
    root = tmp_path_factory.mktemp("pinned-host")
    source = root / "dbhealth-source"
    source.mkdir()
    for name in SOURCE:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    environment = root / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-input", HOST_PIN, str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return environment


def run_django(environment: Path, tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`python -m django ARGS` in the host's virtualenv, away from the checkout (so the
    installed dbhealth is the one imported)."""
    env = {
        "PATH": f"{environment / 'bin'}:/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "dbhealth.settings",
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        [str(environment / "bin" / "python"), "-m", "django", *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def installed_version(environment: Path, distribution: str) -> str:
    return subprocess.run(
        [
            str(environment / "bin" / "python"),
            "-c",
            f"import sys, importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_installing_dbhealth_keeps_the_hosts_uvicorn(host_venv):
    version = installed_version(host_venv, "uvicorn")
    assert tuple(int(part) for part in version.split(".")[:2]) < (0, 33), version


def test_the_hosts_commands_and_the_cli_run_beside_an_old_uvicorn(host_venv, tmp_path):
    check = run_django(host_venv, tmp_path, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    probed = run_django(host_venv, tmp_path, "dbhealth", "--json")
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert '"status": "ok"' in probed.stdout


def test_serve_names_the_extra_it_needs_in_one_line(host_venv, tmp_path):
    version = installed_version(host_venv, "uvicorn")
    # Were it to serve, it would serve here until the timeout failed the test.
    served = run_django(host_venv, tmp_path, "serve", "--bind", f"127.0.0.1:{free_port()}")
    assert served.returncode == 1
    assert served.stdout == ""
    assert served.stderr.count("\n") == 1, served.stderr
    assert "pip install 'dbhealth[serve]'" in served.stderr
    assert f"uvicorn {version} is installed" in served.stderr


def test_serve_without_uvicorn_names_the_extra(host_venv, tmp_path):
    """The same message when uvicorn is not there at all (a host served by gunicorn alone)."""
    environment = tmp_path / "venv-without-uvicorn"
    # A copy of the host's virtualenv would carry absolute paths: make a second one that sees
    # the first's packages but not uvicorn, through a .pth of the first's site-packages minus it.
    venv.create(environment, with_pip=False)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    shadow = tmp_path / "site"
    shutil.copytree(host_venv / "lib" / version / "site-packages", shadow)
    for path in shadow.glob("uvicorn*"):
        shutil.rmtree(path)
    (environment / "lib" / version / "site-packages" / "host.pth").write_text(f"{shadow}\n")
    served = run_django(environment, tmp_path, "serve", "--bind", f"127.0.0.1:{free_port()}")
    assert served.returncode == 1
    assert served.stderr.count("\n") == 1, served.stderr
    assert "pip install 'dbhealth[serve]'" in served.stderr
    assert "uvicorn is not installed" in served.stderr
    assert os.path.isdir(host_venv / "lib" / version / "site-packages" / "uvicorn")
