"""The unified profile read back from SQL: what Redis needs to rebuild a customer, and the lookups the till path
makes when Redis no longer holds a purchase."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from domain.model import PurchaseKey
from store.redis_limits import LEDGER_KEEP, RECENT_CATEGORY_WINDOW_S
from store.sql_common import EngineViews, aware
from store.sql_models import (
    Customer,
    CustomerCategory,
    PointsAdjustment,
    PointsLedgerEntry,
    Purchase,
    PurchaseLine,
    PurchaseOffer,
    Return,
    ReturnLine,
    ReturnOffer,
)
from usecases.ports import AdjustmentOutcome, StoredAdjustment
from usecases.snapshot import CustomerSnapshot, LedgerRow, StoredReceipt

RECENT_CATEGORY_WINDOW = timedelta(seconds=RECENT_CATEGORY_WINDOW_S)


class SqlProfiles:
    """Reads of the profile of record: a customer's whole snapshot for a Redis rebuild, a purchase's receipt and
    what was returned of it, the candidates for points expiry, and the health probe. Read-only."""

    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

    def load_customer(
        self,
        customer_id: str,
        *,
        receipts_since: datetime,
        spend_since: datetime | None = None,
        now: datetime | None = None,
    ) -> CustomerSnapshot | None:
        """Everything Redis holds for a customer, read in one consistent snapshot; None if unknown."""
        since = aware(receipts_since)
        with Session(self._sql.snapshot) as session, session.begin():
            customer = session.get(Customer, customer_id)
            if customer is None:
                return None
            at = aware(now or datetime.now(UTC))
            return CustomerSnapshot(
                spend_by_month=_spend_by_month(session, customer_id, aware(spend_since)) if spend_since else {},
                ledger=_newest_ledger(session, customer_id),
                pending_points=pending_points(session, customer_id, at),
                recent_category_purchases=_recent_category_purchases(session, customer_id, at - RECENT_CATEGORY_WINDOW),
                customer_id=customer.customer_id,
                display_name=customer.display_name,
                tier=customer.tier,
                currency=customer.currency,
                lifetime_value_minor=customer.lifetime_value_minor,
                points_balance=customer.points_balance,
                points_debt=customer.points_debt,
                purchase_count=customer.purchase_count,
                last_purchase_at=customer.last_purchase_at,
                home_latitude=customer.home_latitude,
                home_longitude=customer.home_longitude,
                categories=_categories(session, customer_id),
                propensity={str(k): float(v) for k, v in json.loads(customer.propensity_json).items()},
                offer_uses=_offer_uses(session, customer_id),
                receipts=[stored_purchase_receipt(p) for p in _purchases_since(session, customer_id, since)],
                returned=_returned_since(session, customer_id, since),
                return_receipts=[stored_return_receipt(r) for r in _returns_since(session, customer_id, since)],
            )

    def get_purchase_receipt(self, purchase: PurchaseKey) -> StoredReceipt | None:
        with Session(self._sql.reader) as session:
            row = session.get(Purchase, (purchase.store_id, purchase.transaction_id))
            return None if row is None else stored_purchase_receipt(row)

    def returned_quantities(self, purchase: PurchaseKey) -> dict[str, int]:
        """line_id -> quantity returned so far, over every return of the purchase (empty when none)."""
        with Session(self._sql.reader) as session:
            rows = session.exec(
                select(ReturnLine.line_id, func.sum(ReturnLine.quantity))
                .where(ReturnLine.store_id == purchase.store_id, ReturnLine.transaction_id == purchase.transaction_id)
                .group_by(col(ReturnLine.line_id))
            ).all()
            return {line_id: int(quantity or 0) for line_id, quantity in rows}

    def inactive_customers(self, *, cutoff: datetime, after_customer_id: str, limit: int) -> list[str]:
        """Customers with points whose last purchase was before `cutoff`, by id (keyset pages): expiry candidates."""
        with Session(self._sql.reader) as session:
            rows = session.exec(
                select(Customer.customer_id)
                .where(
                    col(Customer.points_balance) > 0,
                    col(Customer.last_purchase_at) < aware(cutoff),
                    col(Customer.customer_id) > after_customer_id,
                )
                .order_by(col(Customer.customer_id))
                .limit(limit)
            ).all()
            return list(rows)

    def get_adjustment(self, adjustment_id: str) -> StoredAdjustment | None:
        """A manual adjustment of record: its request's digest and outcome (for replays after Redis forgot it)."""
        with Session(self._sql.reader) as session:
            row = session.get(PointsAdjustment, adjustment_id)
            if row is None:
                return None
            return StoredAdjustment(
                row.request_digest,
                AdjustmentOutcome(
                    adjustment_id=row.adjustment_id,
                    customer_id=row.customer_id,
                    points=row.points,
                    balance_before=row.balance_before,
                    balance_after=row.balance_after,
                    debt_before=row.debt_before,
                    debt_after=row.debt_after,
                    adjusted_at=row.adjusted_at,
                ),
            )

    def ping(self) -> None:
        """Raises unless the database answers (the readiness probe)."""
        with self._sql.reader.connect() as conn:
            conn.execute(sa.text("SELECT 1")).one()


