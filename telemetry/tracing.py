"""OpenTelemetry tracing: a span around each RPC and each Redis/SQL call. Off by default.

`configure_tracing(endpoint=...)` turns it on once per process: spans go to an OTLP/gRPC collector
(`http://host:4317` plaintext, `https://host:4317` TLS) through a batching background thread. With an empty
endpoint it stays off, and then `span()` hands back one shared no-op context manager and every other function
here returns at once, so the till path pays one global read per call and nothing else.

The provider and tracer are kept here, not installed as OpenTelemetry's global TracerProvider (which can only be
set once per process): `shutdown_tracing()` turns tracing off again, so tests can switch it on and off. The
current span lives in OpenTelemetry's context, a contextvar, so a span stays current across `await` inside its
`with` block and each asyncio task (each RPC) has its own.

Conventions (callers name spans and attributes like this; the helpers below do it for them):

- RPC server span ``posoffers.v1.OfferService/CommitPurchase`` (kind SERVER) with ``rpc.system="grpc"``,
  ``rpc.service``, ``rpc.method``; the interceptor adds ``rpc.grpc.status_code`` with `set_attribute`.
- Redis span ``redis <operation>`` (kind CLIENT) with ``db.system="redis"``.
- SQL span ``sql <operation>`` (kind CLIENT) with ``db.system="postgresql"`` or ``"sqlite"``.

Attribute names hold dots, so pass them as ``span("redis read", **{"db.system": "redis"})``.

Privacy: never put a customer id, card number, name or any other personal data in a span name or attribute;
spans leave the process for a collector with other retention and access rules. Use operation names, counts,
sizes and status codes. For the same reason an exception is recorded with its type and stack frames only, not
its message (a message such as "customer 'x' not found" carries the id): the log line of the failure carries
the trace id (`current_trace_id()`) and the message, so the two can be joined where logs are kept.
"""

from __future__ import annotations

import threading
import traceback
from contextlib import AbstractContextManager, nullcontext
from contextvars import Token
from types import TracebackType
from urllib.parse import urlparse

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = [
    "configure_tracing",
    "current_trace_id",
    "is_enabled",
    "redis_span",
    "rpc_span",
    "set_attribute",
    "shutdown_tracing",
    "span",
    "sql_span",
]

AttributeValue = str | int | float | bool

_NOOP: AbstractContextManager[None] = nullcontext()
"""What `span()` returns while tracing is off: one shared object, nothing allocated per call."""

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def configure_tracing(*, endpoint: str, service_name: str = "pos-offers", exporter: SpanExporter | None = None) -> bool:
    """Turns tracing on and returns True, or leaves it off and returns False (empty endpoint, no exporter).

    `exporter` (tests) is used as is through a SimpleSpanProcessor, exporting each span as it ends; otherwise
    `endpoint` (``http://`` plaintext or ``https://`` TLS) gets an OTLP/gRPC exporter behind a
    BatchSpanProcessor. Meant to be called once per process at start; a second call without
    `shutdown_tracing()` in between raises RuntimeError.
    """
    global _provider, _tracer
    if not endpoint and exporter is None:
        return False
    with _lock:
        if _provider is not None:
            raise RuntimeError("tracing is already configured; call shutdown_tracing() first")
        processor: SpanProcessor = (
            SimpleSpanProcessor(exporter) if exporter is not None else BatchSpanProcessor(_otlp_exporter(endpoint))
        )
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        provider.add_span_processor(processor)
        _provider = provider
        _tracer = provider.get_tracer("pos_offers")
    return True


def _otlp_exporter(endpoint: str) -> SpanExporter:
    scheme = urlparse(endpoint).scheme
    if scheme not in {"http", "https"} or "://" not in endpoint:
        raise ValueError(f"OTLP endpoint must start with http:// or https://, got {endpoint!r}")
    # Imported only when tracing is on: the exporter pulls in the OTLP protobuf modules.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=scheme == "http")


