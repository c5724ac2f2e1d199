"""How long a scrape may take: Prometheus says so in X-Prometheus-Scrape-Timeout-Seconds."""

import math
from collections.abc import Mapping

from dbhealth.configuration.targets import service_options

MINIMUM_BUDGET = 0.1
# Prometheus caps scrape timeouts at the scrape interval; anything beyond an hour is a bad header.
MAXIMUM_BUDGET = 3600.0


def budget_from_headers(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("X-Prometheus-Scrape-Timeout-Seconds")
    if raw is None:
        return None
    try:
        timeout = float(raw)
    except ValueError:
        return None
    if not math.isfinite(timeout) or timeout <= 0:
        return None
    budget = min(timeout, MAXIMUM_BUDGET) - service_options().scrape_timeout_margin
    return max(MINIMUM_BUDGET, budget)
