"""Write-behind records: what the Redis commit script appends to the outbox and the writer applies to SQL.

All numeric profile changes are deltas, so records applied out of order (a claimed entry from a dead writer)
still sum to the same profile; each record carries a unique `event_id` that makes applying it idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str  # unique, e.g. "sale:<store>:<txn>:earn" (domain/ids.py)
    kind: Literal["earn", "bonus", "redeem", "reverse", "refund", "expire", "adjust", "adjustment"]
    points: int  # signed: redeem is negative
    available_at: str = ""  # ISO 8601, UTC: the points are not spendable before then (pending); "" = at once


@dataclass(frozen=True, slots=True)
class PurchaseLineRecord:
    line_id: str
    sku: str
    category: str
    quantity: int
    unit_price_minor: int
    base_points: int
    bonus_points: int
    discount_minor: int
    offer_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AppliedOfferRecord:
    offer_id: str
    offer_version: int
    bonus_points: int
    discount_minor: int


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    event_id: str  # "sale:<customer_id>:<store_id>:<transaction_id>" (before store-scoped ids "purchase:…")
    transaction_id: str  # with store_id, the purchase
    customer_id: str
    store_id: str
    terminal_id: str
    currency: str
    occurred_at: str  # ISO 8601, UTC
    committed_at: str  # ISO 8601, UTC
    subtotal_minor: int
    total_discount_minor: int
    total_due_minor: int
    points_earned: int
    points_redeemed: int
    redeemed_value_minor: int
    lifetime_value_delta: int
    request_digest: str  # hex sha256 of the request; a replay with another digest is refused
    lines: list[PurchaseLineRecord]
    applied_offers: list[AppliedOfferRecord]
    new_categories: list[str]
    ledger: list[LedgerEntry]
    # The PurchaseReceipt protobuf, base64: replayed after Redis loses the customer. In the outbox the receipt
    # travels beside the record (the entry's "receipt" field) and the writer puts it back here; records of servers
    # before that carry it inline.
    receipt_b64: str = ""
    debt_repaid: int = 0  # earned points that paid back points debt instead of reaching the balance
    tier_after: str = ""  # set when this purchase reached a higher tier
    outbox_at: str = ""  # set by the writer: the outbox entry's time, the order Redis applied changes in
    kind: Literal["purchase"] = "purchase"


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A CRM import or admin edit of a customer. Display fields are absolute; money and points are deltas."""

    event_id: str  # "customer:<uuid>"
    customer_id: str
    display_name: str
    tier: str
    currency: str
    categories: list[str]
    home_latitude: float | None
    home_longitude: float | None
    propensity: dict[str, float]
    lifetime_value_delta: int
    balance_delta: int  # becomes one "adjust" ledger entry when non-zero
    updated_at: str  # ISO 8601, UTC
    outbox_at: str = ""  # set by the writer: the outbox entry's time, the order Redis applied changes in
    kind: Literal["customer"] = "customer"


@dataclass(frozen=True, slots=True)
class ReturnLineRecord:
    line_id: str
    quantity: int
    points_reversed: int
    value_minor: int


@dataclass(frozen=True, slots=True)
class ReturnRecord:
    """A return (or a void) of a committed purchase: correcting entries, never an edit of the purchase."""

    event_id: str  # "rtn:<customer_id>:<store_id>:<transaction_id>:<return_id>" (before: "return:<c>:<return_id>")
    return_id: str  # unique within its purchase
    transaction_id: str  # with store_id, the purchase returned
    customer_id: str
    occurred_at: str  # ISO 8601, UTC
    committed_at: str  # ISO 8601, UTC
    voided: bool
    lines: list[ReturnLineRecord]
    points_reversed: int  # >= 0
    points_refunded: int  # >= 0
    value_minor: int  # >= 0, merchandise value returned
    lifetime_value_delta: int  # <= 0
    balance_delta: int  # what the balance moved by (floored at zero: the rest is debt)
    debt_delta: int  # shortfall recorded as debt (> 0), or debt repaid by points coming back (< 0)
    purchase_count_delta: int  # -1 for a void, else 0
    offers_lost: list[str]  # offers whose bonus was taken back whole (their per-customer use is given back)
    request_digest: str
    ledger: list[LedgerEntry]  # "rtn:…:reverse" (negative) and "rtn:…:refund" (positive)
    receipt_b64: str = ""  # the ReturnReceipt protobuf, base64 (in the outbox beside the record, as for purchases)
    # A void: categories it took back off her profile (decided by the script: none bought them again since).
    categories_removed: list[str] = field(default_factory=list)
    # The purchase's store: empty only in records of servers before store-scoped ids (see SqlOutboxSink).
    store_id: str = ""
    returning_store_id: str = ""  # the store that took the goods back ("" = not said)
    kind: Literal["return"] = "return"


