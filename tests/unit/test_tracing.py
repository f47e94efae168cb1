"""telemetry.tracing: off by default and free when off; nested spans across await; errors; trace id for the log."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from telemetry import tracing
from telemetry.tracing import (
    configure_tracing,
    current_trace_id,
    redis_span,
    rpc_span,
    set_attribute,
    shutdown_tracing,
    span,
    sql_span,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def _tracing_off() -> Iterator[None]:
    """Every test starts and ends with tracing off, so nothing leaks into other tests."""
    tracing._reset_for_tests()
    yield
    tracing._reset_for_tests()


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert configure_tracing(endpoint="", exporter=exporter, service_name="pos-offers-test") is True
    yield exporter
    shutdown_tracing()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def parent_id(s: ReadableSpan) -> int | None:
    return s.parent.span_id if s.parent is not None else None


def span_id(s: ReadableSpan) -> int:
    assert s.context is not None
    return int(s.context.span_id)


def trace_id(s: ReadableSpan) -> int:
    assert s.context is not None
    return int(s.context.trace_id)


# --- off (the default) -----------------------------------------------------------------------------------------


def test_off_by_default_span_is_a_shared_noop() -> None:
    assert configure_tracing(endpoint="") is False
    assert not tracing.is_enabled()
    first = span("rpc", **{"rpc.system": "grpc"})
    assert first is span("redis read") is rpc_span("/a.B/C") is redis_span("read") is sql_span("load", "sqlite")
    with first:
        assert trace.get_current_span() is trace.INVALID_SPAN  # nothing was made current
        assert current_trace_id() == ""
        set_attribute("rpc.grpc.status_code", 0)  # no-op, no error
        with span("nested"):
            assert current_trace_id() == ""
    assert current_trace_id() == ""


def test_off_span_still_propagates_exceptions() -> None:
    with pytest.raises(KeyError), span("rpc"):
        raise KeyError("x")


def test_shutdown_when_off_is_a_noop() -> None:
    shutdown_tracing()
    shutdown_tracing()
    assert not tracing.is_enabled()


# --- on, exported to memory --------------------------------------------------------------------------------------


async def test_nested_spans_across_await_have_parent_links_and_attributes(memory: InMemorySpanExporter) -> None:
    assert tracing.is_enabled()
    rpc_attrs = {"rpc.system": "grpc", "rpc.service": "posoffers.v1.OfferService", "rpc.method": "CommitPurchase"}
    with span("posoffers.v1.OfferService/CommitPurchase", **rpc_attrs):
        outer_trace = current_trace_id()
        with span("redis read", **{"db.system": "redis"}):
            await asyncio.sleep(0)
            assert current_trace_id() == outer_trace
        await asyncio.sleep(0)
        with span("sql load", **{"db.system": "sqlite"}):
            await asyncio.sleep(0)
            set_attribute("db.rows", 3)
        set_attribute("rpc.grpc.status_code", 0)
    assert current_trace_id() == ""

    spans = by_name(memory)
    assert set(spans) == {"posoffers.v1.OfferService/CommitPurchase", "redis read", "sql load"}
    rpc, redis, sql = spans["posoffers.v1.OfferService/CommitPurchase"], spans["redis read"], spans["sql load"]
    assert rpc.parent is None
    assert parent_id(redis) == span_id(rpc)
    assert parent_id(sql) == span_id(rpc)
    assert trace_id(redis) == trace_id(sql) == trace_id(rpc) == int(outer_trace, 16)
    assert dict(rpc.attributes or {}) == {**rpc_attrs, "rpc.grpc.status_code": 0}
    assert dict(redis.attributes or {}) == {"db.system": "redis"}
    assert dict(sql.attributes or {}) == {"db.system": "sqlite", "db.rows": 3}
    assert (rpc.kind, redis.kind, sql.kind) == (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.CLIENT)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans.values())
    assert rpc.resource.attributes["service.name"] == "pos-offers-test"
    # children end before their parent; ended spans only are exported
    assert rpc.end_time is not None and redis.end_time is not None and sql.end_time is not None
    assert redis.end_time <= rpc.end_time and sql.end_time <= rpc.end_time


async def test_concurrent_tasks_keep_their_own_current_span(memory: InMemorySpanExporter) -> None:
    async def rpc(n: int) -> str:
        with span(f"rpc {n}"):
            trace_hex = current_trace_id()
            for step in range(3):
                await asyncio.sleep(0)  # interleave with the other task
                with span(f"redis {n}.{step}", **{"db.system": "redis"}):
                    await asyncio.sleep(0)
                    assert current_trace_id() == trace_hex
            return trace_hex

    first, second = await asyncio.gather(rpc(1), rpc(2))
    assert first != second
    spans = by_name(memory)
    for n in (1, 2):
        root = spans[f"rpc {n}"]
        assert root.parent is None
        for step in range(3):
            child = spans[f"redis {n}.{step}"]
            assert parent_id(child) == span_id(root)
            assert trace_id(child) == trace_id(root)


def test_exception_marks_span_error_and_propagates_without_the_message(memory: InMemorySpanExporter) -> None:
    customer_id = "samantha"
    with pytest.raises(LookupError, match="customer samantha"), span("rpc"), span("sql load"):
        raise LookupError(f"customer {customer_id} not found")  # frames hold source lines, never values
    assert current_trace_id() == ""  # the context was restored on the way out

    spans = by_name(memory)
    for name in ("rpc", "sql load"):
        failed = spans[name]
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.status.description == "LookupError"
        (event,) = failed.events
        assert event.name == "exception"
        attributes = dict(event.attributes or {})
        assert attributes["exception.type"] == "LookupError"
        assert "test_tracing.py" in str(attributes["exception.stacktrace"])
        assert not any("samantha" in str(value) for value in attributes.values())
    assert parent_id(spans["sql load"]) == span_id(spans["rpc"])


def test_exception_type_is_qualified_outside_builtins(memory: InMemorySpanExporter) -> None:
    with pytest.raises(asyncio.InvalidStateError), span("rpc"):
        raise asyncio.InvalidStateError("x")
    (event,) = by_name(memory)["rpc"].events
    assert (event.attributes or {})["exception.type"] == "asyncio.exceptions.InvalidStateError"


def test_an_rpc_span_leaves_errors_to_the_status_code(memory: InMemorySpanExporter) -> None:
    with pytest.raises(grpc.aio.AbortError), rpc_span("/posoffers.v1.OfferService/GetProfile"):
        set_attribute("rpc.grpc.status_code", 5)
        raise grpc.aio.AbortError()  # how an answer such as NOT_FOUND leaves a handler
    assert current_trace_id() == ""
    rpc = by_name(memory)["posoffers.v1.OfferService/GetProfile"]
    assert rpc.end_time is not None and dict(rpc.attributes or {})["rpc.grpc.status_code"] == 5
    assert rpc.status.status_code is StatusCode.UNSET and not rpc.events


async def test_cancellation_is_not_an_error(memory: InMemorySpanExporter) -> None:
    started = asyncio.Event()

    async def body() -> None:
        with span("rpc"):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancelled = by_name(memory)["rpc"]
    assert cancelled.end_time is not None
    assert cancelled.status.status_code is StatusCode.UNSET
    assert not cancelled.events


def test_current_trace_id_is_32_hex_inside_a_span_and_empty_outside(memory: InMemorySpanExporter) -> None:
    assert current_trace_id() == ""
    with span("rpc"):
        inside = current_trace_id()
        assert HEX32.fullmatch(inside)
        with span("redis read"):
            assert current_trace_id() == inside
    assert current_trace_id() == ""
    assert int(inside, 16) == trace_id(by_name(memory)["rpc"])
    with span("rpc again"):
        assert current_trace_id() != inside  # a new root span starts a new trace


def test_set_attribute_outside_a_span_is_harmless(memory: InMemorySpanExporter) -> None:
    set_attribute("rpc.grpc.status_code", 0)
    assert memory.get_finished_spans() == ()


def test_helpers_follow_the_naming_conventions(memory: InMemorySpanExporter) -> None:
    with rpc_span("/posoffers.v1.OfferService/CommitPurchase"):
        with redis_span("commit"):
            pass
        with sql_span("apply", "postgresql"):
            pass
    spans = by_name(memory)
    rpc = spans["posoffers.v1.OfferService/CommitPurchase"]
    assert dict(rpc.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "posoffers.v1.OfferService",
        "rpc.method": "CommitPurchase",
    }
    assert rpc.kind is SpanKind.SERVER
    assert dict(spans["redis commit"].attributes or {}) == {"db.system": "redis", "db.operation": "commit"}
    assert dict(spans["sql apply"].attributes or {}) == {"db.system": "postgresql", "db.operation": "apply"}
    assert spans["redis commit"].kind is spans["sql apply"].kind is SpanKind.CLIENT
    assert parent_id(spans["redis commit"]) == parent_id(spans["sql apply"]) == span_id(rpc)


def test_a_span_object_cannot_be_entered_twice(memory: InMemorySpanExporter) -> None:
    once = span("rpc")
    with once:
        pass
    with pytest.raises(RuntimeError, match="entered twice"), once:
        pass


# --- configuration ----------------------------------------------------------------------------------------------


def test_configure_twice_raises_and_shutdown_turns_tracing_off(memory: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError, match="already configured"):
        configure_tracing(endpoint="", exporter=InMemorySpanExporter())
    with span("before"):
        pass
    shutdown_tracing()
    assert not tracing.is_enabled()
    with span("after"):
        assert current_trace_id() == ""
    assert [s.name for s in memory.get_finished_spans()] == ["before"]
    again = InMemorySpanExporter()
    assert configure_tracing(endpoint="", exporter=again) is True
    with span("third"):
        pass
    assert [s.name for s in again.get_finished_spans()] == ["third"]


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4317", "https://collector.example:4317"])
def test_otlp_endpoint_turns_tracing_on(endpoint: str) -> None:
    # No span is made, so nothing is sent: the exporter's channel connects lazily and shutdown has nothing to flush.
    assert configure_tracing(endpoint=endpoint) is True
    assert tracing.is_enabled()
    shutdown_tracing()
    assert not tracing.is_enabled()


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4317", "grpc://127.0.0.1:4317", "localhost"])
def test_otlp_endpoint_needs_a_scheme(endpoint: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        configure_tracing(endpoint=endpoint)
    assert not tracing.is_enabled()
