"""The write-behind sink: applies the outbox records Redis wrote to the profile of record in SQL, exactly once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from store.records import (
    AdjustmentRecord,
    AuditRecord,
    CustomerRecord,
    ExpiryRecord,
    OutboxRecord,
    PurchaseRecord,
    ReturnRecord,
    dump_record,
)
from store.sql_common import EngineViews, Insert, parse_timestamp
from store.sql_models import (
    AppliedEvent,
    AuditEventRow,
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
from store.sql_outbox_rows import (
    adjustment_row,
    category_rows,
    customer_rows,
    ledger_rows,
    line_row,
    lost_offer_rows,
    offer_row,
    purchase_row,
    return_line_row,
    return_row,
    tier_upgrades,
    voided_category_rows,
)

log = logging.getLogger(__name__)

# Customer columns a CRM record sets outright (the newest wins); the rest of her row moves by deltas.
_DISPLAY_FIELDS = ("display_name", "currency", "home_latitude", "home_longitude", "propensity_json")


class PurchaseNotApplied(RuntimeError):
    """A return arrived before its purchase is in SQL (a purchase claimed late from a dead writer).

    Retryable: the batch is rolled back whole and stays pending in the outbox, and the writer applies it again
    once the purchase, which sits earlier in the same partition stream, has been written. Never skipped, since
    skipping would lose the return for good.
    """

    def __init__(self, missing: dict[str, tuple[str, str, str]]) -> None:
        self.missing = missing  # event_id -> (return_id, store_id, transaction_id of the purchase not in SQL yet)
        # Return, store and transaction ids only: event ids hold customer ids, which stay out of logs.
        listed = ", ".join(f"return {ret} of {store}/{txn}" for ret, store, txn in sorted(missing.values()))
        super().__init__(f"returns whose purchase is not in SQL yet, retry later: {listed}")


class _RecordRefused(Exception):
    """A record SQL must refuse for good (like an IntegrityError): logged and skipped in the one-by-one pass."""


class SqlOutboxSink:
    """Where the outbox writer puts what Redis applied: customers, purchases, returns, the points ledger and
    categories, each record once (applied_events), in set-based statements; records SQL must refuse go to
    refused_records. Write-only."""

    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

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
        with Session(self._sql.writer) as session, session.begin():
            conn = session.connection()  # Core statements: the ORM layer doubled the cost per row
            guard = self._sql.insert(AppliedEvent).on_conflict_do_nothing(index_elements=["event_id"])
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

    # -- a batch SQL refuses part of ---------------------------------------------------------------------------

    def _apply_one_by_one(self, conn: Connection, records: list[OutboxRecord]) -> int:
        """Finds the record SQL refuses (same transaction or ledger id under another event, a value it rejects).

        It is logged and skipped, because failing the batch would block the partition behind it forever. Returns
        go last, after the purchases they need; a return whose purchase is simply not in SQL yet is not refused
        but fails the batch (PurchaseNotApplied), unless that purchase was refused just now: SQL never got its
        points, so it must not get their reversal either.
        """
        applied = 0
        refused_purchases: set[tuple[str, str]] = set()  # (store_id, transaction_id)
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
                if not (isinstance(record, ReturnRecord) and _purchase_of(record) in refused_purchases):
                    raise
                log.error("outbox record %s returns a purchase SQL refused; skipped", record.event_id)
                reason = f"its purchase {record.store_id}/{record.transaction_id} was refused"
            if isinstance(record, PurchaseRecord):
                refused_purchases.add(_purchase_of(record))
            conn.execute(sa.delete(AppliedEvent).where(col(AppliedEvent.event_id) == record.event_id))
            self._keep_refused(conn, record, reason)
        return applied

    def _keep_refused(self, conn: Connection, record: OutboxRecord, reason: str) -> None:
        store_id, transaction_id = (
            _purchase_of(record) if isinstance(record, PurchaseRecord | ReturnRecord) else ("", "")
        )
        row = {
            "event_id": record.event_id,
            "kind": record.kind,
            "customer_id": record.customer_id,
            "store_id": store_id or None,
            "transaction_id": transaction_id or None,
            "reason": reason[:2000],
            "refused_at": datetime.now(UTC),
            "record_json": dump_record(record),
        }
        conn.execute(self._sql.insert(RefusedRecord).on_conflict_do_nothing(index_elements=["event_id"]), [row])

    # -- one statement per table -------------------------------------------------------------------------------

    def _apply_all(self, conn: Connection, records: Sequence[OutboxRecord]) -> None:
        """Writes records not applied before: customers first (everything else is keyed by her), purchases before
        returns, categories after the purchases that add them and before the voids that take them back."""
        purchases = [r for r in records if isinstance(r, PurchaseRecord)]
        crm = [r for r in records if isinstance(r, CustomerRecord)]
        returns = [r for r in records if isinstance(r, ReturnRecord)]
        expiries = [r for r in records if isinstance(r, ExpiryRecord)]
        adjustments = [r for r in records if isinstance(r, AdjustmentRecord)]
        if returns:
            self._check_returned_purchases(conn, returns, purchases)
        self._upsert_customers(conn, purchases, crm, returns)
        self._expire_points(conn, expiries)
        self._adjust_points(conn, adjustments)
        self._upgrade_tiers(conn, purchases)
        self._insert_purchases(conn, purchases)
        self._insert_returns(conn, returns)
        # Plain INSERT: a duplicate entry_id under a new event is a conflict to surface, not to hide, since
        # points_balance has already been moved by these entries.
        _insert_rows(conn, PointsLedgerEntry, ledger_rows(purchases, crm, returns, expiries, adjustments))
        self._add_categories(conn, purchases, crm)
        self._remove_voided_categories(conn, returns)
        _insert_rows(conn, AuditEventRow, [_audit_row(r) for r in records if isinstance(r, AuditRecord)])

    def _check_returned_purchases(
        self, conn: Connection, returns: list[ReturnRecord], purchases: list[PurchaseRecord]
    ) -> None:
        """Every return's purchase is in this batch or already in SQL, and belongs to the same customer."""
        for r in returns:
            if not r.store_id:  # only servers before store-scoped ids wrote these: the upgrade drains them first
                raise _RecordRefused(f"return {r.return_id}: a record without its purchase's store; replay by hand")
        owners = {_purchase_of(p): p.customer_id for p in purchases}
        wanted = sorted({_purchase_of(r) for r in returns} - owners.keys())
        if wanted:
            key = sa.tuple_(col(Purchase.store_id), col(Purchase.transaction_id))
            stored = conn.execute(
                sa.select(col(Purchase.store_id), col(Purchase.transaction_id), col(Purchase.customer_id)).where(
                    key.in_(wanted)
                )
            )
            owners.update({(str(store), str(txn)): str(customer) for store, txn, customer in stored})
        missing = {
            r.event_id: (r.return_id, r.store_id, r.transaction_id) for r in returns if _purchase_of(r) not in owners
        }
        if missing:
            self._refuse_returns_of_refused(conn, missing)
            raise PurchaseNotApplied(missing)
        for r in returns:
            if owners[_purchase_of(r)] != r.customer_id:
                raise _RecordRefused(
                    f"return {r.return_id}: purchase {r.store_id}/{r.transaction_id} belongs to another customer"
                )

    def _refuse_returns_of_refused(self, conn: Connection, missing: dict[str, tuple[str, str, str]]) -> None:
        """Raises _RecordRefused when SQL refused a missing purchase for good: waiting for it would block the
        partition forever."""
        key = sa.tuple_(col(RefusedRecord.store_id), col(RefusedRecord.transaction_id))
        refused = conn.execute(
            sa.select(col(RefusedRecord.store_id), col(RefusedRecord.transaction_id)).where(
                col(RefusedRecord.kind) == "purchase",
                key.in_(sorted({(store, txn) for _, store, txn in missing.values()})),
            )
        ).all()
        gone = sorted(f"{store}/{txn}" for store, txn in refused)
        if gone:
            raise _RecordRefused(f"purchase {', '.join(gone)} was refused: its returns are refused too")

    def _upsert_customers(
        self,
        conn: Connection,
        purchases: list[PurchaseRecord],
        crm: list[CustomerRecord],
        returns: list[ReturnRecord],
    ) -> None:
        """One row per customer (see customer_rows); rows a CRM record set display fields in go in a statement of
        their own, which also sets those fields."""
        rows = customer_rows(purchases, crm, returns).values()
        for with_display in (True, False):
            batch = [
                {k: v for k, v in r.items() if k != "has_display"} for r in rows if r["has_display"] is with_display
            ]
            if batch:
                conn.execute(self._customer_upsert(with_display), batch)

    def _customer_upsert(self, with_display: bool) -> Insert:
        """INSERT ... ON CONFLICT for customer rows: deltas add up; with display fields, the newest change wins."""
        stmt = self._sql.insert(Customer)
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
            for name in _DISPLAY_FIELDS:
                changes[name] = sa.case((newer, getattr(excluded, name)), else_=getattr(Customer, name))
            # The tier has its own stamp: a tier upgrade at the till also sets it.
            tier_newer = _not_after(col(Customer.tier_changed_at), excluded.tier_changed_at)
            changes["tier"] = sa.case((tier_newer, excluded.tier), else_=col(Customer.tier))
            changes["profile_changed_at"] = _latest(col(Customer.profile_changed_at), excluded.profile_changed_at)
            changes["tier_changed_at"] = _latest(col(Customer.tier_changed_at), excluded.tier_changed_at)
        return stmt.on_conflict_do_update(index_elements=["customer_id"], set_=changes)

    def _expire_points(self, conn: Connection, expiries: list[ExpiryRecord]) -> None:
        if expiries:
            conn.execute(
                sa.update(Customer)
                .where(col(Customer.customer_id) == sa.bindparam("cid"))
                .values(points_balance=col(Customer.points_balance) - sa.bindparam("points")),
                [{"cid": r.customer_id, "points": r.points} for r in expiries],
            )

    def _adjust_points(self, conn: Connection, adjustments: list[AdjustmentRecord]) -> None:
        """Her balance and debt move as the script moved them (debt repaid first); the adjustment is kept once
        (plain INSERT: an adjustment id stored under another event is a conflict)."""
        if not adjustments:
            return
        conn.execute(
            sa.update(Customer)
            .where(col(Customer.customer_id) == sa.bindparam("cid"))
            .values(
                points_balance=col(Customer.points_balance) + sa.bindparam("balance"),
                points_debt=col(Customer.points_debt) + sa.bindparam("debt"),
            ),
            [
                {
                    "cid": r.customer_id,
                    "balance": r.balance_after - r.balance_before,
                    "debt": r.debt_after - r.debt_before,
                }
                for r in adjustments
            ],
        )
        _insert_rows(conn, PointsAdjustment, [adjustment_row(r) for r in adjustments])

    def _upgrade_tiers(self, conn: Connection, purchases: list[PurchaseRecord]) -> None:
        """A purchase that reached a higher tier sets it, unless a newer change (CRM, upgrade) is stored."""
        upgrades = tier_upgrades(purchases)
        if upgrades:
            conn.execute(
                sa.update(Customer)
                .where(
                    col(Customer.customer_id) == sa.bindparam("cid"),
                    _not_after(col(Customer.tier_changed_at), sa.bindparam("at")),
                )
                .values(tier=sa.bindparam("new_tier"), tier_changed_at=sa.bindparam("at")),
                [{"cid": cid, "new_tier": tier, "at": at} for cid, (at, tier) in sorted(upgrades.items())],
            )

    def _insert_purchases(self, conn: Connection, purchases: list[PurchaseRecord]) -> None:
        # Plain INSERT: a transaction id stored under another event id is a conflict.
        _insert_rows(conn, Purchase, [purchase_row(r) for r in purchases])
        _insert_rows(conn, PurchaseLine, [line_row(r, line) for r in purchases for line in r.lines])
        _insert_rows(conn, PurchaseOffer, [offer_row(r, offer) for r in purchases for offer in r.applied_offers])

    def _insert_returns(self, conn: Connection, returns: list[ReturnRecord]) -> None:
        # Plain INSERT like purchases: a return id stored under another event id is a conflict.
        _insert_rows(conn, Return, [return_row(r) for r in returns])
        _insert_rows(conn, ReturnLine, [return_line_row(r, line) for r in returns for line in r.lines])
        # An offer of a purchase is lost once: a second return naming it (or a replay under another event id)
        # changes nothing, so uses never go below what the purchases earned.
        lost = lost_offer_rows(returns)
        if lost:
            stmt = self._sql.insert(ReturnOffer).on_conflict_do_nothing(
                index_elements=["store_id", "transaction_id", "offer_id"]
            )
            conn.execute(stmt, lost)

    def _add_categories(self, conn: Connection, purchases: list[PurchaseRecord], crm: list[CustomerRecord]) -> None:
        rows = category_rows(purchases, crm)
        if not rows:
            return
        stmt = self._sql.insert(CustomerCategory)
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
            rows,
        )

    def _remove_voided_categories(self, conn: Connection, returns: list[ReturnRecord]) -> None:
        """After the batch's purchases (a void of one in the same batch takes its categories back too), and never
        when a later purchase of hers bought the category again, whatever order records arrive in."""
        voided = voided_category_rows(returns)
        if not voided:
            return
        bought_since = (
            sa.select(col(PurchaseLine.transaction_id))
            .join(
                Purchase,
                sa.and_(
                    col(Purchase.store_id) == col(PurchaseLine.store_id),
                    col(Purchase.transaction_id) == col(PurchaseLine.transaction_id),
                ),
            )
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
            voided,
        )


