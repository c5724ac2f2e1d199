"""WarningThrottle: one WARNING line per reason per interval, and the count of those held back."""

import asyncio
import logging

from dbhealth.serving.throttle import WarningThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttled_logger(name: str, throttle: WarningThrottle) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"tests.throttle.{name}")
    logger.propagate = False
    logger.handlers = [Collect()]
    logger.filters = [throttle]
    logger.setLevel(logging.DEBUG)
    return logger, lines


def test_a_flood_of_one_reason_is_one_line_until_the_interval_ends():
    clock = Clock()
    logger, lines = throttled_logger("flood", WarningThrottle(interval=60, clock=clock))
    for number in range(1000):
        logger.warning("refused a request from %s", f"10.0.0.{number % 250}")
    assert lines == ["refused a request from 10.0.0.0"]
    clock.now += 60
    logger.warning("refused a request from %s", "10.0.0.9")
    assert lines[1] == "refused a request from 10.0.0.9 (and 999 more like it before)"


def test_reasons_and_levels_are_throttled_apart():
    logger, lines = throttled_logger("apart", WarningThrottle(interval=60, clock=Clock()))
    for _ in range(3):
        logger.warning("closed an idle connection")
        logger.warning("refused a body")
        logger.info("not a warning")
        logger.error("an error")
    assert lines.count("closed an idle connection") == 1
    assert lines.count("refused a body") == 1
    assert lines.count("not a warning") == 3
    assert lines.count("an error") == 3


def test_on_the_event_loop_the_count_comes_when_the_interval_ends():
    throttle = WarningThrottle(interval=0.2)
    logger, lines = throttled_logger("loop", throttle)

    async def flood() -> None:
        for number in range(50):
            logger.warning("refused connection %d", number)
        while len(lines) < 2:  # the summary, written by a timer of the loop
            await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(flood(), timeout=30))
    assert lines == [
        "refused connection 0",
        "49 more like this in the last 0.2 s, the last: refused connection 49",
    ]
