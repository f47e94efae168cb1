"""Initial profile schema: customers, purchases, points ledger, applied events, offers and stores.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models: a migration must not change when the models do.
ID = sa.String(128)
TS = sa.DateTime(timezone=True)


# long: the initial schema, one create_table per table, read top to bottom like the DDL it emits
def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", ID, primary_key=True),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("tier", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("lifetime_value_minor", sa.BigInteger, nullable=False),
        sa.Column("points_balance", sa.BigInteger, nullable=False),
        sa.Column("purchase_count", sa.Integer, nullable=False),
        sa.Column("last_purchase_at", TS, nullable=True),
        sa.Column("home_latitude", sa.Float, nullable=True),
        sa.Column("home_longitude", sa.Float, nullable=True),
        sa.Column("propensity_json", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "customer_categories",
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), primary_key=True),
        sa.Column("category", ID, primary_key=True),
        sa.Column("first_purchased_at", TS, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_table(
        "purchases",
        sa.Column("transaction_id", ID, primary_key=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("terminal_id", ID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("committed_at", TS, nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger, nullable=False),
        sa.Column("total_discount_minor", sa.BigInteger, nullable=False),
        sa.Column("total_due_minor", sa.BigInteger, nullable=False),
        sa.Column("points_earned", sa.BigInteger, nullable=False),
        sa.Column("points_redeemed", sa.BigInteger, nullable=False),
        sa.Column("redeemed_value_minor", sa.BigInteger, nullable=False),
        sa.Column("request_digest", ID, nullable=False),
        sa.Column("receipt", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_purchases_committed_at", "purchases", ["committed_at"])
    op.create_index("ix_purchases_customer_id_committed_at", "purchases", ["customer_id", "committed_at"])
    op.create_table(
        "purchase_lines",
        sa.Column("transaction_id", ID, sa.ForeignKey("purchases.transaction_id"), primary_key=True),
        sa.Column("line_id", ID, primary_key=True),
        sa.Column("sku", ID, nullable=False),
        sa.Column("category", ID, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
        sa.Column("base_points", sa.BigInteger, nullable=False),
        sa.Column("bonus_points", sa.BigInteger, nullable=False),
        sa.Column("discount_minor", sa.BigInteger, nullable=False),
        sa.Column("offer_ids", sa.Text, nullable=False),
    )
    op.create_table(
        "purchase_offers",
        sa.Column("transaction_id", ID, sa.ForeignKey("purchases.transaction_id"), primary_key=True),
        sa.Column("offer_id", ID, primary_key=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("offer_version", sa.Integer, nullable=False),
        sa.Column("bonus_points", sa.BigInteger, nullable=False),
        sa.Column("discount_minor", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_purchase_offers_customer_id", "purchase_offers", ["customer_id"])
    op.create_table(
        "points_ledger",
        sa.Column("entry_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), nullable=False),
        sa.Column("transaction_id", ID, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_points_ledger_customer_id", "points_ledger", ["customer_id"])
    op.create_table(
        "applied_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("applied_at", TS, nullable=False),
    )
    op.create_table(
        "offers",
        sa.Column("offer_id", ID, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("definition_json", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "stores",
        sa.Column("store_id", ID, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("latitude", sa.Float, nullable=True),
        sa.Column("longitude", sa.Float, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "stores",
        "offers",
        "applied_events",
        "points_ledger",
        "purchase_offers",
        "purchase_lines",
        "purchases",
        "customer_categories",
        "customers",
    ):
        op.drop_table(table)
