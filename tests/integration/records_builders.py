"""Write-behind records for the SQL integration tests, built as the Redis scripts would write them.

`purchase_record` and `customer_record` build one consistent record each, with no state; `Member` keeps a customer's
hot state as Redis does (balance, points debt, lifetime value, purchases, offer uses) and moves it with every record
it builds, so a test can compare what SQL made of the records with what Redis holds.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from domain.ids import purchase_entry_id, purchase_event_id, return_entry_id, return_event_id
from store.records import (
    AppliedOfferRecord,
    CustomerRecord,
    LedgerEntry,
    PurchaseLineRecord,
    PurchaseRecord,
    ReturnLineRecord,
    ReturnRecord,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POINTS_PER_UNIT = 100  # minor units per base point (1 point per whole currency unit)
REDEEM_MINOR_PER_POINT = 1  # 100 points pay one whole unit
OFFER_BONUS = 50


def committed(at: datetime) -> datetime:
    """When a record that occurred at `at` was committed."""
    return at + timedelta(seconds=1)


def digest(request_id: str) -> str:
    """The request digest a record carries: the hex sha256 of its transaction or return id."""
    return hashlib.sha256(request_id.encode()).hexdigest()


def purchase_receipt(txn: str) -> bytes:
    """The PurchaseReceipt bytes stored with purchase `txn` (not a real protobuf, but not plain text either)."""
    return b"\x08\x01purchase:" + txn.encode()


def return_receipt(return_id: str) -> bytes:
    """The ReturnReceipt bytes stored with return `return_id`."""
    return b"\x08\x01return:" + return_id.encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def line(line_id: str, category: str, quantity: int, unit_price_minor: int, *, offer: str = "") -> PurchaseLineRecord:
    """A purchase line earning a point per whole unit, and OFFER_BONUS more when `offer` applied to it."""
    return PurchaseLineRecord(
        line_id=line_id,
        sku=f"sku-{category}-{line_id}",
        category=category,
        quantity=quantity,
        unit_price_minor=unit_price_minor,
        base_points=quantity * unit_price_minor // POINTS_PER_UNIT,
        bonus_points=OFFER_BONUS if offer else 0,
        discount_minor=0,
        offer_ids=[offer] if offer else [],
    )


def customer_record(
    customer_id: str,
    event: str,
    *,
    at: datetime,
    balance_delta: int,
    ltv_delta: int,
    categories: list[str],
    home: tuple[float, float] | None = None,
    propensity: dict[str, float] | None = None,
) -> CustomerRecord:
    """A CRM import of a gold member; `event` tells the customer's CRM records apart ("customer:<id>:<event>")."""
    return CustomerRecord(
        event_id=f"customer:{customer_id}:{event}",
        customer_id=customer_id,
        display_name=f"Member {customer_id}",
        tier="gold",
        currency="USD",
        categories=categories,
        home_latitude=home[0] if home else None,
        home_longitude=home[1] if home else None,
        propensity=dict(propensity or {}),
        lifetime_value_delta=ltv_delta,
        balance_delta=balance_delta,
        updated_at=at.isoformat(),
    )


def purchase_record(
    customer_id: str,
    txn: str,
    *,
    at: datetime,
    lines: list[PurchaseLineRecord],
    redeem: int = 0,
    store: str = "store-1",
) -> PurchaseRecord:
    """A consistent purchase at `store`: ledger, totals and applied offers all derived from the lines (no debt
    repaid)."""
    offers = sorted({offer_id for ln in lines for offer_id in ln.offer_ids})
    subtotal = sum(ln.quantity * ln.unit_price_minor for ln in lines)
    base = sum(ln.base_points for ln in lines)
    bonus = sum(ln.bonus_points for ln in lines)
    redeemed_value = redeem * REDEEM_MINOR_PER_POINT
    ledger = [LedgerEntry(entry_id=purchase_entry_id(store, txn, "earn"), kind="earn", points=base)]
    if bonus:
        ledger.append(LedgerEntry(entry_id=purchase_entry_id(store, txn, "bonus"), kind="bonus", points=bonus))
    if redeem:
        ledger.append(LedgerEntry(entry_id=purchase_entry_id(store, txn, "redeem"), kind="redeem", points=-redeem))
    return PurchaseRecord(
        event_id=purchase_event_id(customer_id, store, txn),
        transaction_id=txn,
        customer_id=customer_id,
        store_id=store,
        terminal_id="till-1",
        currency="USD",
        occurred_at=at.isoformat(),
        committed_at=committed(at).isoformat(),
        subtotal_minor=subtotal,
        total_discount_minor=0,
        total_due_minor=subtotal - redeemed_value,
        points_earned=base + bonus,
        points_redeemed=redeem,
        redeemed_value_minor=redeemed_value,
        lifetime_value_delta=subtotal - redeemed_value,
        request_digest=digest(txn),
        receipt_b64=_b64(purchase_receipt(txn)),
        lines=lines,
        applied_offers=[
            AppliedOfferRecord(offer_id=o, offer_version=1, bonus_points=OFFER_BONUS, discount_minor=0) for o in offers
        ],
        new_categories=[],
        ledger=ledger,
    )


