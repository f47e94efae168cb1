"""The alert rules pass `promtool check rules` and their unit tests, every alert is tested both ways and points at a
runbook and at dashboard panels that exist, and a live scrape of the running service passes `promtool check metrics`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from scripts.metrics_doc import collect
from tests.ops.conftest import (
    ALERTS,
    ALERTS_TEST,
    DASHBOARD,
    OPERATIONS_DOC,
    Service,
    drive_traffic,
)
from tests.support.waiting import wait_until

RUNBOOK_BASE = "https://github.com/pos-offers/pos-offers/blob/main/docs/operations.md#"
TILL_METHODS = ("ListActiveOffers", "EvaluateBasket", "CommitPurchase", "GetProfile")


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    # Shown with -s or -rA, and in the report when a test fails.
    print(f"$ {' '.join(Path(a).name if a.startswith('/') else a for a in args)}\n{done.stdout}{done.stderr}")
    return done


def alert_blocks() -> dict[str, list[str]]:
    """alertname -> the text of each rule with that name (an alert may have several rules: signals, severities)."""
    blocks: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=[ \t]*- alert: )", ALERTS.read_text())[1:]:
        match = re.match(r"\s*- alert: (\w+)", block)
        assert match, block
        blocks.setdefault(match.group(1), []).append(block)
    return blocks


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page (lowercase, punctuation dropped, spaces to -)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def panel_titles() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {panel["title"] for panel in dashboard["panels"]}


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    done = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", str(ALERTS)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    done = run([promtool, "test", "rules", str(ALERTS_TEST)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    text = ALERTS_TEST.read_text()
    for name, expectation in re.findall(r"alertname: (\w+)\n\s+exp_alerts:(.*)", text):
        (quiet if expectation.strip() == "[]" else fired).add(name)
    alerts = set(alert_blocks())
    assert alerts == {
        "TillP99High",
        "HighErrorRatio",
        "OutboxLagGrowing",
        "WriterDown",
        "RedisErrors",
        "OfferBudgetNearlyExhausted",
        "CatalogStale",
        "AuthenticationOff",
        "RefusedCallsHigh",
    }
    assert alerts - fired == set(), "alerts without a test that fires them"
    assert alerts - quiet == set(), "alerts without a test where they stay quiet"
    assert (fired | quiet) - alerts == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize("alertname", sorted(alert_blocks()))
def test_alert_has_severity_annotations_runbook_and_panels(alertname: str) -> None:
    anchors = github_anchors(OPERATIONS_DOC.read_text())
    titles = panel_titles()
    for block in alert_blocks()[alertname]:
        assert re.search(r"^\s+severity: (critical|warning)$", block, flags=re.MULTILINE), block
        for annotation in ("summary", "description", "runbook_url"):
            assert re.search(rf"^\s+{annotation}: \S", block, flags=re.MULTILINE), f"{alertname}: no {annotation}"
        runbook = re.search(r'runbook_url: "([^"]+)"', block)
        assert runbook and runbook.group(1) == RUNBOOK_BASE + alertname.lower()
        assert alertname.lower() in anchors, f"docs/operations.md has no section for {alertname}"
        # Panels the description sends the reader to ('Dashboard: "A", "B"') exist, by title.
        flat = " ".join(block.split())
        pointer = re.search(r"Dashboard: (.*?) runbook_url:", flat)
        assert pointer, f"{alertname}: the description names no dashboard panel"
        named = set(re.findall(r'"([^"]+)"', pointer.group(1)))
        assert named and named <= titles, f"{alertname}: no such panels: {sorted(named - titles)}"


def scraped_families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))


def test_live_scrape_passes_promtool_check_metrics(promtool: str, service: Service) -> None:
    calls = drive_traffic(service, seconds=1.0)
    assert all(calls[m] > 0 for m in TILL_METHODS), calls
    text = service.scrape()
    done = run([promtool, "check", "metrics"], stdin=text)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", "promtool found problems in the exposition"

    families = scraped_families(text)
    declared = {doc.name: doc.type for doc in collect()}
    ours = {name: kind for name, kind in families.items() if name.startswith(("grpc_server_", "pos_offers_"))}
    assert set(ours) - set(declared) == set(), "exported but not declared in telemetry/metrics.py (nor documented)"
    assert {name: declared[name] for name in ours} == ours, "exported with another type than declared"
    for family in (
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds",
        "pos_offers_rpc_in_flight",
        "pos_offers_purchases_committed_total",
        "pos_offers_purchases_replayed_total",
        "pos_offers_points_earned_total",
        "pos_offers_component_up",
        "pos_offers_redis_seconds",
        "pos_offers_writer_last_success_timestamp_seconds",
        "pos_offers_outbox_backlog",
    ):
        assert family in ours, f"{family} missing from the scrape"
    for method in TILL_METHODS:
        handled = re.search(
            rf'^grpc_server_handled_total{{(?=[^}}]*grpc_code="OK")(?=[^}}]*grpc_method="{method}")'
            rf'(?=[^}}]*grpc_service="posoffers\.v1\.OfferService")[^}}]*}} (\S+)$',
            text,
            flags=re.MULTILINE,
        )
        assert handled and float(handled.group(1)) >= calls[method] - 1, f"{method} not counted as OK"
    assert re.search(r'^grpc_server_handled_total{[^}]*grpc_code="NOT_FOUND"', text, flags=re.MULTILINE)


def _sample(text: str, pattern: str) -> float:
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_one_scrape_shows_the_writer_child_beside_the_server(service: Service) -> None:
    # Records are written to SQL by the server's writer child process: its counters reach the server's /metrics
    # only through the shared multiprocess directory.
    drive_traffic(service, seconds=0.5)

    def with_the_writers_records() -> str:
        text = service.scrape()
        return text if _sample(text, r'^pos_offers_writer_records_total\{result="applied"\} (\S+)$') > 0 else ""

    text = wait_until(
        with_the_writers_records,
        timeout=20,
        interval=0.1,
        message="the writer child's records are missing from the scrape",
    )
    # Gauges the child declares but never sets must not hide the server's values.
    assert _sample(text, r"^pos_offers_catalog_version (\S+)$") >= 1
    assert _sample(text, r"^pos_offers_catalog_loaded_timestamp_seconds (\S+)$") > time.time() - 3600


def test_every_method_is_exported_at_zero_before_its_first_call(service: Service) -> None:
    """A series born at 1 hides its first call from increase(): alerts (CatalogStale) rely on zeros being there."""
    text = service.scrape()
    archived = re.search(
        r'^grpc_server_handled_total{(?=[^}]*grpc_code="OK")(?=[^}]*grpc_method="ArchiveOffer")[^}]*} (\S+)$',
        text,
        flags=re.MULTILINE,
    )
    assert archived is not None and float(archived.group(1)) == 0.0  # nothing archives offers in these tests
