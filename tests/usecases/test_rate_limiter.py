"""The rate limiter's decisions on in-memory buckets: which buckets a call takes from, and what happens when the
buckets cannot be checked (till and app calls go ahead, admin calls are refused), counted by the server's gate."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import types_pb2 as pb

from domain.access import ApiKey, Role
from domain.errors import Unavailable
from domain.limits import Bucket, BucketKind, RateLimited, RateLimits, Refusal
from server.rpc.rate_limiting import RateGate, customer_of
from telemetry import metrics
from usecases.rate_limits import RateLimiter

LIMITS = RateLimits(per_key=100, key_burst_seconds=2, per_customer=5, customer_burst_seconds=4)


class Buckets:
    def __init__(self, answer: Refusal | None = None, *, down: bool = False) -> None:
        self.answer, self.down = answer, down
        self.asked: list[list[Bucket]] = []

    async def take(self, buckets: Sequence[Bucket]) -> Refusal | None:
        self.asked.append(list(buckets))
        if self.down:
            raise Unavailable("rate limits unavailable (ConnectionError)")
        return self.answer


def key(role: Role = Role.POS, rate: int = 0) -> ApiKey:
    return ApiKey(key_id=f"k-{role.value}", name="", role=role, rate_limit_per_second=rate)


async def test_a_call_takes_from_its_keys_bucket_and_its_customers() -> None:
    buckets = Buckets()
    assert await RateLimiter(buckets, LIMITS).admit(key(rate=2), "samantha") == "admitted"
    assert await RateLimiter(buckets, LIMITS).admit(key(), "") == "admitted"
    with_customer, without = buckets.asked
    assert [(b.kind, b.owner, b.rate.per_second, b.rate.burst) for b in with_customer] == [
        (BucketKind.KEY, "k-pos", 2, 4),
        (BucketKind.CUSTOMER, "samantha", 5, 20),
    ]
    assert [(b.kind, b.rate.per_second, b.rate.burst) for b in without] == [(BucketKind.KEY, 100, 200)]


async def test_no_customer_bucket_when_the_customer_limit_is_off() -> None:
    buckets = Buckets()
    await RateLimiter(buckets, RateLimits(per_customer=0)).admit(key(), "samantha")
    assert [b.kind for b in buckets.asked[0]] == [BucketKind.KEY]


async def test_a_refusal_carries_its_bucket_and_delay_and_is_counted_by_role_and_bucket() -> None:
    gate = RateGate(RateLimiter(Buckets(Refusal(BucketKind.CUSTOMER, 250)), LIMITS))
    counted = metrics.RATE_LIMITED.labels("app", "customer")
    before = counted._value.get()
    with pytest.raises(RateLimited) as refused:
        await gate.admit(key(Role.APP), svc.GetProfileRequest(customer_id="samantha"))
    assert (refused.value.kind, refused.value.retry_after_ms) == (BucketKind.CUSTOMER, 250)
    assert "samantha" not in refused.value.message
    assert counted._value.get() == before + 1


@pytest.mark.parametrize("role", [Role.POS, Role.APP])
async def test_till_and_app_calls_go_ahead_unchecked_when_redis_is_down(role: Role) -> None:
    unchecked = metrics.RATE_LIMIT_UNCHECKED.labels(role.value)
    before = unchecked._value.get()
    gate = RateGate(RateLimiter(Buckets(down=True), LIMITS))
    await gate.admit(key(role), svc.GetProfileRequest(customer_id="samantha"))
    assert unchecked._value.get() == before + 1


async def test_admin_calls_are_refused_unavailable_when_redis_is_down() -> None:
    unchecked = metrics.RATE_LIMIT_UNCHECKED.labels("admin")
    before = unchecked._value.get()
    with pytest.raises(Unavailable):
        await RateGate(RateLimiter(Buckets(down=True), LIMITS)).admit(key(Role.ADMIN), svc.GetProfileRequest())
    assert unchecked._value.get() == before + 1


def test_the_customer_is_read_from_the_basket_or_the_request() -> None:
    assert customer_of(svc.EvaluateBasketRequest(basket=pb.Basket(customer_id="samantha"))) == "samantha"
    assert customer_of(svc.GetProfileRequest(customer_id="samantha")) == "samantha"
    assert customer_of(svc.ListActiveOffersRequest()) == ""
    assert customer_of(object()) == ""
    long_id = customer_of(svc.GetProfileRequest(customer_id="x" * 1_000_000))
    assert long_id.startswith("sha256:") and len(long_id) < 80  # never a 1 MB Redis key
