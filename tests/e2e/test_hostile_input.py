"""Input an attacker (or a broken till) sends: bytes that are not a message, fields of a megabyte. Every call gets
a defined status with a request id, quotes at most a short prefix of what was sent, and logs a bounded line."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from server.rpc.call_facts import MAX_FACT_CHARS, MAX_MESSAGE_CHARS
from tests.support.builders import DRESS, basket
from tests.support.server_thread import ServerThread, channel_to
from tests.support.waiting import wait_until

CORRUPT = {
    "bad UTF-8 in a string": bytes.fromhex("0a01ff"),
    "a length running past the end": bytes.fromhex("0a0561"),
    "an unknown wire type": bytes.fromhex("0f"),
}


@pytest.fixture(scope="module")
def channel(server_target: str) -> Iterator[grpc.Channel]:
    with channel_to(server_target) as channel:
        yield channel


def raw_call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.Call:
    """Sends `payload` as the request bytes, as a broken or hostile client would; returns the refusal."""
    call = channel.unary_unary(  # no serializers: bytes in, bytes out
        f"/posoffers.v1.OfferService/{method}", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as refused:
        call(payload, timeout=5, metadata=(("x-request-id", "fuzz-0001"),))
    return cast(grpc.Call, refused.value)  # a failed unary call's error is also its Call


@pytest.mark.parametrize("payload", CORRUPT.values(), ids=CORRUPT.keys())
@pytest.mark.parametrize("method", ["GetProfile", "CommitPurchase", "ReturnPurchase"])
def test_bytes_that_are_not_a_message_are_invalid_argument_with_the_request_id(
    channel: grpc.Channel, method: str, payload: bytes
) -> None:
    error = raw_call(channel, method, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"request: is not a valid {method} request message"
    assert ("x-request-id", "fuzz-0001") in tuple(error.trailing_metadata() or ())


def test_the_server_serves_on_after_a_burst_of_corrupt_calls(channel: grpc.Channel, fresh_customer_id: str) -> None:
    for i in range(50):
        raw_call(channel, "EvaluateBasket", CORRUPT["bad UTF-8 in a string"] + bytes([i]))
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    profile = svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id=fresh_customer_id))
    assert profile.customer_id == fresh_customer_id


def test_a_megabyte_field_comes_back_as_a_short_prefix(channel: grpc.Channel, fresh_customer_id: str) -> None:
    request = svc.EvaluateBasketRequest(basket=basket(fresh_customer_id, DRESS, currency="X" * 1_000_000))
    with pytest.raises(grpc.RpcError) as refused:
        svc_grpc.OfferServiceStub(channel).EvaluateBasket(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert details.startswith("basket.currency: unknown currency 'XXX") and details.endswith("…")
    assert len(details) <= MAX_MESSAGE_CHARS


def test_a_megabyte_store_or_terminal_id_leaves_a_bounded_log_line(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    server = make_server(demo_data=True)
    sale = basket("samantha", DRESS)
    sale.store_id, sale.terminal_id = "S" * 1_000_000, "T" * 1_000_000
    with server.channel() as channel, pytest.raises(grpc.RpcError):
        svc_grpc.OfferServiceStub(channel).EvaluateBasket(svc.EvaluateBasketRequest(basket=sale), timeout=10)

    def access_line() -> logging.LogRecord | None:
        lines = [r for r in caplog.records if r.name == "pos_offers.access" and r.__dict__.get("method")]
        return next((r for r in lines if r.__dict__["method"] == "EvaluateBasket"), None)

    line = wait_until(access_line, timeout=5, message="no access line for the call")
    assert line.__dict__["status"] == "INVALID_ARGUMENT"
    assert len(line.__dict__["store_id"]) == len(line.__dict__["terminal_id"]) == MAX_FACT_CHARS


def test_a_call_whose_request_never_arrives_is_ended_by_the_connection_age(
    make_server: Callable[..., ServerThread],
) -> None:
    """A client opens a call and never sends its message: the server must not hold it (and its memory) forever."""
    server = make_server(demo_data=True, max_connection_age_ms=500, max_connection_age_grace_ms=500)
    hold = threading.Event()

    def never_sends() -> Iterator[bytes]:
        hold.wait(30)
        yield from ()

    with server.channel() as channel:
        call = channel.stream_unary(  # a unary method, asked as a stream that never delivers its one message
            "/posoffers.v1.OfferService/GetProfile", request_serializer=None, response_deserializer=None
        )
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            call(never_sends(), timeout=20)
        hold.set()
    assert cast(grpc.Call, ended.value).code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 10  # the age and its grace, not the client's 20 s deadline


def test_a_request_over_the_message_size_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    error = raw_call(channel, "GetProfile", b"\x0a" + b"\xff" * (4 * 1024 * 1024 + 16))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
