"""server.rpc.interceptors.ServerInterceptor on one call, without a server: request id, status mapping, metrics,
access log and the RPC span, for each way a handler can end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from posoffers.v1 import offer_service_pb2 as svc
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from domain.errors import DomainError, InvalidArgument, NotFound
from server.rpc.authorization import Guard
from server.rpc.call_facts import RequestFacts
from server.rpc.interceptors import ServerInterceptor
from server.rpc.statuses import status_of
from telemetry import tracing
from telemetry.logs import REQUEST_ID
from tests.support.builders import DRESS, basket, commit_request
from tests.support.keys import RoleKeys, in_memory_keys

SERVICE = "posoffers.v1.OfferService"
METHOD = "CommitPurchase"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
REQUEST = commit_request(basket("samantha", DRESS))


class Details(grpc.HandlerCallDetails):
    def __init__(self, request_id: str = "", *, secret: str = "", method: str = FULL_METHOD) -> None:
        self.method = method
        metadata = [("x-request-id", request_id)] if request_id else []
        if secret:
            metadata.append(("authorization", f"Bearer {secret}"))
        self.invocation_metadata = tuple(metadata)


async def keyed() -> tuple[ServerInterceptor, RoleKeys]:
    """An interceptor checking calls against in-memory keys, and one key per role."""
    ring, keys = await in_memory_keys()
    return ServerInterceptor(guard=Guard(ring)), keys


class Context:
    """The part of grpc.aio.ServicerContext the interceptor uses."""

    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining
        self.request: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # what read() returns: set by `wrap`
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.aborted: list[tuple[grpc.StatusCode, str]] = []
        self._code: grpc.StatusCode | None = None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    async def read(self) -> Any:
        return self.request

    def time_remaining(self) -> float | None:
        return self.remaining

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code = code
        self.aborted.append((code, details))
        raise grpc.aio.AbortError()


Handler = Callable[[Any, Context], Awaitable[Any]]


async def wrap(handler: Handler, interceptor: tuple[ServerInterceptor, RoleKeys] | None = None) -> Any:
    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(handler)

    chosen, keys = interceptor or await keyed()
    wrapped = await chosen.intercept_service(continuation, Details("rid-1", secret=keys.admin))
    return as_unary(wrapped)


def as_unary(wrapped: Any) -> Callable[[Any, Context], Awaitable[Any]]:
    """The wrapped method called as a unary one: the interceptor serves it client-streaming, reading the request
    from the context."""

    async def call(request: Any, context: Context) -> Any:
        context.request = request
        return await wrapped.stream_unary(iter(()), context)

    return call


def handled(code: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": METHOD, "grpc_code": code}
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def in_flight() -> float:
    return REGISTRY.get_sample_value("pos_offers_rpc_in_flight", {"grpc_service": SERVICE, "grpc_method": METHOD}) or 0


def call_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The call's span (a background thread of an earlier test may still be making spans of its own)."""
    (rpc,) = [s for s in exporter.get_finished_spans() if s.name == FULL_METHOD.lstrip("/")]
    return rpc


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pos_offers.access" and r.getMessage() == "rpc"]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing._reset_for_tests()
    tracing.configure_tracing(endpoint="", exporter=exporter)
    yield exporter
    tracing._reset_for_tests()


