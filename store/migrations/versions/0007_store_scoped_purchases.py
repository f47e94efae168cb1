"""Store-scoped purchases: a purchase is keyed by (store_id, transaction_id), a return by its purchase and return id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models.

Tills number their own sales, so the same transaction id at two stores is two purchases. purchases, purchase_lines,
purchase_offers, returns, return_lines and return_offers get composite keys (their foreign keys follow); returns
also record the store that took the goods back (NULL for the rows carried over); the ledger and the refused records
say which store's purchase an entry belongs to.

Existing rows are carried over: every table is copied aside, dropped, created anew and filled from its copy, each
row given its purchase's store (the store_id purchases always held). A copy rather than ALTER: SQLite cannot change a
primary key in place, and this way both databases run the same statements. The downgrade does the reverse; it fails
(nothing changed) when two stores' purchases now share a transaction id, which the old keys cannot hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models: a migration must not change when the models do.
ID = sa.String(128)
TS = sa.DateTime(timezone=True)

# Children before parents: the order tables are dropped in (created and filled in the reverse order).
TABLES = ("return_offers", "return_lines", "returns", "purchase_offers", "purchase_lines", "purchases")
_PURCHASE_AMOUNTS = (
    "subtotal_minor",
    "total_discount_minor",
    "total_due_minor",
    "points_earned",
    "points_redeemed",
    "redeemed_value_minor",
)
_LINE_AMOUNTS = ("unit_price_minor", "base_points", "bonus_points", "discount_minor")
_RETURN_AMOUNTS = ("points_reversed", "points_refunded", "value_minor", "lifetime_value_delta")
# The columns besides the key, copied as they are.
_PURCHASE_COLUMNS = ", ".join(
    (
        "customer_id",
        "terminal_id",
        "currency",
        "occurred_at",
        "committed_at",
        *_PURCHASE_AMOUNTS,
        "request_digest",
        "receipt",
    )
)
_LINE_COLUMNS = ", ".join(("sku", "category", "quantity", *_LINE_AMOUNTS, "offer_ids"))
_OFFER_COLUMNS = "customer_id, offer_version, bonus_points, discount_minor"
_RETURN_COLUMNS = ", ".join(
    ("customer_id", "occurred_at", "committed_at", "voided", *_RETURN_AMOUNTS, "request_digest", "receipt")
)
_RETURN_LINE_COLUMNS = "quantity, points_reversed, value_minor"


def _aside(table: str) -> str:
    return f"_0007_{table}"


def _copy_aside_and_drop() -> None:
    for table in TABLES:
        op.execute(f"CREATE TABLE {_aside(table)} AS SELECT * FROM {table}")
    for table in TABLES:
        op.drop_table(table)  # its indexes go with it


def _drop_copies() -> None:
    for table in TABLES:
        op.drop_table(_aside(table))


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _key(scoped: bool, *more: str) -> list[sa.Column[str]]:
    """The key columns of a table of purchases (store_id first when scoped), then `more`, all primary key."""
    names = ["store_id", "transaction_id", *more] if scoped else ["transaction_id", *more]
    return [sa.Column(name, ID, primary_key=True) for name in names]


def _of_purchase(scoped: bool) -> sa.ForeignKeyConstraint:
    if scoped:
        return sa.ForeignKeyConstraint(
            ["store_id", "transaction_id"], ["purchases.store_id", "purchases.transaction_id"]
        )
    return sa.ForeignKeyConstraint(["transaction_id"], ["purchases.transaction_id"])


def _of_return(scoped: bool) -> sa.ForeignKeyConstraint:
    if scoped:
        return sa.ForeignKeyConstraint(
            ["store_id", "transaction_id", "return_id"],
            ["returns.store_id", "returns.transaction_id", "returns.return_id"],
        )
    return sa.ForeignKeyConstraint(["return_id"], ["returns.return_id"])


def _create_purchases(scoped: bool) -> None:
    """purchases, purchase_lines and purchase_offers: keyed by (store_id, transaction_id) when `scoped`, else by
    transaction_id as 0001 made them."""
    store = [] if scoped else [sa.Column("store_id", ID, nullable=False)]
    op.create_table(
        "purchases",
        *_key(scoped),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), nullable=False),
        *store,
        sa.Column("terminal_id", ID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("committed_at", TS, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _PURCHASE_AMOUNTS),
        sa.Column("request_digest", ID, nullable=False),
        sa.Column("receipt", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_purchases_committed_at", "purchases", ["committed_at"])
    op.create_index("ix_purchases_customer_id_committed_at", "purchases", ["customer_id", "committed_at"])
    op.create_table(
        "purchase_lines",
        *_key(scoped, "line_id"),
        sa.Column("sku", ID, nullable=False),
        sa.Column("category", ID, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _LINE_AMOUNTS),
        sa.Column("offer_ids", sa.Text, nullable=False),
        _of_purchase(scoped),
    )
    op.create_table(
        "purchase_offers",
        *_key(scoped, "offer_id"),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("offer_version", sa.Integer, nullable=False),
        sa.Column("bonus_points", sa.BigInteger, nullable=False),
        sa.Column("discount_minor", sa.BigInteger, nullable=False),
        _of_purchase(scoped),
    )
    op.create_index("ix_purchase_offers_customer_id", "purchase_offers", ["customer_id"])
    op.create_index("ix_purchase_offers_offer_id", "purchase_offers", ["offer_id"])


def _create_returns(scoped: bool) -> None:
    """returns, return_lines and return_offers: a return keyed by its purchase and return id when `scoped` (and
    with its returning store), else by return id as 0002 made them."""
    returns_key = _key(True, "return_id") if scoped else [sa.Column("return_id", ID, primary_key=True)]
    purchase = (
        [sa.Column("returning_store_id", ID, nullable=True)]
        if scoped
        else [sa.Column("transaction_id", ID, nullable=False)]
    )
    op.create_table(
        "returns",
        *returns_key,
        *purchase,
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("committed_at", TS, nullable=False),
        sa.Column("voided", sa.Boolean, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _RETURN_AMOUNTS),
        sa.Column("request_digest", ID, nullable=False),
        sa.Column("receipt", sa.LargeBinary, nullable=False),
        _of_purchase(scoped),
    )
    if not scoped:
        op.create_index("ix_returns_transaction_id", "returns", ["transaction_id"])
    op.create_index("ix_returns_customer_id_committed_at", "returns", ["customer_id", "committed_at"])
    lines_key = _key(True, "return_id", "line_id") if scoped else _key(False, "line_id")[1:]
    op.create_table(
        "return_lines",
        *([] if scoped else [sa.Column("return_id", ID, primary_key=True)]),
        *lines_key,
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("points_reversed", sa.BigInteger, nullable=False),
        sa.Column("value_minor", sa.BigInteger, nullable=False),
        _of_return(scoped),
    )
    op.create_table(
        "return_offers",
        *_key(scoped, "offer_id"),
        sa.Column("return_id", ID, nullable=False),
        _of_purchase(scoped),
        _of_return(scoped),
    )


def _fill_scoped() -> None:
    """The copies into the new tables, each row given its purchase's store (transaction ids are unique here)."""
    p, a = "p", _aside
    op.execute(
        f"INSERT INTO purchases (store_id, transaction_id, {_PURCHASE_COLUMNS})"
        f" SELECT store_id, transaction_id, {_PURCHASE_COLUMNS} FROM {a('purchases')}"
    )
    for table, key, columns in (
        ("purchase_lines", "line_id", _LINE_COLUMNS),
        ("purchase_offers", "offer_id", _OFFER_COLUMNS),
        ("returns", "return_id", _RETURN_COLUMNS),
        ("return_offers", "offer_id", "return_id"),
    ):
        op.execute(
            f"INSERT INTO {table} (store_id, transaction_id, {key}, {columns})"
            f" SELECT {p}.store_id, x.transaction_id, x.{key}, {_prefixed(columns, 'x')}"
            f" FROM {a(table)} x JOIN {a('purchases')} {p} ON {p}.transaction_id = x.transaction_id"
        )
    op.execute(
        f"INSERT INTO return_lines (store_id, transaction_id, return_id, line_id, {_RETURN_LINE_COLUMNS})"
        f" SELECT r.store_id, r.transaction_id, x.return_id, x.line_id, {_prefixed(_RETURN_LINE_COLUMNS, 'x')}"
        f" FROM {a('return_lines')} x JOIN returns r ON r.return_id = x.return_id"
    )


