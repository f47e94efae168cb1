"""Turns driver results into the console table, the Markdown table and the server-side RPC counts."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

RPC_COUNTERS = ("pos_offers_rpc_requests_total", "grpc_server_handled_total")
"""Prometheus counters that count RPCs, first found wins."""

HEADERS = (
    "workload",
    "rate/s",
    "ok/s",
    "errors",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "p50 ×echo",
    "p99 ×echo",
    "send lag p99 ms",
)
_NUMERIC_FROM = 1  # columns from here on are right-aligned

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _ms(us: float | None) -> str:
    return "–" if us is None else f"{us / 1000:.2f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.1f}×"


def rows(results: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    echo = next((r for r in results if r["workload"] == "echo"), None)
    echo_latency: Mapping[str, float] = echo["latency_us"] if echo else {}
    table: list[tuple[str, ...]] = []
    for r in results:
        latency: Mapping[str, float] = r["latency_us"]
        failures = r["error_count"] + r["dropped"]
        table.append(
            (
                r["name"],
                f"{r['rate']:g}",
                f"{r['throughput_rps']:.0f}",
                str(failures),
                _ms(latency.get("p50")),
                _ms(latency.get("p99")),
                _ms(latency.get("p99.9")),
                "1.0×" if r is echo else _ratio(latency.get("p50"), echo_latency.get("p50")),
                "1.0×" if r is echo else _ratio(latency.get("p99"), echo_latency.get("p99")),
                _ms(r["send_lag_us"].get("p99")),
            )
        )
    return table


def text_table(results: Sequence[Mapping[str, Any]]) -> str:
    body = rows(results)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i >= _NUMERIC_FROM else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(HEADERS), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in body)
    return "\n".join(out)


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |"]
    out.append("|" + "|".join(":---" if i < _NUMERIC_FROM else "---:" for i in range(len(HEADERS))) + "|")
    out.extend("| " + " | ".join(row) + " |" for row in rows(results))
    return "\n".join(out)


def error_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        parts = [f"{code} {n}" for code, n in r["errors"].items()]
        if r["dropped"]:
            parts.append(f"dropped (over {r['max_inflight']} in flight) {r['dropped']}")
        if parts:
            lines.append(f"{r['name']}: " + ", ".join(parts))
    return lines


def scrape(metrics_listen: str, timeout: float = 5.0) -> str | None:
    """The service's Prometheus text, or None when the endpoint is not there."""
    try:
        with urllib.request.urlopen(f"http://{metrics_listen}/metrics", timeout=timeout) as response:
            return str(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def server_quantile_bounds(text: str, q: float = 0.99) -> dict[str, float]:
    """Per method, the smallest histogram bucket bound (seconds) holding a fraction q of the server's latencies.

    The server measures from receiving a call to sending its status, so this is the service's own share of the
    latency the driver sees; a bucket bound, not an exact quantile.
    """
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "grpc_server_handling_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                method = sample.labels.get("grpc_method", "")
                buckets.setdefault(method, []).append((float(sample.labels["le"]), sample.value))
    bounds: dict[str, float] = {}
    for method, pairs in buckets.items():
        pairs.sort()
        total = pairs[-1][1]
        if total > 0:
            bounds[method] = next(le for le, count in pairs if count >= q * total)
    return dict(sorted(bounds.items()))


def parse_rpc_counts(text: str) -> tuple[str, dict[str, float]] | None:
    samples: dict[str, dict[str, float]] = {name: {} for name in RPC_COUNTERS}
    for raw in text.splitlines():
        match = _SAMPLE.match(raw)
        if match is None or match["name"] not in samples:
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        method = labels.get("method") or labels.get("grpc_method") or "(all)"
        try:
            value = float(match["value"])
        except ValueError:
            continue
        # Other labels (status code, service) are summed away: the count per method is what we compare.
        counts = samples[match["name"]]
        counts[method] = counts.get(method, 0.0) + value
    for name in RPC_COUNTERS:
        if samples[name]:
            return name, dict(sorted(samples[name].items()))
    return None
