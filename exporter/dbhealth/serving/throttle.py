"""At most one WARNING line per reason per minute from the HTTP layer, however large a flood.

A flood of refused requests or connections logged a line each (83,518 lines in one measured
flood): the log of the one event buried everything else and cost the disk. WarningThrottle is a
logging filter on the loggers that say what happens to clients (THROTTLED_LOGGERS):
the first WARNING of a reason (its format string, so every client address is the same reason)
passes; the next ones within INTERVAL_SECONDS are counted, not written; when the interval ends
one line says how many there were, with the last one's text. Other levels pass untouched.
"""

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

INTERVAL_SECONDS = 60.0
# uvicorn's (invalid requests), http_protocol's (connections closed or refused) and Django's
# request logger (a WARNING per 4xx answer: a flood of 404s would write a line each).
THROTTLED_LOGGERS = ("uvicorn.error", "dbhealth.serving.http_protocol", "django.request")


@dataclass
class Reason:
    passed_at: float
    suppressed: int = 0
    last_text: str = ""
    summary_due: bool = False


class WarningThrottle(logging.Filter):
    def __init__(self, interval: float = INTERVAL_SECONDS, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._reasons: dict[tuple[str, str], Reason] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or getattr(record, "throttle_summary", False):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            reason = self._reasons.get(key)
            if reason is None or now - reason.passed_at >= self.interval:
                if reason is not None and reason.suppressed:
                    record.msg = f"{record.msg} (and {reason.suppressed} more like it before)"
                self._reasons[key] = Reason(passed_at=now)
                return True
            reason.suppressed += 1
            reason.last_text = record.getMessage()
            schedule = not reason.summary_due
            reason.summary_due = True
        if schedule:
            self._schedule_summary(key, reason)
        return False

    def _schedule_summary(self, key: tuple[str, str], reason: Reason) -> None:
        """On the event loop, the summary comes when the interval ends; logged from another
        thread, it comes with the reason's next line instead."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(reason.passed_at + self.interval - self.clock(), 0.0)
        loop.call_later(delay, self.summarize, key)

    def summarize(self, key: tuple[str, str]) -> None:
        """Write the count of a reason's lines held back, and start its next interval."""
        with self._lock:
            reason = self._reasons.get(key)
            if reason is None or not reason.suppressed:
                return
            count, text = reason.suppressed, reason.last_text
            self._reasons[key] = Reason(passed_at=self.clock())
        logging.getLogger(key[0]).warning(
            "%d more like this in the last %g s, the last: %s",
            count,
            self.interval,
            text,
            extra={"throttle_summary": True},
        )


def install(interval: float = INTERVAL_SECONDS) -> WarningThrottle:
    """Throttle the warnings of THROTTLED_LOGGERS (the service's own process only)."""
    throttle = WarningThrottle(interval)
    for name in THROTTLED_LOGGERS:
        logging.getLogger(name).addFilter(throttle)
    return throttle
