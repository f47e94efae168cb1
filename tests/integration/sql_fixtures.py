"""SQL fixtures: a migrated, empty profile database on SQLite (tmp_path) or PostgreSQL (a fresh schema per test).

Import the fixture_* functions into a test module (pytest registers them under their `name`). PostgreSQL is at
POS_OFFERS_TEST_POSTGRES_URL; its tests are skipped, never failed, when it is unreachable. `snapshot` and `count_rows`
read back what the repository wrote.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from store.sql_db import make_engine, migrate
from store.sql_repo import ProfileRepository
from usecases.snapshot import CustomerSnapshot

from .records_builders import T0

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# The newest migration and every table it creates (besides alembic_version): what a migrated database holds.
HEAD_REVISION = "0005"
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
)


def profile_metadata() -> sa.MetaData:
    """Our tables only (store.sql_repo, imported above, registers them): SQLModel.metadata is global and may hold
    other modules' tables in the same process."""
    metadata = sa.MetaData()
    for name in PROFILE_TABLES:
        SQLModel.metadata.tables[name].to_metadata(metadata)
    return metadata


def postgres_url() -> str:
    return os.environ.get("POS_OFFERS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _postgres_admin_engine() -> sa.Engine:
    """An engine on the test database, or a skip (never a failure) when PostgreSQL is not there."""
    url = postgres_url()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any connect error means "not available here", not a test failure
        engine.dispose()
        pytest.skip(f"PostgreSQL unreachable at {sa.make_url(url).render_as_string()}: {type(exc).__name__}")
    return engine


@pytest.fixture(name="sql_backend", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fixture_sql_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="sql_target")
def fixture_sql_target(sql_backend: str, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty database: nothing created yet."""
    if sql_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'profile.db'}", None
        return
    admin = _postgres_admin_engine()
    schema = "t_" + uuid.uuid4().hex
    try:
        yield postgres_url(), schema
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@pytest.fixture(name="sql_engine")
def fixture_sql_engine(sql_target: tuple[str, str | None]) -> Iterator[sa.Engine]:
    """A migrated engine; disposed before the schema is dropped."""
    url, schema = sql_target
    engine = make_engine(url, schema=schema)
    try:
        migrate(engine, schema=schema)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(name="profile_repo")
def fixture_profile_repo(sql_engine: sa.Engine) -> ProfileRepository:
    return ProfileRepository(sql_engine)


def snapshot(repo: ProfileRepository, customer_id: str, since: datetime = T0) -> CustomerSnapshot:
    """The customer's profile, with the receipts committed since `since`; the customer must exist."""
    snap = repo.load_customer(customer_id, receipts_since=since)
    assert snap is not None
    return snap


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
