"""A member's data protection requests on the profile of record: everything held about her (export), and erasure
by re-keying her rows to an anonymous id, so the books still balance without naming her (forget)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from domain.ids import MAX_EVENT_ID, bounded, purchase_event_id, return_event_id
from domain.model import PurchaseKey
from store.sql_common import EngineViews, aware
from store.sql_models import (
    AppliedEvent,
    Customer,
    CustomerCategory,
    PointsAdjustment,
    PointsLedgerEntry,
    Purchase,
    PurchaseLine,
    PurchaseOffer,
    RefusedRecord,
    Return,
    ReturnLine,
    ReturnOffer,
)
from store.sql_profile import pending_points
from usecases.ports import ErasedIds

Doc = dict[str, Any]

# Tables whose rows name a customer, re-keyed by an erasure (customers itself is copied, then deleted).
_KEYED_BY_CUSTOMER: tuple[type[Any], ...] = (
    Purchase,
    PurchaseOffer,
    Return,
    PointsLedgerEntry,
    PointsAdjustment,
    CustomerCategory,
    RefusedRecord,
)
# Ids that spell the customer id, rewritten by an erasure, in the columns that hold them.
_ID_COLUMNS: tuple[Any, ...] = (AppliedEvent.event_id, RefusedRecord.event_id, PointsLedgerEntry.entry_id)
# Plain ids "<kind>:<customer_id>:<rest>": sales and returns ("sale:", "rtn:"; before store-scoped ids "purchase:",
# "return:"), expiries (event and ledger entry) and CRM records should any spell her id (today "customer:<uuid>").
# Ids too long to be plain are "<kind>:#<sha256>" of parts including her id: computed from her rows, see _renames.
_EVENT_KINDS = ("sale", "rtn", "purchase", "return", "expire", "customer")


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC, "Z" and microseconds always: one spelling for every time of the export."""
    return None if moment is None else aware(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SqlPrivacy:
    """Export and erasure of one member in the profile of record. Export reads one snapshot; erasure is one
    transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

    def export_customer(self, customer_id: str, *, now: datetime) -> Doc | None:
        """Her profile, categories, purchases (lines, offers), returns (lines, offers lost), ledger, adjustments and
        pending points as JSON-ready values (integers for money and points, ISO 8601 UTC times); None if unknown."""
        with Session(self._sql.snapshot) as session, session.begin():
            customer = session.get(Customer, customer_id)
            if customer is None:
                return None
            return {
                "profile": _profile(customer),
                "categories": _categories(session, customer_id),
                "purchases": _purchases(session, customer_id),
                "returns": _returns(session, customer_id),
                "ledger": _ledger(session, customer_id),
                "adjustments": _adjustments(session, customer_id),
                "pending_points": [
                    {"points": points, "available_at": iso(at)}
                    for at, points in pending_points(session, customer_id, aware(now))
                ],
            }

    def forget_customer(self, customer_id: str, *, anonymous_id: str, at: datetime) -> ErasedIds | None:
        """Moves her rows to `anonymous_id` (a new customer row without name, home or propensities, holding her
        amounts), rewrites the ids that spell her id, and deletes her row; None if unknown. Returns the ids of her
        purchases, returns and adjustments (their Redis keys go too)."""
        with Session(self._sql.writer) as session, session.begin():
            conn = session.connection()
            customer = session.get(Customer, customer_id)
            if customer is None:
                return None
            erased = ErasedIds(
                purchases=tuple(PurchaseKey(*row) for row in _rows(conn, Purchase, customer_id)),
                returns=tuple((PurchaseKey(s, t), r) for s, t, r in _rows(conn, Return, customer_id)),
                adjustment_ids=_ids(conn, PointsAdjustment.adjustment_id, PointsAdjustment.customer_id, customer_id),
            )
            conn.execute(sa.insert(Customer), [_anonymous_row(customer, anonymous_id, aware(at))])
            for model in _KEYED_BY_CUSTOMER:
                conn.execute(
                    sa.update(model).where(col(model.customer_id) == customer_id).values(customer_id=anonymous_id)
                )
            renames = _renames(erased, customer_id, anonymous_id)
            for column in _ID_COLUMNS:
                _rename(conn, column, renames)
                _rewrite_ids(conn, column, customer_id, anonymous_id)
            conn.execute(sa.delete(Customer).where(col(Customer.customer_id) == customer_id))
            return erased


def _anonymous_row(customer: Customer, anonymous_id: str, at: datetime) -> Doc:
    """Her amounts (so the ledger still adds up to the row's balance), nothing that names or locates her."""
    return {
        "customer_id": anonymous_id,
        "display_name": "",
        "tier": customer.tier,
        "currency": customer.currency,
        "lifetime_value_minor": customer.lifetime_value_minor,
        "points_balance": customer.points_balance,
        "points_debt": customer.points_debt,
        "purchase_count": customer.purchase_count,
        "last_purchase_at": customer.last_purchase_at,
        "home_latitude": None,
        "home_longitude": None,
        "propensity_json": "{}",
        "created_at": customer.created_at,
        "updated_at": at,
        "profile_changed_at": at,
        "tier_changed_at": customer.tier_changed_at,
    }


def _ids(conn: Connection, id_column: Any, customer_column: Any, customer_id: str) -> tuple[str, ...]:
    rows = conn.execute(sa.select(id_column).where(customer_column == customer_id).order_by(id_column)).scalars()
    return tuple(str(x) for x in rows)


def _rows(conn: Connection, model: type[Purchase] | type[Return], customer_id: str) -> list[tuple[str, ...]]:
    """Her purchases' (store, transaction) or returns' (store, transaction, return id), in key order."""
    key = [col(model.store_id), col(model.transaction_id)]
    if model is Return:
        key.append(col(Return.return_id))
    rows = conn.execute(sa.select(*key).where(col(model.customer_id) == customer_id).order_by(*key))
    return [tuple(str(part) for part in row) for row in rows]


def _renames(erased: ErasedIds, customer_id: str, anonymous_id: str) -> dict[str, str]:
    """The event ids of her sales and returns (domain/ids.py; also as spelled before store-scoped ids), hashed or
    plain, each with the anonymous member's."""
    renames: dict[str, str] = {}
    for p in erased.purchases:
        store, txn = p.store_id, p.transaction_id
        renames[purchase_event_id(customer_id, store, txn)] = purchase_event_id(anonymous_id, store, txn)
        renames[_legacy("purchase", customer_id, txn)] = _legacy("purchase", anonymous_id, txn)
    for p, rid in erased.returns:
        store, txn = p.store_id, p.transaction_id
        renames[return_event_id(customer_id, store, txn, rid)] = return_event_id(anonymous_id, store, txn, rid)
        renames[_legacy("return", customer_id, rid)] = _legacy("return", anonymous_id, rid)
    return renames


def _legacy(kind: str, customer_id: str, record_id: str) -> str:
    """An event id as spelled before store-scoped ids ("purchase:<customer>:<transaction>", "return:…")."""
    return bounded(kind, customer_id, record_id, limit=MAX_EVENT_ID)


def _rename(conn: Connection, column: Any, renames: dict[str, str]) -> None:
    """Rewrites the ids of `renames` that `column` holds."""
    found = [
        str(x)
        for chunk in _chunks(list(renames))
        for x in conn.execute(sa.select(column).where(column.in_(chunk))).scalars()
    ]
    _update(conn, column, {old: renames[old] for old in found})


def _rewrite_ids(conn: Connection, column: Any, customer_id: str, anonymous_id: str) -> None:
    """Ids "<kind>:<customer_id>:<rest>" become "<kind>:<anonymous_id>:<rest>" (hashed beyond the column's length,
    as domain/ids.py bounds them). Prefix compared exactly (no LIKE: an id may hold % or _)."""
    for kind in _EVENT_KINDS:
        prefix = f"{kind}:{customer_id}:"
        found = conn.execute(sa.select(column).where(sa.func.substr(column, 1, len(prefix)) == prefix)).scalars()
        _update(
            conn,
            column,
            {str(old): bounded(kind, anonymous_id, str(old)[len(prefix) :], limit=MAX_EVENT_ID) for old in found},
        )


def _update(conn: Connection, column: Any, renames: dict[str, str]) -> None:
    if renames:
        table, name = column.class_.__table__, column.key
        conn.execute(
            sa.update(table).where(table.c[name] == sa.bindparam("old")).values({name: sa.bindparam("new")}),
            [{"old": old, "new": new} for old, new in renames.items()],
        )


# -- the export's parts ---------------------------------------------------------------------------------------------


def _profile(c: Customer) -> Doc:
    home = None if c.home_latitude is None else {"latitude": c.home_latitude, "longitude": c.home_longitude}
    return {
        "customer_id": c.customer_id,
        "display_name": c.display_name,
        "tier": c.tier,
        "currency": c.currency,
        "lifetime_value_minor": c.lifetime_value_minor,
        "points_balance": c.points_balance,
        "points_debt": c.points_debt,
        "purchase_count": c.purchase_count,
        "last_purchase_at": iso(c.last_purchase_at),
        "home_location": home,
        "propensity": json.loads(c.propensity_json),
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
    }


def _categories(session: Session, customer_id: str) -> list[Doc]:
    rows = session.exec(
        select(CustomerCategory)
        .where(CustomerCategory.customer_id == customer_id)
        .order_by(col(CustomerCategory.category))
    ).all()
    return [{"category": r.category, "first_seen_at": iso(r.first_purchased_at), "source": r.source} for r in rows]


def _purchases(session: Session, customer_id: str) -> list[Doc]:
    """Her purchases with their lines and offers: a purchase is its store's transaction id (another store may
    have used the same transaction id for someone else's)."""
    purchases = session.exec(
        select(Purchase)
        .where(Purchase.customer_id == customer_id)
        .order_by(col(Purchase.committed_at), col(Purchase.store_id), col(Purchase.transaction_id))
    ).all()
    keys = [(p.store_id, p.transaction_id) for p in purchases]
    lines: dict[tuple[str, str], list[Doc]] = {k: [] for k in keys}
    offers: dict[tuple[str, str], list[Doc]] = {k: [] for k in keys}
    of_hers = (col(Purchase.store_id) == col(PurchaseLine.store_id)) & (
        col(Purchase.transaction_id) == col(PurchaseLine.transaction_id)
    )
    for line in session.exec(
        select(PurchaseLine)
        .join(Purchase, of_hers)
        .where(Purchase.customer_id == customer_id)
        .order_by(col(PurchaseLine.store_id), col(PurchaseLine.transaction_id), col(PurchaseLine.line_id))
    ).all():
        lines[(line.store_id, line.transaction_id)].append(_line(line))
    for offer in session.exec(
        select(PurchaseOffer)
        .where(PurchaseOffer.customer_id == customer_id)
        .order_by(col(PurchaseOffer.store_id), col(PurchaseOffer.transaction_id), col(PurchaseOffer.offer_id))
    ).all():
        offers.setdefault((offer.store_id, offer.transaction_id), []).append(
            {
                "offer_id": offer.offer_id,
                "offer_version": offer.offer_version,
                "bonus_points": offer.bonus_points,
                "discount_minor": offer.discount_minor,
            }
        )
    return [_purchase(p, lines[k], offers[k]) for p, k in zip(purchases, keys, strict=True)]


def _purchase(p: Purchase, lines: list[Doc], offers: list[Doc]) -> Doc:
    return {
        "transaction_id": p.transaction_id,
        "store_id": p.store_id,
        "terminal_id": p.terminal_id,
        "currency": p.currency,
        "occurred_at": iso(p.occurred_at),
        "committed_at": iso(p.committed_at),
        "subtotal_minor": p.subtotal_minor,
        "total_discount_minor": p.total_discount_minor,
        "total_due_minor": p.total_due_minor,
        "points_earned": p.points_earned,
        "points_redeemed": p.points_redeemed,
        "redeemed_value_minor": p.redeemed_value_minor,
        "lines": lines,
        "offers": offers,
    }


def _line(line: PurchaseLine) -> Doc:
    return {
        "line_id": line.line_id,
        "sku": line.sku,
        "category": line.category,
        "quantity": line.quantity,
        "unit_price_minor": line.unit_price_minor,
        "base_points": line.base_points,
        "bonus_points": line.bonus_points,
        "discount_minor": line.discount_minor,
        "offer_ids": [o for o in line.offer_ids.split(",") if o],
    }


def _returns(session: Session, customer_id: str) -> list[Doc]:
    """Her returns (each of a purchase: store, transaction id, return id) with their lines and the offers lost."""
    returns = session.exec(
        select(Return)
        .where(Return.customer_id == customer_id)
        .order_by(col(Return.committed_at), col(Return.store_id), col(Return.transaction_id), col(Return.return_id))
    ).all()
    keys = [(r.store_id, r.transaction_id, r.return_id) for r in returns]
    lines: dict[tuple[str, str, str], list[Doc]] = {k: [] for k in keys}
    lost: dict[tuple[str, str, str], list[str]] = {k: [] for k in keys}
    line_of_hers = (
        (col(Return.store_id) == col(ReturnLine.store_id))
        & (col(Return.transaction_id) == col(ReturnLine.transaction_id))
        & (col(Return.return_id) == col(ReturnLine.return_id))
    )
    for line in session.exec(
        select(ReturnLine)
        .join(Return, line_of_hers)
        .where(Return.customer_id == customer_id)
        .order_by(col(ReturnLine.return_id), col(ReturnLine.line_id))
    ).all():
        lines[(line.store_id, line.transaction_id, line.return_id)].append(
            {
                "line_id": line.line_id,
                "quantity": line.quantity,
                "points_reversed": line.points_reversed,
                "value_minor": line.value_minor,
            }
        )
    offer_of_hers = (
        (col(Return.store_id) == col(ReturnOffer.store_id))
        & (col(Return.transaction_id) == col(ReturnOffer.transaction_id))
        & (col(Return.return_id) == col(ReturnOffer.return_id))
    )
    for offer in session.exec(
        select(ReturnOffer)
        .join(Return, offer_of_hers)
        .where(Return.customer_id == customer_id)
        .order_by(col(ReturnOffer.offer_id))
    ).all():
        lost[(offer.store_id, offer.transaction_id, offer.return_id)].append(offer.offer_id)
    return [_return(r, lines[k], lost[k]) for r, k in zip(returns, keys, strict=True)]


def _return(r: Return, lines: list[Doc], offers_lost: list[str]) -> Doc:
    return {
        "return_id": r.return_id,
        "store_id": r.store_id,  # the purchase's store
        "transaction_id": r.transaction_id,
        "returning_store_id": r.returning_store_id,
        "voided": r.voided,
        "occurred_at": iso(r.occurred_at),
        "committed_at": iso(r.committed_at),
        "points_reversed": r.points_reversed,
        "points_refunded": r.points_refunded,
        "value_minor": r.value_minor,
        "lines": lines,
        "offers_lost": offers_lost,
    }


def _ledger(session: Session, customer_id: str) -> list[Doc]:
    rows = session.exec(
        select(PointsLedgerEntry)
        .where(PointsLedgerEntry.customer_id == customer_id)
        .order_by(col(PointsLedgerEntry.created_at), col(PointsLedgerEntry.entry_id))
    ).all()
    return [
        {
            "entry_id": e.entry_id,
            "kind": e.kind,
            "points": e.points,
            "store_id": e.store_id,
            "transaction_id": e.transaction_id,
            "created_at": iso(e.created_at),
            "available_at": iso(e.available_at),
            "reason": e.reason,
        }
        for e in rows
    ]


def _adjustments(session: Session, customer_id: str) -> list[Doc]:
    rows = session.exec(
        select(PointsAdjustment)
        .where(PointsAdjustment.customer_id == customer_id)
        .order_by(col(PointsAdjustment.adjusted_at), col(PointsAdjustment.adjustment_id))
    ).all()
    return [
        {
            "adjustment_id": a.adjustment_id,
            "points": a.points,
            "reason": a.reason,
            "balance_before": a.balance_before,
            "balance_after": a.balance_after,
            "points_debt_before": a.debt_before,
            "points_debt_after": a.debt_after,
            "adjusted_at": iso(a.adjusted_at),
        }
        for a in rows
    ]


def _chunks(ids: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    """IN lists of a bounded size (SQLite limits bound parameters)."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]
