"""The `dbhealth` console command and the wheel it comes in."""

import json
import os
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

from dbhealth.exposition.build_info import checkout_revision

REPO = Path(__file__).resolve().parents[1]
COMMAND = Path(sys.executable).with_name("dbhealth")
SHOW_LABELS = """
import json, dbhealth
from dbhealth.exposition.build_info import static_labels
print(json.dumps({"file": dbhealth.__file__, **static_labels()}))
"""


def run(*arguments: str, cwd: Path, env: dict[str, str] | None = None):
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [str(COMMAND), *arguments],
        cwd=cwd,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_version(tmp_path):
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "dbhealth 0.1.0"


def test_serve_version_is_dbhealths_not_djangos(tmp_path):
    env = {"DBHEALTH_DATA_DIR": str(tmp_path)}
    through_cli = run("serve", "--version", cwd=tmp_path, env=env)
    environment = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "dbhealth.settings"}
    through_manage = subprocess.run(
        [sys.executable, "manage.py", "serve", "--version"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for result in (through_cli, through_manage):
        assert result.returncode == 0, result.stderr
        assert result.stdout == "dbhealth 0.1.0\n"


def test_probe_once_as_json_on_the_demo_database(tmp_path):
    result = run("probe", "--json", cwd=tmp_path, env={"DBHEALTH_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["aliases"]["default"]["up"] is True


def test_rules_writes_what_the_package_ships(tmp_path):
    out = tmp_path / "out"
    result = run("rules", "--out", str(out), cwd=tmp_path, env={"DBHEALTH_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    package = resources.files("dbhealth.config_files")
    assert (out / "rules.yml").read_bytes() == package.joinpath("prometheus/rules.yml").read_bytes()
    assert (out / "prometheus.yml").exists() and (out / "dbhealth.example.toml").exists()


def test_commands_that_do_not_probe_write_no_demo_database(tmp_path):
    """Without a configuration file only probing creates the demo database: asking for the
    version, the rules, the dashboards or the system checks leaves the data directory alone."""
    data = tmp_path / "data"
    env = {"DBHEALTH_DATA_DIR": str(data)}
    for arguments in (
        ["--version"],
        ["rules", "--out", str(tmp_path / "rules")],
        ["dashboards", "--out", str(tmp_path / "dashboards")],
        ["check"],
    ):
        result = run(*arguments, cwd=tmp_path, env=env)
        assert result.returncode == 0, (arguments, result.stderr)
    assert not data.exists()
    assert run("probe", "--json", cwd=tmp_path, env=env).returncode == 0
    assert (data / "demo.sqlite3").exists()


def test_an_unknown_command_is_one_line(tmp_path):
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unknown command 'frobnicate'" in result.stderr


def test_the_wheel_installs_one_top_level_package_with_its_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = tmp_path.glob("dbhealth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {
        name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")
    }
    assert tops == {"dbhealth"}
    for data in (
        "dbhealth/config_files/prometheus/rules.yml",
        "dbhealth/config_files/prometheus/prometheus.yml",
        "dbhealth/config_files/dbhealth.example.toml",
        "dbhealth/templates/dbhealth/status.html",
    ):
        assert data in names
    for package in (REPO / "exporter").rglob("__init__.py"):
        assert str(package.relative_to(REPO / "exporter")) in names, "add it to pyproject.toml"
    assert "dbhealth/config_files/prometheus/rules_test.yml" in names
    [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "dbhealth = dbhealth.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # The revision it was built from, recorded by setup.py, is what the installed package says.
    revision = checkout_revision(REPO)
    assert len(revision) == 40
    assert zipfile.ZipFile(wheel).read("dbhealth/REVISION").decode() == revision + "\n"
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=600,
    )
    installed = subprocess.run(
        [sys.executable, "-c", SHOW_LABELS],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site), "DBHEALTH_REVISION": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    labels = json.loads(installed.stdout)
    assert labels["file"].startswith(str(site))
    assert labels["revision"] == revision
