"""The container image's recipe: lint-clean, a minimal build context, a read-only root filesystem,
labelled, and a HEALTHCHECK that tells a dead exporter from a live one watching a dead database.

No Docker engine is needed (none is on the test machines): hadolint reads the Dockerfile, and the
service and the healthcheck script run here with the image's environment and command, under a
watch that reports every attempt to write a file.
"""

import json
import re
import shlex
import sqlite3
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serving import REPO, serve, served_process
from tests.support.ports import free_port

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILE = REPO / "Dockerfile"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
CHECK_IMAGE = REPO / "scripts" / "check-image"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment line inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image's own stage, the last FROM onwards."""
    parsed = instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def assignments(keyword: str) -> dict[str, str]:
    """ARG defaults or ENV values of the final stage, `${NAME}` resolved from its ARG defaults."""
    values: dict[str, str] = {}
    arguments: dict[str, str] = {}
    for found, text in final_stage():
        if found not in ("ARG", "ENV", "LABEL"):
            continue
        for word in shlex.split(text):
            name, _, value = word.partition("=")
            value = re.sub(r"\$\{(\w+)\}", lambda m: arguments.get(m.group(1), ""), value)
            if found == "ARG":
                arguments[name] = value
            if found == keyword:
                values[name] = value
    return values


def image_command() -> list[str]:
    [cmd] = [text for keyword, text in final_stage() if keyword == "CMD"]
    return json.loads(cmd)


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
    dockerfile = DOCKERFILE.read_text()
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
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    # `python -m dbhealth`: the dbhealth command, which reports a configuration problem in one line.
    # No access log by default: a line per scrape and per healthcheck is noise, not news.
    assert image_command() == ["python", "-m", "dbhealth", "serve"]
    env = assignments("ENV")
    assert env["DJANGO_SETTINGS_MODULE"] == "dbhealth.settings"
    assert env["DBHEALTH_CONFIG"] == "/etc/dbhealth/dbhealth.toml"
    # The service listens where it is exposed, and the HEALTHCHECK follows DBHEALTH_BIND there.
    host, _, port = env["DBHEALTH_BIND"].rpartition(":")
    assert host == "0.0.0.0"
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.MULTILINE)
    # One process keeps its state in memory: no worker settings, no state directory.
    for gone in ("gunicorn", "GUNICORN_CMD_ARGS", "DBHEALTH_STATE_DIR", "/state"):
        assert gone not in dockerfile, gone


def test_the_user_and_group_10001_both_have_a_name():
    [setup] = [text for keyword, text in final_stage() if "useradd" in text]
    assert re.search(r"groupadd (--\S+ )*--gid 10001 (--\S+ )*dbhealth\b", setup), setup
    useradd = setup[setup.index("useradd") :].split("&&")[0]
    assert "--uid 10001" in useradd
    assert re.search(r"--gid (dbhealth|10001)\b", useradd), useradd
    assert "--user-group" not in useradd  # that would give the group an arbitrary gid
    # The group is created before the user that joins it.
    assert setup.index("groupadd") < setup.index("useradd")


def test_no_layer_keeps_the_wheels():
    lines = DOCKERFILE.read_text().splitlines()
    # RUN --mount is BuildKit syntax: the frontend is named so that older Dockers read it.
    assert lines[0] == "# syntax=docker/dockerfile:1"
    stage = final_stage()
    assert not [text for keyword, text in stage if keyword == "COPY" and "/wheels" in text]
    [install] = [text for keyword, text in stage if keyword == "RUN" and "pip install" in text]
    assert install.startswith("--mount=type=bind,from=build,source=/wheels,target=/wheels ")
    assert "--no-index --find-links=/wheels" in install
    assert "rm -rf /wheels" not in install  # nothing to remove: the mount is gone after the step
    # The image's command is `dbhealth serve`: its server (uvicorn) is the serve extra.
    assert '"dbhealth[serve,' in install
    build = instructions(DOCKERFILE.read_text())
    assert ("FROM", "python:3.11-slim-bookworm AS build") in build
    assert any(k == "RUN" and "--wheel-dir /wheels" in text for k, text in build)


def test_the_wheels_are_built_where_they_are_installed():
    """The build stage compiles mysqlclient for the final stage's Python and C library: both stages
    start from the same image. And the package build reads the files pyproject.toml names."""
    build = instructions(DOCKERFILE.read_text())
    bases = {text.split()[0] for keyword, text in build if keyword == "FROM"}
    assert bases == {"python:3.11-slim-bookworm"}
    copied = [
        source
        for keyword, text in build
        if keyword == "COPY" and "--from=" not in text
        for source in text.split()[:-1]
    ]
    for needed in ("pyproject.toml", PYPROJECT["readme"], *PYPROJECT["license-files"]):
        assert needed in copied, needed


