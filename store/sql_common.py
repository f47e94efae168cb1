"""What the SQL repositories share: the views of one engine they work through, the dialect's INSERT (for
ON CONFLICT), and record timestamps as aware UTC.

Every repository is blocking (the server calls it through asyncio.to_thread) and opens its own short session per
call, so one instance serves all threads. Works on SQLite and PostgreSQL: conflicts use each dialect's
INSERT ... ON CONFLICT, which both spell the same way in SQLAlchemy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from store.sql_db import write_engine

Insert = sqlite.Insert | postgresql.Insert


class EngineViews:
    """One engine (one connection pool) seen three ways: `reader` for short reads, `writer` for read-write
    transactions (BEGIN IMMEDIATE on SQLite), `snapshot` for reads that must see one point in time."""

    def __init__(self, engine: sa.Engine) -> None:
        if engine.dialect.name not in {"sqlite", "postgresql"}:
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self.postgres = engine.dialect.name == "postgresql"
        self.reader = engine
        self.writer = write_engine(engine)
        # PostgreSQL's default READ COMMITTED snapshots per statement; a rebuild must see one point in time.
        # SQLite's deferred transaction already reads one WAL snapshot.
        self.snapshot = engine.execution_options(isolation_level="REPEATABLE READ") if self.postgres else engine

    def insert(self, model: type[Any]) -> Insert:
        """INSERT into `model`'s table in this dialect, so that on_conflict_do_nothing/do_update are there."""
        return postgresql.insert(model) if self.postgres else sqlite.insert(model)


def parse_timestamp(raw: str) -> datetime:
    """An ISO 8601 record timestamp as aware UTC (a naive one is taken as UTC, as records are written in UTC)."""
    value = datetime.fromisoformat(raw)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    """`value` in UTC; a naive datetime is refused (ValueError), as a caller's mistake."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)
