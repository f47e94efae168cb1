"""Shared fixtures: the test Redis (real at 127.0.0.1:6379 db 9, else embedded), settings, servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
