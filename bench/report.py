"""results.json turned into the Markdown tables (results.md) and the scale plot (scale.png)."""

from pathlib import Path
from typing import Any

DEFAULT_CAP = 16
# What each reference alias's server should see from dbhealth-ref6: one connection per alias.
REFERENCE_CONNECTIONS = {"primary": 3, "replica": 1, "mariadb": 1}


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
        found[f"pg1_{mode}_vs_postgres_exporter_prometheus_2"] = ratio(
            median(f"dbhealth-pg1{suffix}", "sequential_prometheus_2"),
            median("postgres_exporter", "sequential_prometheus_2"),
        )
        found[f"server_time_pg1_{mode}_vs_postgres_exporter"] = ratio(
            server(f"dbhealth-pg1{suffix}"), server("postgres_exporter")
        )
        found[f"server_time_my1_{mode}_vs_mysqld_exporter"] = ratio(
            server(f"dbhealth-my1{suffix}"), server("mysqld_exporter")
        )
    return found


def scale_row(results: dict[str, Any], aliases: int, mode: str, cap: int | None = None):
    """The scale row of that size and mode: on the default cap, or (cap None) with the largest
    cap at or above the alias count."""
    rows = [r for r in results.get("scale", []) if r["aliases"] == aliases and r["mode"] == mode]
    if cap is not None:
        rows = [r for r in rows if r["max_connections_per_server"] == cap]
    else:
        rows = [r for r in rows if r["max_connections_per_server"] >= aliases]
    return rows[-1] if rows else None


def verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "not measured"
    return "yes" if value <= limit else "**no**"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, met) for every target the project states."""
    latency = results.get("latency", {})
    found = results.get("ratios") or ratios(results)
    rows: list[tuple[str, str, str]] = []

    ref6 = latency.get("dbhealth-ref6")
    if ref6:
        rows.append(
            (
                "six reference aliases, default deployment: PSS of the process tree <= 60 MB",
                f"{fmt(ref6['pss_mb'])} MB ({ref6['processes']} process, "
                f"{ref6['threads']} threads); scrape median {fmt(ref6['sequential']['median_ms'])}"
                f" ms (Prometheus 2 header: "
                f"{fmt(ref6['sequential_prometheus_2']['median_ms'])} ms)",
                verdict(ref6["pss_mb"], 60),
            )
        )
        held = ref6["connections"].get("after_phase", {})
        warm = ref6["connections"].get("after_warmup", {})
        rows.append(
            (
                "six reference aliases: connections held after every scrape = one per alias "
                "(primary 3, replica 1, MariaDB 1)",
                f"after the phase: {per_server(held)} (after warm-up: {per_server(warm)})",
                "yes" if held == REFERENCE_CONNECTIONS == warm else "**no**",
            )
        )

    for cap_label, cap in (("default cap 16", DEFAULT_CAP), ("cap >= aliases", None)):
        default = scale_row(results, 200, "default", cap)
        cold = scale_row(results, 200, "cold", cap)
        if default is None or cold is None:
            continue
        shown = f"{cap_label} ({default['max_connections_per_server']})"
        rows.append(
            (
                f"200 aliases, defaults, {shown}: median <= 60 ms",
                f"{fmt(default['sequential']['median_ms'])} ms (p95 "
                f"{fmt(default['sequential']['p95_ms'])}; failed scrapes {failed(default)})",
                verdict(default["sequential"]["median_ms"], 60),
            )
        )
        rows.append(
            (
                f"200 aliases, every scrape probes, {shown}: median <= 250 ms",
                f"{fmt(cold['sequential']['median_ms'])} ms (p95 "
                f"{fmt(cold['sequential']['p95_ms'])}; failed scrapes {failed(cold)}; aliases up "
                f"at the end {cold['up_at_end']})",
                verdict(cold["sequential"]["median_ms"], 250),
            )
        )
        worst = max(
            (r["concurrent_8"]["median_ms"] for r in (default, cold) if r["concurrent_8"]),
            default=None,
        )
        rows.append(
            (
                f"200 aliases, 8 concurrent scrapers, {shown}: median <= 1 s",
                f"defaults {fmt(default['concurrent_8']['median_ms'])} ms "
                f"(p95 {fmt(default['concurrent_8']['p95_ms'])}), every scrape probes "
                f"{fmt(cold['concurrent_8']['median_ms'])} ms "
                f"(p95 {fmt(cold['concurrent_8']['p95_ms'])})",
                verdict(worst, 1000),
            )
        )
        limit = min(200, default["max_connections_per_server"])
        held = [default["connections_after"], cold["connections_after"]]
        peak = max(default["connections_peak"], cold["connections_peak"])
        rows.append(
            (
                f"200 aliases, {shown}: connections held at most min(aliases, cap) = {limit}",
                f"after the phase: defaults {held[0]}, every scrape probes {held[1]}; "
                f"highest sampled during it {peak}",
                "yes" if max(*held, peak) <= limit else "**no**",
            )
        )

    for mode in ("cold", "default"):
        value = found.get(f"pg1_{mode}_vs_postgres_exporter_seq")
        rows.append(
            (
                f"one PostgreSQL alias ({mode_name(mode)}): median <= 0.5 x postgres_exporter",
                f"{fmt(value)} x (8 scrapers "
                f"{fmt(found.get(f'pg1_{mode}_vs_postgres_exporter_conc8'))} x; "
                f"Prometheus 2 header "
                f"{fmt(found.get(f'pg1_{mode}_vs_postgres_exporter_prometheus_2'))} x)",
                verdict(value, 0.5),
            )
        )
    for mode in ("cold", "default"):
        value = found.get(f"server_time_pg1_{mode}_vs_postgres_exporter")
        pg1 = latency.get("dbhealth-pg1" + ("-cold" if mode == "cold" else ""), {})
        exporter = latency.get("postgres_exporter", {})
        rows.append(
            (
                f"database time per scrape, one PostgreSQL alias ({mode_name(mode)}): "
                "<= 0.05 x postgres_exporter",
                f"{fmt(value)} x ({fmt(pg1.get('server_ms_per_scrape'))} vs "
                f"{fmt(exporter.get('server_ms_per_scrape'))} ms)",
                verdict(value, 0.05),
            )
        )

    hung = results.get("hung")
    if hung:
        name = "dbhealth-ref6-hung"
        deadline_ms = hung["deadline_seconds"] * 1000
        seq, conc = hung["hung"][name]["sequential"], hung["hung"][name]["concurrent_8"]
        # Every hung scrape comes more than min_interval after the last: it runs a probe round,
        # so a normal scrape of the same kind is the six aliases with every scrape probing.
        normal = latency.get("dbhealth-ref6-cold", {})
        normal_seq = normal.get("sequential", {}).get("p95_ms")
        normal_conc = normal.get("concurrent_8", {}).get("p95_ms")
        over_seq = None if seq["max_ms"] is None else seq["max_ms"] - deadline_ms
        over_conc = None if conc["max_ms"] is None else conc["max_ms"] - deadline_ms
        met = (
            over_seq is not None
            and over_conc is not None
            and normal_seq is not None
            and normal_conc is not None
            and over_seq <= normal_seq
            and over_conc <= normal_conc
            and seq["errors"] + conc["errors"] == 0
        )
        rows.append(
            (
                "a hung alias adds at most its deadline "
                f"({fmt(hung['deadline_seconds'])} s) to a scrape",
                f"slowest hung scrape: 1 scraper {fmt(seq['max_ms'])} ms (deadline + "
                f"{fmt(over_seq)} ms; p95 of a probing scrape of the six aliases when nothing "
                f"hangs: {fmt(normal_seq)} ms), 8 scrapers {fmt(conc['max_ms'])} ms (deadline + "
                f"{fmt(over_conc)} ms; normal p95 {fmt(normal_conc)} ms); failed scrapes "
                f"{seq['errors'] + conc['errors']}",
                "yes" if met else "**no**",
            )
        )

    big_default = scale_row(results, 1000, "default", DEFAULT_CAP)
    big_cold = scale_row(results, 1000, "cold", DEFAULT_CAP)
    if big_default and big_cold:
        rows.append(
            (
                "1,000 aliases, default cap 16 (no target; defaults / every scrape probes)",
                f"median {fmt(big_default['sequential']['median_ms'])} / "
                f"{fmt(big_cold['sequential']['median_ms'])} ms (failed scrapes "
                f"{failed(big_default)} / {failed(big_cold)}); aliases up at the end "
                f"{big_default['up_at_end']} / {big_cold['up_at_end']}; PSS "
                f"{fmt(big_default['pss_mb'])} / {fmt(big_cold['pss_mb'])} MB; threads peak "
                f"{big_default['threads_peak']} / {big_cold['threads_peak']}; connections held "
                f"{big_default['connections_after']} / {big_cold['connections_after']}",
                "-",
            )
        )
    return rows


def failed(row: dict[str, Any]) -> str:
    """Failed scrapes of a scale row, sequential and 8 scrapers together, of how many."""
    seq, conc = row["sequential"], row["concurrent_8"]
    return f"{seq['errors'] + conc['errors']} of {seq['scrapes'] + conc['scrapes']}"


def per_server(held: dict[str, int]) -> str:
    return ", ".join(f"{server} {count}" for server, count in held.items()) or "-"


def mode_name(mode: str) -> str:
    return "every scrape probes" if mode == "cold" else "defaults"


def latency_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| contender | seq min | seq median | seq p95 | seq max | 8x median | 8x p95 | 8x max "
        "| errors | server ms/scrape | statements/scrape | CPU s/1000 | RSS MB | PSS MB "
        "| processes | threads | body KB |",
        "|---|" + "---:|" * 16,
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
            f"| {fmt(row['pss_mb'])} | {row.get('processes')} | {row.get('threads')} "
            f"| {fmt(round(body / 1024, 1) if body else None)} |"
        )
    return lines


def accept_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| contender | Prometheus 3: median | p95 | answered as | Prometheus 2: median | p95 "
        "| answered as |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for name, row in results.get("latency", {}).items():
        three, two = row["sequential"], row.get("sequential_prometheus_2")
        if not two:
            continue
        lines.append(
            f"| {name} | {fmt(three['median_ms'])} | {fmt(three['p95_ms'])} "
            f"| {', '.join(three.get('content_types', []))} | {fmt(two['median_ms'])} "
            f"| {fmt(two['p95_ms'])} | {', '.join(two.get('content_types', []))} |"
        )
    return lines


def connections_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| contender | after warm-up | after the phase |",
        "|---|---|---|",
    ]
    for name, row in results.get("latency", {}).items():
        held = row.get("connections", {})
        lines.append(
            f"| {name} | {per_server(held.get('after_warmup', {}))} "
            f"| {per_server(held.get('after_phase', {}))} |"
        )
    return lines


def scale_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| aliases | mode | cap | up | seq n / failed | seq median | seq p95 | 8x n / failed "
        "| 8x median | 8x p95 "
        "| PSS MB | threads peak / after | connections peak / after | server clients peak "
        "| CPU s/1000 | server ms/scrape | failed probes |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for row in results.get("scale", []):
        seq, conc = row["sequential"], row["concurrent_8"]
        failures = ", ".join(f"{k} {v}" for k, v in sorted(row["probe_failures"].items())) or "0"
        lines.append(
            f"| {row['aliases']} | {row['mode']} | {row['max_connections_per_server']} "
            f"| {row['up']} / {row['up_at_end']} | {seq['scrapes']} / {seq['errors']} "
            f"| {fmt(seq['median_ms'])} | {fmt(seq['p95_ms'])} "
            f"| {conc['scrapes']} / {conc['errors']} | {fmt(conc['median_ms'])} "
            f"| {fmt(conc['p95_ms'])} | {fmt(row['pss_mb'])} "
            f"| {row['threads_peak']} / {row['threads_after']} "
            f"| {row['connections_peak']} / {row['connections_after']} "
            f"| {row['server_clients_peak']} "
            f"| {fmt(row.get('cpu_seconds_per_1000_scrapes'))} "
            f"| {fmt(row.get('server_ms_per_scrape'))} | {failures} |"
        )
    return lines


def statements_list(results: dict[str, Any]) -> list[str]:
    lines = []
    for row in results.get("scale", []):
        costly = "; ".join(
            f"`{item['statement'][:60]}` {fmt(item['ms_per_scrape'])} ms, "
            f"{fmt(item['calls_per_scrape'])} calls"
            for item in row.get("costliest_statements", [])[:2]
        )
        lines.append(
            f"- {row['aliases']} {row['mode']} cap {row['max_connections_per_server']}: "
            f"{costly or '-'}"
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
    results["targets"] = [
        {"target": target, "measured": measured, "met": met}
        for target, measured, met in targets(results)
    ]
    versions = results.get("versions", {})
    parts = results.get("parts")
    lines = [
        "# dbhealth benchmark results",
        "",
        f"Machine: {results.get('machine', {}).get('cpus')} CPUs. "
        + ", ".join(f"{key} {value}" for key, value in versions.items())
        + f". Tree: {results.get('commit')}. Run took {results.get('elapsed_seconds')} s. "
        + "1-minute load average while it ran (min / median / max): "
        + " / ".join(str(v) for v in results.get("load_average_1m", {}).values())
        + ".",
        "",
        "dbhealth runs as `manage.py serve` (one process). Latencies in milliseconds, measured by "
        "the client until the whole body arrived, with Prometheus 3's Accept header unless "
        "said otherwise. `-cold`: min_interval 0 (every scrape probes); no suffix: defaults "
        "(min_interval 1 s).",
        "",
        "## Targets",
        "",
        "| target | measured | met? |",
        "|---|---|---|",
        *(f"| {target} | {measured} | {met} |" for target, measured, met in targets(results)),
        "",
        "## Latency, server time, CPU and memory",
        "",
        *latency_table(results),
        "",
        "## Prometheus 3 and Prometheus 2 Accept headers (sequential)",
        "",
        *accept_table(results),
        "",
        "## Server connections held (per server, by each contender's own login)",
        "",
        *connections_table(results),
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "|---|---:|",
        *(f"| {key} | {fmt(value)} |" for key, value in found.items()),
        "",
        "## Scale (one PostgreSQL server, N databases)",
        "",
        (
            f"{parts['databases']} databases created in {parts['seconds']} s "
            f"({parts['ms_per_database']} ms each, CREATE DATABASE from {parts['template']}, "
            f"STRATEGY {parts['strategy']}) on a PostgreSQL server of their own (no replica, "
            "no workload; pgbench still runs on the primary), max_connections "
            f"{results.get('postgresql_max_connections')}. `up`: aliases up after warm-up / at "
            "the end. Connections: dbhealth's on that server (application_name dbhealth), "
            "sampled every 0.5 s during the scrapes (peak) and 1 s after them (after); server "
            "clients: every client connection of that server, sampled likewise."
            if parts
            else ""
        ),
        "",
        *scale_table(results),
        "",
        "Costliest statements of each scale case (server time and calls per scrape):",
        "",
        *statements_list(results),
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

    figure, (latency, memory, held) = pyplot.subplots(1, 3, figsize=(15, 4.4))
    capped = [row for row in rows if row["max_connections_per_server"] == DEFAULT_CAP]
    uncapped = [row for row in rows if row["max_connections_per_server"] > DEFAULT_CAP]
    for mode, style in (("cold", "o-"), ("default", "s--")):
        chosen = [row for row in capped if row["mode"] == mode]
        sizes = [row["aliases"] for row in chosen]
        for kind, label in (("sequential", "1 scraper"), ("concurrent_8", "8 scrapers")):
            latency.plot(
                sizes,
                [row[kind]["median_ms"] for row in chosen],
                style,
                label=f"{mode}, {label}",
            )
        memory.plot(sizes, [row["pss_mb"] for row in chosen], style, label=f"{mode}, PSS")
        held.plot(sizes, [row["connections_after"] for row in chosen], style, label=f"{mode}, held")
        held.plot(
            sizes,
            [row["threads_peak"] for row in chosen],
            style,
            alpha=0.5,
            label=f"{mode}, threads (peak)",
        )
        extra = [row for row in uncapped if row["mode"] == mode]
        for kind, marker in (("sequential", "^"), ("concurrent_8", "v")):
            latency.plot(
                [row["aliases"] for row in extra],
                [row[kind]["median_ms"] for row in extra],
                marker,
                markersize=9,
                label=f"{mode}, {'1' if kind == 'sequential' else '8'} scraper(s), cap >= aliases",
            )
        memory.plot(
            [row["aliases"] for row in extra],
            [row["pss_mb"] for row in extra],
            "^",
            markersize=9,
            label=f"{mode}, PSS, cap >= aliases",
        )
        held.plot(
            [row["aliases"] for row in extra],
            [row["connections_after"] for row in extra],
            "^",
            markersize=9,
            label=f"{mode}, held, cap >= aliases",
        )
    for value in (60, 250, 1000):
        latency.axhline(value, color="grey", linewidth=0.8, linestyle=":")
    memory.axhline(60, color="grey", linewidth=0.8, linestyle=":")
    held.axhline(DEFAULT_CAP, color="grey", linewidth=0.8, linestyle=":")
    for axis in (latency, memory, held):
        axis.set_xscale("log")
        axis.set_xlabel("aliases (databases of one server)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    latency.set_yscale("log")
    held.set_yscale("log")
    latency.set_ylabel("median scrape latency (ms)")
    memory.set_ylabel("PSS of the serve process tree (MB, peak)")
    held.set_ylabel("server connections held / threads")
    figure.suptitle(
        "dbhealth (manage.py serve) scale: aliases on one PostgreSQL server, "
        f"max_connections_per_server {DEFAULT_CAP} unless marked"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
