"""With tracing on, an RPC is one trace: the server span, its Redis calls under it, and the trace id in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from telemetry import tracing
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread
from tests.support.waiting import wait_until


def rpc_span_exported(spans: InMemorySpanExporter, method: str) -> bool:
    return any(s.name.endswith(f"/{method}") for s in spans.get_finished_spans())


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(endpoint="", exporter=exporter)
    yield exporter
    tracing.shutdown_tracing()


def test_a_commit_is_one_trace_with_its_redis_calls_and_the_trace_id_is_logged(
    make_server: Callable[..., ServerThread], spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    server = make_server(demo_data=True)
    spans.clear()
    with server.channel() as channel:
        svc_grpc.OfferServiceStub(channel).CommitPurchase(commit_request(basket("samantha", DRESS, SHOES)))
    wait_until(lambda: rpc_span_exported(spans, "CommitPurchase"), timeout=5, message="no RPC span exported")

    finished = spans.get_finished_spans()
    rpc = next(s for s in finished if s.name == "posoffers.v1.OfferService/CommitPurchase")
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == 0
    children = {s.name for s in finished if s.parent is not None and s.parent.span_id == rpc.context.span_id}
    assert {"redis read", "redis commit"} <= children
    access = next(r for r in caplog.records if r.__dict__.get("method") == "CommitPurchase")
    assert access.__dict__["trace_id"] == format(rpc.context.trace_id, "032x")


def test_tracing_is_off_by_default(make_server: Callable[..., ServerThread]) -> None:
    make_server()
    assert not tracing.is_enabled()
    with tracing.span("anything"):
        assert tracing.current_trace_id() == ""


def test_no_customer_data_in_span_attributes(
    make_server: Callable[..., ServerThread], spans: InMemorySpanExporter
) -> None:
    server = make_server(demo_data=True)
    with server.channel() as channel, pytest.raises(grpc.RpcError):
        svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id="someone-secret"))
    # The RPC's span ends last (its Redis calls are inside it): once it is exported, so is everything to check.
    wait_until(lambda: rpc_span_exported(spans, "GetProfile"), timeout=5, message="no RPC span exported")
    dumped = "".join(s.to_json() for s in spans.get_finished_spans())
    assert "samantha" not in dumped and "someone-secret" not in dumped
