"""Ids derived from callers' ids stay within their SQL columns and stay the same for the same input."""

from __future__ import annotations

from domain.ids import (
    MAX_EVENT_ID,
    MAX_ID,
    purchase_entry_id,
    purchase_event_id,
    return_entry_id,
    return_event_id,
    void_return_id,
)


def test_short_ids_stay_readable() -> None:
    assert purchase_event_id("samantha", "soho", "txn-1") == "sale:samantha:soho:txn-1"
    assert return_event_id("samantha", "soho", "txn-1", "r-1") == "rtn:samantha:soho:txn-1:r-1"
    assert purchase_entry_id("soho", "txn-1", "earn") == "sale:soho:txn-1:earn"
    assert return_entry_id("soho", "txn-1", "void:txn-1", "reverse") == "rtn:soho:txn-1:void:txn-1:reverse"
    assert void_return_id("txn-1") == "void:txn-1"


def test_the_longest_ids_fit_their_columns_and_stay_stable() -> None:
    customer, store, txn = "c" * 128, "s" * 128, "t" * 128
    assert len(purchase_event_id(customer, store, txn)) <= MAX_EVENT_ID
    assert len(return_event_id(customer, store, txn, "r" * 128)) <= MAX_EVENT_ID
    assert len(return_entry_id(store, txn, "r" * 128, "reverse")) <= MAX_EVENT_ID
    assert len(void_return_id(txn)) <= MAX_ID
    assert purchase_event_id(customer, store, txn) == purchase_event_id(customer, store, txn)
    assert purchase_event_id(customer, store, txn) != purchase_event_id(customer, store, "u" * 128)


def test_a_store_and_transaction_split_elsewhere_is_another_purchase() -> None:
    """Store "a:b" with transaction "c" is not store "a" with transaction "b:c": the ids say which."""
    assert purchase_event_id("m", "a:b", "c") != purchase_event_id("m", "a", "b:c")
    assert purchase_entry_id("a:b", "c", "earn") != purchase_entry_id("a", "b:c", "earn")
    assert return_entry_id("s", "a:b", "c", "refund") != return_entry_id("s", "a", "b:c", "refund")
    assert purchase_entry_id("a", "b:c", "earn") == "sale:a:b:c:earn"  # the last part may hold ':'
