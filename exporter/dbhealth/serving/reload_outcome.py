"""Keeping the last good configuration: what both reloadable files share.

The TOML configuration (serving/reload.py: SIGHUP, POST /-/reload) and the web configuration
(serving/web_config.py: re-read when its files change) behave as Prometheus's own reloads do: a
file that cannot be used leaves the configuration in use alone, says so in one ERROR line and in
dbhealth_<subject>_last_reload_successful 0; a good one replaces it, says so in one INFO line
and sets dbhealth_<subject>_last_reload_success_timestamp_seconds. Each file has a
ReloadOutcome; the loading and what "the configuration in use" is stay with each file.
"""

import logging
import time

from prometheus_client.metrics_core import Metric

from dbhealth.exposition.families import reload_families

logger = logging.getLogger("dbhealth")


class ReloadOutcome:
    """The outcome of the last reload of one file, and its log lines."""

    def __init__(self, subject: str, description: str) -> None:
        self.subject = subject  # dbhealth_<subject>_last_reload_*
        self.description = description  # the help texts' "the <description>"
        self.successful = True  # the last load succeeded (or none was needed)
        self.last_success = time.time()  # wall clock: when the configuration in use was loaded
        self._logged = ""  # the problem last logged, while not successful

    def succeeded(self, name: str, summary: str) -> None:
        """A good file replaced the configuration in use (`name`: the setting and the file)."""
        self.successful, self.last_success, self._logged = True, time.time(), ""
        logger.info("%s reloaded: %s", name, summary)

    def failed(self, name: str, problem: str, *, every_time: bool) -> None:
        """A file that cannot be used: logged every time (a reload someone asked for), or once
        until the problem changes or a good file came in between (a file watched for changes)."""
        if every_time or self.successful or problem != self._logged:
            logger.error(
                "%s not reloaded, the last good configuration stays in use: %s", name, problem
            )
        self.successful, self._logged = False, problem

    def families(self) -> list[Metric]:
        return reload_families(self.subject, self.description, self.successful, self.last_success)
