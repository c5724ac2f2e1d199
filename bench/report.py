"""results.json turned into the Markdown table (results.md) and the scale plot (scale.png)."""

from pathlib import Path
from typing import Any

TARGETS = (
    "pg1 median <= 0.8 x postgres_exporter",
    "ref6 median <= 1.5 x pg1",
    "200 aliases: median < 250 ms, 8 scrapers < 1 s, RSS < 150 MB",
    "server time per scrape <= postgres_exporter's",
    "hung database adds <= its deadline",
)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are stated in, each from one run."""
    latency = results.get("latency", {})

    def median(name: str, kind: str = "sequential") -> float | None:
        return latency.get(name, {}).get(kind, {}).get("median_ms")

    def server(name: str) -> float | None:
        return latency.get(name, {}).get("server_ms_per_scrape")

    found: dict[str, float | None] = {}
    for mode, suffix in (("cold", "-cold"), ("default", "")):
        for kind, key in (("sequential", "seq"), ("concurrent_8", "conc8")):
            found[f"pg1_{mode}_vs_postgres_exporter_{key}"] = ratio(
                median(f"dbhealth-pg1{suffix}", kind), median("postgres_exporter", kind)
            )
            found[f"my1_{mode}_vs_mysqld_exporter_{key}"] = ratio(
                median(f"dbhealth-my1{suffix}", kind), median("mysqld_exporter", kind)
            )
            found[f"ref6_vs_pg1_{mode}_{key}"] = ratio(
                median(f"dbhealth-ref6{suffix}", kind), median(f"dbhealth-pg1{suffix}", kind)
            )
        found[f"server_time_pg1_{mode}_vs_postgres_exporter"] = ratio(
            server(f"dbhealth-pg1{suffix}"), server("postgres_exporter")
        )
        found[f"server_time_my1_{mode}_vs_mysqld_exporter"] = ratio(
            server(f"dbhealth-my1{suffix}"), server("mysqld_exporter")
        )
    return found


def latency_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| contender | seq min | seq median | seq p95 | seq max | 8x median | 8x p95 | 8x max "
        "| errors | server ms/scrape | statements/scrape | CPU s/1000 | RSS MB | PSS MB "
        "| body KB |",
        "|---|" + "---:|" * 14,
    ]
    for name, row in results.get("latency", {}).items():
        seq, conc = row["sequential"], row["concurrent_8"]
        body = seq.get("body_bytes")
        lines.append(
            f"| {name} | {fmt(seq['min_ms'])} | {fmt(seq['median_ms'])} | {fmt(seq['p95_ms'])} "
            f"| {fmt(seq['max_ms'])} | {fmt(conc['median_ms'])} | {fmt(conc['p95_ms'])} "
            f"| {fmt(conc['max_ms'])} | {seq['errors'] + conc['errors']} "
            f"| {fmt(row['server_ms_per_scrape'])} | {fmt(row['server_statements_per_scrape'])} "
            f"| {fmt(row['cpu_seconds_per_1000_scrapes'])} | {fmt(row['rss_mb'])} "
            f"| {fmt(row['pss_mb'])} | {fmt(round(body / 1024, 1) if body else None)} |"
        )
    return lines


def scale_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| aliases | mode | up | seq median | seq p95 | 8x median | 8x p95 | RSS MB | PSS MB "
        "| CPU s/1000 | server ms/scrape |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results.get("scale", []):
        seq, conc = row["sequential"], row["concurrent_8"]
        lines.append(
            f"| {row['aliases']} | {row['mode']} | {row['up']} | {fmt(seq['median_ms'])} "
            f"| {fmt(seq['p95_ms'])} | {fmt(conc['median_ms'])} | {fmt(conc['p95_ms'])} "
            f"| {fmt(row['rss_mb'])} | {fmt(row['pss_mb'])} "
            f"| {fmt(row.get('cpu_seconds_per_1000_scrapes'))} "
            f"| {fmt(row.get('server_ms_per_scrape'))} |"
        )
    return lines


def hung_table(results: dict[str, Any]) -> list[str]:
    hung = results.get("hung")
    if not hung:
        return []
    lines = [
        f"Replica and MariaDB SIGSTOPped; dbhealth deadline {hung['deadline_seconds']} s, "
        f"client timeout {hung['client_timeout_seconds']} s.",
        "",
        "| contender | baseline median | hung seq median | hung seq max | hung 8x median "
        "| hung 8x max | failed scrapes | after resume median |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, row in hung["hung"].items():
        seq, conc = row["sequential"], row["concurrent_8"]
        errors = seq["errors"] + conc["errors"]
        examples = "; ".join(seq["error_examples"] + conc["error_examples"])[:90]
        failed = f"{errors}/{seq['scrapes'] + conc['scrapes']}" + (
            f" ({examples})" if errors else ""
        )
        lines.append(
            f"| {name} | {fmt(hung['baseline'][name]['median_ms'])} | {fmt(seq['median_ms'])} "
            f"| {fmt(seq['max_ms'])} | {fmt(conc['median_ms'])} | {fmt(conc['max_ms'])} "
            f"| {failed} | {fmt(hung['after_resume'][name]['median_ms'])} |"
        )
    return lines


def write(results: dict[str, Any], directory: Path) -> None:
    found = ratios(results)
    results["ratios"] = found
    versions = results.get("versions", {})
    lines = [
        "# dbhealth benchmark results",
        "",
        f"Machine: {results.get('machine', {}).get('cpus')} CPUs. "
        + ", ".join(f"{key} {value}" for key, value in versions.items())
        + f". Run took {results.get('elapsed_seconds')} s.",
        "",
        "Latencies in milliseconds, measured by the client until the whole body arrived. "
        "`-cold`: min_interval 0 (every scrape probes); no suffix: defaults (min_interval 1 s).",
        "",
        "## Latency, server time, CPU and memory",
        "",
        *latency_table(results),
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "|---|---:|",
        *(f"| {key} | {fmt(value)} |" for key, value in found.items()),
        "",
        "## Scale (one PostgreSQL server, N databases)",
        "",
        *scale_table(results),
        "",
        "![scale](scale.png)",
        "",
        "## Hung database",
        "",
        *hung_table(results),
        "",
    ]
    (directory / "results.md").write_text("\n".join(lines))
    plot_scale(results.get("scale", []), directory / "scale.png")


def plot_scale(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (latency, memory) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    for mode, style in (("cold", "o-"), ("default", "s--")):
        chosen = [row for row in rows if row["mode"] == mode]
        sizes = [row["aliases"] for row in chosen]
        for kind, label in (("sequential", "1 scraper"), ("concurrent_8", "8 scrapers")):
            latency.plot(
                sizes, [row[kind]["median_ms"] for row in chosen], style, label=f"{mode}, {label}"
            )
        memory.plot(sizes, [row["rss_mb"] for row in chosen], style, label=f"{mode}, RSS")
        memory.plot(
            sizes, [row["pss_mb"] for row in chosen], style, alpha=0.5, label=f"{mode}, PSS"
        )
    latency.axhline(250, color="grey", linewidth=0.8, linestyle=":")
    latency.axhline(1000, color="grey", linewidth=0.8, linestyle=":")
    memory.axhline(150, color="grey", linewidth=0.8, linestyle=":")
    for axis in (latency, memory):
        axis.set_xscale("log")
        axis.set_xlabel("aliases")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    latency.set_yscale("log")
    latency.set_ylabel("median scrape latency (ms)")
    memory.set_ylabel("gunicorn master + 2 workers (MB)")
    figure.suptitle("dbhealth scale: aliases on one PostgreSQL server")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
