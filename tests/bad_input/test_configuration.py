"""Bad configuration: a broken file stops start-up in one line; a broken alias is down `config`."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.serving import manage as manage_py
from tests.serving import serve
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def manage(config: Path, *args: str) -> subprocess.CompletedProcess:
    directory = config.parent
    env = {
        **os.environ,
        "DBHEALTH_CONFIG": str(config),
        "DBHEALTH_DATA_DIR": str(directory / "data"),
    }
    return manage_py(list(args), env)


@pytest.fixture
def broken_aliases(tmp_path, postgres) -> Path:
    (tmp_path / "secret-dir").mkdir()
    good = tmp_path / "good.sqlite3"
    good.write_bytes(b"")
    pg = f'HOST = "127.0.0.1"\nPORT = {postgres.port}\nUSER = "monitor"'
    config = tmp_path / "dbhealth.toml"
    config.write_text(
        f"""
[databases.good]
ENGINE = "django.db.backends.sqlite3"
NAME = "{good}"
[databases.unknown_engine]
ENGINE = "django.db.backends.nosuch"
NAME = "x"
[databases.not_installed]
ENGINE = "django.db.backends.oracle"
NAME = "x"
[databases.no_name]
ENGINE = "django.db.backends.postgresql"
{pg}
[databases.bad_port]
ENGINE = "django.db.backends.postgresql"
NAME = "app"
HOST = "127.0.0.1"
PORT = "54x"
[databases.options_not_a_table]
ENGINE = "django.db.backends.postgresql"
NAME = "app"
OPTIONS = "sslmode=require"
[databases.options_rejected]
ENGINE = "django.db.backends.postgresql"
NAME = "app"
{pg}
OPTIONS = {{ no_such_option = "x" }}
[databases.unreadable_password]
ENGINE = "django.db.backends.postgresql"
NAME = "app"
{pg}
PASSWORD_FILE = "secret-dir"
"""
    )
    return config


# Alias -> words its one-line reason must contain (the key, and what is wrong with it).
EXPECTED = {
    "unknown_engine": ["ENGINE", "django.db.backends.nosuch"],
    "not_installed": ["ENGINE", "django.db.backends.oracle", "cannot be loaded"],
    "no_name": ["NAME is missing"],
    "bad_port": ["PORT", "'54x'"],
    "options_not_a_table": ["OPTIONS must be a mapping"],
    "unreadable_password": ["PASSWORD_FILE", "Is a directory"],
}


def test_unusable_aliases_are_down_with_reason_config_and_the_others_work(broken_aliases):
    result = manage(broken_aliases, "dbhealth", "--json")
    assert result.returncode == 2, result.stderr
    rows = json.loads(result.stdout)["aliases"]
    assert rows["good"]["up"] is True
    for alias, words in EXPECTED.items():
        assert (rows[alias]["up"], rows[alias]["reason"]) == (False, "config"), alias
        assert all(word in rows[alias]["message"] for word in words), rows[alias]["message"]
    # Only the driver knows its options: found on the first connection attempt, still `config`.
    assert rows["options_rejected"]["reason"] == "config"
    assert "no_such_option" in rows["options_rejected"]["message"]
    assert "Traceback" not in result.stdout + result.stderr


def test_system_checks_report_the_same_problems(broken_aliases):
    # Warnings for `check` (a host's CI has no monitoring secrets), errors for `check --deploy`.
    assert manage(broken_aliases, "check").returncode == 0
    result = manage(broken_aliases, "check", "--deploy")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    for alias, words in EXPECTED.items():
        line = next(line for line in output.splitlines() if f"database alias '{alias}'" in line)
        assert all(word in line for word in words), line
    assert "'good'" not in output
    assert "Traceback" not in output


UNUSABLE_FILES = [
    ("[databases\nx = 1\n", "not valid TOML"),
    ('[dbhealth]\ndeadline = "soon"\n[databases]\na = "sqlite:///a"\n', "deadline"),
    ('[dbhealth]\nrefresh_interval = 0\n[databases]\na = "sqlite:///a"\n', "refresh_interval"),
    ('[databse]\na = "sqlite:///a"\n', "databse"),
    ("[databases]\n", "no [databases"),
]


@pytest.mark.parametrize(("text", "words"), UNUSABLE_FILES)
@pytest.mark.parametrize("command", [["check"], ["dbhealth"], ["serve"]])
def test_an_unusable_file_stops_the_commands_with_one_line(tmp_path, text, words, command):
    config = tmp_path / "dbhealth.toml"
    config.write_text(text)
    if command == ["serve"]:
        # Were it to serve, it would serve here, and the test would fail on manage()'s timeout.
        command = [*command, "--bind", f"127.0.0.1:{free_port()}"]
    result = manage(config, *command)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("dbhealth: ") and str(config) in result.stderr
    assert words in result.stderr


def test_serve_reports_broken_aliases_and_serves_the_others(broken_aliases):
    log = broken_aliases.parent / "service.log"
    with serve({"DBHEALTH_CONFIG": str(broken_aliases)}, log, "/sd") as served:
        status, text = served.get("/metrics")
    assert status == 200
    assert 'dbhealth_up{alias="good",vendor="sqlite"} 1.0' in text
    for alias in EXPECTED:
        assert f'dbhealth_down_reason{{alias="{alias}",reason="config"}} 1.0' in text, alias
    # The system checks ran before serving and named every broken alias, without a traceback.
    output = log.read_text()
    for alias, words in EXPECTED.items():
        line = next(line for line in output.splitlines() if f"database alias '{alias}'" in line)
        assert "(dbhealth.W003)" in line and all(word in line for word in words), line
    assert "Traceback" not in output


def test_an_unreadable_config_file_names_itself(tmp_path):
    missing = tmp_path / "nowhere.toml"
    result = manage(missing, "check")
    assert result.returncode == 1
    reason = "cannot read the file (No such file or directory)"
    assert result.stderr == f"dbhealth: DBHEALTH_CONFIG {missing}: {reason}\n"
