"""Integration fixtures: a migrated, empty profile database on SQLite (tmp_path) or PostgreSQL (a fresh schema per
test, see tests/conftest.py), the SQL repositories on it (sink, profiles, sql_catalog, budgets), and a CustomerStore
on the test Redis under a key prefix of its own. PostgreSQL tests are skipped, never failed, when it is unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from store.keys import Keys
from store.redis_state import CustomerStore
from store.sql_budgets import SqlBudgets
from store.sql_catalog import SqlCatalog
from store.sql_db import make_engine, migrate
from store.sql_outbox import SqlOutboxSink
from store.sql_profile import SqlProfiles
from tests.conftest import postgres_url
from tests.support.redis_env import delete_prefix, new_prefix


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sql_target(sql_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(url, schema) of an empty database: nothing created yet."""
    if sql_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'profile.db'}", None
    # Set up while this fixture is, so torn down after it and after every fixture using it (the engines).
    return postgres_url(), str(request.getfixturevalue("postgres_schema"))


@pytest.fixture
def sql_engine(sql_target: tuple[str, str | None]) -> Iterator[sa.Engine]:
    """A migrated engine; disposed before the schema is dropped."""
    url, schema = sql_target
    engine = make_engine(url, schema=schema)
    try:
        migrate(engine, schema=schema)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sink(sql_engine: sa.Engine) -> SqlOutboxSink:
    return SqlOutboxSink(sql_engine)


@pytest.fixture
def profiles(sql_engine: sa.Engine) -> SqlProfiles:
    return SqlProfiles(sql_engine)


@pytest.fixture
def sql_catalog(sql_engine: sa.Engine) -> SqlCatalog:
    return SqlCatalog(sql_engine)


@pytest.fixture
def budgets(sql_engine: sa.Engine) -> SqlBudgets:
    return SqlBudgets(sql_engine)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[CustomerStore]:
    client = aioredis.Redis.from_url(redis_url)
    prefix = new_prefix()
    yield CustomerStore(client, Keys(prefix, 4), receipt_retention_s=3600)
    await client.aclose()
    delete_prefix(redis_url, prefix)
