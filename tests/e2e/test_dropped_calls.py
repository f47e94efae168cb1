"""Every call the server does not answer ends in a metric, and (when any of our code saw it) a log line: calls refused
beyond the server's bound, calls whose request never arrives, whose deadline passes or whose caller cancels, and
calls the gRPC core drops before handing them over.

The slow path that fills the server is a real one, not a hook in the server: calls whose request message has not
arrived yet (the client holds it back) count against the bound, as a slow or hostile client's would; and to fill the
gRPC core's queue the test freezes the server's event loop from outside, as a long pause or a starved CPU would.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb
from prometheus_client import REGISTRY

from domain.access import Role
from tests.e2e.conftest import clone_samantha
from tests.support.keys import keyed_aio_channel
from tests.support.server_thread import ServerThread
from tests.support.waiting import wait_until

SERVICE, METHOD = "posoffers.v1.OfferService", "GetProfile"
PATH = f"/{SERVICE}/{METHOD}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def in_flight() -> float:
    return sample("pos_offers_rpc_in_flight", grpc_service=SERVICE, grpc_method=METHOD)


def handled(code: str) -> float:
    return sample(
        "grpc_server_handled_total", grpc_type="unary", grpc_service=SERVICE, grpc_method=METHOD, grpc_code=code
    )


def dropped(reason: str) -> float:
    return sample("pos_offers_rpc_dropped_total", reason=reason)


def not_received() -> float:
    return sample("pos_offers_rpc_transport_started_total") - sample("pos_offers_rpc_received_total")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__ for r in caplog.records if r.name == "pos_offers.access" and r.getMessage() == "rpc"]


class HeldCall:
    """A GetProfile whose request message the client holds back until `send()`: on the server it is a call in
    progress, waiting for its message."""

    def __init__(self, channel: grpc.Channel, customer_id: str, timeout: float | None = None) -> None:
        self._release = threading.Event()
        request = svc.GetProfileRequest(customer_id=customer_id)

        def messages() -> Iterator[svc.GetProfileRequest]:
            if self._release.wait(30):
                yield request

        send = channel.stream_unary(
            PATH,
            request_serializer=svc.GetProfileRequest.SerializeToString,
            response_deserializer=pb.CustomerProfile.FromString,
        )
        self.future: Any = send.future(messages(), timeout=timeout)

    def send(self) -> None:
        self._release.set()


@pytest.fixture
def busy_server(make_server: Callable[..., ServerThread]) -> Iterator[tuple[ServerThread, str]]:
    server = make_server(max_concurrent_rpcs=2)
    with server.channel() as admin:
        from posoffers.v1 import admin_service_pb2_grpc as admin_grpc

        yield server, clone_samantha(admin_grpc.OfferAdminStub(admin))


def test_calls_beyond_the_bound_are_refused_counted_and_logged(
    busy_server: tuple[ServerThread, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, member = busy_server
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    before = (in_flight(), dropped("concurrency_limit"), handled("RESOURCE_EXHAUSTED"))
    with server.channel(Role.POS) as channel:
        held = [HeldCall(channel, member) for _ in range(2)]
        wait_until(lambda: in_flight() == before[0] + 2, message="the two held calls never reached the server")

        with pytest.raises(grpc.RpcError) as refused:
            svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id=member), timeout=5)
        error: Any = refused.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "server busy: 2 calls in progress; retry shortly"
        request_id = dict(error.trailing_metadata())["x-request-id"]
        assert dropped("concurrency_limit") == before[1] + 1 and handled("RESOURCE_EXHAUSTED") == before[2] + 1
        (line,) = [line for line in access_lines(caplog) if line["request_id"] == request_id]
        assert line["status"] == "RESOURCE_EXHAUSTED"
        # A saturated server still answers its probes: they are outside the bound.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        for call in held:
            call.send()
        assert [call.future.result(timeout=10).customer_id for call in held] == [member, member]
        again = svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id=member), timeout=5)
        assert again.customer_id == member and in_flight() == before[0]


def test_a_request_that_never_arrives_ends_at_its_deadline_in_the_log_and_the_metrics(
    busy_server: tuple[ServerThread, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, member = busy_server
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    before = handled("DEADLINE_EXCEEDED")
    with server.channel(Role.POS) as channel:
        never = HeldCall(channel, member, timeout=0.5)  # the deadline is what this test is about
        with pytest.raises(grpc.RpcError) as expired:
            never.future.result(timeout=10)
        never.send()
    assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: handled("DEADLINE_EXCEEDED") == before + 1)
    (line,) = wait_until(lambda: [line for line in access_lines(caplog) if line["status"] == "DEADLINE_EXCEEDED"])
    assert line["method"] == METHOD and line["request_received"] is False and line["key_id"]


def test_a_request_that_never_arrives_without_a_deadline_ends_at_the_servers_limit(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    """A caller that sends no deadline and no message holds its place under the bound only until the server's own
    call limit (POS_OFFERS_MAX_CALL_MS): a slow or hostile client cannot keep it forever."""
    server = make_server(max_concurrent_rpcs=1, max_call_ms=300)
    with server.channel() as admin:
        member = clone_samantha(admin_grpc.OfferAdminStub(admin))
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    before = handled("DEADLINE_EXCEEDED")
    with server.channel(Role.POS) as channel:
        never = HeldCall(channel, member)  # no deadline from the caller
        with pytest.raises(grpc.RpcError) as ended:
            never.future.result(timeout=10)
        never.send()
        answered = svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id=member), timeout=5)
    error: Any = ended.value
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "server's limit" in error.details()
    request_id = dict(error.trailing_metadata())["x-request-id"]
    assert answered.customer_id == member  # the place under the bound (1) is free again
    assert handled("DEADLINE_EXCEEDED") == before + 1
    (line,) = [line for line in access_lines(caplog) if line["request_id"] == request_id]
    assert line["status"] == "DEADLINE_EXCEEDED" and line["request_received"] is False


def test_a_caller_that_cancels_before_sending_its_request_is_logged_and_counted(
    busy_server: tuple[ServerThread, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, member = busy_server
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    before = (in_flight(), handled("CANCELLED"))
    with server.channel(Role.POS) as channel:
        held = HeldCall(channel, member)
        wait_until(lambda: in_flight() == before[0] + 1, message="the held call never reached the server")
        held.future.cancel()
        wait_until(lambda: handled("CANCELLED") == before[1] + 1)
        held.send()
    (line,) = wait_until(lambda: [line for line in access_lines(caplog) if line["status"] == "CANCELLED"])
    assert line["request_received"] is False and in_flight() == before[0]


async def _burst(target: str, secret: str, member: str, calls: int, arrived: Callable[[], bool]) -> list[str]:
    """`calls` GetProfile calls at once; returns each one's status name once `arrived()` let them all finish."""
    async with keyed_aio_channel(target, secret) as channel:
        stub = svc_grpc.OfferServiceStub(channel)

        async def one() -> str:
            try:
                await stub.GetProfile(svc.GetProfileRequest(customer_id=member), timeout=60)
                return "OK"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        tasks = [asyncio.create_task(one()) for _ in range(calls)]
        await asyncio.to_thread(wait_until, arrived, timeout=30, message="the burst never reached the server")
        return await asyncio.gather(*tasks)


