"""The Redis side's fixture: a CustomerStore on the test Redis under a key prefix of its own, removed afterwards.

Imported by name into the modules that use it, like sql_fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from store.keys import Keys
from store.redis_state import CustomerStore
from tests.support.redis_env import delete_prefix, new_prefix


@pytest.fixture(name="store")
async def fixture_store(redis_url: str) -> AsyncIterator[CustomerStore]:
    client = aioredis.Redis.from_url(redis_url)
    prefix = new_prefix()
    yield CustomerStore(client, Keys(prefix, 4), receipt_retention_s=3600)
    await client.aclose()
    delete_prefix(redis_url, prefix)
