"""DBHEALTH_LOG_FORMAT: the service's log lines as plain text (the default), logfmt or JSON.

Like the Go exporters' --log.format (logfmt, json), for log pipelines that parse lines. Every
format carries the same fields: the time in ISO 8601 with its UTC offset (ms precision), the
level, the logger and the message, plus the traceback when there is one. One record is one line
in logfmt and JSON (newlines in a message or traceback are escaped); plain text is for people.
"""

import json
import logging
from datetime import datetime

SETTING = "DBHEALTH_LOG_FORMAT"


def timestamp(record: logging.LogRecord) -> str:
    """The time in the local time zone with its offset: 2026-12-07T05:16:20.123+00:00."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    values = {
        "ts": timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        values["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        values["exc"] = record.exc_text
    return values


class PlainFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> <message>`, the traceback on the lines after."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record)


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=dbhealth msg="..."`: values quoted when they need it."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{key}={logfmt_value(value)}" for key, value in fields(record, self).items()
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: {"ts": ..., "level": ..., "logger": ..., "msg": ...}."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record, self), ensure_ascii=False)


def logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\') and value.isprintable():
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


FORMATTERS = {
    "plain": "dbhealth.serving.log_formats.PlainFormatter",
    "logfmt": "dbhealth.serving.log_formats.LogfmtFormatter",
    "json": "dbhealth.serving.log_formats.JsonFormatter",
}


def formatter_for(name: str) -> str:
    """The formatter class (a dotted path for LOGGING's "()") of a DBHEALTH_LOG_FORMAT value;
    ValueError with a one-line reason for any other."""
    chosen = (name or "plain").strip().lower()
    if chosen not in FORMATTERS:
        raise ValueError(f"{SETTING}={name!r}: expected one of {', '.join(FORMATTERS)}")
    return FORMATTERS[chosen]