# -- the parts of a snapshot, each one query in the caller's session ---------------------------------------------


def _categories(session: Session, customer_id: str) -> list[str]:
    rows = session.exec(
        select(CustomerCategory.category)
        .where(CustomerCategory.customer_id == customer_id)
        .order_by(col(CustomerCategory.category))
    ).all()
    return list(rows)


def _offer_uses(session: Session, customer_id: str) -> dict[str, int]:
    """Uses earned by her purchases, less those a return gave back (no return_offers row)."""
    rows = session.exec(
        select(PurchaseOffer.offer_id, func.count())
        .outerjoin(
            ReturnOffer,
            sa.and_(
                col(ReturnOffer.store_id) == col(PurchaseOffer.store_id),
                col(ReturnOffer.transaction_id) == col(PurchaseOffer.transaction_id),
                col(ReturnOffer.offer_id) == col(PurchaseOffer.offer_id),
            ),
        )
        .where(PurchaseOffer.customer_id == customer_id, col(ReturnOffer.offer_id).is_(None))
        .group_by(col(PurchaseOffer.offer_id))
    ).all()
    return {offer_id: int(count) for offer_id, count in rows}


def _purchases_since(session: Session, customer_id: str, since: datetime) -> Sequence[Purchase]:
    return session.exec(
        select(Purchase)
        .where(Purchase.customer_id == customer_id, col(Purchase.committed_at) >= since)
        .order_by(col(Purchase.committed_at), col(Purchase.store_id), col(Purchase.transaction_id))
    ).all()


def _returned_since(session: Session, customer_id: str, since: datetime) -> dict[PurchaseKey, dict[str, int]]:
    """purchase -> line_id -> quantity returned, for her purchases committed since `since`."""
    rows = session.exec(
        select(ReturnLine.store_id, ReturnLine.transaction_id, ReturnLine.line_id, func.sum(ReturnLine.quantity))
        .join(Purchase, _same_purchase(Purchase, ReturnLine))
        .where(Purchase.customer_id == customer_id, col(Purchase.committed_at) >= since)
        .group_by(col(ReturnLine.store_id), col(ReturnLine.transaction_id), col(ReturnLine.line_id))
    ).all()
    returned: dict[PurchaseKey, dict[str, int]] = {}
    for store_id, transaction_id, line_id, quantity in rows:
        returned.setdefault(PurchaseKey(store_id, transaction_id), {})[line_id] = int(quantity or 0)
    return returned


def _same_purchase(
    a: type[Purchase], b: type[Return] | type[ReturnLine] | type[PurchaseLine]
) -> sa.ColumnElement[bool]:
    """Join condition: the rows are of the same purchase (store and transaction id)."""
    return sa.and_(col(a.store_id) == col(b.store_id), col(a.transaction_id) == col(b.transaction_id))


def _returns_since(session: Session, customer_id: str, since: datetime) -> Sequence[Return]:
    """Her returns committed since `since` (by their own time, not their purchase's)."""
    return session.exec(
        select(Return)
        .where(Return.customer_id == customer_id, col(Return.committed_at) >= since)
        .order_by(col(Return.committed_at), col(Return.store_id), col(Return.transaction_id), col(Return.return_id))
    ).all()


