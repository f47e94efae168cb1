"""Returns: points debt on customers, returns with their lines, and the offer uses returns gave back.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models: a migration must not change when the models do.
ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # The server default fills existing rows (and keeps NOT NULL valid on SQLite's ADD COLUMN).
    op.add_column("customers", sa.Column("points_debt", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "returns",
        sa.Column("return_id", ID, primary_key=True),
        sa.Column("transaction_id", ID, sa.ForeignKey("purchases.transaction_id"), nullable=False),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("committed_at", TS, nullable=False),
        sa.Column("voided", sa.Boolean, nullable=False),
        sa.Column("points_reversed", sa.BigInteger, nullable=False),
        sa.Column("points_refunded", sa.BigInteger, nullable=False),
        sa.Column("value_minor", sa.BigInteger, nullable=False),
        sa.Column("lifetime_value_delta", sa.BigInteger, nullable=False),
        sa.Column("request_digest", ID, nullable=False),
        sa.Column("receipt", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_returns_transaction_id", "returns", ["transaction_id"])
    op.create_index("ix_returns_customer_id_committed_at", "returns", ["customer_id", "committed_at"])
    op.create_table(
        "return_lines",
        sa.Column("return_id", ID, sa.ForeignKey("returns.return_id"), primary_key=True),
        sa.Column("line_id", ID, primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("points_reversed", sa.BigInteger, nullable=False),
        sa.Column("value_minor", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "return_offers",
        sa.Column("transaction_id", ID, sa.ForeignKey("purchases.transaction_id"), primary_key=True),
        sa.Column("offer_id", ID, primary_key=True),
        sa.Column("return_id", ID, sa.ForeignKey("returns.return_id"), nullable=False),
    )


def downgrade() -> None:
    for table in ("return_offers", "return_lines", "returns"):
        op.drop_table(table)
    # In place (SQLite >= 3.35): batch mode would copy and drop the table, which the foreign keys refuse.
    op.drop_column("customers", "points_debt")
