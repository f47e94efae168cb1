"""Per-key and per-customer rate limits through real gRPC, on real servers sharing the test Redis: what a till, the
app or a script hammering one member sees (RESOURCE_EXHAUSTED with the retry delay), and what they do not.

The buckets run on Redis time, so the tests use small rates (a token every 500 or 1000 ms) and send a burst at once
(futures) rather than sleeping; a burst that took the machine longer than a token's refill is sent again with a
fresh key, since it then proves nothing either way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from client import PosOffersClient, ResourceExhaustedError
from domain.access import Role
from telemetry import metrics
from tests.support.keys import keyed_channel
from tests.support.server_thread import ServerThread

OK_OR_NOT_FOUND = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}
LIMITED = grpc.StatusCode.RESOURCE_EXHAUSTED


def new_key(server: ServerThread, rate: int, role: Role = Role.POS, stores: Sequence[str] = ("soho",)) -> str:
    api_keys = server.service.components.api_keys
    bound = stores if role is Role.POS else ()
    _, secret = server.run(api_keys.create(name=f"rate {rate}", role=role, store_ids=bound, rate_limit_per_second=rate))
    return secret


def till(server: ServerThread, secret: str) -> svc_grpc.OfferServiceStub:
    return svc_grpc.OfferServiceStub(keyed_channel(server.target, secret))


def at_once(calls: Sequence[Callable[[], Any]]) -> tuple[list[grpc.Future[Any]], float]:
    """Starts every call before waiting for any; the futures and how long the whole burst took."""
    started = time.monotonic()
    futures = [call() for call in calls]
    for future in futures:
        future.exception()  # waits
    return futures, time.monotonic() - started


def code_of(future: grpc.Future[Any]) -> grpc.StatusCode:
    error: Any = future.exception()
    code: grpc.StatusCode = grpc.StatusCode.OK if error is None else error.code()
    return code


def refused_one(futures: Sequence[grpc.Future[Any]]) -> Any:
    """The error of the (first) call a limit refused: a failed call, with details() and trailing_metadata()."""
    return next(f.exception() for f in futures if code_of(f) is LIMITED)


def profile_call(stub: svc_grpc.OfferServiceStub, customer_id: str = "samantha") -> Callable[[], Any]:
    return lambda: stub.GetProfile.future(svc.GetProfileRequest(customer_id=customer_id), timeout=10)


def burst(
    server: ServerThread, rate: int, size: int, within_s: float, call: Callable[[svc_grpc.OfferServiceStub], Any]
) -> tuple[str, list[grpc.Future[Any]]]:
    """A new key of `rate` calls/s sends `size` calls at once; again with another key if they took over
    `within_s` (the bucket refilled meanwhile). The key's secret and the futures."""
    for _ in range(3):
        secret = new_key(server, rate)
        futures, took = at_once([call(till(server, secret)) for _ in range(size)])
        if took < within_s:
            return secret, futures
    pytest.fail(f"{size} calls never ran within {within_s} s: the machine is too busy for this test")


def retry_info_ms(error: Any) -> int:
    status = rpc_status.from_call(error)  # a failed call is a grpc.Call too
    assert status is not None and status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return int(info.retry_delay.ToMilliseconds())


def trailer(error: Any, key: str) -> str:
    return str(dict(error.trailing_metadata())[key])


def test_a_key_over_its_rate_gets_resource_exhausted_with_the_retry_delay(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, rate_limit_key_burst_s=2)
    # rate_limit_per_second=2 with 2 burst seconds: 4 calls at once pass, the 5th waits for a token (500 ms).
    _, futures = burst(server, rate=2, size=5, within_s=0.4, call=profile_call)
    codes = [code_of(f) for f in futures]
    assert sorted(c.name for c in codes) == ["OK"] * 4 + ["RESOURCE_EXHAUSTED"]
    refused = refused_one(futures)
    assert "rate limit of this API key exceeded" in refused.details()
    delay_ms = retry_info_ms(refused)
    assert 0 < delay_ms <= 500
    assert trailer(refused, "grpc-retry-pushback-ms") == str(delay_ms)
    assert trailer(refused, "x-request-id")


def test_another_key_is_not_limited_by_one_that_is(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True, rate_limit_key_burst_s=1)
    limited, futures = burst(server, rate=1, size=3, within_s=0.8, call=profile_call)
    assert [code_of(f) for f in futures].count(LIMITED) == 2
    other = till(server, new_key(server, rate=1))
    assert other.GetProfile(svc.GetProfileRequest(customer_id="samantha"), timeout=10).customer_id == "samantha"
    with pytest.raises(grpc.RpcError) as still:
        till(server, limited).GetProfile(svc.GetProfileRequest(customer_id="samantha"), timeout=10)
    assert still.value.code() is LIMITED


