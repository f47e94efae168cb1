"""What a migrated profile database holds: the newest migration and its tables, and our models' metadata."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import SQLModel

import store.sql_models  # noqa: F401  (registers the tables in SQLModel.metadata)

# The newest migration and every table it creates (besides alembic_version): what a migrated database holds.
HEAD_REVISION = "0009"
PROFILE_TABLES = (
    "customers",
    "customer_categories",
    "purchases",
    "purchase_lines",
    "purchase_offers",
    "points_ledger",
    "applied_events",
    "offers",
    "stores",
    "returns",
    "return_lines",
    "return_offers",
    "settings",
    "refused_records",
    "api_keys",
    "points_adjustments",
    "audit_events",
)


def profile_metadata() -> sa.MetaData:
    """Our tables only: SQLModel.metadata is global and may hold other modules' tables in the same process."""
    metadata = sa.MetaData()
    for name in PROFILE_TABLES:
        SQLModel.metadata.tables[name].to_metadata(metadata)
    return metadata
