"""Outbox records cross versions: a rolling deploy or a rollback has old and new writers on one outbox."""

from __future__ import annotations

import json
from dataclasses import replace

from store.records import LedgerEntry, PurchaseRecord, dump_record, load_record

PURCHASE = PurchaseRecord(
    event_id="purchase:c1:t1",
    transaction_id="t1",
    customer_id="c1",
    store_id="soho",
    terminal_id="till-1",
    currency="USD",
    occurred_at="2026-12-01T12:00:00+00:00",
    committed_at="2026-12-01T12:00:00+00:00",
    subtotal_minor=12_000,
    total_discount_minor=0,
    total_due_minor=12_000,
    points_earned=120,
    points_redeemed=0,
    redeemed_value_minor=0,
    lifetime_value_delta=12_000,
    request_digest="d",
    receipt_b64="",
    lines=[],
    applied_offers=[],
    new_categories=[],
    ledger=[LedgerEntry("t1:earn", "earn", 120)],
)


def test_entries_without_a_pending_period_are_written_as_before_pending_points_existed() -> None:
    entry = json.loads(dump_record(PURCHASE))["ledger"][0]
    assert entry == {"entry_id": "t1:earn", "kind": "earn", "points": 120}
    pending = replace(PURCHASE, ledger=[LedgerEntry("t1:earn", "earn", 120, "2026-12-15T12:00:00+00:00")])
    assert json.loads(dump_record(pending))["ledger"][0]["available_at"] == "2026-12-15T12:00:00+00:00"
    assert load_record(dump_record(pending)) == pending


def test_fields_a_newer_version_added_are_ignored_on_load() -> None:
    data = json.loads(dump_record(PURCHASE))
    data["loyalty_channel"] = "app"
    data["ledger"][0]["expires_at"] = "2027-12-01T00:00:00+00:00"
    assert load_record(json.dumps(data)) == PURCHASE
