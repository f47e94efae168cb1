"""The audit log: admin changes, key changes, privacy requests, refused calls and velocity alerts, append-only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Hand-written to match store/sql_models.py; tests compare the migrated database with the models. The service
only ever INSERTs here; on PostgreSQL a DBA makes that a rule for the service's role (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(128), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("peer", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_audit_events_time", "audit_events", ["occurred_at", "event_id"])
    op.create_index("ix_audit_events_key_time", "audit_events", ["key_id", "occurred_at", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_key_time", table_name="audit_events")
    op.drop_index("ix_audit_events_time", table_name="audit_events")
    op.drop_table("audit_events")