def shutdown_tracing() -> None:
    """Flushes the spans not yet exported and shuts the provider down; tracing is off afterwards.

    Does nothing when tracing is off. Spans still open keep working but are no longer exported.
    """
    global _provider, _tracer
    with _lock:
        provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.force_flush()
        provider.shutdown()


def _reset_for_tests() -> None:
    shutdown_tracing()


def is_enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes: AttributeValue) -> AbstractContextManager[None]:
    """A context manager that runs its body in a new span `name`, a child of the current span.

    The kind is SERVER when `rpc.system` is among the attributes, CLIENT when `db.system` is, else INTERNAL.
    An exception (not a cancellation) escaping the body is recorded on the span, which gets ERROR status, and
    then propagates. While tracing is off this returns a shared no-op context manager.
    """
    tracer = _tracer
    if tracer is None:
        return _NOOP
    if "rpc.system" in attributes:
        kind = SpanKind.SERVER
    elif "db.system" in attributes:
        kind = SpanKind.CLIENT
    else:
        kind = SpanKind.INTERNAL
    return _ActiveSpan(tracer, name, kind, attributes)


def rpc_span(full_method: str) -> AbstractContextManager[None]:
    """The server span of one RPC: `full_method` is gRPC's ``/posoffers.v1.OfferService/CommitPurchase``.

    Unlike `span()` it records no exception leaving it: the RPC's outcome is its status code, which the interceptor
    sets (``rpc.grpc.status_code``), and an error status leaves the handler as an exception (grpc.aio.AbortError)
    even when it is an answer (NOT_FOUND), not a fault of the server.
    """
    tracer = _tracer
    if tracer is None:
        return _NOOP
    name = full_method.lstrip("/")
    service, _, method = name.rpartition("/")
    attributes: dict[str, AttributeValue] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    return _ActiveSpan(tracer, name, SpanKind.SERVER, attributes, record_errors=False)


def redis_span(operation: str) -> AbstractContextManager[None]:
    """The span of one Redis call (or pipeline / script), named ``redis <operation>``."""
    if _tracer is None:
        return _NOOP
    return span(f"redis {operation}", **{"db.system": "redis", "db.operation": operation})


def sql_span(operation: str, system: str) -> AbstractContextManager[None]:
    """The span of one SQL unit of work, named ``sql <operation>``; `system` is "postgresql" or "sqlite"."""
    if _tracer is None:
        return _NOOP
    return span(f"sql {operation}", **{"db.system": system, "db.operation": operation})


def set_attribute(key: str, value: AttributeValue) -> None:
    """Sets an attribute on the current span (e.g. ``rpc.grpc.status_code``); a no-op when off or outside a span."""
    if _tracer is None:
        return
    trace.get_current_span().set_attribute(key, value)


def current_trace_id() -> str:
    """The 32-hex-digit trace id of the current span, for the log line; "" when tracing is off or outside a span."""
    if _tracer is None:
        return ""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return trace.format_trace_id(context.trace_id)


class _ActiveSpan:
    """Starts the span on enter (so its start time is when the body starts) and makes it current until exit."""

    __slots__ = ("_attributes", "_kind", "_name", "_record_errors", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        *,
        record_errors: bool = True,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._record_errors = record_errors
        self._span: trace.Span | None = None
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        if self._span is not None:
            raise RuntimeError(f"span {self._name!r} entered twice; call span() for each with block")
        self._span = self._tracer.start_span(self._name, kind=self._kind, attributes=self._attributes or None)
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        current = self._span
        if current is None:
            return
        try:
            if self._record_errors and isinstance(exc, Exception) and current.is_recording():
                _record_error(current, exc)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            current.end()


def _record_error(current: trace.Span, exc: Exception) -> None:
    exc_type = type(exc)
    module = exc_type.__module__
    type_name = exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"
    # Type and frames only: the message may carry personal data (see the module docstring).
    frames = "".join(traceback.format_tb(exc.__traceback__))
    current.add_event("exception", {"exception.type": type_name, "exception.stacktrace": frames})
    current.set_status(Status(StatusCode.ERROR, exc_type.__name__))
