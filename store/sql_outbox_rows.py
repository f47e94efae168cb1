"""Outbox records as the rows the write-behind sink writes: pure functions, no database.

Several records of a batch can touch one row (a customer, a category, an offer of a purchase); these functions fold
them into one row each, so the sink writes every table with one set-based statement whatever the order of records.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from store.records import (
    AdjustmentRecord,
    AppliedOfferRecord,
    CustomerRecord,
    ExpiryRecord,
    PurchaseLineRecord,
    PurchaseRecord,
    ReturnLineRecord,
    ReturnRecord,
)
from store.sql_common import parse_timestamp

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = dict[str, Any]


# -- purchases and returns: one row per record, line or applied offer --------------------------------------------


def purchase_row(r: PurchaseRecord) -> Row:
    return {
        "transaction_id": r.transaction_id,
        "customer_id": r.customer_id,
        "store_id": r.store_id,
        "terminal_id": r.terminal_id,
        "currency": r.currency,
        "occurred_at": parse_timestamp(r.occurred_at),
        "committed_at": parse_timestamp(r.committed_at),
        "subtotal_minor": r.subtotal_minor,
        "total_discount_minor": r.total_discount_minor,
        "total_due_minor": r.total_due_minor,
        "points_earned": r.points_earned,
        "points_redeemed": r.points_redeemed,
        "redeemed_value_minor": r.redeemed_value_minor,
        "request_digest": r.request_digest,
        "receipt": base64.b64decode(r.receipt_b64, validate=True),
    }


def line_row(r: PurchaseRecord, line: PurchaseLineRecord) -> Row:
    return {
        "store_id": r.store_id,
        "transaction_id": r.transaction_id,
        "line_id": line.line_id,
        "sku": line.sku,
        "category": line.category,
        "quantity": line.quantity,
        "unit_price_minor": line.unit_price_minor,
        "base_points": line.base_points,
        "bonus_points": line.bonus_points,
        "discount_minor": line.discount_minor,
        "offer_ids": ",".join(line.offer_ids),
    }


def offer_row(r: PurchaseRecord, offer: AppliedOfferRecord) -> Row:
    return {
        "store_id": r.store_id,
        "transaction_id": r.transaction_id,
        "offer_id": offer.offer_id,
        "customer_id": r.customer_id,
        "offer_version": offer.offer_version,
        "bonus_points": offer.bonus_points,
        "discount_minor": offer.discount_minor,
    }


def return_row(r: ReturnRecord) -> Row:
    return {
        "store_id": r.store_id,
        "transaction_id": r.transaction_id,
        "return_id": r.return_id,
        "returning_store_id": r.returning_store_id or None,
        "customer_id": r.customer_id,
        "occurred_at": parse_timestamp(r.occurred_at),
        "committed_at": parse_timestamp(r.committed_at),
        "voided": r.voided,
        "points_reversed": r.points_reversed,
        "points_refunded": r.points_refunded,
        "value_minor": r.value_minor,
        "lifetime_value_delta": r.lifetime_value_delta,
        "request_digest": r.request_digest,
        "receipt": base64.b64decode(r.receipt_b64, validate=True),
    }


def return_line_row(r: ReturnRecord, line: ReturnLineRecord) -> Row:
    return {
        "store_id": r.store_id,
        "transaction_id": r.transaction_id,
        "return_id": r.return_id,
        "line_id": line.line_id,
        "quantity": line.quantity,
        "points_reversed": line.points_reversed,
        "value_minor": line.value_minor,
    }


def lost_offer_rows(returns: list[ReturnRecord]) -> list[Row]:
    """return_offers rows: an offer of a purchase is lost once, to the first return of the batch naming it."""
    lost: dict[tuple[str, str, str], str] = {}
    for r in returns:
        for offer_id in r.offers_lost:
            lost.setdefault((r.store_id, r.transaction_id, offer_id), r.return_id)
    return [
        {"store_id": store, "transaction_id": txn, "offer_id": offer_id, "return_id": return_id}
        for (store, txn, offer_id), return_id in lost.items()
    ]


# -- the points ledger -------------------------------------------------------------------------------------------


def ledger_row(
    r: PurchaseRecord | CustomerRecord | ReturnRecord | ExpiryRecord | AdjustmentRecord,
    entry_id: str,
    kind: str,
    points: int,
    available_at: str = "",
) -> Row:
    """A ledger row; an entry of a sale or a return names its purchase (store and transaction id)."""
    store_id: str | None = None
    transaction_id: str | None = None
    if isinstance(r, CustomerRecord):
        at = r.updated_at
    elif isinstance(r, ExpiryRecord):
        at = r.expired_at
    elif isinstance(r, AdjustmentRecord):
        at = r.adjusted_at
    else:
        at = r.committed_at
        store_id, transaction_id = r.store_id, r.transaction_id
    return {
        "entry_id": entry_id,
        "customer_id": r.customer_id,
        "store_id": store_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "points": points,
        "created_at": parse_timestamp(at),
        "available_at": parse_timestamp(available_at) if available_at else None,
        "reason": r.reason if isinstance(r, AdjustmentRecord) else None,
    }


def ledger_rows(
    purchases: list[PurchaseRecord],
    crm: list[CustomerRecord],
    returns: list[ReturnRecord],
    expiries: list[ExpiryRecord],
    adjustments: Sequence[AdjustmentRecord] = (),
) -> list[Row]:
    """Every ledger entry of the batch: a return's entries belong to the purchase it corrects, a CRM opening balance
    is an "adjust" entry, an expiry takes its points, a manual adjustment is an "adjustment" entry with its reason."""
    corrected: list[PurchaseRecord | ReturnRecord] = [*purchases, *returns]
    rows = [ledger_row(r, e.entry_id, e.kind, e.points, e.available_at) for r in corrected for e in r.ledger]
    rows += [ledger_row(r, f"{r.event_id}:adjust", "adjust", r.balance_delta) for r in crm if r.balance_delta]
    rows += [ledger_row(r, f"{r.event_id}:expire", "expire", -r.points) for r in expiries]
    rows += [ledger_row(r, r.entry_id, "adjustment", r.points) for r in adjustments]
    return rows


def adjustment_row(r: AdjustmentRecord) -> Row:
    return {
        "adjustment_id": r.adjustment_id,
        "customer_id": r.customer_id,
        "points": r.points,
        "reason": r.reason,
        "request_digest": r.request_digest,
        "balance_before": r.balance_before,
        "balance_after": r.balance_after,
        "debt_before": r.debt_before,
        "debt_after": r.debt_after,
        "adjusted_at": parse_timestamp(r.adjusted_at),
    }


# -- customers: one row per customer, the batch's deltas summed ----------------------------------------------------


def applied_at(r: PurchaseRecord | CustomerRecord) -> datetime:
    """When Redis applied the change: its outbox entry's time (the writer sets it); else the server's stamp."""
    if r.outbox_at:
        return parse_timestamp(r.outbox_at)
    return parse_timestamp(r.committed_at if isinstance(r, PurchaseRecord) else r.updated_at)


def tier_upgrades(purchases: list[PurchaseRecord]) -> dict[str, tuple[datetime, str]]:
    """customer_id -> (when, tier) of the newest purchase of the batch that reached a higher tier."""
    upgrades: dict[str, tuple[datetime, str]] = {}
    for r in purchases:
        if r.tier_after:
            upgrades[r.customer_id] = max(upgrades.get(r.customer_id, (_EPOCH, "")), (applied_at(r), r.tier_after))
    return upgrades


def customer_rows(
    purchases: list[PurchaseRecord], crm: list[CustomerRecord], returns: list[ReturnRecord]
) -> dict[str, Row]:
    """customer_id -> her row: deltas summed over the batch, display fields from her newest CRM record.

    `has_display` tells the rows a CRM record set display fields in (they are upserted apart). Points keep
    sum(ledger) == points_balance - points_debt: earned points that repaid debt move the debt, not the balance, and
    a return's reversal beyond the balance becomes debt.
    """
    rows: dict[str, Row] = {}
    for r in crm:
        _add_crm_record(rows, r)
    for p in purchases:
        committed_at = parse_timestamp(p.committed_at)
        row = _customer_row(rows, p.customer_id, p.currency, committed_at)
        points = sum(entry.points for entry in p.ledger)
        _add_deltas(
            row,
            ltv=p.lifetime_value_delta,
            points=points - p.debt_repaid,
            debt=-p.debt_repaid,
            purchases=1,
            purchased_at=parse_timestamp(p.occurred_at),
            at=committed_at,
        )
    for ret in returns:
        if ret.balance_delta - ret.debt_delta != sum(entry.points for entry in ret.ledger):
            log.warning("return %s: balance and debt deltas do not match its ledger", ret.return_id)
        committed_at = parse_timestamp(ret.committed_at)
        # Her row exists (her purchase does), so the currency is never inserted from here.
        row = _customer_row(rows, ret.customer_id, "", committed_at)
        _add_deltas(
            row,
            ltv=ret.lifetime_value_delta,
            points=ret.balance_delta,
            debt=ret.debt_delta,
            purchases=ret.purchase_count_delta,
            purchased_at=None,
            at=committed_at,
        )
    return rows


def _customer_row(rows: dict[str, Row], customer_id: str, currency: str, at: datetime) -> Row:
    """Her row in `rows`, added with no deltas (and no display fields) the first time."""
    return rows.setdefault(
        customer_id,
        {
            "customer_id": customer_id,
            "display_name": "",
            "tier": "",
            "currency": currency,
            "home_latitude": None,
            "home_longitude": None,
            "propensity_json": "{}",
            "lifetime_value_minor": 0,
            "points_balance": 0,
            "points_debt": 0,
            "purchase_count": 0,
            "last_purchase_at": None,
            "created_at": at,
            "updated_at": at,
            "profile_changed_at": None,
            "tier_changed_at": None,
            "has_display": False,
        },
    )


def _add_crm_record(rows: dict[str, Row], r: CustomerRecord) -> None:
    at = parse_timestamp(r.updated_at)
    row = _customer_row(rows, r.customer_id, r.currency, at)
    _add_deltas(row, ltv=r.lifetime_value_delta, points=r.balance_delta, purchases=0, purchased_at=None, at=at)
    changed_at = applied_at(r)
    if row["profile_changed_at"] is not None and row["profile_changed_at"] > changed_at:
        return  # an older CRM record claimed late: its display fields are out of date
    row.update(
        profile_changed_at=changed_at,
        tier_changed_at=changed_at,
        display_name=r.display_name,
        tier=r.tier,
        currency=r.currency,
        home_latitude=r.home_latitude,
        home_longitude=r.home_longitude,
        propensity_json=json.dumps(r.propensity, sort_keys=True, separators=(",", ":")),
        has_display=True,
    )


def _add_deltas(
    row: Row,
    *,
    ltv: int,
    points: int,
    debt: int = 0,
    purchases: int,
    purchased_at: datetime | None,
    at: datetime,
) -> None:
    row["lifetime_value_minor"] += ltv
    row["points_balance"] += points
    row["points_debt"] += debt
    row["purchase_count"] += purchases
    if purchased_at is not None and (row["last_purchase_at"] is None or purchased_at > row["last_purchase_at"]):
        row["last_purchase_at"] = purchased_at
    row["created_at"] = min(row["created_at"], at)
    row["updated_at"] = max(row["updated_at"], at)


# -- categories ----------------------------------------------------------------------------------------------------


def category_rows(purchases: list[PurchaseRecord], crm: list[CustomerRecord]) -> list[Row]:
    """customer_categories rows: the earliest sighting in the batch of each of her categories, with its source.

    new_categories is what Redis saw as new; the lines are the full truth, whatever order records arrive in.
    """
    earliest: dict[tuple[str, str], tuple[datetime, str]] = {}
    sightings = [
        (p.customer_id, c, parse_timestamp(p.occurred_at), "purchase")
        for p in purchases
        for c in [line.category for line in p.lines] + list(p.new_categories)
    ]
    sightings += [(r.customer_id, c, parse_timestamp(r.updated_at), "crm") for r in crm for c in r.categories]
    for customer_id, category, at, source in sightings:
        key = (customer_id, category)
        if category and (key not in earliest or at < earliest[key][0]):
            earliest[key] = (at, source)
    return [
        {"customer_id": cid, "category": cat, "first_purchased_at": at, "source": source}
        for (cid, cat), (at, source) in sorted(earliest.items())
    ]


def voided_category_rows(returns: list[ReturnRecord]) -> list[Row]:
    """The categories voids took back from her (as Redis did), with when: bind parameters of the delete."""
    return [
        {"cid": r.customer_id, "cat": category, "voided_at": parse_timestamp(r.committed_at)}
        for r in returns
        for category in r.categories_removed
    ]
