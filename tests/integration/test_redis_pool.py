"""The service's Redis client: a call finding every connection busy waits for one (a burst beyond the pool queues
briefly), and only after the pool timeout fails with an error the interceptor answers UNAVAILABLE (retry)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import grpc
import pytest
from redis.asyncio.connection import Connection

from server.bootstrap import redis_client
from server.rpc.statuses import status_of
from tests.conftest import build_settings


async def test_a_call_waits_for_the_busy_connection_then_fails_unavailable_after_the_timeout(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis_client(build_settings(redis_url, tmp_path, redis_max_connections=1, redis_pool_timeout_ms=200))
    pool = client.connection_pool
    take = cast(Callable[[], Awaitable[Connection]], pool.get_connection)  # untyped in redis-py

    async def ping() -> bool:
        return bool(await client.ping())

    try:
        busy = await take()  # every connection of the pool in use (here: its only one)
        waiting = asyncio.create_task(ping())
        await asyncio.sleep(0)  # the ping is queued for a connection
        assert not waiting.done()
        await pool.release(busy)
        assert await waiting  # it got the connection once it was free

        busy = await take()
        with pytest.raises(Exception) as timed_out:
            await client.ping()
        await pool.release(busy)
        assert status_of(timed_out.value) == (grpc.StatusCode.UNAVAILABLE, "a backing store is unavailable; retry")
    finally:
        await client.aclose()
