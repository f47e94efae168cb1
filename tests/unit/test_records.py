"""Outbox records cross versions: a rolling deploy or a rollback has old and new writers on one outbox."""

from __future__ import annotations

import json
from dataclasses import replace

from store.records import LedgerEntry, dump_record, load_record
from tests.integration.records_builders import DAY, T0, Member, line, purchase_record

PURCHASE = purchase_record("c1", "t1", at=T0, lines=[line("1", "dresses", 1, 12_000)])


def test_entries_without_a_pending_period_are_written_as_before_pending_points_existed() -> None:
    entry = json.loads(dump_record(PURCHASE))["ledger"][0]
    assert entry == {"entry_id": "sale:store-1:t1:earn", "kind": "earn", "points": PURCHASE.ledger[0].points}
    pending = replace(PURCHASE, ledger=[LedgerEntry("t1:earn", "earn", 120, "2026-12-15T12:00:00+00:00")])
    assert json.loads(dump_record(pending))["ledger"][0]["available_at"] == "2026-12-15T12:00:00+00:00"
    assert load_record(dump_record(pending)) == pending


def test_fields_a_newer_version_added_are_ignored_on_load() -> None:
    data = json.loads(dump_record(PURCHASE))
    data["loyalty_channel"] = "app"
    data["ledger"][0]["expires_at"] = "2027-12-01T00:00:00+00:00"
    assert load_record(json.dumps(data)) == PURCHASE


def test_a_return_names_its_purchases_store_and_a_return_of_an_older_server_loads_without_it() -> None:
    m = Member("c1")
    bought = m.purchase("t1", at=T0, lines=[line("1", "dresses", 1, 12_000)], store="soho")
    back = m.return_("r1", bought, at=T0 + DAY, quantities={"1": 1}, returning_store="tribeca")
    data = json.loads(dump_record(back))
    assert (data["store_id"], data["returning_store_id"]) == ("soho", "tribeca")
    assert load_record(dump_record(back)) == back
    unsaid = replace(back, returning_store_id="")
    assert "returning_store_id" not in json.loads(dump_record(unsaid))  # left out when empty, as older writers wrote
    older = {k: v for k, v in data.items() if k not in ("store_id", "returning_store_id")}
    assert load_record(json.dumps(older)) == replace(back, store_id="", returning_store_id="")
