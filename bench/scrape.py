"""Timed scrapes of /metrics, one at a time or from several scrapers at once, and their summary.

Requests look like Prometheus's: its Accept header (Prometheus 3's by default, Prometheus 2's on
request) and scrape-timeout header, a fresh loopback connection each time, and a bounded client
timeout so that a hung exporter cannot hang the run. A series can also be bounded in time, so
that a slow configuration (hundreds of aliases, every scrape probing) cannot stretch the run.
"""

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field

# What Prometheus 3 sends (scrape_protocols at their defaults, metric_name_escaping_scheme
# allow-utf-8), and what Prometheus 2 sent.
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ACCEPT = PROMETHEUS_3_ACCEPT
SCRAPE_TIMEOUT = 10.0


@dataclass
class Samples:
    """Latencies of successful scrapes plus what went wrong with the others."""

    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)

    def extend(self, other: "Samples") -> None:
        self.seconds += other.seconds
        self.errors += other.errors
        self.sizes += other.sizes
        self.content_types |= other.content_types

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
            "content_types": sorted(self.content_types),
        }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def scrape_once(
    port: int, timeout: float = SCRAPE_TIMEOUT, accept: str = ACCEPT
) -> tuple[float, int, str]:
    """Seconds until the whole body has arrived, its size and its Content-Type; raises on any
    failure."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "GET",
            "/metrics",
            headers={"Accept": accept, "X-Prometheus-Scrape-Timeout-Seconds": str(timeout)},
        )
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started, len(body), response.getheader("Content-Type", "")


def scrape_series(
    port: int,
    count: int,
    timeout: float = SCRAPE_TIMEOUT,
    gap: float = 0.0,
    *,
    accept: str = ACCEPT,
    seconds: float | None = None,
) -> Samples:
    """`count` scrapes back to back, or `gap` seconds apart (to outlast dbhealth's min_interval);
    with `seconds`, no scrape starts once that long has passed (at least one always runs)."""
    samples = Samples()
    stop_at = None if seconds is None else time.monotonic() + seconds
    for _ in range(count):
        if stop_at is not None and samples.count and time.monotonic() >= stop_at:
            break
        time.sleep(gap)
        try:
            elapsed, size, content_type = scrape_once(port, timeout, accept)
        except Exception as exc:
            samples.errors.append(f"{type(exc).__name__}: {exc}"[:120])
            continue
        samples.seconds.append(elapsed)
        samples.sizes.append(size)
        samples.content_types.add(content_type)
    return samples


def scrape_concurrently(
    port: int,
    scrapers: int,
    each: int,
    timeout: float = SCRAPE_TIMEOUT,
    gap: float = 0.0,
    *,
    accept: str = ACCEPT,
    seconds: float | None = None,
) -> Samples:
    """`scrapers` threads, each scraping `each` times back to back (or until `seconds` have
    passed), started together."""
    results = [Samples() for _ in range(scrapers)]
    barrier = threading.Barrier(scrapers)

    def run(slot: int) -> None:
        barrier.wait()
        results[slot] = scrape_series(port, each, timeout, gap, accept=accept, seconds=seconds)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=each * (timeout + gap + 1) + 10)
    merged = Samples()
    for result in results:
        merged.extend(result)
    return merged
