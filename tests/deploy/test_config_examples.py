"""The example files of config/ that the other tests do not load: the web configuration loads as
dbhealth reads it, with the files it names, and its example user's password is the documented one.
The Alertmanager example passes amtool as shipped (tests/test_alert_delivery.py runs it in a real
Alertmanager with its receivers pointed at a webhook); config/prometheus/ is checked by promtool
in tests/prometheus/test_rules.py."""

import shutil
import subprocess
from pathlib import Path

import pytest
from dbhealth.serving.web_config import load_web_config

from tests.serving import REPO

WEB_CONFIG = REPO / "config" / "web-config.example.yml"


def test_the_web_config_example_loads_with_its_files_and_documented_user(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing: apt-get install openssl")
    copy = tmp_path / WEB_CONFIG.name
    shutil.copy(WEB_CONFIG, copy)
    (tmp_path / "tls").mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "tls/dbhealth.key", "-out", "tls/dbhealth.crt",
         "-subj", "/CN=dbhealth", "-days", "2"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    config = load_web_config(copy)
    assert config.tls is not None
    assert config.users is not None and len(config.users) == 1
    assert config.users.check("prometheus", "change this password")
    assert not config.users.check("prometheus", "another password")
    assert ("X-Content-Type-Options", "nosniff") in config.headers
    assert config.notes == ()


def test_the_alertmanager_example_passes_amtool() -> None:
    """Its receivers as shipped (tests/test_alert_delivery.py replaces them with a webhook)."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is missing: apt-get install prometheus-alertmanager")
    example = REPO / "config" / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
