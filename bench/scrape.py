"""Timed scrapes of /metrics, one at a time or from several scrapers at once, and their summary.

Requests look like Prometheus's: its Accept header and scrape-timeout header, a fresh loopback
connection each time, and a bounded client timeout so that a hung exporter cannot hang the run.
"""

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field

ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
SCRAPE_TIMEOUT = 10.0


@dataclass
class Samples:
    """Latencies of successful scrapes plus what went wrong with the others."""

    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def extend(self, other: "Samples") -> None:
        self.seconds += other.seconds
        self.errors += other.errors
        self.sizes += other.sizes

    @property
    def count(self) -> int:
        return len(self.seconds) + len(self.errors)

    def summary(self) -> dict[str, float | int | list[str] | None]:
        ordered = sorted(self.seconds)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "scrapes": self.count,
            "errors": len(self.errors),
            "error_examples": sorted(set(self.errors))[:3],
            "min_ms": ms(ordered[0] if ordered else None),
            "median_ms": ms(statistics.median(ordered) if ordered else None),
            "p95_ms": ms(percentile(ordered, 0.95)),
            "max_ms": ms(ordered[-1] if ordered else None),
            "body_bytes": int(statistics.median(self.sizes)) if self.sizes else None,
        }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def scrape_once(port: int, timeout: float = SCRAPE_TIMEOUT) -> tuple[float, int]:
    """Seconds until the whole body has arrived, and its size; raises on any failure."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "GET",
            "/metrics",
            headers={"Accept": ACCEPT, "X-Prometheus-Scrape-Timeout-Seconds": str(timeout)},
        )
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started, len(body)


def scrape_series(
    port: int, count: int, timeout: float = SCRAPE_TIMEOUT, gap: float = 0.0
) -> Samples:
    """`count` scrapes back to back, or `gap` seconds apart (to outlast dbhealth's min_interval)."""
    samples = Samples()
    for _ in range(count):
        time.sleep(gap)
        try:
            seconds, size = scrape_once(port, timeout)
        except Exception as exc:
            samples.errors.append(f"{type(exc).__name__}: {exc}"[:120])
            continue
        samples.seconds.append(seconds)
        samples.sizes.append(size)
    return samples


def scrape_concurrently(
    port: int, scrapers: int, each: int, timeout: float = SCRAPE_TIMEOUT, gap: float = 0.0
) -> Samples:
    """`scrapers` threads, each scraping `each` times back to back, started together."""
    results = [Samples() for _ in range(scrapers)]
    barrier = threading.Barrier(scrapers)

    def run(slot: int) -> None:
        barrier.wait()
        results[slot] = scrape_series(port, each, timeout, gap)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=each * (timeout + gap + 1) + 10)
    merged = Samples()
    for result in results:
        merged.extend(result)
    return merged
