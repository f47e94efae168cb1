"""SQL tables of the profile database (the system of record behind Redis).

Schema changes go through a hand-written Alembic migration in store/migrations/versions that matches these
classes; tests compare the migrated database with this metadata. Money and points are BIGINT integers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that only accepts aware datetimes and always returns aware UTC.

    SQLite has no time zone type and hands back naive values, so everything is stored normalised to UTC
    (which also keeps SQLite's text comparison of timestamps correct) and UTC is re-attached on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the profile database stores aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Column types shared with the migrations (which spell out the same types with plain SQLAlchemy).
ID = sa.String(128)
SHORT = sa.String(64)


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    customer_id: str = Field(primary_key=True, sa_type=ID)
    display_name: str = Field(default="", sa_type=sa.String(256))
    tier: str = Field(default="", sa_type=SHORT)
    currency: str = Field(default="", sa_type=sa.String(3))
    lifetime_value_minor: int = Field(default=0, sa_type=sa.BigInteger)
    points_balance: int = Field(default=0, sa_type=sa.BigInteger)
    # Points taken back by returns that the balance could not cover; earned points repay it first.
    # Invariant: sum(points_ledger.points) == points_balance - points_debt.
    points_debt: int = Field(default=0, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "0"})
    purchase_count: int = Field(default=0, sa_type=sa.Integer)
    last_purchase_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    home_latitude: float | None = Field(default=None, sa_type=sa.Float)
    home_longitude: float | None = Field(default=None, sa_type=sa.Float)
    propensity_json: str = Field(default="{}", sa_type=sa.Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # When the display fields, and the tier, were last set (a CRM record; a CRM record or a tier upgrade at the
    # till), by the outbox's order (Redis time): the newest change wins, so a record a dead writer left behind and
    # another claimed late never undoes a newer one.
    profile_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tier_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CustomerCategory(SQLModel, table=True):
    __tablename__ = "customer_categories"

    customer_id: str = Field(primary_key=True, foreign_key="customers.customer_id", sa_type=ID)
    category: str = Field(primary_key=True, sa_type=ID)
    first_purchased_at: datetime = Field(sa_type=UTCDateTime)
    source: str = Field(sa_type=sa.String(16))  # "purchase" | "crm"


class Purchase(SQLModel, table=True):
    """A committed sale, keyed by its store and the till's transaction id (tills number their own sales)."""

    __tablename__ = "purchases"
    # Receipts of one customer within a time window are what a Redis rebuild reads.
    __table_args__ = (sa.Index("ix_purchases_customer_id_committed_at", "customer_id", "committed_at"),)

    store_id: str = Field(primary_key=True, sa_type=ID)
    transaction_id: str = Field(primary_key=True, sa_type=ID)
    customer_id: str = Field(foreign_key="customers.customer_id", sa_type=ID)
    terminal_id: str = Field(sa_type=ID)
    currency: str = Field(sa_type=sa.String(3))
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    committed_at: datetime = Field(index=True, sa_type=UTCDateTime)
    subtotal_minor: int = Field(sa_type=sa.BigInteger)
    total_discount_minor: int = Field(sa_type=sa.BigInteger)
    total_due_minor: int = Field(sa_type=sa.BigInteger)
    points_earned: int = Field(sa_type=sa.BigInteger)
    points_redeemed: int = Field(sa_type=sa.BigInteger)
    redeemed_value_minor: int = Field(sa_type=sa.BigInteger)
    request_digest: str = Field(sa_type=ID)
    receipt: bytes = Field(sa_type=sa.LargeBinary)


def _of_purchase() -> sa.ForeignKeyConstraint:
    """(store_id, transaction_id) references the purchase."""
    return sa.ForeignKeyConstraint(["store_id", "transaction_id"], ["purchases.store_id", "purchases.transaction_id"])


class PurchaseLine(SQLModel, table=True):
    __tablename__ = "purchase_lines"
    __table_args__ = (_of_purchase(),)

    store_id: str = Field(primary_key=True, sa_type=ID)
    transaction_id: str = Field(primary_key=True, sa_type=ID)
    line_id: str = Field(primary_key=True, sa_type=ID)
    sku: str = Field(sa_type=ID)
    category: str = Field(sa_type=ID)
    quantity: int = Field(sa_type=sa.Integer)
    unit_price_minor: int = Field(sa_type=sa.BigInteger)
    base_points: int = Field(sa_type=sa.BigInteger)
    bonus_points: int = Field(sa_type=sa.BigInteger)
    discount_minor: int = Field(sa_type=sa.BigInteger)
    offer_ids: str = Field(default="", sa_type=sa.Text)  # comma-joined


