"""Manual points adjustments (AdjustPoints): their requests and outcomes, and the reason on their ledger entries.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models: a migration must not change when the models do.
ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("points_ledger", sa.Column("reason", sa.String(500), nullable=True))
    op.create_table(
        "points_adjustments",
        sa.Column("adjustment_id", ID, primary_key=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.customer_id"), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("request_digest", ID, nullable=False),
        sa.Column("balance_before", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("debt_before", sa.BigInteger, nullable=False),
        sa.Column("debt_after", sa.BigInteger, nullable=False),
        sa.Column("adjusted_at", TS, nullable=False),
    )
    op.create_index("ix_points_adjustments_customer_id", "points_adjustments", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_points_adjustments_customer_id", "points_adjustments")
    op.drop_table("points_adjustments")
    # In place (SQLite 3.35+ can): a batch copy would trip the foreign keys.
    op.drop_column("points_ledger", "reason")