def test_oci_labels_describe_the_image():
    labels = assignments("LABEL")
    arguments = assignments("ARG")
    assert labels["org.opencontainers.image.title"] == PYPROJECT["name"]
    assert labels["org.opencontainers.image.description"] == PYPROJECT["description"]
    # pyproject.toml names no licence: the image declares Apache-2.0 until it does.
    licence = PYPROJECT.get("license", "Apache-2.0")
    assert labels["org.opencontainers.image.licenses"] == licence
    # Build arguments fill these; the version's default is the package's own.
    assert arguments["VERSION"] == PYPROJECT["version"]
    text = DOCKERFILE.read_text()
    for label, argument in (
        ("version", "VERSION"),
        ("revision", "REVISION"),
        ("source", "SOURCE"),
        ("created", "CREATED"),
    ):
        assert f'org.opencontainers.image.{label}="${{{argument}}}"' in text
        # ...and the documented build command, and scripts/check-image, pass each one.
        assert f"--build-arg {argument}=" in text or argument == "VERSION"
        assert f"--build-arg {argument}=" in CHECK_IMAGE.read_text() or argument == "VERSION"
    # The revision also reaches dbhealth_build_info (dbhealth.exposition.build_info).
    assert "DBHEALTH_REVISION=${REVISION}" in text


def test_healthcheck_is_documented_as_docker_format_only():
    text = DOCKERFILE.read_text()
    [check] = [text for keyword, text in final_stage() if keyword == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "/usr/local/lib/dbhealth/healthcheck.py"]')
    assert "COPY docker/healthcheck.py /usr/local/lib/dbhealth/healthcheck.py" in text
    # Podman and Buildah drop HEALTHCHECK from OCI-format images: say how to keep it.
    assert "--format docker" in text


def test_image_is_read_only_friendly():
    env = assignments("ENV")
    # Python would cache compiled modules next to them: not on a read-only root filesystem.
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # With a configuration file (expected at DBHEALTH_CONFIG) no demo database is created.
    assert env["DBHEALTH_CONFIG"]
    keywords = {keyword for keyword, _ in final_stage()}
    assert "VOLUME" not in keywords  # nothing to keep
    assert "--read-only" in DOCKERFILE.read_text()


# Run before the service: reports every attempt to create, change or remove a file, through
# Python's audit hooks (PEP 578), which see every open() and file operation the process makes,
# its libraries' included. SQLite opens files in C: sqlite3.connect is reported unless read-only.
WATCH_WRITES = """
import os, runpy, sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.truncate",
    "os.chmod", "os.chown", "os.utime", "shutil.copyfile", "shutil.copytree", "shutil.move",
    "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp",
}

def report(event, target):
    os.write(2, f"WRITE-ATTEMPT {event} {target!r}\\n".encode())

def watch(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or str(path).startswith("/dev/"):
            return
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & WRITE_FLAGS
        if writes:
            report(event, path)
    elif event in CHANGES:
        report(event, args[0])
    elif event == "sqlite3.connect":
        database = str(args[0])
        read_only = "mode=ro" in database or "immutable=1" in database
        if not (database.startswith("file:") and read_only):
            report(event, database)

sys.addaudithook(watch)
os.write(2, b"WATCHING WRITES\\n")
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""


def run_image_command(tmp_path: Path, config: str, paths: list[str]) -> str:
    """The image's CMD, with the image's ENV, under the write watch; the log once it stopped."""
    watch = tmp_path / "watch_writes.py"
    watch.write_text(WATCH_WRITES)
    python, flag, module, *arguments = image_command()
    assert (python, flag) == ("python", "-m")
    address = f"127.0.0.1:{free_port()}"
    (tmp_path / "home").mkdir()
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO / "exporter"),  # the image installs dbhealth into site-packages
        **assignments("ENV"),
        "DBHEALTH_CONFIG": config,
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "DBHEALTH_BIND": address,
    }
    log = tmp_path / "service.log"
    command = [sys.executable, str(watch), module, *arguments]
    with served_process("image command", command, environment, log, address, "/livez") as served:
        for path in paths:
            status, _ = served.get(path)
            assert status in (200, 503), (path, status)
    return log.read_text()


def test_nothing_is_written_while_serving_every_endpoint(tmp_path):
    """With the image's environment and a configuration file the service writes no file at all:
    `docker run --read-only` and Kubernetes' readOnlyRootFilesystem need no writable path."""
    cache = tmp_path / "cache.sqlite3"
    with sqlite3.connect(cache) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    connection.close()
    config = tmp_path / "dbhealth.toml"
    # Every vendor's probe runs: PostgreSQL and MySQL refuse (nothing listens), SQLite answers.
    config.write_text(
        f"""
[databases.default]
URL = "postgres://dbhealth@127.0.0.1:{free_port()}/app"
[databases.legacy_db]
URL = "mysql://dbhealth@127.0.0.1:{free_port()}/legacy"
[databases]
cache_db = "sqlite:///{cache}"
"""
    )
    paths = ["/livez", "/readyz", "/metrics", "/probe?alias=cache_db", "/healthz", "/sd", "/"]
    log = run_image_command(tmp_path, str(config), paths)
    assert "WATCHING WRITES" in log
    assert "GET /probe" not in log  # the image's command keeps no access log
    assert "WRITE-ATTEMPT" not in log, log
    # Only what the test made itself: no data directory, no journal beside the SQLite file.
    made = {"cache.sqlite3", "dbhealth.toml", "watch_writes.py", "home", "service.log"}
    assert {path.name for path in tmp_path.iterdir()} == made
    assert not any((tmp_path / "home").iterdir())