def test_calls_the_grpc_core_drops_before_the_service_sees_them_are_counted(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    """The core queues at most 3000 calls the service has not taken (grpc.server.max_pending_requests_hard_limit)
    and cancels the rest. With the server's event loop frozen, none are taken: a burst beyond 3000 overflows."""
    server = make_server(max_concurrent_streams=5000, max_concurrent_rpcs=0)
    with server.channel() as admin:
        member = clone_samantha(admin_grpc.OfferAdminStub(admin))
    drops = server.service.core_drops
    assert drops is not None
    caplog.set_level(logging.INFO)
    counted_before = not_received()
    started_before = drops.started() or 0
    calls = 3300
    thaw = threading.Event()
    server.freeze(thaw)
    try:

        def all_arrived() -> bool:
            if (drops.started() or 0) - started_before < calls:
                return False
            thaw.set()
            return True

        statuses = Counter(asyncio.run(_burst(server.target, server.keys.pos, member, calls, all_arrived)))
    finally:
        thaw.set()
    assert statuses["CANCELLED"] > 0 and statuses["OK"] + statuses["CANCELLED"] == calls, statuses
    # The core's drops never reached our code: no access log line, but counted once the next sample runs.
    served = [line for line in access_lines(caplog) if line["method"] == METHOD and line["status"] == "OK"]
    assert len(served) == statuses["OK"]
    expected = counted_before + statuses["CANCELLED"]
    wait_until(lambda: not_received() == expected, message=lambda: f"{not_received() - counted_before} counted")
    warned = [r for r in caplog.records if r.getMessage().startswith("calls the gRPC core has not handed")]
    assert warned and {r.levelno for r in warned} == {logging.WARNING}
