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
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, func, select

from domain.model import GeoPoint, Store
from store.keys import RECENT_CATEGORY_WINDOW_S
from store.records import (
    AppliedOfferRecord,
    CustomerRecord,
    ExpiryRecord,
    OutboxRecord,
    PurchaseLineRecord,
    PurchaseRecord,
    ReturnLineRecord,
    ReturnRecord,
    dump_record,
    load_record,
)
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
    RefusedRecord,
    Return,
    ReturnLine,
    ReturnOffer,
    SettingRow,
    StoreRow,
)
from usecases.snapshot import CustomerSnapshot, LedgerRow, StoredReceipt

log = logging.getLogger(__name__)

Insert = sqlite.Insert | postgresql.Insert
LEDGER_KEPT_IN_REDIS = 200  # as store/lua/ledger_lib.lua keeps
RECENT_CATEGORY_WINDOW = timedelta(seconds=RECENT_CATEGORY_WINDOW_S)
OfferTuple = tuple[str, int, bool, datetime]  # (definition_json, version, archived, updated_at)


class PurchaseNotApplied(RuntimeError):
    """A return arrived before its purchase is in SQL (a purchase claimed late from a dead writer).

    Retryable: the batch is rolled back whole and stays pending in the outbox, and the writer applies it again
    once the purchase, which sits earlier in the same partition stream, has been written. Never skipped, since
    skipping would lose the return for good.
    """

    def __init__(self, missing: dict[str, tuple[str, str]]) -> None:
        self.missing = missing  # event_id -> (return_id, transaction_id of the purchase not in SQL yet)
        # Return and transaction ids only: event ids hold customer ids, which stay out of logs.
        listed = ", ".join(f"return {ret} of {txn}" for ret, txn in sorted(missing.values()))
        super().__init__(f"returns whose purchase is not in SQL yet, retry later: {listed}")


class _RecordRefused(Exception):
    """A record SQL must refuse for good (like an IntegrityError): logged and skipped in the one-by-one pass."""


def parse_timestamp(raw: str) -> datetime:
    """An ISO 8601 record timestamp as aware UTC (a naive one is taken as UTC, as records are written in UTC)."""
    value = datetime.fromisoformat(raw)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)


