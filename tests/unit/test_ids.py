"""Ids derived from callers' ids stay within their SQL columns and stay the same for the same input."""

from __future__ import annotations

from domain.ids import MAX_EVENT_ID, MAX_ID, purchase_event_id, return_event_id, void_return_id


def test_short_ids_stay_readable() -> None:
    assert purchase_event_id("samantha", "txn-1") == "purchase:samantha:txn-1"
    assert void_return_id("txn-1") == "void:txn-1"


def test_the_longest_ids_fit_their_columns_and_stay_stable() -> None:
    customer, txn = "c" * 128, "t" * 128
    assert len(purchase_event_id(customer, txn)) <= MAX_EVENT_ID
    assert len(return_event_id(customer, "r" * 128)) <= MAX_EVENT_ID
    assert len(void_return_id(txn)) <= MAX_ID
    assert purchase_event_id(customer, txn) == purchase_event_id(customer, txn)
    assert purchase_event_id(customer, txn) != purchase_event_id(customer, "u" * 128)