async def test_a_call_that_succeeds(caplog: pytest.LogCaptureFixture, spans: InMemorySpanExporter) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    seen: dict[str, str] = {}

    async def handler(request: Any, context: Context) -> str:
        seen["request_id"] = REQUEST_ID.get()
        with tracing.span("redis read", **{"db.system": "redis"}):
            seen["trace_id"] = tracing.current_trace_id()
        return "response"

    before = handled("OK")
    context = Context()
    assert await (await wrap(handler))(REQUEST, context) == "response"
    assert seen["request_id"] == "rid-1" and REQUEST_ID.get() == ""
    assert context.trailing == (("x-request-id", "rid-1"),) and not context.aborted
    assert handled("OK") == before + 1 and in_flight() == 0
    (line,) = access_lines(caplog)
    assert line.__dict__["request_id"] == "rid-1" and line.__dict__["method"] == METHOD
    assert line.__dict__["status"] == "OK" and line.__dict__["duration_ms"] >= 0
    assert line.__dict__["store_id"] == "soho" and len(line.__dict__["customer_hash"]) == 16
    assert line.__dict__["trace_id"] == seen["trace_id"]
    rpc = call_span(spans)
    children = [s.name for s in spans.get_finished_spans() if s.parent and s.parent.span_id == rpc.context.span_id]
    assert rpc.parent is None and children == ["redis read"]
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == 0
    assert rpc.status.status_code is StatusCode.UNSET and not rpc.events
    assert format(rpc.context.trace_id, "032x") == seen["trace_id"]


