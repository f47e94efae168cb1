"""The profile repository: applies write-behind records to SQL and reads back what Redis needs to be rebuilt.

Blocking (the server calls it through asyncio.to_thread); every method opens its own short session, so one
instance is shared by all threads. Works on SQLite and PostgreSQL: conflicts use each dialect's
INSERT ... ON CONFLICT, which both spell the same way in SQLAlchemy.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, func, select

from server.engine.model import GeoPoint, Store
from store.records import CustomerRecord, OutboxRecord, PurchaseRecord
from store.snapshot import CustomerSnapshot, StoredReceipt
from store.sql_db import write_engine
from store.sql_models import (
    AppliedEvent,
    Customer,
    CustomerCategory,
    OfferRow,
    PointsLedgerEntry,
    Purchase,
    PurchaseLine,
    PurchaseOffer,
    StoreRow,
)

log = logging.getLogger(__name__)

Insert = sqlite.Insert | postgresql.Insert
OfferTuple = tuple[str, int, bool, datetime]  # (definition_json, version, archived, updated_at)


def parse_timestamp(raw: str) -> datetime:
    """An ISO 8601 record timestamp as aware UTC (a naive one is taken as UTC, as records are written in UTC)."""
    value = datetime.fromisoformat(raw)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)


def _latest(current: Any, new: Any) -> ColumnElement[Any]:
    # Portable GREATEST that ignores NULL: SQLite's max() returns NULL if any argument is NULL.
    return sa.case((sa.or_(current.is_(None), current < new), new), else_=current)


def _earliest(current: Any, new: Any) -> ColumnElement[Any]:
    return sa.case((sa.or_(current.is_(None), new < current), new), else_=current)


class ProfileRepository:
    def __init__(self, engine: sa.Engine) -> None:
        if engine.dialect.name not in {"sqlite", "postgresql"}:
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self._engine = engine
        self._writer = write_engine(engine)
        self._postgres = engine.dialect.name == "postgresql"
        # PostgreSQL's default READ COMMITTED snapshots per statement; a rebuild must see one point in time.
        # SQLite's deferred transaction already reads one WAL snapshot.
        self._snapshot_reader = (
            engine.execution_options(isolation_level="REPEATABLE READ") if self._postgres else engine
        )

    # -- write-behind ------------------------------------------------------------------------------------------

    def apply_records(self, records: Sequence[OutboxRecord]) -> int:
        """Apply outbox records in one transaction, a savepoint each; returns how many were not applied before.

        One commit per batch, not per record: the commit (an fsync) is most of a record's cost. The
        applied_events row is inserted first, so a concurrent writer applying the same record blocks on it
        (PostgreSQL row lock, SQLite write lock) and then finds it there. All profile changes are deltas, so
        the order of records does not change the result. A lost connection or a deadlock fails the whole
        batch, which the writer then retries.
        """
        applied = 0
        with Session(self._writer) as session, session.begin():
            for record in records:
                try:
                    with session.begin_nested():
                        # Core statements on the session's connection: the ORM layer doubled the cost.
                        if self._apply_in(session.connection(), record):
                            applied += 1
                except IntegrityError:
                    # A record that contradicts stored data (same transaction or ledger id under another
                    # event): logged and skipped, because failing the batch would block the partition forever.
                    log.exception("outbox record %s conflicts with stored data; skipped", record.event_id)
        return applied

    def _apply_in(self, conn: Connection, record: OutboxRecord) -> bool:
        guard = (
            self._insert(AppliedEvent)
            .values(event_id=record.event_id, applied_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        if conn.execute(guard).rowcount == 0:
            return False
        if isinstance(record, PurchaseRecord):
            self._apply_purchase(conn, record)
        else:
            self._apply_customer(conn, record)
        return True

    def _insert(self, model: type[Any]) -> Insert:
        return postgresql.insert(model) if self._postgres else sqlite.insert(model)

    def _apply_purchase(self, conn: Connection, record: PurchaseRecord) -> None:
        occurred_at = parse_timestamp(record.occurred_at)
        committed_at = parse_timestamp(record.committed_at)
        points_delta = sum(entry.points for entry in record.ledger)
        customer = self._insert(Customer).values(
            customer_id=record.customer_id,
            display_name="",
            tier="",
            currency=record.currency,
            lifetime_value_minor=record.lifetime_value_delta,
            points_balance=points_delta,
            purchase_count=1,
            last_purchase_at=occurred_at,
            propensity_json="{}",
            created_at=committed_at,
            updated_at=committed_at,
        )
        excluded = customer.excluded
        conn.execute(
            customer.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={
                    "lifetime_value_minor": col(Customer.lifetime_value_minor) + excluded.lifetime_value_minor,
                    "points_balance": col(Customer.points_balance) + excluded.points_balance,
                    "purchase_count": col(Customer.purchase_count) + 1,
                    "last_purchase_at": _latest(col(Customer.last_purchase_at), excluded.last_purchase_at),
                    "created_at": _earliest(col(Customer.created_at), excluded.created_at),
                    "updated_at": _latest(col(Customer.updated_at), excluded.updated_at),
                },
            )
        )
        conn.execute(
            sa.insert(Purchase).values(
                transaction_id=record.transaction_id,
                customer_id=record.customer_id,
                store_id=record.store_id,
                terminal_id=record.terminal_id,
                currency=record.currency,
                occurred_at=occurred_at,
                committed_at=committed_at,
                subtotal_minor=record.subtotal_minor,
                total_discount_minor=record.total_discount_minor,
                total_due_minor=record.total_due_minor,
                points_earned=record.points_earned,
                points_redeemed=record.points_redeemed,
                redeemed_value_minor=record.redeemed_value_minor,
                request_digest=record.request_digest,
                receipt=base64.b64decode(record.receipt_b64, validate=True),
            )
        )
        if record.lines:
            conn.execute(
                sa.insert(PurchaseLine),
                [
                    {
                        "transaction_id": record.transaction_id,
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
                    for line in record.lines
                ],
            )
        if record.applied_offers:
            conn.execute(
                sa.insert(PurchaseOffer),
                [
                    {
                        "transaction_id": record.transaction_id,
                        "offer_id": offer.offer_id,
                        "customer_id": record.customer_id,
                        "offer_version": offer.offer_version,
                        "bonus_points": offer.bonus_points,
                        "discount_minor": offer.discount_minor,
                    }
                    for offer in record.applied_offers
                ],
            )
        self._add_ledger(
            conn,
            record.customer_id,
            [(entry.entry_id, record.transaction_id, entry.kind, entry.points) for entry in record.ledger],
            committed_at,
        )
        # new_categories is what Redis saw as new; the lines are the full truth, whatever order records arrive in.
        categories = [line.category for line in record.lines] + list(record.new_categories)
        self._add_categories(conn, record.customer_id, categories, occurred_at, "purchase")

    def _apply_customer(self, conn: Connection, record: CustomerRecord) -> None:
        updated_at = parse_timestamp(record.updated_at)
        customer = self._insert(Customer).values(
            customer_id=record.customer_id,
            display_name=record.display_name,
            tier=record.tier,
            currency=record.currency,
            lifetime_value_minor=record.lifetime_value_delta,
            points_balance=record.balance_delta,
            purchase_count=0,
            last_purchase_at=None,
            home_latitude=record.home_latitude,
            home_longitude=record.home_longitude,
            propensity_json=json.dumps(record.propensity, sort_keys=True, separators=(",", ":")),
            created_at=updated_at,
            updated_at=updated_at,
        )
        excluded = customer.excluded
        conn.execute(
            customer.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={
                    # Display fields are absolute: the last CRM record applied wins.
                    "display_name": excluded.display_name,
                    "tier": excluded.tier,
                    "currency": excluded.currency,
                    "home_latitude": excluded.home_latitude,
                    "home_longitude": excluded.home_longitude,
                    "propensity_json": excluded.propensity_json,
                    "lifetime_value_minor": col(Customer.lifetime_value_minor) + excluded.lifetime_value_minor,
                    "points_balance": col(Customer.points_balance) + excluded.points_balance,
                    "created_at": _earliest(col(Customer.created_at), excluded.created_at),
                    "updated_at": _latest(col(Customer.updated_at), excluded.updated_at),
                },
            )
        )
        if record.balance_delta != 0:
            self._add_ledger(
                conn,
                record.customer_id,
                [(f"{record.event_id}:adjust", None, "adjust", record.balance_delta)],
                updated_at,
            )
        self._add_categories(conn, record.customer_id, record.categories, updated_at, "crm")

    def _add_ledger(
        self,
        conn: Connection,
        customer_id: str,
        entries: Sequence[tuple[str, str | None, str, int]],
        created_at: datetime,
    ) -> None:
        # Plain INSERT: a duplicate entry_id under a new event is a conflict to surface, not to hide, since
        # points_balance has already been moved by these entries.
        if not entries:
            return
        conn.execute(
            sa.insert(PointsLedgerEntry),
            [
                {
                    "entry_id": entry_id,
                    "customer_id": customer_id,
                    "transaction_id": transaction_id,
                    "kind": kind,
                    "points": points,
                    "created_at": created_at,
                }
                for entry_id, transaction_id, kind, points in entries
            ],
        )

    def _add_categories(
        self, conn: Connection, customer_id: str, categories: Iterable[str], at: datetime, source: str
    ) -> None:
        for category in sorted({c for c in categories if c}):
            row = self._insert(CustomerCategory).values(
                customer_id=customer_id, category=category, first_purchased_at=at, source=source
            )
            excluded = row.excluded
            # Keep the earliest sighting (and its source), so out-of-order records converge on the same row.
            earlier = excluded.first_purchased_at < col(CustomerCategory.first_purchased_at)
            conn.execute(
                row.on_conflict_do_update(
                    index_elements=["customer_id", "category"],
                    set_={
                        "first_purchased_at": sa.case(
                            (earlier, excluded.first_purchased_at), else_=col(CustomerCategory.first_purchased_at)
                        ),
                        "source": sa.case((earlier, excluded.source), else_=col(CustomerCategory.source)),
                    },
                )
            )

    # -- reads for rebuilding Redis ----------------------------------------------------------------------------

    def load_customer(self, customer_id: str, *, receipts_since: datetime) -> CustomerSnapshot | None:
        """Everything Redis holds for a customer, read in one consistent snapshot; None if unknown."""
        since = _aware(receipts_since)
        with Session(self._snapshot_reader) as session, session.begin():
            customer = session.get(Customer, customer_id)
            if customer is None:
                return None
            categories = session.exec(
                select(CustomerCategory.category)
                .where(CustomerCategory.customer_id == customer_id)
                .order_by(col(CustomerCategory.category))
            ).all()
            uses = session.exec(
                select(PurchaseOffer.offer_id, func.count())
                .where(PurchaseOffer.customer_id == customer_id)
                .group_by(col(PurchaseOffer.offer_id))
            ).all()
            purchases = session.exec(
                select(Purchase)
                .where(Purchase.customer_id == customer_id, col(Purchase.committed_at) >= since)
                .order_by(col(Purchase.committed_at), col(Purchase.transaction_id))
            ).all()
            return CustomerSnapshot(
                customer_id=customer.customer_id,
                display_name=customer.display_name,
                tier=customer.tier,
                currency=customer.currency,
                lifetime_value_minor=customer.lifetime_value_minor,
                points_balance=customer.points_balance,
                purchase_count=customer.purchase_count,
                last_purchase_at=customer.last_purchase_at,
                home_latitude=customer.home_latitude,
                home_longitude=customer.home_longitude,
                categories=list(categories),
                propensity={str(k): float(v) for k, v in json.loads(customer.propensity_json).items()},
                offer_uses={offer_id: int(count) for offer_id, count in uses},
                receipts=[_receipt(p) for p in purchases],
            )

    def customer_exists(self, customer_id: str) -> bool:
        with Session(self._engine) as session:
            found = session.exec(select(Customer.customer_id).where(Customer.customer_id == customer_id)).first()
            return found is not None

    def get_purchase_receipt(self, transaction_id: str) -> StoredReceipt | None:
        with Session(self._engine) as session:
            purchase = session.get(Purchase, transaction_id)
            return None if purchase is None else _receipt(purchase)

    def ledger_balance(self, customer_id: str) -> int:
        with Session(self._engine) as session:
            total = session.exec(
                select(func.coalesce(func.sum(PointsLedgerEntry.points), 0)).where(
                    PointsLedgerEntry.customer_id == customer_id
                )
            ).one()
            return int(total)

    def list_categories(self, customer_id: str) -> list[str]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(CustomerCategory.category)
                .where(CustomerCategory.customer_id == customer_id)
                .order_by(col(CustomerCategory.category))
            ).all()
            return list(rows)

    # -- catalog of record -------------------------------------------------------------------------------------

    def upsert_offer(self, offer_id: str, title: str, definition_json: str, archived: bool) -> tuple[int, datetime]:
        """Create or replace an offer; returns its new version (1, then +1 per upsert) and updated_at."""
        now = datetime.now(UTC)
        stmt = self._insert(OfferRow).values(
            offer_id=offer_id,
            version=1,
            archived=archived,
            title=title,
            definition_json=definition_json,
            updated_at=now,
        )
        excluded = stmt.excluded
        # One statement, so concurrent upserts of the same offer each get their own version.
        upsert = stmt.on_conflict_do_update(
            index_elements=["offer_id"],
            set_={
                "version": col(OfferRow.version) + 1,
                "archived": excluded.archived,
                "title": excluded.title,
                "definition_json": excluded.definition_json,
                "updated_at": excluded.updated_at,
            },
        ).returning(col(OfferRow.version), col(OfferRow.updated_at))
        with Session(self._writer) as session, session.begin():
            version, updated_at = session.exec(upsert).one()
        return int(version), updated_at

    def get_offer(self, offer_id: str) -> OfferTuple | None:
        with Session(self._engine) as session:
            row = session.get(OfferRow, offer_id)
            return None if row is None else (row.definition_json, row.version, row.archived, row.updated_at)

    def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[OfferTuple]:
        """Offers ordered by offer_id, starting after `after_offer_id` ("" = from the start)."""
        query = select(OfferRow).where(col(OfferRow.offer_id) > after_offer_id)
        if not include_archived:
            query = query.where(col(OfferRow.archived).is_(False))
        query = query.order_by(col(OfferRow.offer_id)).limit(max(limit, 0))
        with Session(self._engine) as session:
            return [(r.definition_json, r.version, r.archived, r.updated_at) for r in session.exec(query).all()]

    def upsert_store(self, store: Store) -> None:
        location = store.location
        stmt = self._insert(StoreRow).values(
            store_id=store.store_id,
            name=store.name,
            latitude=None if location is None else location.latitude,
            longitude=None if location is None else location.longitude,
            timezone=store.timezone,
        )
        excluded = stmt.excluded
        upsert = stmt.on_conflict_do_update(
            index_elements=["store_id"],
            set_={
                "name": excluded.name,
                "latitude": excluded.latitude,
                "longitude": excluded.longitude,
                "timezone": excluded.timezone,
            },
        )
        with Session(self._writer) as session, session.begin():
            session.exec(upsert)

    def list_stores(self) -> list[Store]:
        with Session(self._engine) as session:
            return [_store(row) for row in session.exec(select(StoreRow).order_by(col(StoreRow.store_id))).all()]

    def get_store(self, store_id: str) -> Store | None:
        with Session(self._engine) as session:
            row = session.get(StoreRow, store_id)
            return None if row is None else _store(row)

    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).one()


def _receipt(purchase: Purchase) -> StoredReceipt:
    return StoredReceipt(
        transaction_id=purchase.transaction_id,
        request_digest=purchase.request_digest,
        receipt=bytes(purchase.receipt),
        committed_at=purchase.committed_at,
    )


def _store(row: StoreRow) -> Store:
    location = None
    if row.latitude is not None and row.longitude is not None:
        location = GeoPoint(latitude=row.latitude, longitude=row.longitude)
    return Store(store_id=row.store_id, name=row.name, location=location, timezone=row.timezone)
