"""/sd hands Prometheus one /probe target per alias; hashmod sharding splits them across replicas.

Two exporter replicas (gunicorn, same configuration, own state) and two Prometheus servers, each
discovering its replica's targets over http_sd_configs and keeping its share with hashmod: each
scrapes, and each replica probes, only its share, and together they cover every alias.
"""

import hashlib
import json
import sqlite3
from contextlib import ExitStack
from pathlib import Path

from exporter.state_store import StateStore
from tests.serving import gunicorn

ALIASES = [f"tenant_{number:02d}" for number in range(8)]
SHARDS = 2

PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dbhealth_probe
    honor_labels: true
    http_sd_configs:
      - url: {sd_url}
    relabel_configs:
      - source_labels: [alias]
        modulus: {shards}
        target_label: __tmp_shard
        action: hashmod
      - source_labels: [__tmp_shard]
        regex: "{shard}"
        action: keep
"""


def prometheus_shard(alias: str, modulus: int) -> int:
    """Prometheus's hashmod: the last 8 bytes of the MD5 of the label value, big-endian."""
    return int.from_bytes(hashlib.md5(alias.encode()).digest()[8:], "big") % modulus


def write_config(directory: Path) -> Path:
    lines = ["[dbhealth]", "min_interval = 0", ""]
    for alias in ALIASES:
        path = directory / f"{alias}.sqlite3"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE t (id INTEGER)")
        connection.close()
        lines += [f"[databases.{alias}]", 'ENGINE = "django.db.backends.sqlite3"']
        lines += [f'NAME = "{path}"', ""]
    config = directory / "dbhealth.toml"
    config.write_text("\n".join(lines))
    return config


def test_sd_lists_one_probe_target_per_alias_at_the_address_asked(tmp_path):
    config = write_config(tmp_path)
    environment = {"DBHEALTH_CONFIG": str(config), "DBHEALTH_STATE_DIR": str(tmp_path / "state")}
    with gunicorn("config.wsgi", environment, tmp_path / "gunicorn.log", "/sd") as served:
        status, body = served.get("/sd")
    assert status == 200
    assert json.loads(body) == [
        {
            "targets": [served.address],
            "labels": {
                "alias": alias,
                "vendor": "sqlite",
                "__metrics_path__": "/probe",
                "__param_alias": alias,
            },
        }
        for alias in ALIASES
    ]


def test_hashmod_shards_split_the_aliases_between_exporter_replicas(tmp_path, make_prometheus):
    config = write_config(tmp_path)
    expected = {
        shard: {alias for alias in ALIASES if prometheus_shard(alias, SHARDS) == shard}
        for shard in range(SHARDS)
    }
    assert all(expected.values()), "the aliases should fall into both shards"
    with ExitStack() as stack:
        replicas = []
        for shard in range(SHARDS):
            state = tmp_path / f"state-{shard}"
            environment = {"DBHEALTH_CONFIG": str(config), "DBHEALTH_STATE_DIR": str(state)}
            log = tmp_path / f"gunicorn-{shard}.log"
            served = stack.enter_context(gunicorn("config.wsgi", environment, log, "/sd"))
            prometheus = make_prometheus(
                PROMETHEUS_CONFIG.format(sd_url=f"{served.url}/sd", shards=SHARDS, shard=shard)
            )
            replicas.append((served, state, prometheus))

        for shard, (served, state, prometheus) in enumerate(replicas):
            targets = prometheus.wait_for(
                lambda p=prometheus, s=shard: (
                    found
                    if len(found := p.targets()) == len(expected[s])
                    and all(t["health"] == "up" for t in found)
                    else None
                )
            )
            assert {t["labels"]["alias"] for t in targets} == expected[shard]
            assert {t["scrapeUrl"] for t in targets} == {
                f"{served.url}/probe?alias={alias}" for alias in expected[shard]
            }
            up = prometheus.query("dbhealth_up")["result"]
            assert {series["metric"]["alias"]: series["value"][1] for series in up} == {
                alias: "1" for alias in expected[shard]
            }
            # The replica itself never probed an alias of the other shard.
            assert set(StateStore(state).load().aliases) == expected[shard]

    assert set().union(*expected.values()) == set(ALIASES)