class Odd(DomainError):
    """A domain error without an entry of its own in the status table."""


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (NotFound("customer", "x"), grpc.StatusCode.NOT_FOUND, "customer 'x' not found"),
        (InvalidArgument("basket.lines", "empty"), grpc.StatusCode.INVALID_ARGUMENT, "basket.lines: empty"),
        (Odd("odd"), grpc.StatusCode.FAILED_PRECONDITION, "odd"),
        (RedisConnectionError("secret"), grpc.StatusCode.UNAVAILABLE, "a backing store is unavailable; retry"),
        (ZeroDivisionError("secret"), grpc.StatusCode.INTERNAL, "internal error (request id rid-1)"),
    ],
)
async def test_an_error_becomes_one_status(
    error: Exception,
    code: grpc.StatusCode,
    message: str,
    caplog: pytest.LogCaptureFixture,
    spans: InMemorySpanExporter,
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")

    async def handler(request: Any, context: Context) -> str:
        raise error

    before = handled(code.name)
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await (await wrap(handler))(REQUEST, context)
    assert context.aborted == [(code, message)]
    assert context.trailing == (("x-request-id", "rid-1"),) and REQUEST_ID.get() == ""
    assert handled(code.name) == before + 1 and in_flight() == 0
    (line,) = access_lines(caplog)
    assert line.__dict__["status"] == code.name and line.__dict__["request_id"] == "rid-1"
    others = [r for r in caplog.records if r.name == "pos_offers.access" and r.getMessage() != "rpc"]
    if code is grpc.StatusCode.INTERNAL:
        (logged,) = others
        assert logged.levelno == logging.ERROR and logged.exc_info is not None
        assert logged.getMessage() == f"unhandled error in {METHOD}" and logged.__dict__["request_id"] == "rid-1"
    elif code is grpc.StatusCode.UNAVAILABLE:
        (logged,) = others
        assert logged.levelno == logging.WARNING and "secret" not in logged.getMessage()
        assert logged.getMessage() == f"store unavailable in {METHOD}: ConnectionError"
    else:
        assert not others
    # The status is the RPC's outcome: the span carries its code, never the exception that carried it.
    rpc = call_span(spans)
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == code.value[0]
    assert rpc.status.status_code is StatusCode.UNSET and not rpc.events


async def test_a_handler_that_aborts_keeps_its_status(spans: InMemorySpanExporter) -> None:
    async def handler(request: Any, context: Context) -> str:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        return "unreachable"

    before = handled("RESOURCE_EXHAUSTED")
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await (await wrap(handler))(REQUEST, context)
    assert context.aborted == [(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")]  # not aborted twice
    assert handled("RESOURCE_EXHAUSTED") == before + 1
    rpc = call_span(spans)
    assert rpc.attributes is not None and rpc.attributes["rpc.grpc.status_code"] == 8
    assert rpc.status.status_code is StatusCode.UNSET and not rpc.events


@pytest.mark.parametrize(
    ("remaining", "code"),
    [(0.0, "DEADLINE_EXCEEDED"), (-0.5, "DEADLINE_EXCEEDED"), (None, "CANCELLED"), (3.0, "CANCELLED")],
)
async def test_a_caller_that_goes_away(
    remaining: float | None, code: str, caplog: pytest.LogCaptureFixture, spans: InMemorySpanExporter
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")

    async def handler(request: Any, context: Context) -> str:
        raise asyncio.CancelledError

    before = handled(code)
    context = Context(remaining)
    with pytest.raises(asyncio.CancelledError):
        await (await wrap(handler))(REQUEST, context)
    assert not context.aborted and REQUEST_ID.get() == ""
    assert handled(code) == before + 1 and in_flight() == 0
    assert [r.__dict__["status"] for r in access_lines(caplog)] == [code]
    rpc = call_span(spans)
    assert rpc.status.status_code is StatusCode.UNSET and not rpc.events


async def test_without_the_access_log_only_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    ring, keys = await in_memory_keys()
    quiet = (ServerInterceptor(guard=Guard(ring), access_log=False, facts=RequestFacts("omit", "")), keys)

    async def ok(request: Any, context: Context) -> str:
        return "response"

    async def missing(request: Any, context: Context) -> str:
        raise NotFound("customer", "x")

    await (await wrap(ok, quiet))(REQUEST, Context())
    with pytest.raises(grpc.aio.AbortError):
        await (await wrap(missing, quiet))(REQUEST, Context())
    (line,) = access_lines(caplog)
    assert line.__dict__["status"] == "NOT_FOUND" and "customer_hash" not in line.__dict__
    assert "trace_id" not in line.__dict__  # tracing is off


async def test_a_new_request_id_without_one_from_the_caller() -> None:
    async def handler(request: Any, context: Context) -> str:
        return REQUEST_ID.get()

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(handler)

    interceptor, keys = await keyed()
    wrapped: Any = await interceptor.intercept_service(continuation, Details(secret=keys.admin))
    context = Context()
    request_id = await as_unary(wrapped)(svc.GetProfileRequest(customer_id="x"), context)
    assert len(request_id) == 32 and context.trailing == (("x-request-id", request_id),)


async def test_streaming_handlers_and_unknown_methods_pass_through() -> None:
    async def stream(request: Any, context: Context) -> Any:
        yield "item"

    streaming = grpc.unary_stream_rpc_method_handler(stream)

    async def to_stream(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return streaming

    async def to_nothing(details: grpc.HandlerCallDetails) -> Any:
        return None

    interceptor, _ = await keyed()
    health_watch = Details(method="/grpc.health.v1.Health/Watch")
    assert await interceptor.intercept_service(to_stream, health_watch) is streaming  # exempt: probes carry no key
    assert await interceptor.intercept_service(to_nothing, Details()) is None


async def test_a_call_past_the_servers_own_limit_ends_deadline_exceeded() -> None:
    """Whatever deadline the caller sent (here none), the server ends a call that runs past max_call_s."""
    ring, keys = await in_memory_keys()
    limited = (ServerInterceptor(guard=Guard(ring), max_call_s=0.05), keys)
    never = asyncio.Event()

    async def stuck(request: Any, context: Context) -> str:
        await never.wait()  # a store that never answers
        return "response"

    async def own_timeout(request: Any, context: Context) -> str:
        raise TimeoutError("the handler's own")  # not the server's limit: an internal error, as before

    before = handled("DEADLINE_EXCEEDED")
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await (await wrap(stuck, limited))(REQUEST, context)
    ((code, message),) = context.aborted
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED and "0.05 s" in message
    assert handled("DEADLINE_EXCEEDED") == before + 1 and in_flight() == 0
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await (await wrap(own_timeout, limited))(REQUEST, context)
    assert context.aborted[0][0] is grpc.StatusCode.INTERNAL


def test_an_rpc_of_the_contract_not_served_yet_is_unimplemented_not_internal() -> None:
    assert status_of(NotImplementedError("Method not implemented!"))[0] is grpc.StatusCode.UNIMPLEMENTED
    assert status_of(RuntimeError("boom"))[0] is grpc.StatusCode.INTERNAL