def _purchase_of(record: PurchaseRecord | ReturnRecord) -> tuple[str, str]:
    """The purchase a record is of (or is): (store_id, transaction_id)."""
    return record.store_id, record.transaction_id


def _audit_row(record: AuditRecord) -> dict[str, Any]:
    """An audit event of the till path: plain INSERT (the guard above already made it once per event id)."""
    return {
        "event_id": record.event_id,
        "occurred_at": parse_timestamp(record.occurred_at),
        "key_id": record.key_id,
        "key_name": record.key_name,
        "action": record.action,
        "target": record.target,
        "peer": record.peer,
        "request_id": record.request_id,
        "outcome": record.outcome,
        "detail": record.detail,
        "count": record.count,
    }


def _insert_rows(conn: Connection, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """Plain INSERT of `rows` (none: no statement)."""
    if rows:
        conn.execute(sa.insert(model), rows)


def _not_after(changed_at: Any, at: Any) -> ColumnElement[bool]:
    """The stored change (stamped `changed_at`, NULL = never) is not newer than a record applied at `at`."""
    return sa.or_(changed_at.is_(None), changed_at <= at)


def _latest(current: Any, new: Any) -> ColumnElement[Any]:
    # Portable GREATEST that ignores NULL: SQLite's max() returns NULL if any argument is NULL.
    return sa.case((sa.or_(current.is_(None), current < new), new), else_=current)


def _earliest(current: Any, new: Any) -> ColumnElement[Any]:
    return sa.case((sa.or_(current.is_(None), new < current), new), else_=current)
