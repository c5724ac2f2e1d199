"""Reloading the TOML configuration without a restart: on SIGHUP, or `POST /-/reload` when enabled.

Like Prometheus and Alertmanager: a file that cannot be used keeps the old configuration serving,
is logged in one line, and shows as `dbhealth_config_last_reload_successful 0`; a good one adds
and removes aliases while every unchanged alias keeps its connection and its counters. Only the
standalone service has a file to reload (DBHEALTH_CONFIG); a host project's settings are Python
and need a restart.
"""

import logging
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dbhealth.configuration.queries import configured_queries
from dbhealth.configuration.targets import (
    configured_targets,
    discovery_specs,
    load_targets,
    service_options,
)
from dbhealth.configuration.toml_file import load_config_file
from dbhealth.probing.service import probe_service
from dbhealth.serving.reload_outcome import ReloadOutcome

logger = logging.getLogger("dbhealth")


# The configuration in use was loaded when the process started.
status = ReloadOutcome("config", "configuration file")
# One reload at a time: SIGHUP and the endpoint may arrive together.
_reloading = threading.Lock()


class ReloadUnavailable(Exception):
    """There is no configuration file to reload."""


def config_file() -> Path | None:
    path = getattr(settings, "DBHEALTH_CONFIG_FILE", None)
    return Path(path) if path else None


def reload_configuration() -> None:
    """Re-read the file and apply it; ImproperlyConfigured (one line) when it cannot be used."""
    path = config_file()
    if path is None:
        raise ReloadUnavailable("no DBHEALTH_CONFIG file to reload: restart to change settings")
    with _reloading:
        name = f"DBHEALTH_CONFIG {path}"
        try:
            loaded = load_config_file(path)
        except ImproperlyConfigured as exc:
            status.failed(name, str(exc), every_time=True)
            raise
        discover = getattr(settings, "DBHEALTH_DISCOVER", {})
        previous = settings.DATABASES, settings.DBHEALTH_DEFAULTS, discover
        previous_queries = getattr(settings, "DBHEALTH_QUERIES", {})
        settings.DATABASES, settings.DBHEALTH_DEFAULTS = loaded.databases, loaded.defaults
        settings.DBHEALTH_DISCOVER = loaded.discover
        settings.DBHEALTH_QUERIES = loaded.queries
        load_targets.cache_clear()
        service_options.cache_clear()
        configured_queries.cache_clear()
        try:
            specs, options = discovery_specs(), service_options()
            targets = configured_targets()
        except (ImproperlyConfigured, ValueError) as exc:
            settings.DATABASES, settings.DBHEALTH_DEFAULTS, settings.DBHEALTH_DISCOVER = previous
            settings.DBHEALTH_QUERIES = previous_queries
            load_targets.cache_clear()
            service_options.cache_clear()
            configured_queries.cache_clear()
            status.failed(name, str(exc), every_time=True)
            raise ImproperlyConfigured(str(exc)) from None
        service = probe_service()
        service.reconfigure(load_targets(), options)
        service.sync_discovery(specs)
        status.succeeded(name, f"{len(targets)} aliases")


def install_sighup_handler() -> None:
    """SIGHUP asks for a reload; one thread (`dbhealth-reload`) does them, one at a time.

    A signal handler must not do the work, nor start a thread per signal (a storm of signals once
    started 2,429): it only raises a flag. Signals that arrive while a reload runs are coalesced
    into one more reload after it, which reads the file as it is by then.
    """
    global _reloader
    if _reloader is None:
        _reloader = threading.Thread(target=reload_when_asked, name="dbhealth-reload", daemon=True)
        _reloader.start()
    signal.signal(signal.SIGHUP, lambda signum, frame: reload_asked.set())


# Set by SIGHUP, cleared by the reloader when it starts a reload.
reload_asked = threading.Event()
_reloader: threading.Thread | None = None


def reload_when_asked() -> None:
    while True:
        reload_asked.wait()
        reload_asked.clear()
        try:
            reload_quietly()
        except Exception:  # the reloader must outlive any failure, or SIGHUP stops working
            logger.exception("reload on SIGHUP failed; the old configuration stays in use")


def reload_quietly() -> None:
    try:
        reload_configuration()
    except (ImproperlyConfigured, ReloadUnavailable) as exc:
        if isinstance(exc, ReloadUnavailable):
            logger.warning("SIGHUP ignored: %s", exc)
