"""The write-behind sink: applies the outbox records Redis wrote to the profile of record in SQL, exactly once."""

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
from sqlmodel import Session, col

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
)
from store.sql_common import Insert, parse_timestamp
from store.sql_db import write_engine
from store.sql_models import (
    AppliedEvent,
    Customer,
    CustomerCategory,
    PointsLedgerEntry,
    Purchase,
    PurchaseLine,
    PurchaseOffer,
    RefusedRecord,
    Return,
    ReturnLine,
    ReturnOffer,
)

log = logging.getLogger(__name__)

LEDGER_KEPT_IN_REDIS = 200  # as store/lua/ledger_lib.lua keeps
RECENT_CATEGORY_WINDOW = timedelta(seconds=RECENT_CATEGORY_WINDOW_S)


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


class SqlOutboxSink:
    """Where the outbox writer puts what Redis applied: customers, purchases, returns, the points ledger and
    categories, each record once (applied_events), in set-based statements; records SQL must refuse go to
    refused_records. Write-only."""

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