def test_two_servers_on_one_redis_share_a_keys_bucket(make_server: Callable[..., ServerThread]) -> None:
    first = make_server(demo_data=True, rate_limit_key_burst_s=2)
    second = make_server(
        redis_prefix=first.settings.redis_prefix,
        database_url=first.settings.database_url,
        writer_enabled=False,
        rate_limit_key_burst_s=2,
    )
    for _ in range(3):
        secret = new_key(first, rate=1)  # 2 calls at once, then one a second, across both servers
        second.run(second.service.components.key_ring.refresh(force=True))
        calls = [profile_call(till(first, secret)), profile_call(till(second, secret))] * 2
        futures, took = at_once(calls)
        if took < 0.8:
            break
    codes = [code_of(f) for f in futures]
    assert codes.count(LIMITED) == 2, codes  # each server alone would have let all of its two pass
    assert set(codes) - {LIMITED} == {grpc.StatusCode.OK}


def test_calls_about_one_customer_are_limited_whichever_keys_make_them(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, rate_limit_per_customer=1, rate_limit_customer_burst_s=2)
    for _ in range(3):
        member = f"member-{uuid.uuid4().hex[:8]}"  # unknown: NOT_FOUND when the limit lets the call through
        a, b = till(server, new_key(server, rate=100)), till(server, new_key(server, rate=100))
        futures, took = at_once([profile_call(a, member), profile_call(b, member), profile_call(b, member)])
        if took < 0.8:
            break
    codes = [code_of(f) for f in futures]
    assert codes.count(LIMITED) == 1 and set(codes) - {LIMITED} == {grpc.StatusCode.NOT_FOUND}, codes
    refused = refused_one(futures)
    assert "rate limit of this customer exceeded" in refused.details()
    assert member not in refused.details()
    # The keys still have room: another member is served at once.
    assert a.GetProfile(svc.GetProfileRequest(customer_id="samantha"), timeout=10).customer_id == "samantha"


def test_calls_refused_before_the_limit_take_nothing_from_it(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True, rate_limit_per_customer=1, rate_limit_customer_burst_s=1)
    nobody = till(server, "pok_nobody_" + "x" * 43)
    other_store = till(server, new_key(server, rate=100, stores=("midtown",)))
    sale = svc.EvaluateBasketRequest(
        basket=pb.Basket(customer_id="samantha", store_id="soho", currency="USD", lines=[pb.LineItem(
            line_id="1", sku="DRESS-RED", category="dresses", quantity=1, unit_price_minor=12000)])
    )  # fmt: skip
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as unknown:
            nobody.GetProfile(svc.GetProfileRequest(customer_id="samantha"), timeout=10)
        assert unknown.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as elsewhere:
            other_store.EvaluateBasket(sale, timeout=10)
        assert elsewhere.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # Samantha's bucket (one call) is still full: none of the ten refused calls counted.
    allowed = till(server, new_key(server, rate=100))
    assert allowed.EvaluateBasket(sale, timeout=10).lines


def test_a_limited_call_is_refused_before_its_request_is_validated(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True, rate_limit_key_burst_s=1)
    secret, futures = burst(server, rate=1, size=2, within_s=0.8, call=profile_call)
    assert [code_of(f) for f in futures].count(LIMITED) == 1
    invalid = svc.EvaluateBasketRequest(basket=pb.Basket(customer_id="", store_id="soho"))
    with pytest.raises(grpc.RpcError) as refused:
        till(server, secret).EvaluateBasket(invalid, timeout=10)
    assert refused.value.code() is LIMITED


def test_the_client_library_waits_out_the_delay_and_retries(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True, rate_limit_key_burst_s=1)
    secret = new_key(server, rate=1)
    limited_before = metrics.RATE_LIMITED.labels("pos", "key")._value.get()
    with PosOffersClient(server.target, api_key=secret, timeout=5.0) as pos:
        started = time.monotonic()
        profiles = [pos.get_profile("samantha") for _ in range(3)]  # 1 a second: the 2nd and 3rd wait
    assert [p.customer_id for p in profiles] == ["samantha"] * 3
    assert metrics.RATE_LIMITED.labels("pos", "key")._value.get() - limited_before >= 1
    assert time.monotonic() - started < 5.0


def test_the_client_library_gives_up_at_once_when_the_delay_outlasts_the_deadline(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, rate_limit_key_burst_s=1)
    secret = new_key(server, rate=1)
    with PosOffersClient(server.target, api_key=secret, timeout=0.3) as pos:
        pos.get_profile("samantha", timeout=5.0)
        started = time.monotonic()
        with pytest.raises(ResourceExhaustedError) as refused:
            pos.get_profile("samantha")
    took = time.monotonic() - started
    assert refused.value.retry_delay is not None and 0.3 <= refused.value.retry_delay <= 1.0
    assert took < 0.3  # no useless wait for a retry that could not be in time
    assert refused.value.request_id


def test_health_checks_are_never_limited(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(rate_limit_per_key=1, rate_limit_key_burst_s=1, rate_limit_per_customer=1)
    with grpc.insecure_channel(server.target) as channel:  # probes carry no key
        health = health_pb2_grpc.HealthStub(channel)
        answers = [health.Check(health_pb2.HealthCheckRequest(), timeout=10).status for _ in range(20)]
    assert answers == [health_pb2.HealthCheckResponse.SERVING] * 20