def _refused_stores() -> None:
    """refused_records.store_id: a refused purchase's store from its record; a refused return's from its purchase."""
    conn = op.get_bind()
    refused = sa.table("refused_records", sa.column("event_id"), sa.column("store_id"), sa.column("record_json"))
    rows = conn.execute(sa.text("SELECT event_id, record_json FROM refused_records WHERE kind = 'purchase'")).all()
    for event_id, record_json in rows:
        store_id = json.loads(record_json).get("store_id")
        conn.execute(refused.update().where(refused.c.event_id == event_id).values(store_id=store_id))
    op.execute(
        "UPDATE refused_records SET store_id = (SELECT p.store_id FROM purchases p"
        " WHERE p.transaction_id = refused_records.transaction_id) WHERE kind = 'return'"
    )


def upgrade() -> None:
    _copy_aside_and_drop()
    _create_purchases(scoped=True)
    _create_returns(scoped=True)
    _fill_scoped()
    _drop_copies()
    op.add_column("points_ledger", sa.Column("store_id", ID, nullable=True))
    op.execute(
        "UPDATE points_ledger SET store_id = (SELECT p.store_id FROM purchases p"
        " WHERE p.transaction_id = points_ledger.transaction_id) WHERE transaction_id IS NOT NULL"
    )
    op.add_column("refused_records", sa.Column("store_id", ID, nullable=True))
    _refused_stores()


def _fill_unscoped() -> None:
    a = _aside
    op.execute(
        f"INSERT INTO purchases (transaction_id, store_id, {_PURCHASE_COLUMNS})"
        f" SELECT transaction_id, store_id, {_PURCHASE_COLUMNS} FROM {a('purchases')}"
    )
    for table, key, columns in (
        ("purchase_lines", "line_id", _LINE_COLUMNS),
        ("purchase_offers", "offer_id", _OFFER_COLUMNS),
        ("returns", "return_id", _RETURN_COLUMNS),
        ("return_offers", "offer_id", "return_id"),
    ):
        op.execute(
            f"INSERT INTO {table} (transaction_id, {key}, {columns})"
            f" SELECT transaction_id, {key}, {columns} FROM {a(table)}"
        )
    op.execute(
        f"INSERT INTO return_lines (return_id, line_id, {_RETURN_LINE_COLUMNS})"
        f" SELECT return_id, line_id, {_RETURN_LINE_COLUMNS} FROM {a('return_lines')}"
    )


def downgrade() -> None:
    # In place (SQLite 3.35+ can): a batch copy would trip the foreign keys pointing at these tables.
    op.drop_column("refused_records", "store_id")
    op.drop_column("points_ledger", "store_id")
    _copy_aside_and_drop()
    _create_purchases(scoped=False)
    _create_returns(scoped=False)
    _fill_unscoped()
    _drop_copies()
