"""Pending points: each ledger entry says when its points become spendable (the returns window).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models.
Existing entries keep NULL: spendable at once, as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("points_ledger", sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("points_ledger") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("available_at")
