"""The rate limits' token buckets in Redis: one script call per RPC checks and takes from all of them at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from domain.errors import Unavailable
from domain.limits import Bucket, Refusal
from store.keys import Keys
from store.scripts import lua


class RedisRateBuckets:
    """Implements usecases.ports.RateBuckets on store/lua/take_rate_tokens.lua."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        observe: Callable[[str], AbstractContextManager[None]] | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        """`now_ms` (tests) replaces Redis TIME as the buckets' clock."""
        self._keys = keys
        self._observe = observe or (lambda operation: nullcontext())
        self._now_ms = now_ms
        self._take: AsyncScript = client.register_script(lua("take_rate_tokens.lua"))

    async def take(self, buckets: Sequence[Bucket]) -> Refusal | None:
        params: dict[str, object] = {
            "per_second": [bucket.rate.per_second for bucket in buckets],
            "burst": [bucket.rate.burst for bucket in buckets],
        }
        if self._now_ms is not None:
            params["now_ms"] = self._now_ms()
        keys = [self._keys.rate_bucket(bucket.kind.value, bucket.owner) for bucket in buckets]
        try:
            with self._observe("rate_limit"):
                refused, retry_ms = await self._take(keys=keys, args=[json.dumps(params)])
        except (RedisError, OSError) as exc:
            # Unreachable, out of memory (a write refused under noeviction), a script error: not checkable now.
            raise Unavailable(f"rate limits unavailable ({type(exc).__name__})") from exc
        if int(refused) == 0:
            return None
        return Refusal(buckets[int(refused) - 1].kind, int(retry_ms))
