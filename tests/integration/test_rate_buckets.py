"""The token buckets of the rate limits (store/lua/take_rate_tokens.lua) on the real test Redis, on a clock the test
moves (the script's now_ms), so refill is exact and no test sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from domain.errors import Unavailable
from domain.limits import Bucket, BucketKind, Rate, Refusal
from store.keys import Keys
from store.redis_rate_limits import RedisRateBuckets
from tests.support.redis_env import delete_prefix, new_prefix

NOW = 1_800_000_000_000  # ms


@dataclass
class Clock:
    now_ms: int = NOW

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Buckets:
    store: RedisRateBuckets
    clock: Clock
    client: aioredis.Redis
    keys: Keys


@pytest.fixture
async def buckets(redis_url: str) -> AsyncIterator[Buckets]:
    client = aioredis.Redis.from_url(redis_url)
    keys, clock = Keys(new_prefix(), 4), Clock()
    yield Buckets(RedisRateBuckets(client, keys, now_ms=clock), clock, client, keys)
    await client.aclose()
    delete_prefix(redis_url, keys.prefix)


def key(per_second: int, burst: int, owner: str = "k1") -> Bucket:
    return Bucket(BucketKind.KEY, owner, Rate(per_second, burst))


def customer(per_second: int, burst: int, owner: str = "samantha") -> Bucket:
    return Bucket(BucketKind.CUSTOMER, owner, Rate(per_second, burst))


async def takes(b: Buckets, wanted: list[Bucket], times: int) -> list[Refusal | None]:
    return [await b.store.take(wanted) for _ in range(times)]


async def test_a_full_bucket_passes_its_burst_then_refuses_with_the_time_to_the_next_token(buckets: Buckets) -> None:
    assert await takes(buckets, [key(2, 4)], 4) == [None] * 4
    assert await buckets.store.take([key(2, 4)]) == Refusal(BucketKind.KEY, 500)  # 2 a second: one per 500 ms
    buckets.clock.now_ms += 499
    assert await buckets.store.take([key(2, 4)]) == Refusal(BucketKind.KEY, 1)
    buckets.clock.now_ms += 1
    assert await buckets.store.take([key(2, 4)]) is None
    assert await buckets.store.take([key(2, 4)]) == Refusal(BucketKind.KEY, 500)


async def test_refill_is_exact_over_many_small_steps_and_stops_at_the_burst(buckets: Buckets) -> None:
    assert await takes(buckets, [key(3, 3)], 3) == [None] * 3
    passed = 0
    for _ in range(1000):  # a call every ms for a second at 3 a second: exactly 3 pass, none lost to rounding
        buckets.clock.now_ms += 1
        passed += await buckets.store.take([key(3, 3)]) is None
    assert passed == 3
    buckets.clock.now_ms += 3_600_000  # an hour idle: a full bucket, no more
    assert await takes(buckets, [key(3, 3)], 4) == [None, None, None, Refusal(BucketKind.KEY, 334)]


async def test_a_call_takes_from_both_buckets_or_from_neither(buckets: Buckets) -> None:
    # The key refills slowly (1/s), so its bucket's expiry (Redis time: when it would be full again) stays far off
    # however slowly a loaded machine runs these hundred calls; the script's own clock is the test's.
    roomy, tight = key(1, 100), customer(1, 2)
    assert await takes(buckets, [roomy, tight], 2) == [None, None]
    assert await buckets.store.take([roomy, tight]) == Refusal(BucketKind.CUSTOMER, 1000)
    # The refused calls took nothing from the key's bucket: 98 of its 100 are left, for other customers.
    refused = await takes(buckets, [roomy, tight], 50)
    assert all(r == Refusal(BucketKind.CUSTOMER, 1000) for r in refused)
    others = [await buckets.store.take([roomy, customer(1, 2, owner=f"m{i}")]) for i in range(98)]
    assert others == [None] * 98
    assert await buckets.store.take([roomy, customer(1, 2, owner="m-last")]) == Refusal(BucketKind.KEY, 1000)


async def test_of_two_empty_buckets_the_refusal_names_the_one_that_refills_last(buckets: Buckets) -> None:
    assert await buckets.store.take([key(10, 1), customer(1, 1)]) is None
    assert await buckets.store.take([key(10, 1), customer(1, 1)]) == Refusal(BucketKind.CUSTOMER, 1000)
    slow_key, fast_customer = key(1, 1, owner="k2"), customer(10, 1, owner="m2")
    assert await buckets.store.take([slow_key, fast_customer]) is None
    assert await buckets.store.take([slow_key, fast_customer]) == Refusal(BucketKind.KEY, 1000)


async def test_a_bucket_expires_when_it_would_be_full_again(buckets: Buckets) -> None:
    await takes(buckets, [key(2, 4)], 3)
    ttl = await buckets.client.pttl(buckets.keys.rate_bucket("key", "k1"))
    assert 0 < ttl <= 1_501  # 3 tokens at 2 a second: full again in 1.5 s
    assert await buckets.client.pttl(buckets.keys.rate_bucket("customer", "nobody")) == -2


async def test_a_clock_that_steps_back_refills_nothing(buckets: Buckets) -> None:
    await takes(buckets, [key(1, 2)], 2)
    buckets.clock.now_ms -= 10_000
    assert await buckets.store.take([key(1, 2)]) == Refusal(BucketKind.KEY, 1000)
    buckets.clock.now_ms += 10_000 + 1000
    assert await buckets.store.take([key(1, 2)]) is None


async def test_redis_time_is_the_clock_when_none_is_injected(buckets: Buckets) -> None:
    live = RedisRateBuckets(buckets.client, buckets.keys)
    wanted = [key(1, 2, owner="live")]
    assert [await live.take(wanted) for _ in range(2)] == [None, None]
    refusal = await live.take(wanted)
    assert refusal is not None and refusal.kind is BucketKind.KEY and 0 < refusal.retry_after_ms <= 1000


async def test_the_script_survives_a_flushed_script_cache(buckets: Buckets) -> None:
    assert await buckets.store.take([key(5, 5)]) is None
    await buckets.client.script_flush()
    assert await buckets.store.take([key(5, 5)]) is None


async def test_an_unreachable_redis_is_unavailable_to_the_use_case() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(Unavailable):
            await RedisRateBuckets(client, Keys("unused", 1)).take([key(1, 1)])
    finally:
        await client.aclose()
