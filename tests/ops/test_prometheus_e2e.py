"""A real Prometheus scrapes the running service every second while real till traffic flows; the dashboard's and
the README's queries then answer with what happened, and the alert rules load and evaluate without error."""

from __future__ import annotations

import json
import math
import re
import string
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.processes import Child, free_port
from bench.processes import wait_until as wait_for_child
from tests.ops.conftest import (
    ALERTS,
    DASHBOARD,
    PROMETHEUS_TEMPLATE,
    ROOT,
    Service,
    drive_traffic,
)
from tests.support.waiting import wait_until

TRAFFIC_S = 10.0
SCRAPE_INTERVAL = "1s"
DRIVEN = ("ListActiveOffers", "EvaluateBasket", "CommitPurchase")
# Dashboard panels that must show data after the traffic (others legitimately may not: no budgeted offer in the
# demo data, no refused redemption, no Redis error...).
MUST_HAVE_DATA = (
    "p99 at the till (now)",
    "Till calls per second",
    "Time since last writer success",
    "p99 at the till",
    "Till calls by status",
    "Request rate by method",
    "Error ratio by method and code",
    "Latency p50 and p99 by method",
    "In flight by method",
    "Redis latency p99 by operation",
    "Component health",
    "SQL latency p99 by operation",
    "Outbox backlog",
    "Writer records",
    "Points flow",
    "Purchases",
    "Offers listed per minute",
)


@dataclass
class Prometheus:
    url: str
    child: Child

    def get(self, path: str, **params: str) -> Any:
        self.child.check_alive()
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


@pytest.fixture(scope="module")
def prometheus(prometheus_bin: str, service: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    base = tmp_path_factory.mktemp("prometheus")
    config = base / "prometheus.yml"
    config.write_text(
        string.Template(PROMETHEUS_TEMPLATE.read_text()).substitute(
            METRICS_TARGET=service.metrics_url.removeprefix("http://").removesuffix("/metrics"),
            SCRAPE_INTERVAL=SCRAPE_INTERVAL,
            ALERTS_FILE=str(ALERTS),
        )
    )
    address = f"127.0.0.1:{free_port()}"
    args = [
        prometheus_bin,
        f"--config.file={config}",
        f"--storage.tsdb.path={base / 'data'}",
        "--storage.tsdb.retention.time=1h",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    child = Child.start("prometheus", args, base / "prometheus.log", cwd=ROOT, fail=pytest.fail)
    try:
        server = Prometheus(f"http://{address}", child)

        def ready() -> bool:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        wait_for_child(child, ready, "prometheus", timeout=30)

        def scraped() -> bool:
            targets = server.get("/api/v1/targets")["activeTargets"]
            return bool(targets) and all(t["health"] == "up" for t in targets)

        wait_for_child(child, scraped, "prometheus scraping the service", timeout=30)
        yield server
    finally:
        child.stop()


@pytest.fixture(scope="module")
def traffic(prometheus: Prometheus, service: Service) -> Counter[str]:
    """~10 s of till traffic while Prometheus scrapes, then two more scrapes so the last of it is in."""
    calls = drive_traffic(service, seconds=TRAFFIC_S)
    ended = time.time()  # Prometheus runs on this machine's clock too

    def scrapes_since_the_traffic() -> int:
        since_ms = max(1, int((time.time() - ended) * 1000))
        result = prometheus.query(f'count_over_time(up{{job="pos-offers"}}[{since_ms}ms])')
        return int(float(result[0]["value"][1])) if result else 0

    wait_until(
        lambda: scrapes_since_the_traffic() >= 2,
        timeout=30,
        interval=0.2,
        message=lambda: f"Prometheus scraped {scrapes_since_the_traffic()} times since the traffic, not 2",
    )
    return calls


def test_prometheus_sees_per_rpc_rates_p99_and_purchases(prometheus: Prometheus, traffic: Counter[str]) -> None:
    assert all(traffic[m] > 10 for m in DRIVEN), traffic

    rates = by_label(prometheus.query("sum by (grpc_method) (rate(grpc_server_handled_total[30s]))"), "grpc_method")
    for method in DRIVEN:
        assert rates.get(method, 0.0) > 0, f"no rate for {method}: {rates}"

    p99 = by_label(
        prometheus.query(
            "histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket[30s])))"
        ),
        "grpc_method",
    )
    for method in DRIVEN:
        value = p99.get(method, math.nan)
        assert math.isfinite(value) and value > 0, f"p99 of {method} is {value}: {p99}"

    committed = prometheus.query("sum(pos_offers_purchases_committed_total)")
    assert committed and float(committed[0]["value"][1]) > 0, committed
    replayed = prometheus.query("sum(pos_offers_purchases_replayed_total)")
    assert replayed and float(replayed[0]["value"][1]) >= 1, replayed


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target and annotation of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [(a["name"], a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    return queries


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends for the dashboard's variables: all jobs and instances, the chosen range and interval."""
    for variable, value in (
        ("$__rate_interval", "30s"),
        ("$__interval", "5s"),
        ("$__range", "5m"),
        ("$job", ".*"),
        ("$instance", ".*"),
    ):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def test_every_dashboard_query_runs_and_the_main_panels_have_data(
    prometheus: Prometheus, traffic: Counter[str]
) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 40
    empty: set[str] = set()
    with_data: set[str] = set()
    for title, expr in queries:
        result = prometheus.query(grafana_to_promql(expr))  # fails on any PromQL error
        (with_data if result else empty).add(title)
    empty -= with_data  # a panel with several queries has data when any has
    print(f"dashboard panels with data: {len(with_data)}; without: {sorted(empty)}")
    missing = set(MUST_HAVE_DATA) - with_data
    assert missing == set(), f"panels without data after traffic: {sorted(missing)}"


def test_alert_rules_load_and_evaluate_in_prometheus(prometheus: Prometheus, traffic: Counter[str]) -> None:
    groups = prometheus.get("/api/v1/rules", type="alert")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
    assert {rule["name"] for rule in rules} == names
    for rule in rules:
        assert rule["health"] == "ok", rule
        assert not rule.get("lastError"), rule
        assert rule["labels"]["severity"] in ("critical", "warning"), rule
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule
        assert not rule["lastEvaluation"].startswith("0001-"), f"{rule['name']} never evaluated"
    # A healthy service under light traffic is quiet: no alert even pending (every rule has a `for`, so none could
    # fire yet). Except the till p99, which depends on how fast this machine is.
    active = [a for rule in rules for a in rule.get("alerts", []) if a["labels"]["alertname"] != "TillP99High"]
    assert active == [], active


def test_prometheus_config_template_is_the_one_used() -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", PROMETHEUS_TEMPLATE.read_text()))
    assert placeholders == {"METRICS_TARGET", "SCRAPE_INTERVAL", "ALERTS_FILE"}
    assert Path(ALERTS).is_file()
