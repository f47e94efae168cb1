"""Redis keys of a purchase: one per store and transaction id, never two purchases under one key."""

from __future__ import annotations

from domain.model import PurchaseKey
from store.keys import Keys, scoped


def test_a_purchase_key_reads_back_one_way_only() -> None:
    assert scoped(PurchaseKey("soho", "till7-0001")) == "4:soho:till7-0001"
    assert scoped(PurchaseKey("a:b", "c")) != scoped(PurchaseKey("a", "b:c"))
    assert scoped(PurchaseKey("s", "a:b"), "c") != scoped(PurchaseKey("s", "a"), "b:c")  # return ids too


def test_the_same_transaction_id_at_two_stores_has_keys_of_its_own() -> None:
    keys = Keys("po", 16)
    here, there = PurchaseKey("soho", "t1"), PurchaseKey("tribeca", "t1")
    assert keys.transaction_claim(here) != keys.transaction_claim(there)
    assert keys.return_claim(here, "r1") != keys.return_claim(there, "r1")
    ck = keys.customer("m1")
    assert len({ck.transaction(here), ck.transaction(there), ck.legacy_transaction("t1")}) == 3
    assert ck.return_record(here, "r1") != ck.return_record(there, "r1") != ck.legacy_return_record("r1")
    # Claims share the {t} slot; her purchase keys her partition's, so one script reaches them with her profile.
    assert keys.transaction_claim(here).startswith("po:{t}:") and ck.transaction(here).startswith(ck.profile + ":")
