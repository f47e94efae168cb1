"""The profile repository: applies write-behind records to SQL and reads back what Redis needs to be rebuilt.

Blocking (the server calls it through asyncio.to_thread); every method opens its own short session, so one
instance is shared by all threads. Works on SQLite and PostgreSQL: conflicts use each dialect's
INSERT ... ON CONFLICT, which both spell the same way in SQLAlchemy.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, func, select

from server.engine.model import GeoPoint, Store
from store.records import AppliedOfferRecord, CustomerRecord, OutboxRecord, PurchaseLineRecord, PurchaseRecord
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


def _add_deltas(
    row: dict[str, Any], ltv: int, points: int, purchases: int, purchased_at: datetime | None, at: datetime
) -> None:
    row["lifetime_value_minor"] += ltv
    row["points_balance"] += points
    row["purchase_count"] += purchases
    if purchased_at is not None and (row["last_purchase_at"] is None or purchased_at > row["last_purchase_at"]):
        row["last_purchase_at"] = purchased_at
    row["created_at"] = min(row["created_at"], at)
    row["updated_at"] = max(row["updated_at"], at)


def _purchase_row(r: PurchaseRecord) -> dict[str, Any]:
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


def _line_row(r: PurchaseRecord, line: PurchaseLineRecord) -> dict[str, Any]:
    return {
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


def _offer_row(r: PurchaseRecord, offer: AppliedOfferRecord) -> dict[str, Any]:
    return {
        "transaction_id": r.transaction_id,
        "offer_id": offer.offer_id,
        "customer_id": r.customer_id,
        "offer_version": offer.offer_version,
        "bonus_points": offer.bonus_points,
        "discount_minor": offer.discount_minor,
    }


def _ledger_row(
    r: PurchaseRecord | CustomerRecord, entry_id: str, transaction_id: str | None, kind: str, points: int
) -> dict[str, Any]:
    at = r.committed_at if isinstance(r, PurchaseRecord) else r.updated_at
    return {
        "entry_id": entry_id,
        "customer_id": r.customer_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "points": points,
        "created_at": parse_timestamp(at),
    }


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
        """Apply outbox records in one transaction; returns how many were not applied before.

        Set-based: one guard insert tells which records are new (applied_events, keyed by event id), then one
        statement per table for all of them, with per-customer deltas summed first. A concurrent writer applying
        the same record blocks on its guard row (PostgreSQL row lock, SQLite write lock) and then skips it. All
        profile changes are deltas, so the order of records does not change the result. A lost connection or a
        deadlock fails the whole batch, which the writer then retries.
        """
        unique = list({r.event_id: r for r in reversed(records)}.values())[::-1]  # first of each event id
        if not unique:
            return 0
        with Session(self._writer) as session, session.begin():
            conn = session.connection()  # Core statements: the ORM layer doubled the cost per row
            guard = self._insert(AppliedEvent).on_conflict_do_nothing(index_elements=["event_id"])
            now = datetime.now(UTC)
            inserted = conn.execute(
                guard.returning(col(AppliedEvent.event_id)),
                [{"event_id": r.event_id, "applied_at": now} for r in unique],
            )
            new_ids = set(inserted.scalars().all())
            fresh = [r for r in unique if r.event_id in new_ids]
            if not fresh:
                return 0
            try:
                with conn.begin_nested():
                    self._apply_all(conn, fresh)
                return len(fresh)
            except (IntegrityError, DataError):
                return self._apply_one_by_one(conn, fresh)

    def _apply_one_by_one(self, conn: Connection, records: list[OutboxRecord]) -> int:
        """Finds the record SQL refuses (same transaction or ledger id under another event, a value it rejects).

        It is logged and skipped, because failing the batch would block the partition behind it forever.
        """
        applied = 0
        for record in records:
            try:
                with conn.begin_nested():
                    self._apply_all(conn, [record])
                applied += 1
            except (IntegrityError, DataError):
                log.exception("outbox record %s conflicts with stored data; skipped", record.event_id)
                conn.execute(sa.delete(AppliedEvent).where(col(AppliedEvent.event_id) == record.event_id))
        return applied

    def _insert(self, model: type[Any]) -> Insert:
        return postgresql.insert(model) if self._postgres else sqlite.insert(model)

    def _apply_all(self, conn: Connection, records: Sequence[OutboxRecord]) -> None:
        purchases = [r for r in records if isinstance(r, PurchaseRecord)]
        crm = [r for r in records if isinstance(r, CustomerRecord)]
        self._upsert_customers(conn, purchases, crm)
        if purchases:
            conn.execute(sa.insert(Purchase), [_purchase_row(r) for r in purchases])
        lines = [_line_row(r, line) for r in purchases for line in r.lines]
        if lines:
            conn.execute(sa.insert(PurchaseLine), lines)
        offers = [_offer_row(r, offer) for r in purchases for offer in r.applied_offers]
        if offers:
            conn.execute(sa.insert(PurchaseOffer), offers)
        # Plain INSERT: a duplicate entry_id under a new event is a conflict to surface, not to hide, since
        # points_balance has already been moved by these entries.
        ledger = [_ledger_row(r, e.entry_id, r.transaction_id, e.kind, e.points) for r in purchases for e in r.ledger]
        ledger += [
            _ledger_row(r, f"{r.event_id}:adjust", None, "adjust", r.balance_delta) for r in crm if r.balance_delta
        ]
        if ledger:
            conn.execute(sa.insert(PointsLedgerEntry), ledger)
        self._add_categories(conn, purchases, crm)

    def _upsert_customers(self, conn: Connection, purchases: list[PurchaseRecord], crm: list[CustomerRecord]) -> None:
        """One row per customer: deltas summed over the batch, display fields from her last CRM record."""
        rows: dict[str, dict[str, Any]] = {}

        def row_of(customer_id: str, currency: str, at: datetime) -> dict[str, Any]:
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
                    "purchase_count": 0,
                    "last_purchase_at": None,
                    "created_at": at,
                    "updated_at": at,
                    "has_display": False,
                },
            )

        for r in crm:
            at = parse_timestamp(r.updated_at)
            row = row_of(r.customer_id, r.currency, at)
            row.update(
                display_name=r.display_name,
                tier=r.tier,
                currency=r.currency,
                home_latitude=r.home_latitude,
                home_longitude=r.home_longitude,
                propensity_json=json.dumps(r.propensity, sort_keys=True, separators=(",", ":")),
                has_display=True,
            )
            _add_deltas(row, r.lifetime_value_delta, r.balance_delta, 0, None, at)
        for p in purchases:
            committed_at = parse_timestamp(p.committed_at)
            row = row_of(p.customer_id, p.currency, committed_at)
            points = sum(entry.points for entry in p.ledger)
            _add_deltas(row, p.lifetime_value_delta, points, 1, parse_timestamp(p.occurred_at), committed_at)

        for with_display in (True, False):
            batch = [
                {k: v for k, v in r.items() if k != "has_display"}
                for r in rows.values()
                if r["has_display"] is with_display
            ]
            if not batch:
                continue
            stmt = self._insert(Customer)
            excluded = stmt.excluded
            changes: dict[str, Any] = {
                "lifetime_value_minor": col(Customer.lifetime_value_minor) + excluded.lifetime_value_minor,
                "points_balance": col(Customer.points_balance) + excluded.points_balance,
                "purchase_count": col(Customer.purchase_count) + excluded.purchase_count,
                "last_purchase_at": _latest(col(Customer.last_purchase_at), excluded.last_purchase_at),
                "created_at": _earliest(col(Customer.created_at), excluded.created_at),
                "updated_at": _latest(col(Customer.updated_at), excluded.updated_at),
            }
            if with_display:
                # Display fields are absolute: the last CRM record applied wins.
                for name in ("display_name", "tier", "currency", "home_latitude", "home_longitude", "propensity_json"):
                    changes[name] = getattr(excluded, name)
            conn.execute(stmt.on_conflict_do_update(index_elements=["customer_id"], set_=changes), batch)

    def _add_categories(self, conn: Connection, purchases: list[PurchaseRecord], crm: list[CustomerRecord]) -> None:
        # new_categories is what Redis saw as new; the lines are the full truth, whatever order records arrive in.
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
        if not earliest:
            return
        stmt = self._insert(CustomerCategory)
        excluded = stmt.excluded
        # Keep the earliest sighting (and its source), so out-of-order records converge on the same row.
        earlier = excluded.first_purchased_at < col(CustomerCategory.first_purchased_at)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["customer_id", "category"],
                set_={
                    "first_purchased_at": sa.case(
                        (earlier, excluded.first_purchased_at), else_=col(CustomerCategory.first_purchased_at)
                    ),
                    "source": sa.case((earlier, excluded.source), else_=col(CustomerCategory.source)),
                },
            ),
            [
                {"customer_id": cid, "category": cat, "first_purchased_at": at, "source": source}
                for (cid, cat), (at, source) in sorted(earliest.items())
            ],
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
