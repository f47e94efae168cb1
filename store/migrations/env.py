"""Alembic environment: migrations run only through store.sql_db.migrate(), on the connection it passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import store.sql_models  # noqa: F401  (registers the tables on SQLModel.metadata for autogenerate comparisons)

config = context.config
connection = config.attributes.get("connection")
if not isinstance(connection, Connection) or context.is_offline_mode():
    raise RuntimeError("run migrations with store.sql_db.migrate(engine) (online, with a connection)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # The schema the engine's search_path points at (PostgreSQL); None keeps the default.
    version_table_schema=config.attributes.get("schema"),
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
