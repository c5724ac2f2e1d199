"""/sd hands Prometheus one /probe target per alias; hashmod sharding splits them across replicas.

Two exporter replicas (`manage.py serve`, same configuration) and two Prometheus servers, each
discovering its replica's targets over http_sd_configs and keeping its share with hashmod: each
scrapes, and each replica probes, only its share, and together they cover every alias.
"""

import hashlib
import json
import re
import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path

from tests.serving import serve

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


def rounds(text: str) -> float:
    return float(re.search(r"^dbhealth_probe_rounds_total (\S+)$", text, re.MULTILINE).group(1))


def last_successes(text: str) -> dict[str, float]:
    pattern = r'^dbhealth_last_success_timestamp_seconds\{alias="(\w+)"\} (\S+)$'
    return {alias: float(at) for alias, at in re.findall(pattern, text, re.MULTILINE)}


def write_config(directory: Path) -> Path:
    # An alias probed once is not probed again within the hour: a replica's own /metrics then
    # tells the aliases it had probed before (older last success) from those it had never probed.
    lines = ["[dbhealth]", "min_interval = 3600", ""]
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
    environment = {"DBHEALTH_CONFIG": str(config)}
    with serve(environment, tmp_path / "service.log", "/sd") as served:
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
            environment = {"DBHEALTH_CONFIG": str(config)}
            log = tmp_path / f"service-{shard}.log"
            served = stack.enter_context(serve(environment, log, "/sd"))
            prometheus = make_prometheus(
                PROMETHEUS_CONFIG.format(sd_url=f"{served.url}/sd", shards=SHARDS, shard=shard)
            )
            replicas.append((served, prometheus))

        for shard, (served, prometheus) in enumerate(replicas):
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
            # The replica itself never probed an alias of the other shard: one round per alias
            # of its own share so far (read from /probe of one of them, which probes nothing
            # now), and its own /metrics, which probes every alias not probed yet, shows only its
            # share as probed before it was asked.
            status, text = served.get(f"/probe?alias={min(expected[shard])}")
            assert status == 200, text
            assert rounds(text) == len(expected[shard])
            asked_at = time.time()
            status, text = served.get("/metrics")
            assert status == 200, text
            successes = last_successes(text)
            assert set(successes) == set(ALIASES)
            assert {alias for alias, at in successes.items() if at < asked_at} == expected[shard]
            assert rounds(text) == len(expected[shard]) + 1

    assert set().union(*expected.values()) == set(ALIASES)
