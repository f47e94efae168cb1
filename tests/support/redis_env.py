"""Which Redis the tests use: the machine's (own db number, own key prefix) or, when absent, an embedded one."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import redis

from store.embedded_redis import EmbeddedRedis

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/9"


def reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError):
        return False


class TestRedis:
    """Resolves the test Redis once per session; starts the embedded one only if needed."""

    def __init__(self) -> None:
        self._embedded: EmbeddedRedis | None = None
        wanted = os.environ.get("POS_OFFERS_TEST_REDIS_URL", DEFAULT_TEST_REDIS)
        if reachable(wanted):
            self.url, self.kind = wanted, "shared"
        else:
            self._embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="po-redis-")), persistent=False)
            self.url, self.kind = self._embedded.start(), "embedded"

    def close(self) -> None:
        if self._embedded:
            self._embedded.stop()


def new_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    """Removes one test's keys; never FLUSHALL/FLUSHDB: other checks share this Redis."""
    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()
