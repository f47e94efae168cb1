"""Cross-cutting RPC work in one place: request id, domain error -> status mapping, metrics, access log.

Handlers raise domain errors; this interceptor turns each into one clear gRPC status. Anything unexpected
becomes INTERNAL with the request id (the stack trace goes to the log, never to the caller).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from domain.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from telemetry import metrics, tracing
from telemetry.logs import REQUEST_ID

log = logging.getLogger("pos_offers.access")


_STATUS_OF: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Conflict, grpc.StatusCode.ABORTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code in _STATUS_OF:
        if isinstance(exc, kind):
            return code, exc.message  # type: ignore[attr-defined]
    if isinstance(exc, DomainError):
        return grpc.StatusCode.FAILED_PRECONDITION, exc.message
    # Only "cannot reach it" is UNAVAILABLE (clients retry that); a script or data error is INTERNAL.
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OperationalError | ConnectionError):
        return grpc.StatusCode.UNAVAILABLE, "a backing store is unavailable; retry"
    return grpc.StatusCode.INTERNAL, "internal error"


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class RequestFacts:
    """Where a request comes from, for the access log: store, terminal and (hashed, or no) customer."""

    def __init__(self, customer_ids: str, salt: str) -> None:
        self._hash_customers = customer_ids == "hash"
        # Without a configured salt, a random one per process: hashes then cannot be looked up from a list of
        # ids (but only correlate within one process). Set POS_OFFERS_LOG_HASH_SALT to correlate across servers.
        self._salt = salt.encode() or os.urandom(16)

    def of(self, request: Any) -> dict[str, str]:
        try:
            source = request.basket if "basket" in request.DESCRIPTOR.fields_by_name else request
            names = source.DESCRIPTOR.fields_by_name
        except AttributeError:  # not a protobuf message
            return {}
        facts = {key: getattr(source, key) for key in ("store_id", "terminal_id") if key in names}
        customer = getattr(source, "customer_id", "") if "customer_id" in names else ""
        if customer and self._hash_customers:
            facts["customer_hash"] = hashlib.sha256(self._salt + customer.encode()).hexdigest()[:16]
        return {k: v for k, v in facts.items() if v}


def initialize_rpc_metrics(services: Sequence[ServiceDescriptor]) -> None:
    """Creates every method's RPC series at zero before the first call, as go-grpc-prometheus does: a series that
    appears already at 1 hides its first call from increase() and rate(), and so from alerts."""
    for service in services:
        for method in service.methods:
            metrics.RPC_STARTED.labels("unary", service.full_name, method.name)
            for code in grpc.StatusCode:
                metrics.RPC_HANDLED.labels("unary", service.full_name, method.name, code.name)


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    def __init__(self, *, access_log: bool = True, facts: RequestFacts | None = None) -> None:
        self._access_log = access_log
        self._facts = facts or RequestFacts("hash", "")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming (reflection, health Watch): passed through untouched
        _, service, method = handler_call_details.method.split("/", 2)
        inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # aio handlers are coroutines
        # Label children looked up once per method, not per call.
        started_total = metrics.RPC_STARTED.labels("unary", service, method)
        in_flight = metrics.RPC_IN_FLIGHT.labels(service, method)
        latency = metrics.RPC_LATENCY.labels("unary", service, method)

        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request_id = _request_id(handler_call_details)
            token = REQUEST_ID.set(request_id)
            context.set_trailing_metadata((("x-request-id", request_id),))
            started_total.inc()
            in_flight.inc()
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            rpc_span = tracing.rpc_span(handler_call_details.method)
            try:
                rpc_span.__enter__()
                return await inner(request, context)
            except asyncio.CancelledError:
                # The caller went away: its deadline passed, or it cancelled.
                remaining = context.time_remaining()
                expired = remaining is not None and remaining <= 0
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[assignment]
                raise
            except Exception as exc:
                code, message = status_of(exc)
                if code is grpc.StatusCode.INTERNAL:
                    log.exception("unhandled error in %s", method, extra={"request_id": request_id})
                    message = f"internal error (request id {request_id})"
                elif code is grpc.StatusCode.UNAVAILABLE:
                    # The type only: a driver's message can quote bound parameters (customer ids).
                    log.warning(
                        "store unavailable in %s: %s", method, type(exc).__name__, extra={"request_id": request_id}
                    )
                await context.abort(code, message)
            finally:
                elapsed = time.perf_counter() - started
                in_flight.dec()
                metrics.RPC_HANDLED.labels("unary", service, method, code.name).inc()
                latency.observe(elapsed)
                if self._access_log or code is not grpc.StatusCode.OK:
                    log.info(
                        "rpc",
                        extra={
                            "request_id": request_id,
                            "method": method,
                            "status": code.name,
                            "duration_ms": round(elapsed * 1000, 3),
                            **self._facts.of(request),
                            **({"trace_id": trace_id} if (trace_id := tracing.current_trace_id()) else {}),
                        },
                    )
                tracing.set_attribute("rpc.grpc.status_code", code.value[0])
                rpc_span.__exit__(None, None, None)
                REQUEST_ID.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
