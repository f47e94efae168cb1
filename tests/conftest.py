"""Shared fixtures: the test Redis (real at 127.0.0.1:6379 db 9, else embedded), a fresh PostgreSQL schema,
settings, servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.config import Settings
from tests.support.redis_env import TestRedis, delete_prefix, new_prefix
from tests.support.server_thread import ServerThread


@pytest.fixture(scope="session")
def test_redis() -> Iterator[TestRedis]:
    redis_env = TestRedis()
    yield redis_env
    redis_env.close()


@pytest.fixture(scope="session")
def redis_url(test_redis: TestRedis) -> str:
    return test_redis.url


DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    """The test PostgreSQL database: POS_OFFERS_TEST_POSTGRES_URL, else 127.0.0.1:5432/test."""
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


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """The name of a fresh schema in the test PostgreSQL database (`migrate` creates it), dropped with all it holds
    after the test; skips, saying why, when PostgreSQL is unreachable.

    Fixtures are torn down in the reverse order they were set up: request this one before whatever must let go of
    the schema first (a server, an engine), or from inside that fixture with `request.getfixturevalue`.
    """
    admin = _postgres_admin_engine()
    schema = "t_" + uuid.uuid4().hex
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def build_settings(redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    base = Settings(
        listen="127.0.0.1:0",
        metrics_listen="",
        redis_url=redis_url,
        redis_prefix=new_prefix(),
        database_url=f"sqlite:///{data_dir / 'profile.db'}",
        data_dir=data_dir,
        partitions=4,
        writer_idle_ms=20,
        writer_process=False,  # tests drive and inspect the writer in-process
        catalog_refresh_ms=100,
        shutdown_grace_s=1.0,
        # Tests drive one key and one member far faster than any till: the limits run on every call, at rates no
        # test reaches unless it sets its own (tests/e2e/test_rate_limits.py).
        rate_limit_per_key=100_000,
        rate_limit_per_customer=100_000,
    )
    return base.with_(**overrides)


@pytest.fixture
def make_server(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    """Starts servers with per-test settings (own key prefix, own SQLite); stops them and deletes their keys."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        overrides.setdefault("data_dir", tmp_path)
        settings = build_settings(overrides.pop("redis_url", redis_url), **overrides)
        server = ServerThread(settings)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for prefix in {s.settings.redis_prefix for s in started}:
        delete_prefix(redis_url, prefix)
