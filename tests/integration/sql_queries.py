"""Reads of the profile database that only tests need: what the repository wrote, read back."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from store.snapshot import CustomerSnapshot
from store.sql_repo import ProfileRepository

from .records_builders import T0


def snapshot(repo: ProfileRepository, customer_id: str, since: datetime = T0) -> CustomerSnapshot:
    """The customer's profile, with the receipts committed since `since`; the customer must exist."""
    snap = repo.load_customer(customer_id, receipts_since=since)
    assert snap is not None
    return snap


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
