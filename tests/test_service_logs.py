"""The service's log lines, as an operator reads and parses them: DBHEALTH_LOG_FORMAT (plain,
logfmt, json) with timestamps that carry their UTC offset; no WARNING line per refused request;
one WARNING line at start when the service watches only its demo database."""

import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest
from dbhealth.serving.log_formats import JsonFormatter, LogfmtFormatter, PlainFormatter

from tests.serving import REPO, serve

LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)(?: |$)')


def parse_logfmt(line: str) -> dict[str, str]:
    pairs = LOGFMT_PAIR.findall(line)
    assert "".join(f"{k}={v} " for k, v in pairs).rstrip() == line, line  # nothing left over
    return {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}


def parse(line: str, log_format: str) -> dict[str, str]:
    """ts, level, logger, msg of one line in that format."""
    if log_format == "json":
        return json.loads(line)
    if log_format == "logfmt":
        return parse_logfmt(line)
    ts, level, logger, msg = line.split(" ", 3)
    return {"ts": ts, "level": level.lower(), "logger": logger, "msg": msg}


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBHEALTH_")}
    return {**env, "DJANGO_SETTINGS_MODULE": "dbhealth.settings", **extra}


@pytest.mark.parametrize("log_format", ["plain", "logfmt", "json"])
def test_every_line_parses_and_carries_its_time_zone(tmp_path, log_format):
    finished = subprocess.run(
        [sys.executable, "manage.py", "dbhealth"],
        cwd=REPO,
        env=environment(DBHEALTH_LOG_FORMAT=log_format, DBHEALTH_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    lines = finished.stderr.splitlines()
    assert lines
    records = [parse(line, log_format) for line in lines]
    for record in records:
        assert datetime.fromisoformat(record["ts"]).utcoffset() is not None
    assert {"level": "info", "logger": "dbhealth", "msg": "alias default (sqlite) is up"} in [
        {key: record[key] for key in ("level", "logger", "msg")} for record in records
    ]


@pytest.mark.parametrize(
    ("formatter", "parser"),
    [(JsonFormatter(), json.loads), (LogfmtFormatter(), parse_logfmt)],
)
def test_a_traceback_and_odd_characters_stay_on_one_parsable_line(formatter, parser):
    try:
        raise RuntimeError('a "quoted"\nmessage')
    except RuntimeError:
        record = logging.LogRecord(
            "dbhealth", logging.ERROR, __file__, 1, 'probe of %s failed: x=1 "y"\n', ("a b",),
            sys.exc_info(),
        )  # fmt: skip
    line = formatter.format(record)
    assert "\n" not in line
    parsed = parser(line)
    assert parsed["msg"] == 'probe of a b failed: x=1 "y"\n'
    assert parsed["level"] == "error" and parsed["logger"] == "dbhealth"
    assert parsed["exc"].startswith("Traceback") and 'RuntimeError: a "quoted"' in parsed["exc"]


def test_the_plain_format_keeps_its_shape_with_an_offset():
    record = logging.LogRecord("dbhealth", logging.INFO, __file__, 1, "hello", (), None)
    ts, level, logger, message = PlainFormatter().format(record).split(" ", 3)
    assert datetime.fromisoformat(ts).utcoffset() is not None
    assert (level, logger, message) == ("INFO", "dbhealth", "hello")


def test_an_unknown_format_is_one_line(tmp_path):
    finished = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=environment(DBHEALTH_LOG_FORMAT="xml", DBHEALTH_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 1
    assert finished.stderr == (
        "dbhealth: DBHEALTH_LOG_FORMAT='xml': expected one of plain, logfmt, json\n"
    )


def records(log_text: str) -> list[dict[str, str]]:
    """Every line of a service's log under DBHEALTH_LOG_FORMAT=json (each must parse)."""
    return [json.loads(line) for line in log_text.splitlines() if line]


def test_refused_requests_are_not_a_warning_line_each_and_the_demo_is_said_once(tmp_path):
    log = tmp_path / "service.log"
    env = {
        "DBHEALTH_LOG_FORMAT": "json",
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "DBHEALTH_AUTH_TOKEN": "the-token",
        "DBHEALTH_CONFIG": "",
    }
    with serve(env, log, "/livez") as served:
        for _ in range(20):
            assert served.get("/nowhere")[0] == 401  # unknown paths ask for the token too
            assert served.get("/", headers={"Authorization": "Bearer wrong"})[0] == 401
            assert served.get("/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401
            assert served.get("/metrics")[0] == 401
        token = {"Authorization": "Bearer the-token"}
        assert served.get("/nowhere", headers=token)[0] == 404
        status, text = served.get("/metrics", headers=token)
        assert status == 200
        [build] = [line for line in text.splitlines() if line.startswith("dbhealth_build_info{")]
        assert 'demo="true"' in build
    warnings = [r for r in records(log.read_text()) if r["level"] in ("warning", "error")]
    assert [r["logger"] for r in warnings] == ["dbhealth", "dbhealth"], warnings
    demo, refused = warnings
    assert "demo SQLite database" in demo["msg"] and str(tmp_path / "data") in demo["msg"]
    assert refused["msg"].startswith("refused 1 request(s) with a wrong token or password")


def test_a_configured_service_says_nothing_of_a_demo(tmp_path):
    database = tmp_path / "app.sqlite3"
    database.touch()
    config = tmp_path / "dbhealth.toml"
    config.write_text(f'[databases.app]\nURL = "sqlite:///{database}"\n')
    log = tmp_path / "service.log"
    env = {"DBHEALTH_LOG_FORMAT": "json", "DBHEALTH_CONFIG": str(config)}
    with serve(env, log, "/livez") as served:
        text = served.get("/metrics")[1]
    [build] = [line for line in text.splitlines() if line.startswith("dbhealth_build_info{")]
    assert 'demo="false"' in build
    assert not any("demo" in r["msg"] for r in records(log.read_text()))