def _newest_ledger(session: Session, customer_id: str) -> list[LedgerRow]:
    """Her newest ledger entries, as many as Redis keeps, oldest first."""
    newest = session.exec(
        select(PointsLedgerEntry)
        .where(PointsLedgerEntry.customer_id == customer_id)
        .order_by(col(PointsLedgerEntry.created_at).desc(), col(PointsLedgerEntry.entry_id).desc())
        .limit(LEDGER_KEEP)
    ).all()
    return [LedgerRow(e.entry_id, e.kind, e.points, e.created_at, e.available_at) for e in reversed(newest)]


def _spend_by_month(session: Session, customer_id: str, since: datetime) -> dict[str, int]:
    """Net spend per UTC month of the sale: purchases, minus returns counted in their purchase's month."""
    spend: dict[str, int] = {}
    sales = session.exec(
        select(Purchase.occurred_at, Purchase.subtotal_minor, Purchase.total_discount_minor).where(
            Purchase.customer_id == customer_id, col(Purchase.occurred_at) >= since
        )
    ).all()
    for occurred_at, subtotal, discount in sales:
        month = occurred_at.strftime("%Y%m")
        spend[month] = spend.get(month, 0) + subtotal - discount
    returned = session.exec(
        select(Purchase.occurred_at, Return.value_minor)
        .join(Purchase, _same_purchase(Purchase, Return))
        .where(Return.customer_id == customer_id, col(Purchase.occurred_at) >= since)
    ).all()
    for occurred_at, value in returned:
        month = occurred_at.strftime("%Y%m")
        spend[month] = spend.get(month, 0) - value
    return spend


def _recent_category_purchases(session: Session, customer_id: str, since: datetime) -> dict[str, int]:
    """category -> her purchases of it committed since `since`, voided ones left out."""
    voided = sa.select(col(Return.return_id)).where(_same_purchase(Purchase, Return), col(Return.voided).is_(True))
    # Purchases counted by their (store, transaction id), which one string holds unambiguously (ids have no spaces).
    purchase = col(Purchase.store_id) + " " + col(Purchase.transaction_id)
    rows = session.exec(
        select(PurchaseLine.category, func.count(sa.distinct(purchase)))
        .join(Purchase, _same_purchase(Purchase, PurchaseLine))
        .where(
            Purchase.customer_id == customer_id,
            col(Purchase.committed_at) >= since,
            ~voided.exists(),  # correlated: uses the returns' primary key (store_id, transaction_id, return_id)
        )
        .group_by(col(PurchaseLine.category))
    ).all()
    return {str(category): int(count) for category, count in rows}


def pending_points(session: Session, customer_id: str, now: datetime) -> list[tuple[datetime, int]]:
    """Ledger points not spendable at `now` (aware), summed by when they become spendable (as Redis keeps them)."""
    rows = session.exec(
        select(PointsLedgerEntry.available_at, func.sum(PointsLedgerEntry.points))
        .where(PointsLedgerEntry.customer_id == customer_id, col(PointsLedgerEntry.available_at) > now)
        .group_by(col(PointsLedgerEntry.available_at))
        .order_by(col(PointsLedgerEntry.available_at))
    ).all()
    return [(aware(at), int(points)) for at, points in rows if at is not None and points]


def stored_purchase_receipt(purchase: Purchase) -> StoredReceipt:
    """The PurchaseReceipt stored with a purchase row, as a rebuild hands it to Redis."""
    return StoredReceipt(
        transaction_id=purchase.transaction_id,
        request_digest=purchase.request_digest,
        receipt=bytes(purchase.receipt),
        committed_at=purchase.committed_at,
        store_id=purchase.store_id,
    )


def stored_return_receipt(row: Return) -> StoredReceipt:
    """The ReturnReceipt stored with a return row, with its purchase and return id."""
    return StoredReceipt(
        transaction_id=row.transaction_id,
        request_digest=row.request_digest,
        receipt=bytes(row.receipt),
        committed_at=row.committed_at,
        store_id=row.store_id,
        return_id=row.return_id,
    )