@dataclass(frozen=True, slots=True)
class ExpiryRecord:
    """Points taken by the expiry job after a period without purchases (one "expire" ledger entry)."""

    event_id: str  # "expire:<customer_id>:<last purchase, epoch ms>": one expiry per period of inactivity
    customer_id: str
    points: int  # > 0, taken from the balance
    expired_at: str  # ISO 8601, UTC
    kind: Literal["expiry"] = "expiry"


@dataclass(frozen=True, slots=True)
class AdjustmentRecord:
    """A manual points adjustment (AdjustPoints): one "adjustment" ledger entry (with its reason) and its
    points_adjustments row. The script decides the outcome (debt repaid first) and adds it beside the record."""

    event_id: str  # "adjustment:<adjustment_id>"
    adjustment_id: str
    customer_id: str
    points: int  # signed, non-zero: what her ledger (balance - debt) moves by
    reason: str
    request_digest: str
    adjusted_at: str  # ISO 8601, UTC
    balance_before: int = 0  # the outcome, set by the writer from the entry's "result"
    balance_after: int = 0
    debt_before: int = 0
    debt_after: int = 0
    kind: Literal["adjustment"] = "adjustment"

    @property
    def entry_id(self) -> str:
        """Its ledger entry's id, in Redis and SQL alike (no other entry id ends in ":adjustment")."""
        return adjustment_entry_id(self.adjustment_id)


def adjustment_entry_id(adjustment_id: str) -> str:
    return f"{adjustment_id}:adjustment"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit event of the till path (refused calls of one minute, a velocity alert), on its way to the audit
    table (usecases/audit.py). Its event id is also the audit row's."""

    event_id: str
    occurred_at: str  # ISO 8601, UTC
    action: str
    key_id: str = ""
    key_name: str = ""
    target: str = ""
    peer: str = ""
    request_id: str = ""
    outcome: str = ""
    detail: str = "{}"
    count: int = 1
    customer_id: str = ""  # never set: the record belongs to no customer (the writer's records all have the field)
    kind: Literal["audit"] = "audit"


OutboxRecord = PurchaseRecord | CustomerRecord | ReturnRecord | ExpiryRecord | AdjustmentRecord | AuditRecord


def _plain(obj: Any) -> dict[str, Any]:
    # Shallow: json calls this again for nested records. dataclasses.asdict deep-copies, a tenth of a commit.
    plain = {name: getattr(obj, name) for name in obj.__dataclass_fields__}
    # Fields added later are left out when empty: older writers still read such records (a rollback, a rolling
    # deploy), and load_record fills in their defaults.
    if isinstance(obj, LedgerEntry) and not obj.available_at:
        del plain["available_at"]
    if isinstance(obj, ReturnRecord):
        for name in ("categories_removed", "store_id", "returning_store_id"):
            if not plain[name]:
                del plain[name]
    if isinstance(obj, PurchaseRecord | CustomerRecord) and not obj.outbox_at:
        del plain["outbox_at"]
    if isinstance(obj, PurchaseRecord | ReturnRecord) and not obj.receipt_b64:
        del plain["receipt_b64"]  # the receipt travels beside the record (see store/writer.py parse_entry)
    return plain


def _build(cls: type[T], data: dict[str, Any]) -> T:
    """A record from its JSON, ignoring fields this version does not know: a newer server's records still load."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def dump_record(record: OutboxRecord) -> str:
    return json.dumps(_plain(record), default=_plain, separators=(",", ":"), sort_keys=True)


def load_record(raw: str | bytes) -> OutboxRecord:
    data: dict[str, Any] = json.loads(raw)
    kind = data.get("kind")
    if kind == "purchase":
        data["lines"] = [_build(PurchaseLineRecord, line) for line in data["lines"]]
        data["applied_offers"] = [_build(AppliedOfferRecord, a) for a in data["applied_offers"]]
        data["ledger"] = [_build(LedgerEntry, e) for e in data["ledger"]]
        return _build(PurchaseRecord, data)
    if kind == "customer":
        return _build(CustomerRecord, data)
    if kind == "expiry":
        return _build(ExpiryRecord, data)
    if kind == "adjustment":
        return _build(AdjustmentRecord, data)
    if kind == "audit":
        return _build(AuditRecord, data)
    if kind == "return":
        data["lines"] = [_build(ReturnLineRecord, line) for line in data["lines"]]
        data["ledger"] = [_build(LedgerEntry, e) for e in data["ledger"]]
        return _build(ReturnRecord, data)
    raise ValueError(f"unknown outbox record kind {kind!r}")
