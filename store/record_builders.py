"""Write-behind records built from the domain's values: what a commit, return, CRM import or expiry appends to the
outbox for the profile of record (records.py is their wire format)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.ids import purchase_entry_id, purchase_event_id, return_entry_id, return_event_id
from domain.model import Basket, BasketEvaluation, CustomerState, PurchaseFacts, Receipt, ReturnOutcome
from domain.tiers import is_tier_offer_id
from store.records import (
    AdjustmentRecord,
    AppliedOfferRecord,
    CustomerRecord,
    ExpiryRecord,
    LedgerEntry,
    PurchaseLineRecord,
    PurchaseRecord,
    ReturnLineRecord,
    ReturnRecord,
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def purchase_record(receipt: Receipt, digest: str) -> PurchaseRecord:
    """The record of a committed sale (its stored receipt travels beside it, not inside); the commit sets
    `receipt.basket`, `receipt.occurred_at` and `receipt.offers` (the applied offers as defined then)."""
    basket = receipt.basket
    if basket is None or receipt.occurred_at is None:
        raise ValueError("a purchase record needs the receipt's basket and sale time")
    occurred_at = receipt.occurred_at
    versions = {offer.offer_id: offer.version for offer in receipt.offers}
    ev = receipt.evaluation
    txn = receipt.transaction_id
    return PurchaseRecord(
        event_id=purchase_event_id(basket.customer_id, basket.store_id, txn),
        transaction_id=txn,
        customer_id=basket.customer_id,
        store_id=basket.store_id,
        terminal_id=basket.terminal_id,
        currency=basket.currency,
        occurred_at=_iso(occurred_at),
        committed_at=_iso(receipt.committed_at),
        subtotal_minor=ev.subtotal_minor,
        total_discount_minor=ev.total_discount_minor,
        total_due_minor=ev.total_due_minor,
        points_earned=ev.points_earned,
        points_redeemed=ev.points_redeemed,
        redeemed_value_minor=ev.redeemed_value_minor,
        # Lifetime value counts what the merchandise sold for, net of discounts (points are a tender).
        lifetime_value_delta=ev.subtotal_minor - ev.total_discount_minor,
        request_digest=digest,
        lines=_line_records(basket, ev),
        applied_offers=[  # offers only: a tier bonus is not an offer use (no limits, no budgets)
            AppliedOfferRecord(a.offer_id, versions.get(a.offer_id, 0), a.bonus_points, a.discount_minor)
            for a in ev.applied_offers
            if not is_tier_offer_id(a.offer_id)
        ],
        new_categories=list(receipt.new_categories),
        ledger=_purchase_ledger(basket.store_id, txn, ev),
        debt_repaid=ev.points_debt_repaid,
        tier_after=ev.tier_after if ev.tier_after != ev.tier_before else "",
    )


def _line_records(basket: Basket, ev: BasketEvaluation) -> list[PurchaseLineRecord]:
    results = {r.line_id: r for r in ev.lines}
    return [
        PurchaseLineRecord(
            line_id=line.line_id,
            sku=line.sku,
            category=line.category,
            quantity=line.quantity,
            unit_price_minor=line.unit_price_minor,
            base_points=results[line.line_id].base_points,
            bonus_points=results[line.line_id].bonus_points,
            discount_minor=results[line.line_id].discount_minor,
            offer_ids=list(results[line.line_id].offer_ids),
        )
        for line in basket.lines
    ]


def _purchase_ledger(store_id: str, txn: str, ev: BasketEvaluation) -> list[LedgerEntry]:
    """What the sale adds to her points ledger; earned points are pending until the returns window ends."""
    spendable_from = _iso(ev.points_available_at) if ev.points_available_at else ""
    ledger = [
        LedgerEntry(
            purchase_entry_id(store_id, txn, "earn"), "earn", sum(r.base_points for r in ev.lines), spendable_from
        ),
        LedgerEntry(
            purchase_entry_id(store_id, txn, "bonus"), "bonus", sum(r.bonus_points for r in ev.lines), spendable_from
        ),
        LedgerEntry(purchase_entry_id(store_id, txn, "redeem"), "redeem", -ev.points_redeemed),
    ]
    return [e for e in ledger if e.points != 0]


def return_record(
    outcome: ReturnOutcome,
    facts: PurchaseFacts,
    return_id: str,
    digest: str,
    *,
    voided: bool,
    at: datetime,
    returning_store_id: str = "",
) -> ReturnRecord:
    # Points taken back leave the purchase's pending points while they are pending, so the reversal is stamped
    # with when those points become spendable; refunded redeemed points were spendable and are so at once.
    spendable_from = _iso(facts.points_available_at) if facts.points_available_at else ""
    store_id, txn = facts.basket.store_id, facts.transaction_id
    ledger = [
        LedgerEntry(
            return_entry_id(store_id, txn, return_id, "reverse"), "reverse", -outcome.points_reversed, spendable_from
        ),
        LedgerEntry(return_entry_id(store_id, txn, return_id, "refund"), "refund", outcome.points_refunded),
    ]
    return ReturnRecord(
        event_id=return_event_id(facts.customer_id, store_id, txn, return_id),
        return_id=return_id,
        transaction_id=txn,
        store_id=store_id,
        returning_store_id=returning_store_id,
        customer_id=facts.customer_id,
        occurred_at=_iso(at),
        committed_at=_iso(at),
        voided=voided,
        lines=[ReturnLineRecord(x.line_id, x.quantity, x.points_reversed, x.value_minor) for x in outcome.lines],
        points_reversed=outcome.points_reversed,
        points_refunded=outcome.points_refunded,
        value_minor=outcome.value_minor,
        lifetime_value_delta=-outcome.value_minor,
        balance_delta=outcome.balance_after - outcome.balance_before,
        debt_delta=outcome.debt_after - outcome.debt_before,
        purchase_count_delta=-1 if voided else 0,
        offers_lost=list(outcome.offers_lost),
        request_digest=digest,
        ledger=[e for e in ledger if e.points != 0],
    )


def customer_record(state: CustomerState, now: datetime) -> CustomerRecord:
    """The record of a CRM import (the script adds the balance and lifetime value deltas beside it)."""
    cid = state.customer_id
    return CustomerRecord(
        event_id=f"customer:{uuid.uuid4().hex}",
        customer_id=cid,
        display_name=state.display_name,
        tier=state.tier,
        currency=state.currency,
        categories=sorted(state.categories),
        home_latitude=state.home.latitude if state.home else None,
        home_longitude=state.home.longitude if state.home else None,
        propensity=dict(state.propensity),
        lifetime_value_delta=0,  # the script computes both deltas atomically with the change
        balance_delta=0,
        updated_at=_iso(now),
    )


def expiry_record(customer_id: str, *, last_purchase_at: datetime, state_version: int, now: datetime) -> ExpiryRecord:
    return ExpiryRecord(
        # Keyed by her state, not only her last purchase: points that come back later in the same idle period
        # (a CRM adjustment, a refund) expire under a new id instead of being dropped as a duplicate by SQL.
        event_id=f"expire:{customer_id}:{int(last_purchase_at.timestamp() * 1000)}:{state_version}",
        customer_id=customer_id,
        points=0,  # the script fills it in, atomically with taking them
        expired_at=now.isoformat(),
    )


def adjustment_record(
    adjustment_id: str, customer_id: str, points: int, reason: str, digest: str, *, now: datetime
) -> AdjustmentRecord:
    """The record of a manual adjustment (the script adds its outcome beside it)."""
    return AdjustmentRecord(
        event_id=f"adjustment:{adjustment_id}",
        adjustment_id=adjustment_id,
        customer_id=customer_id,
        points=points,
        reason=reason,
        request_digest=digest,
        adjusted_at=_iso(now),
    )
