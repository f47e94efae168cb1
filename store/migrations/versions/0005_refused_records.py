"""Refused outbox records are kept; profile changes are ordered by time (newest wins); purchase offers by offer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("profile_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customers", sa.Column("tier_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "refused_records",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
    )
    op.create_index("ix_refused_records_transaction_id", "refused_records", ["transaction_id"])
    op.create_index("ix_purchase_offers_offer_id", "purchase_offers", ["offer_id"])


def downgrade() -> None:
    op.drop_index("ix_purchase_offers_offer_id", "purchase_offers")
    op.drop_index("ix_refused_records_transaction_id", "refused_records")
    op.drop_table("refused_records")
    # In place (SQLite 3.35+ can): a batch copy of customers would trip the foreign keys pointing at it.
    op.drop_column("customers", "tier_changed_at")
    op.drop_column("customers", "profile_changed_at")