class PurchaseOffer(SQLModel, table=True):
    __tablename__ = "purchase_offers"
    # By offer: rebuilding a lost budget counter counts an offer's redemptions.
    __table_args__ = (sa.Index("ix_purchase_offers_offer_id", "offer_id"), _of_purchase())

    store_id: str = Field(primary_key=True, sa_type=ID)
    transaction_id: str = Field(primary_key=True, sa_type=ID)
    offer_id: str = Field(primary_key=True, sa_type=ID)
    customer_id: str = Field(index=True, sa_type=ID)
    offer_version: int = Field(sa_type=sa.Integer)
    bonus_points: int = Field(sa_type=sa.BigInteger)
    discount_minor: int = Field(sa_type=sa.BigInteger)


def _of_return() -> sa.ForeignKeyConstraint:
    """(store_id, transaction_id, return_id) references the return."""
    return sa.ForeignKeyConstraint(
        ["store_id", "transaction_id", "return_id"],
        ["returns.store_id", "returns.transaction_id", "returns.return_id"],
    )


class Return(SQLModel, table=True):
    """A return (or void) of a committed purchase: a correcting entry, the purchase rows are never edited. Its id
    is unique within its purchase."""

    __tablename__ = "returns"
    # Return receipts of one customer within a time window are what a Redis rebuild reads.
    __table_args__ = (sa.Index("ix_returns_customer_id_committed_at", "customer_id", "committed_at"), _of_purchase())

    store_id: str = Field(primary_key=True, sa_type=ID)  # the purchase's store
    transaction_id: str = Field(primary_key=True, sa_type=ID)
    return_id: str = Field(primary_key=True, sa_type=ID)
    # The store that took the goods back (NULL: not said, and returns before it was recorded).
    returning_store_id: str | None = Field(default=None, sa_type=ID)
    customer_id: str = Field(foreign_key="customers.customer_id", sa_type=ID)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    committed_at: datetime = Field(sa_type=UTCDateTime)
    voided: bool = Field(sa_type=sa.Boolean)
    points_reversed: int = Field(sa_type=sa.BigInteger)
    points_refunded: int = Field(sa_type=sa.BigInteger)
    value_minor: int = Field(sa_type=sa.BigInteger)
    lifetime_value_delta: int = Field(sa_type=sa.BigInteger)
    request_digest: str = Field(sa_type=ID)
    receipt: bytes = Field(sa_type=sa.LargeBinary)  # ReturnReceipt protobuf


class ReturnLine(SQLModel, table=True):
    __tablename__ = "return_lines"
    __table_args__ = (_of_return(),)

    store_id: str = Field(primary_key=True, sa_type=ID)
    transaction_id: str = Field(primary_key=True, sa_type=ID)
    return_id: str = Field(primary_key=True, sa_type=ID)
    line_id: str = Field(primary_key=True, sa_type=ID)  # the purchase line returned
    quantity: int = Field(sa_type=sa.Integer)
    points_reversed: int = Field(sa_type=sa.BigInteger)
    value_minor: int = Field(sa_type=sa.BigInteger)


class ReturnOffer(SQLModel, table=True):
    """An offer of a purchase whose bonus a return took back whole: that use no longer counts for the customer.

    Keyed like purchase_offers, so an offer of a purchase is lost at most once (the first return keeps it);
    per-customer uses are purchase_offers rows without a row here.
    """

    __tablename__ = "return_offers"
    __table_args__ = (_of_purchase(), _of_return())

    store_id: str = Field(primary_key=True, sa_type=ID)
    transaction_id: str = Field(primary_key=True, sa_type=ID)
    offer_id: str = Field(primary_key=True, sa_type=ID)
    return_id: str = Field(sa_type=ID)


