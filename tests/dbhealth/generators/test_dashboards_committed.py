"""The dashboards committed in dashboards/ are exactly what the example config generates.

Regenerate them after changing dbhealth.generators.dashboards or config/dbhealth.example.toml:
DBHEALTH_CONFIG=config/dbhealth.example.toml (with the DBHEALTH_*_PASSWORD
variables it names set to anything) python manage.py dashboards --out dashboards/
"""

import tomllib
from pathlib import Path

from dbhealth.configuration.toml_file import load_config_file
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "dbhealth.example.toml"
COMMITTED = ROOT / "dashboards"


def password_variables(config: Path) -> list[str]:
    entries = tomllib.loads(config.read_text())["databases"].values()
    return [entry["PASSWORD_ENV"] for entry in entries if isinstance(entry, dict)]


def test_committed_dashboards_match_the_example_config(
    tmp_path: Path, monkeypatch, exporter_settings
) -> None:
    # Without its passwords an alias is unusable and its vendor unknown.
    for variable in password_variables(EXAMPLE):
        monkeypatch.setenv(variable, "not-a-secret")
    loaded = load_config_file(EXAMPLE)
    exporter_settings(loaded.databases, **loaded.defaults)
    call_command("dashboards", "--out", str(tmp_path), stdout=(tmp_path / "written").open("w"))

    generated = {path.name: path.read_text() for path in tmp_path.glob("*.json")}
    committed = {path.name: path.read_text() for path in COMMITTED.glob("*.json")}
    assert sorted(generated) == sorted(committed)
    stale = [name for name in generated if generated[name] != committed[name]]
    assert stale == [], f"regenerate dashboards/ (see {Path(__file__).name}): {stale}"
