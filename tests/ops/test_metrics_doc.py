"""docs/metrics.md is generated from telemetry/metrics.py and up to date; the dashboard and the alerts use only
declared metrics, and the dashboard shows every one of them."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

import telemetry.metrics as server_metrics
from scripts.metrics_doc import COMMAND, DEFAULT_OUTPUT, MetricDoc, collect, render
from tests.ops.conftest import ALERTS, DASHBOARD, ROOT

METRIC_NAME = re.compile(r"\b(?:grpc_server|pos_offers)_[a-z0-9_]*[a-z0-9]")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def run_doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.metrics_doc", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docs_metrics_md_is_up_to_date() -> None:
    expected = render()
    current = DEFAULT_OUTPUT.read_text() if DEFAULT_OUTPUT.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True), expected.splitlines(keepends=True), "docs/metrics.md", "generated"
        )
    )
    assert current == expected, f"docs/metrics.md is out of date: run `{COMMAND}`\n{diff}"


def test_every_declared_metric_has_a_row() -> None:
    page = DEFAULT_OUTPUT.read_text()
    docs = collect()
    assert len(docs) >= 25
    for doc in docs:
        assert f"| `{doc.name}` | " in page


def test_a_new_metric_makes_the_page_stale() -> None:
    module = types.ModuleType("fake_metrics")
    added = Counter("pos_offers_widgets_total", "Widgets.", ["colour"], registry=CollectorRegistry())
    module.__dict__.update({k: v for k, v in vars(server_metrics).items() if not k.startswith("__")}, WIDGETS=added)
    page = render(collect(module))
    assert "| `pos_offers_widgets_total` | counter | `colour` | Widgets. |" in page
    assert page != DEFAULT_OUTPUT.read_text()


def test_check_exits_1_with_a_diff_when_stale_and_0_when_fresh(tmp_path: Path) -> None:
    page = tmp_path / "metrics.md"
    fresh = run_doc("--output", str(page))
    assert fresh.returncode == 0, fresh.stderr
    assert run_doc("--check", "--output", str(page)).returncode == 0

    lines = page.read_text().splitlines(keepends=True)
    page.write_text("".join(line for line in lines if "pos_offers_points_earned_total" not in line))
    stale = run_doc("--check", "--output", str(page))
    assert stale.returncode == 1
    assert "+| `pos_offers_points_earned_total` | counter |" in stale.stdout
    assert COMMAND in stale.stderr


def test_histogram_and_gauge_details_are_documented() -> None:
    docs = {doc.name: doc for doc in collect()}
    latency = docs["grpc_server_handling_seconds"]
    assert latency == MetricDoc(
        name="grpc_server_handling_seconds",
        type="histogram",
        labels=("grpc_type", "grpc_service", "grpc_method"),
        documentation=latency.documentation,
        buckets=latency.buckets,
    )
    assert 0.01 in latency.buckets  # the TillP99High threshold sits on a bucket bound
    assert docs["pos_offers_rpc_in_flight"].multiprocess_mode == "livesum"


def dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    exprs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


def referenced_metrics(texts: list[str]) -> set[str]:
    declared = {doc.name: doc.type for doc in collect()}
    names = set()
    for text in texts:
        for name in METRIC_NAME.findall(text):
            base = next((name[: -len(s)] for s in HISTOGRAM_SERIES if name.endswith(s)), name)
            names.add(base if declared.get(base) == "histogram" else name)
    return names


def test_alerts_and_dashboard_use_only_declared_metrics() -> None:
    declared = {doc.name for doc in collect()}
    alerts = referenced_metrics([ALERTS.read_text()])
    dashboard = referenced_metrics(dashboard_exprs())
    assert alerts, "no metric found in the alert rules"
    assert alerts - declared == set(), "alert rules use metrics telemetry/metrics.py does not declare"
    assert dashboard - declared == set(), "the dashboard uses metrics telemetry/metrics.py does not declare"


def test_dashboard_shows_every_declared_metric() -> None:
    declared = {doc.name for doc in collect()}
    missing = declared - referenced_metrics(dashboard_exprs())
    assert missing == set(), f"add a panel for these to ops/grafana/pos-offers.json: {sorted(missing)}"
