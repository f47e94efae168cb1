"""Reads of the profile database that only tests need: what the repositories wrote, read back.

Plain functions over the engine (the service's is `server.service.components.sql_engine`), so the repository
classes keep only what the service itself calls.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from domain.model import Store
from store.sql_catalog import store_from_row
from store.sql_models import Customer, CustomerCategory, PointsLedgerEntry, RefusedRecord, Return, StoreRow
from store.sql_profile import SqlProfiles, stored_return_receipt
from store.sql_profile import pending_points as pending_points_in
from usecases.snapshot import CustomerSnapshot, StoredReceipt

from .records_builders import T0


def snapshot(engine: sa.Engine, customer_id: str, since: datetime = T0) -> CustomerSnapshot:
    """The customer's profile as a rebuild reads it, with the receipts committed since `since`; she must exist."""
    snap = SqlProfiles(engine).load_customer(customer_id, receipts_since=since)
    assert snap is not None
    return snap


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def ledger_balance(engine: sa.Engine, customer_id: str) -> int:
    """The sum of her points ledger (0 for an unknown customer): points_balance - points_debt when consistent."""
    with Session(engine) as session:
        total = session.exec(
            select(func.coalesce(func.sum(PointsLedgerEntry.points), 0)).where(
                PointsLedgerEntry.customer_id == customer_id
            )
        ).one()
        return int(total)


def list_categories(engine: sa.Engine, customer_id: str) -> list[str]:
    """The categories she bought (or the CRM gave her), sorted."""
    with Session(engine) as session:
        rows = session.exec(
            select(CustomerCategory.category)
            .where(CustomerCategory.customer_id == customer_id)
            .order_by(col(CustomerCategory.category))
        ).all()
        return list(rows)


def customer_exists(engine: sa.Engine, customer_id: str) -> bool:
    with Session(engine) as session:
        return session.get(Customer, customer_id) is not None


def pending_points(engine: sa.Engine, customer_id: str, now: datetime) -> list[tuple[datetime, int]]:
    """Ledger points not spendable at `now` (aware), summed by when they become spendable, as a rebuild reads them."""
    assert now.tzinfo is not None, "pass an aware datetime"
    with Session(engine) as session:
        return pending_points_in(session, customer_id, now)


def get_return_receipt(engine: sa.Engine, return_id: str) -> StoredReceipt | None:
    """The stored ReturnReceipt of a return id (the tests give each return its own), or None."""
    with Session(engine) as session:
        row = session.exec(select(Return).where(Return.return_id == return_id)).first()
        return None if row is None else stored_return_receipt(row)


def returns_of(engine: sa.Engine, store_id: str, transaction_id: str) -> list[tuple[str, str | None]]:
    """(return id, returning store) of the purchase's returns, by return id."""
    with Session(engine) as session:
        rows = session.exec(
            select(Return.return_id, Return.returning_store_id)
            .where(Return.store_id == store_id, Return.transaction_id == transaction_id)
            .order_by(col(Return.return_id))
        ).all()
        return [(return_id, returning) for return_id, returning in rows]


def refused_records(engine: sa.Engine, limit: int = 100) -> list[RefusedRecord]:
    """Outbox records SQL refused for good, newest first."""
    with Session(engine) as session:
        rows = session.exec(select(RefusedRecord).order_by(col(RefusedRecord.refused_at).desc()).limit(limit))
        return list(rows.all())


def get_store(engine: sa.Engine, store_id: str) -> Store | None:
    with Session(engine) as session:
        row = session.get(StoreRow, store_id)
        return None if row is None else store_from_row(row)