class PointsLedgerEntry(SQLModel, table=True):
    __tablename__ = "points_ledger"

    entry_id: str = Field(primary_key=True, sa_type=sa.String(200))  # the idempotency key (domain/ids.py)
    customer_id: str = Field(index=True, foreign_key="customers.customer_id", sa_type=ID)
    # The purchase an entry of a sale or return belongs to (NULL for adjustments and expiries).
    store_id: str | None = Field(default=None, sa_type=ID)
    transaction_id: str | None = Field(default=None, sa_type=ID)
    kind: str = Field(sa_type=sa.String(16))
    points: int = Field(sa_type=sa.BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # Not spendable before then (earned points wait out the returns window); NULL: spendable at once.
    available_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Why, for a manual adjustment (AdjustPoints); NULL for every other kind.
    reason: str | None = Field(default=None, sa_type=sa.String(500))


class PointsAdjustment(SQLModel, table=True):
    """A manual points adjustment (AdjustPoints), once per adjustment id: its request and outcome, so a retry
    after Redis forgot it still replays the first result. Its points are also one "adjustment" ledger entry."""

    __tablename__ = "points_adjustments"

    adjustment_id: str = Field(primary_key=True, sa_type=ID)
    customer_id: str = Field(index=True, foreign_key="customers.customer_id", sa_type=ID)
    points: int = Field(sa_type=sa.BigInteger)
    reason: str = Field(sa_type=sa.String(500))
    request_digest: str = Field(sa_type=ID)
    balance_before: int = Field(sa_type=sa.BigInteger)
    balance_after: int = Field(sa_type=sa.BigInteger)
    debt_before: int = Field(sa_type=sa.BigInteger)
    debt_after: int = Field(sa_type=sa.BigInteger)
    adjusted_at: datetime = Field(sa_type=UTCDateTime)


class RefusedRecord(SQLModel, table=True):
    """An outbox record SQL refused for good (it conflicts with stored data): kept for an operator to act on,
    and so that a later return of a refused purchase is refused too instead of waiting for it forever."""

    __tablename__ = "refused_records"

    event_id: str = Field(primary_key=True, sa_type=sa.String(200))
    kind: str = Field(sa_type=sa.String(16))
    customer_id: str = Field(sa_type=ID)
    store_id: str | None = Field(default=None, sa_type=ID)  # with transaction_id, the purchase (NULL: unknown)
    transaction_id: str | None = Field(default=None, index=True, sa_type=ID)
    reason: str = Field(sa_type=sa.Text)
    refused_at: datetime = Field(sa_type=UTCDateTime)
    record_json: str = Field(sa_type=sa.Text)  # the record as the outbox held it, to replay by hand


class AppliedEvent(SQLModel, table=True):
    """One row per outbox record applied: the idempotency guard for every record kind."""

    __tablename__ = "applied_events"

    event_id: str = Field(primary_key=True, sa_type=sa.String(200))
    applied_at: datetime = Field(sa_type=UTCDateTime)


class SettingRow(SQLModel, table=True):
    """A setting of record (e.g. the tier policy), as JSON, versioned like offers."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True, sa_type=sa.String(64))
    value_json: str = Field(sa_type=sa.Text)
    version: int = Field(sa_type=sa.Integer)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class OfferDefinition(SQLModel, table=True):
    """An offer of record: its definition (the protobuf Offer as JSON) and the version each upsert bumps.

    Not `OfferRow`: that name is the (definition JSON, version, archived, updated_at) tuple the use cases read.
    """

    __tablename__ = "offers"

    offer_id: str = Field(primary_key=True, sa_type=ID)
    version: int = Field(default=1, sa_type=sa.Integer)
    archived: bool = Field(default=False, sa_type=sa.Boolean)
    title: str = Field(default="", sa_type=sa.String(256))
    definition_json: str = Field(sa_type=sa.Text)  # JSON of the protobuf Offer, opaque here
    updated_at: datetime = Field(sa_type=UTCDateTime)


class StoreRow(SQLModel, table=True):
    __tablename__ = "stores"

    store_id: str = Field(primary_key=True, sa_type=ID)
    name: str = Field(default="", sa_type=sa.String(256))
    latitude: float | None = Field(default=None, sa_type=sa.Float)
    longitude: float | None = Field(default=None, sa_type=sa.Float)
    timezone: str = Field(default="UTC", sa_type=SHORT)


class ApiKeyRow(SQLModel, table=True):
    """An API key of record. The secret is never stored: only its SHA-256 (usecases/api_keys.py says why)."""

    __tablename__ = "api_keys"

    key_id: str = Field(primary_key=True, sa_type=SHORT)
    name: str = Field(default="", sa_type=sa.String(128))
    role: str = Field(sa_type=sa.String(16))
    store_ids_json: str = Field(default="[]", sa_type=sa.Text)
    secret_hash: str = Field(sa_type=SHORT)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rate_limit_per_second: int = Field(default=0, sa_type=sa.Integer)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_by: str = Field(default="", sa_type=SHORT)


class AuditEventRow(SQLModel, table=True):
    """One audit event (usecases/audit.py): written once, never updated or deleted (append-only)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_time", "occurred_at", "event_id"),
        sa.Index("ix_audit_events_key_time", "key_id", "occurred_at", "event_id"),
    )

    event_id: str = Field(primary_key=True, sa_type=sa.String(200))
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    key_id: str = Field(default="", sa_type=SHORT)
    key_name: str = Field(default="", sa_type=sa.String(128))
    action: str = Field(sa_type=sa.String(128))
    target: str = Field(default="", sa_type=ID)
    peer: str = Field(default="", sa_type=ID)
    request_id: str = Field(default="", sa_type=ID)
    outcome: str = Field(default="", sa_type=sa.String(32))
    detail: str = Field(default="{}", sa_type=sa.Text)
    count: int = Field(default=1, sa_type=sa.BigInteger)