@dataclass
class Member:
    """The customer's hot state as Redis keeps it: each record built here moves it like the scripts do."""

    customer_id: str
    balance: int = 0
    debt: int = 0
    ltv: int = 0
    purchases: int = 0
    uses: dict[str, int] = field(default_factory=dict)

    def crm(self, *, at: datetime, balance: int, ltv: int) -> CustomerRecord:
        self.balance += balance
        self.ltv += ltv
        return customer_record(
            self.customer_id, at.isoformat(), at=at, balance_delta=balance, ltv_delta=ltv, categories=["books"]
        )

    def purchase(
        self, txn: str, *, at: datetime, lines: list[PurchaseLineRecord], redeem: int = 0, store: str = "store-1"
    ) -> PurchaseRecord:
        record = purchase_record(self.customer_id, txn, at=at, lines=lines, redeem=redeem, store=store)
        # Earned points repay debt first; what is left reaches the balance.
        repaid = min(self.debt, record.points_earned)
        self.debt -= repaid
        self.balance += record.points_earned - repaid - record.points_redeemed
        assert self.balance >= 0, "the till refuses to redeem more than the balance"
        self.ltv += record.lifetime_value_delta
        self.purchases += 1
        for offer in record.applied_offers:
            self.uses[offer.offer_id] = self.uses.get(offer.offer_id, 0) + 1
        return replace(record, debt_repaid=repaid)

    def return_(
        self,
        return_id: str,
        bought: PurchaseRecord,
        *,
        at: datetime,
        quantities: dict[str, int],
        offers_lost: tuple[str, ...] = (),
        refund: int = 0,
        voided: bool = False,
        returning_store: str = "",
    ) -> ReturnRecord:
        """Returns `quantities` of `bought`'s lines (at `returning_store`); a lost offer takes the bonus of its lines
        back whole."""
        lines = returned_lines(bought, quantities, offers_lost)
        reversed_ = sum(ln.points_reversed for ln in lines)
        value = sum(ln.value_minor for ln in lines)
        store, txn = bought.store_id, bought.transaction_id
        ledger = []
        if reversed_:
            entry_id = return_entry_id(store, txn, return_id, "reverse")
            ledger.append(LedgerEntry(entry_id=entry_id, kind="reverse", points=-reversed_))
        if refund:
            ledger.append(
                LedgerEntry(entry_id=return_entry_id(store, txn, return_id, "refund"), kind="refund", points=refund)
            )
        # The balance is floored at zero; the rest of a reversal becomes debt.
        net = refund - reversed_
        balance_delta, debt_delta = (net, 0) if self.balance + net >= 0 else (-self.balance, -(self.balance + net))
        self.balance += balance_delta
        self.debt += debt_delta
        ltv_delta = -(value - refund)
        self.ltv += ltv_delta
        self.purchases -= 1 if voided else 0
        for offer_id in offers_lost:
            self.uses[offer_id] -= 1
        return ReturnRecord(
            event_id=return_event_id(self.customer_id, store, txn, return_id),
            return_id=return_id,
            transaction_id=txn,
            store_id=store,
            returning_store_id=returning_store,
            customer_id=self.customer_id,
            occurred_at=at.isoformat(),
            committed_at=committed(at).isoformat(),
            voided=voided,
            lines=lines,
            points_reversed=reversed_,
            points_refunded=refund,
            value_minor=value,
            lifetime_value_delta=ltv_delta,
            balance_delta=balance_delta,
            debt_delta=debt_delta,
            purchase_count_delta=-1 if voided else 0,
            offers_lost=list(offers_lost),
            request_digest=digest(return_id),
            receipt_b64=_b64(return_receipt(return_id)),
            ledger=ledger,
        )


def returned_lines(
    bought: PurchaseRecord, quantities: dict[str, int], offers_lost: tuple[str, ...]
) -> list[ReturnLineRecord]:
    """The return lines of `quantities` (line_id -> quantity) of `bought`: base points pro rata, and the whole bonus
    of a line whose offer is lost."""
    by_id = {ln.line_id: ln for ln in bought.lines}
    lines = []
    for line_id, quantity in quantities.items():
        bought_line = by_id[line_id]
        lost_bonus = bought_line.bonus_points if set(bought_line.offer_ids) & set(offers_lost) else 0
        lines.append(
            ReturnLineRecord(
                line_id=line_id,
                quantity=quantity,
                points_reversed=bought_line.base_points * quantity // bought_line.quantity + lost_bonus,
                value_minor=bought_line.unit_price_minor * quantity,
            )
        )
    return lines