def test_a_missing_configuration_file_stops_the_image_command_in_one_line(tmp_path):
    _, flag, module, *arguments = image_command()
    missing = tmp_path / "dbhealth.toml"
    result = subprocess.run(
        [sys.executable, flag, module, *arguments],
        cwd=tmp_path,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            **assignments("ENV"),
            "DBHEALTH_CONFIG": str(missing),
            "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"dbhealth: DBHEALTH_CONFIG {missing}: cannot read the file (No such file or directory)\n"
    )


def test_the_write_watch_sees_the_demo_database_being_created(tmp_path):
    """The watch works: without a configuration file the demo database is created, the one thing
    the service ever writes (so the image expects DBHEALTH_CONFIG)."""
    log = run_image_command(tmp_path, "", ["/livez", "/metrics"])
    demo = tmp_path / "data" / "demo.sqlite3"
    assert f"WRITE-ATTEMPT os.mkdir {str(demo.parent)!r}" in log, log
    assert f"WRITE-ATTEMPT sqlite3.connect {str(demo)!r}" in log, log


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
    # Every other endpoint needs the token; the HEALTHCHECK has none and needs none.
    environment = {"DBHEALTH_CONFIG": str(config), "DBHEALTH_AUTH_TOKEN": "s3cret"}
    with serve(environment, tmp_path / "service.log", "/livez") as served:
        assert served.get("/healthz")[0] == 401
        authorized = urllib.request.Request(
            served.url + "/healthz", headers={"Authorization": "Bearer s3cret"}
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(authorized, timeout=30)
        assert answer.value.code == 503
        port = served.address.rpartition(":")[2]
        passed = healthcheck(None, DBHEALTH_BIND=f"0.0.0.0:{port}")
        assert (passed.returncode, passed.stderr) == (0, "")
        # Only a 200 counts: an override aimed at a guarded endpoint fails, and says why.
        refused = healthcheck(served.url + "/healthz")
        assert refused.returncode == 1
        assert f"answered 401 at {served.url}/healthz" in refused.stderr
    nobody = healthcheck(f"http://127.0.0.1:{free_port()}/livez")
    assert nobody.returncode == 1
    assert "does not answer" in nobody.stderr


def test_healthcheck_calls_livez_at_the_address_in_dbhealth_bind(tmp_path):
    with serve(
        {"DBHEALTH_DATA_DIR": str(tmp_path / "data")},
        tmp_path / "service.log",
        "/livez",
        access_log=True,
    ) as served:
        port = served.address.rpartition(":")[2]
        # As in the image: the service listens on every address, the check calls the loopback one.
        assert healthcheck(None, DBHEALTH_BIND=f"0.0.0.0:{port}").returncode == 0
        assert healthcheck(None, DBHEALTH_BIND=served.address).returncode == 0
        # The override still wins over DBHEALTH_BIND.
        elsewhere = f"http://127.0.0.1:{free_port()}/livez"
        assert healthcheck(elsewhere, DBHEALTH_BIND=served.address).returncode == 1
    calls = re.findall(r'"GET (\S+) HTTP/1\.1" (\d+)', served.log.read_text())
    assert calls[-2:] == [("/livez", "200"), ("/livez", "200")]
    gone = healthcheck(None, DBHEALTH_BIND=served.address)
    assert gone.returncode == 1
    assert f"does not answer at http://{served.address}/livez" in gone.stderr