def _add_deltas(
    row: dict[str, Any],
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


def _return_row(r: ReturnRecord) -> dict[str, Any]:
    return {
        "return_id": r.return_id,
        "transaction_id": r.transaction_id,
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


def _return_line_row(r: ReturnRecord, line: ReturnLineRecord) -> dict[str, Any]:
    return {
        "return_id": r.return_id,
        "line_id": line.line_id,
        "quantity": line.quantity,
        "points_reversed": line.points_reversed,
        "value_minor": line.value_minor,
    }


def _ledger_row(
    r: PurchaseRecord | CustomerRecord | ReturnRecord | ExpiryRecord,
    entry_id: str,
    transaction_id: str | None,
    kind: str,
    points: int,
    available_at: str = "",
) -> dict[str, Any]:
    if isinstance(r, CustomerRecord):
        at = r.updated_at
    elif isinstance(r, ExpiryRecord):
        at = r.expired_at
    else:
        at = r.committed_at
    return {
        "entry_id": entry_id,
        "customer_id": r.customer_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "points": points,
        "created_at": parse_timestamp(at),
        "available_at": parse_timestamp(available_at) if available_at else None,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _applied_at(r: PurchaseRecord | CustomerRecord) -> datetime:
    """When Redis applied the change: its outbox entry's time (the writer sets it); else the server's stamp."""
    if r.outbox_at:
        return parse_timestamp(r.outbox_at)
    return parse_timestamp(r.committed_at if isinstance(r, PurchaseRecord) else r.updated_at)


def _upgrade(r: PurchaseRecord) -> tuple[datetime, str]:
    return _applied_at(r), r.tier_after


def _not_after(changed_at: Any, at: Any) -> ColumnElement[bool]:
    """The stored change (stamped `changed_at`, NULL = never) is not newer than a record applied at `at`."""
    return sa.or_(changed_at.is_(None), changed_at <= at)


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

        A return needs its purchase in SQL (the same batch is enough: purchases are written first). If it is not
        there yet, PurchaseNotApplied fails the whole batch, nothing is written and the writer retries it later.
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
            except (IntegrityError, DataError, _RecordRefused):
                return self._apply_one_by_one(conn, fresh)

    def _apply_one_by_one(self, conn: Connection, records: list[OutboxRecord]) -> int:
        """Finds the record SQL refuses (same transaction or ledger id under another event, a value it rejects).

        It is logged and skipped, because failing the batch would block the partition behind it forever. Returns
        go last, after the purchases they need; a return whose purchase is simply not in SQL yet is not refused
        but fails the batch (PurchaseNotApplied), unless that purchase was refused just now: SQL never got its
        points, so it must not get their reversal either.
        """
        applied = 0
        refused_purchases: set[str] = set()
        ordered: list[OutboxRecord] = [r for r in records if not isinstance(r, ReturnRecord)]
        ordered += [r for r in records if isinstance(r, ReturnRecord)]
        for record in ordered:
            try:
                with conn.begin_nested():
                    self._apply_all(conn, [record])
                applied += 1
                continue
            except (IntegrityError, DataError, _RecordRefused) as exc:
                log.exception("outbox record %s conflicts with stored data; skipped", record.event_id)
                reason = str(exc.orig if isinstance(exc, IntegrityError | DataError) else exc)
            except PurchaseNotApplied:
                if not (isinstance(record, ReturnRecord) and record.transaction_id in refused_purchases):
                    raise
                log.error("outbox record %s returns a purchase SQL refused; skipped", record.event_id)
                reason = f"its purchase {record.transaction_id} was refused"
            if isinstance(record, PurchaseRecord):
                refused_purchases.add(record.transaction_id)
            conn.execute(sa.delete(AppliedEvent).where(col(AppliedEvent.event_id) == record.event_id))
            self._keep_refused(conn, record, reason)
        return applied

    def _keep_refused(self, conn: Connection, record: OutboxRecord, reason: str) -> None:
        transaction_id = record.transaction_id if isinstance(record, PurchaseRecord | ReturnRecord) else None
        row = {
            "event_id": record.event_id,
            "kind": record.kind,
            "customer_id": record.customer_id,
            "transaction_id": transaction_id,
            "reason": reason[:2000],
            "refused_at": datetime.now(UTC),
            "record_json": dump_record(record),
        }
        conn.execute(self._insert(RefusedRecord).on_conflict_do_nothing(index_elements=["event_id"]), [row])

    def refused_records(self, limit: int = 100) -> list[RefusedRecord]:
        """Outbox records SQL refused for good, newest first (for operators)."""
        with Session(self._engine) as session:
            rows = session.exec(select(RefusedRecord).order_by(col(RefusedRecord.refused_at).desc()).limit(limit))
            return list(rows.all())

    def _insert(self, model: type[Any]) -> Insert:
        return postgresql.insert(model) if self._postgres else sqlite.insert(model)

    def _apply_all(self, conn: Connection, records: Sequence[OutboxRecord]) -> None:
        purchases = [r for r in records if isinstance(r, PurchaseRecord)]
        crm = [r for r in records if isinstance(r, CustomerRecord)]
        returns = [r for r in records if isinstance(r, ReturnRecord)]
        expiries = [r for r in records if isinstance(r, ExpiryRecord)]
        if returns:
            self._check_returned_purchases(conn, returns, purchases)
        self._upsert_customers(conn, purchases, crm, returns)
        if expiries:
            conn.execute(
                sa.update(Customer)
                .where(col(Customer.customer_id) == sa.bindparam("cid"))
                .values(points_balance=col(Customer.points_balance) - sa.bindparam("points")),
                [{"cid": r.customer_id, "points": r.points} for r in expiries],
            )
        upgrades: dict[str, tuple[datetime, str]] = {}
        for r in purchases:
            if r.tier_after:
                upgrades[r.customer_id] = max(upgrades.get(r.customer_id, (_EPOCH, "")), _upgrade(r))
        if upgrades:  # a purchase that reached a higher tier, unless a newer change (CRM, upgrade) is stored
            conn.execute(
                sa.update(Customer)
                .where(
                    col(Customer.customer_id) == sa.bindparam("cid"),
                    _not_after(col(Customer.tier_changed_at), sa.bindparam("at")),
                )
                .values(tier=sa.bindparam("new_tier"), tier_changed_at=sa.bindparam("at")),
                [{"cid": cid, "new_tier": tier, "at": at} for cid, (at, tier) in sorted(upgrades.items())],
            )
        if purchases:
            conn.execute(sa.insert(Purchase), [_purchase_row(r) for r in purchases])
        lines = [_line_row(r, line) for r in purchases for line in r.lines]
        if lines:
            conn.execute(sa.insert(PurchaseLine), lines)
        offers = [_offer_row(r, offer) for r in purchases for offer in r.applied_offers]
        if offers:
            conn.execute(sa.insert(PurchaseOffer), offers)
        if returns:
            self._insert_returns(conn, returns)
        # Plain INSERT: a duplicate entry_id under a new event is a conflict to surface, not to hide, since
        # points_balance has already been moved by these entries.
        # A return's entries belong to the purchase it corrects.
        corrected: list[PurchaseRecord | ReturnRecord] = [*purchases, *returns]
        ledger = [
            _ledger_row(r, e.entry_id, r.transaction_id, e.kind, e.points, e.available_at)
            for r in corrected
            for e in r.ledger
        ]
        ledger += [
            _ledger_row(r, f"{r.event_id}:adjust", None, "adjust", r.balance_delta) for r in crm if r.balance_delta
        ]
        ledger += [_ledger_row(r, f"{r.event_id}:expire", None, "expire", -r.points) for r in expiries]
        if ledger:
            conn.execute(sa.insert(PointsLedgerEntry), ledger)
        self._add_categories(conn, purchases, crm)
        voided = [(r, c) for r in returns for c in r.categories_removed]
        if voided:
            # After the batch's purchases (a void of one in the same batch takes its categories back too), and
            # never when a later purchase of hers bought the category again, whatever order records arrive in.
            bought_since = (
                sa.select(col(PurchaseLine.transaction_id))
                .join(Purchase, col(Purchase.transaction_id) == col(PurchaseLine.transaction_id))
                .where(
                    col(Purchase.customer_id) == sa.bindparam("cid"),
                    col(PurchaseLine.category) == sa.bindparam("cat"),
                    col(Purchase.committed_at) > sa.bindparam("voided_at"),
                )
            )
            conn.execute(
                sa.delete(CustomerCategory).where(
                    col(CustomerCategory.customer_id) == sa.bindparam("cid"),
                    col(CustomerCategory.category) == sa.bindparam("cat"),
                    col(CustomerCategory.source) == "purchase",
                    ~bought_since.exists(),
                ),
                [
                    {"cid": r.customer_id, "cat": category, "voided_at": parse_timestamp(r.committed_at)}
                    for r, category in voided
                ],
            )

    def _check_returned_purchases(
        self, conn: Connection, returns: list[ReturnRecord], purchases: list[PurchaseRecord]
    ) -> None:
        """Every return's purchase is in this batch or already in SQL, and belongs to the same customer."""
        owners = {p.transaction_id: p.customer_id for p in purchases}
        wanted = sorted({r.transaction_id for r in returns} - owners.keys())
        if wanted:
            stored = conn.execute(
                sa.select(col(Purchase.transaction_id), col(Purchase.customer_id)).where(
                    col(Purchase.transaction_id).in_(wanted)
                )
            )
            owners.update({str(txn): str(customer) for txn, customer in stored})
        missing = {r.event_id: (r.return_id, r.transaction_id) for r in returns if r.transaction_id not in owners}
        if missing:
            refused = conn.execute(
                sa.select(col(RefusedRecord.transaction_id)).where(
                    col(RefusedRecord.kind) == "purchase",
                    col(RefusedRecord.transaction_id).in_(sorted({txn for _, txn in missing.values()})),
                )
            ).scalars()
            gone = {str(txn) for txn in refused}
            if gone:  # SQL refused the purchase for good: waiting for it would block the partition forever
                raise _RecordRefused(f"purchase {', '.join(sorted(gone))} was refused: its returns are refused too")
            raise PurchaseNotApplied(missing)
        for r in returns:
            if owners[r.transaction_id] != r.customer_id:
                raise _RecordRefused(f"return {r.return_id}: purchase {r.transaction_id} belongs to another customer")

    def _insert_returns(self, conn: Connection, returns: list[ReturnRecord]) -> None:
        # Plain INSERT like purchases: a return id stored under another event id is a conflict.
        conn.execute(sa.insert(Return), [_return_row(r) for r in returns])
        lines = [_return_line_row(r, line) for r in returns for line in r.lines]
        if lines:
            conn.execute(sa.insert(ReturnLine), lines)
        # An offer of a purchase is lost once: a second return naming it (or a replay under another event id)
        # changes nothing, so uses never go below what the purchases earned.
        lost: dict[tuple[str, str], str] = {}
        for r in returns:
            for offer_id in r.offers_lost:
                lost.setdefault((r.transaction_id, offer_id), r.return_id)
        if lost:
            stmt = self._insert(ReturnOffer).on_conflict_do_nothing(index_elements=["transaction_id", "offer_id"])
            conn.execute(
                stmt,
                [
                    {"transaction_id": txn, "offer_id": offer_id, "return_id": return_id}
                    for (txn, offer_id), return_id in lost.items()
                ],
            )

    def _upsert_customers(
        self,
        conn: Connection,
        purchases: list[PurchaseRecord],
        crm: list[CustomerRecord],
        returns: list[ReturnRecord],
    ) -> None:
        """One row per customer: deltas summed over the batch, display fields from her last CRM record.

        Points keep sum(ledger) == points_balance - points_debt: earned points that repaid debt move the debt,
        not the balance, and a return's reversal beyond the balance becomes debt.
        """
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

        for r in crm:
            at = parse_timestamp(r.updated_at)
            row = row_of(r.customer_id, r.currency, at)
            _add_deltas(row, ltv=r.lifetime_value_delta, points=r.balance_delta, purchases=0, purchased_at=None, at=at)
            applied_at = _applied_at(r)
            if row["profile_changed_at"] is not None and row["profile_changed_at"] > applied_at:
                continue  # an older CRM record claimed late: its display fields are out of date
            row.update(
                profile_changed_at=applied_at,
                tier_changed_at=applied_at,
                display_name=r.display_name,
                tier=r.tier,
                currency=r.currency,
                home_latitude=r.home_latitude,
                home_longitude=r.home_longitude,
                propensity_json=json.dumps(r.propensity, sort_keys=True, separators=(",", ":")),
                has_display=True,
            )
        for p in purchases:
            committed_at = parse_timestamp(p.committed_at)
            row = row_of(p.customer_id, p.currency, committed_at)
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
            row = row_of(ret.customer_id, "", committed_at)
            _add_deltas(
                row,
                ltv=ret.lifetime_value_delta,
                points=ret.balance_delta,
                debt=ret.debt_delta,
                purchases=ret.purchase_count_delta,
                purchased_at=None,
                at=committed_at,
            )

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
                "points_debt": col(Customer.points_debt) + excluded.points_debt,
                "purchase_count": col(Customer.purchase_count) + excluded.purchase_count,
                "last_purchase_at": _latest(col(Customer.last_purchase_at), excluded.last_purchase_at),
                "created_at": _earliest(col(Customer.created_at), excluded.created_at),
                "updated_at": _latest(col(Customer.updated_at), excluded.updated_at),
            }
            if with_display:
                # Display fields are absolute: the newest CRM record wins, whatever order records arrive in.
                newer = _not_after(col(Customer.profile_changed_at), excluded.profile_changed_at)
                for name in ("display_name", "currency", "home_latitude", "home_longitude", "propensity_json"):
                    changes[name] = sa.case((newer, getattr(excluded, name)), else_=getattr(Customer, name))
                # The tier has its own stamp: a tier upgrade at the till also sets it.
                tier_newer = _not_after(col(Customer.tier_changed_at), excluded.tier_changed_at)
                changes["tier"] = sa.case((tier_newer, excluded.tier), else_=col(Customer.tier))
                changes["profile_changed_at"] = _latest(col(Customer.profile_changed_at), excluded.profile_changed_at)
                changes["tier_changed_at"] = _latest(col(Customer.tier_changed_at), excluded.tier_changed_at)
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

    def load_customer(
        self,
        customer_id: str,
        *,
        receipts_since: datetime,
        spend_since: datetime | None = None,
        now: datetime | None = None,
    ) -> CustomerSnapshot | None:
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
            # Uses earned by her purchases, less those a return gave back (no return_offers row).
            uses = session.exec(
                select(PurchaseOffer.offer_id, func.count())
                .outerjoin(
                    ReturnOffer,
                    sa.and_(
                        col(ReturnOffer.transaction_id) == col(PurchaseOffer.transaction_id),
                        col(ReturnOffer.offer_id) == col(PurchaseOffer.offer_id),
                    ),
                )
                .where(PurchaseOffer.customer_id == customer_id, col(ReturnOffer.offer_id).is_(None))
                .group_by(col(PurchaseOffer.offer_id))
            ).all()
            purchases = session.exec(
                select(Purchase)
                .where(Purchase.customer_id == customer_id, col(Purchase.committed_at) >= since)
                .order_by(col(Purchase.committed_at), col(Purchase.transaction_id))
            ).all()
            returned_rows = session.exec(
                select(Return.transaction_id, ReturnLine.line_id, func.sum(ReturnLine.quantity))
                .join(ReturnLine, col(ReturnLine.return_id) == col(Return.return_id))
                .join(Purchase, col(Purchase.transaction_id) == col(Return.transaction_id))
                .where(Purchase.customer_id == customer_id, col(Purchase.committed_at) >= since)
                .group_by(col(Return.transaction_id), col(ReturnLine.line_id))
            ).all()
            returned: dict[str, dict[str, int]] = {}
            for transaction_id, line_id, quantity in returned_rows:
                returned.setdefault(transaction_id, {})[line_id] = int(quantity or 0)
            returns = session.exec(
                select(Return)
                .where(Return.customer_id == customer_id, col(Return.committed_at) >= since)
                .order_by(col(Return.committed_at), col(Return.return_id))
            ).all()
            spend = self._spend_by_month(session, customer_id, _aware(spend_since)) if spend_since else {}
            newest = session.exec(
                select(PointsLedgerEntry)
                .where(PointsLedgerEntry.customer_id == customer_id)
                .order_by(col(PointsLedgerEntry.created_at).desc(), col(PointsLedgerEntry.entry_id).desc())
                .limit(LEDGER_KEPT_IN_REDIS)
            ).all()
            return CustomerSnapshot(
                spend_by_month=spend,
                ledger=[
                    LedgerRow(e.entry_id, e.kind, e.points, e.created_at, e.available_at) for e in reversed(newest)
                ],
                pending_points=self._pending_points(session, customer_id, _aware(now or datetime.now(UTC))),
                recent_category_purchases=self._recent_category_purchases(
                    session, customer_id, _aware(now or datetime.now(UTC)) - RECENT_CATEGORY_WINDOW
                ),
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
                categories=list(categories),
                propensity={str(k): float(v) for k, v in json.loads(customer.propensity_json).items()},
                offer_uses={offer_id: int(count) for offer_id, count in uses},
                receipts=[_receipt(p) for p in purchases],
                returned=returned,
                return_receipts=[_return_receipt(r) for r in returns],
            )

    def _spend_by_month(self, session: Session, customer_id: str, since: datetime) -> dict[str, int]:
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
            .join(Purchase, col(Purchase.transaction_id) == col(Return.transaction_id))
            .where(Return.customer_id == customer_id, col(Purchase.occurred_at) >= since)
        ).all()
        for occurred_at, value in returned:
            month = occurred_at.strftime("%Y%m")
            spend[month] = spend.get(month, 0) - value
        return spend

    def _pending_points(self, session: Session, customer_id: str, now: datetime) -> list[tuple[datetime, int]]:
        rows = session.exec(
            select(PointsLedgerEntry.available_at, func.sum(PointsLedgerEntry.points))
            .where(PointsLedgerEntry.customer_id == customer_id, col(PointsLedgerEntry.available_at) > now)
            .group_by(col(PointsLedgerEntry.available_at))
            .order_by(col(PointsLedgerEntry.available_at))
        ).all()
        return [(_aware(at), int(points)) for at, points in rows if at is not None and points]

    def _recent_category_purchases(self, session: Session, customer_id: str, since: datetime) -> dict[str, int]:
        voided = sa.select(col(Return.return_id)).where(
            col(Return.transaction_id) == col(Purchase.transaction_id), col(Return.voided).is_(True)
        )
        rows = session.exec(
            select(PurchaseLine.category, func.count(sa.distinct(col(Purchase.transaction_id))))
            .join(Purchase, col(Purchase.transaction_id) == col(PurchaseLine.transaction_id))
            .where(
                Purchase.customer_id == customer_id,
                col(Purchase.committed_at) >= since,
                ~voided.exists(),  # correlated: uses the index on returns.transaction_id
            )
            .group_by(col(PurchaseLine.category))
        ).all()
        return {str(category): int(count) for category, count in rows}

    def pending_points(self, customer_id: str, now: datetime) -> list[tuple[datetime, int]]:
        """Ledger points not spendable at `now`, summed by when they become spendable (as Redis keeps them)."""
        with Session(self._engine) as session:
            return self._pending_points(session, customer_id, _aware(now))

    def inactive_customers(self, *, cutoff: datetime, after_customer_id: str, limit: int) -> list[str]:
        """Customers with points whose last purchase was before `cutoff`, by id (keyset pages): expiry candidates."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(Customer.customer_id)
                .where(
                    col(Customer.points_balance) > 0,
                    col(Customer.last_purchase_at) < _aware(cutoff),
                    col(Customer.customer_id) > after_customer_id,
                )
                .order_by(col(Customer.customer_id))
                .limit(limit)
            ).all()
            return list(rows)

    def get_setting(self, key: str) -> tuple[str, int] | None:
        """(JSON value, version) of a setting of record, or None."""
        with Session(self._engine) as session:
            row = session.get(SettingRow, key)
            return None if row is None else (row.value_json, row.version)

    def put_setting(self, key: str, value_json: str) -> int:
        """Stores a setting's new value as its next version (one statement: concurrent writers never collide on
        the key nor reuse a version); returns the version."""
        stmt = self._insert(SettingRow).values(key=key, value_json=value_json, version=1, updated_at=datetime.now(UTC))
        upsert = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "value_json": stmt.excluded.value_json,
                "version": col(SettingRow.version) + 1,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(col(SettingRow.version))
        with Session(self._writer) as session, session.begin():
            return int(session.connection().execute(upsert).scalar_one())

    def customer_exists(self, customer_id: str) -> bool:
        with Session(self._engine) as session:
            found = session.exec(select(Customer.customer_id).where(Customer.customer_id == customer_id)).first()
            return found is not None

    def get_purchase_receipt(self, transaction_id: str) -> StoredReceipt | None:
        with Session(self._engine) as session:
            purchase = session.get(Purchase, transaction_id)
            return None if purchase is None else _receipt(purchase)

    def returned_quantities(self, transaction_id: str) -> dict[str, int]:
        """line_id -> quantity returned so far, over every return of the purchase (empty when none)."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(ReturnLine.line_id, func.sum(ReturnLine.quantity))
                .join(Return, col(Return.return_id) == col(ReturnLine.return_id))
                .where(Return.transaction_id == transaction_id)
                .group_by(col(ReturnLine.line_id))
            ).all()
            return {line_id: int(quantity or 0) for line_id, quantity in rows}

    def get_return_receipt(self, return_id: str) -> StoredReceipt | None:
        """The stored ReturnReceipt (its transaction_id holds the return id), or None."""
        with Session(self._engine) as session:
            row = session.get(Return, return_id)
            return None if row is None else _return_receipt(row)

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

    def offer_redemptions(
        self, offer_id: str, *, pending_purchases: Sequence[str] = (), pending_returns: Sequence[str] = ()
    ) -> int:
        """Times an offer was earned across all customers and not taken back whole by a return: what its total
        budget has used, for rebuilding the counter Redis lost. Read in one snapshot.

        `pending_purchases` are transaction ids of outbox records that applied the offer, `pending_returns` of
        purchases an outbox return record took it back from; each counts once whether SQL already has it (the
        writer removes a record from the outbox only after its SQL commit) or not. A pending return counts only
        when its purchase counts, and only once per purchase (return_offers is keyed like purchase_offers).
        Counting scans purchase_offers by offer_id (no index on it alone): fine for a rare rebuild.
        """

        def present(session: Session, model: Any, txns: set[str]) -> set[str]:
            found: set[str] = set()
            ordered = sorted(txns)
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                found.update(
                    session.exec(
                        select(model.transaction_id).where(
                            col(model.offer_id) == offer_id, col(model.transaction_id).in_(chunk)
                        )
                    ).all()
                )
            return found

        purchases, returns = set(pending_purchases), set(pending_returns)
        with Session(self._snapshot_reader) as session, session.begin():
            kept = session.exec(
                select(func.count())
                .select_from(PurchaseOffer)
                .outerjoin(
                    ReturnOffer,
                    sa.and_(
                        col(ReturnOffer.transaction_id) == col(PurchaseOffer.transaction_id),
                        col(ReturnOffer.offer_id) == col(PurchaseOffer.offer_id),
                    ),
                )
                .where(col(PurchaseOffer.offer_id) == offer_id, col(ReturnOffer.offer_id).is_(None))
            ).one()
            purchased_in_sql = present(session, PurchaseOffer, purchases | returns)
            returned_in_sql = present(session, ReturnOffer, returns)
            refused = self._refused_redemptions(session, offer_id)
        only_in_outbox = purchases - purchased_in_sql
        taken_back = {t for t in returns - returned_in_sql if t in purchased_in_sql or t in only_in_outbox}
        return max(0, int(kept) + len(only_in_outbox) - len(taken_back) + refused)

    def _refused_redemptions(self, session: Session, offer_id: str) -> int:
        """Redemptions of the offer in purchases SQL refused (Redis applied them: the member got the offer), net of
        refused returns that took it back: a rebuilt budget counts them as Redis did."""
        rows = session.exec(
            select(RefusedRecord.record_json).where(
                col(RefusedRecord.kind).in_(["purchase", "return"]),
                col(RefusedRecord.record_json).contains(json.dumps(offer_id), autoescape=True),
            )
        ).all()
        bought: set[str] = set()
        taken_back: set[str] = set()
        for raw in rows:
            record = load_record(raw)
            if isinstance(record, PurchaseRecord) and any(a.offer_id == offer_id for a in record.applied_offers):
                bought.add(record.transaction_id)
            elif isinstance(record, ReturnRecord) and offer_id in record.offers_lost:
                taken_back.add(record.transaction_id)
        return len(bought) - len(bought & taken_back)


def _receipt(purchase: Purchase) -> StoredReceipt:
    return StoredReceipt(
        transaction_id=purchase.transaction_id,
        request_digest=purchase.request_digest,
        receipt=bytes(purchase.receipt),
        committed_at=purchase.committed_at,
    )


def _return_receipt(row: Return) -> StoredReceipt:
    return StoredReceipt(
        transaction_id=row.return_id,
        request_digest=row.request_digest,
        receipt=bytes(row.receipt),
        committed_at=row.committed_at,
    )


def _store(row: StoreRow) -> Store:
    location = None
    if row.latitude is not None and row.longitude is not None:
        location = GeoPoint(latitude=row.latitude, longitude=row.longitude)
    return Store(store_id=row.store_id, name=row.name, location=location, timezone=row.timezone)
