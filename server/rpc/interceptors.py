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
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from domain.errors import (
    AlreadyExists,
    Conflict,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from domain.limits import RateLimited
from server.rpc.audit import AdminAudit
from server.rpc.authorization import CALLER, Guard
from server.rpc.rate_limiting import RateGate, retry_trailers
from telemetry import metrics, tracing
from telemetry.logs import REQUEST_ID

log = logging.getLogger("pos_offers.access")


_STATUS_OF: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Conflict, grpc.StatusCode.ABORTED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


# A status message or log field quotes at most this much of what the caller sent: a 1 MB field must not come back
# in a status (some clients drop a connection over ~64 kB of trailers) nor fill the log.
MAX_MESSAGE_CHARS = 300
MAX_FACT_CHARS = 128  # as long as an id may be (validate_id)


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Undecodable:
    """What the request deserializer hands the method when the bytes are not a valid message of its type."""

    __slots__ = ()


UNDECODABLE = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's deserializer, except that bytes it cannot parse (corrupt wire data, bad UTF-8 in a string)
    become UNDECODABLE: answered INVALID_ARGUMENT with a request id by the interceptor, not UNKNOWN by gRPC."""
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            return UNDECODABLE

    return decode


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code in _STATUS_OF:
        if isinstance(exc, kind):
            return code, exc.message
    if isinstance(exc, DomainError):
        return grpc.StatusCode.FAILED_PRECONDITION, exc.message
    if isinstance(exc, NotImplementedError):  # a method of the contract this server does not implement (yet)
        return grpc.StatusCode.UNIMPLEMENTED, "not implemented by this server"
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
        facts = {
            key: bounded(getattr(source, key), MAX_FACT_CHARS) for key in ("store_id", "terminal_id") if key in names
        }
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


HEALTH_SERVICE = "grpc.health.v1.Health"  # exempt from authentication: load balancers and probes carry no key


def short_method(full_method: str) -> tuple[str, str]:
    """("posoffers.v1.OfferService", "OfferService/CommitPurchase") from "/posoffers.v1.OfferService/CommitPurchase"."""
    service, method = full_method.lstrip("/").split("/", 1)
    return service, f"{service.rsplit('.', 1)[-1]}/{method}"


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    def __init__(
        self,
        *,
        guard: Guard | None,
        access_log: bool = True,
        facts: RequestFacts | None = None,
        max_call_s: float = 30.0,
        audit: AdminAudit | None = None,
        limits: RateGate | None = None,
    ) -> None:
        """`guard` None: authentication is off (POS_OFFERS_AUTH=off, loopback only). `audit`: admin changes and
        refused calls go to the audit log (server/rpc/audit.py). `limits`: the rate limits of authenticated calls."""
        self._guard = guard
        self._max_call_s = max_call_s
        self._audit = audit
        self._limits = limits
        self._access_log = access_log
        self._facts = facts or RequestFacts("hash", "")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _ = short_method(handler_call_details.method)
        if handler.unary_unary is None:
            if service == HEALTH_SERVICE or self._guard is None:
                return handler  # health Watch: exempt; streaming calls are otherwise left as gRPC runs them
            return _guarded_stream(handler, handler_call_details, self._guard)  # reflection: any valid key
        inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # aio handlers are coroutines
        if self._audit is not None:
            inner = self._audit.wrap(short_method(handler_call_details.method)[1], inner, status_of)
        guard = None if service == HEALTH_SERVICE else self._guard
        observed = _ObservedUnary(
            handler_call_details,
            inner,
            guard=guard,
            access_log=self._access_log,
            facts=self._facts,
            max_call_s=self._max_call_s,
            audit=self._audit,
            limits=self._limits,
        )
        return grpc.unary_unary_rpc_method_handler(
            observed.behavior,  # a coroutine function: grpc.aio runs an object with async __call__ in a thread
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


def _guarded_stream(
    handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails, guard: Guard
) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming method (server reflection) answered only for a valid key of any role."""
    _, method = short_method(details.method)

    async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            guard.admit_any(details.invocation_metadata)
        except Unauthenticated as exc:
            _count_refusal(method, exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)

    codec = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.stream_unary is not None:
        stream_unary: Any = handler.stream_unary

        async def one_answer(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await admit(context)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(one_answer, **codec)
    inner: Any = handler.stream_stream or handler.unary_stream  # aio: async generators

    async def answers(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await admit(context)
        async for response in inner(request, context):
            yield response

    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(answers, **codec)
    return grpc.unary_stream_rpc_method_handler(answers, **codec)


def _count_refusal(method: str, exc: Exception) -> None:
    service, name = method.split("/", 1)
    reason = exc.reason if isinstance(exc, Unauthenticated) else "permission"
    metrics.AUTH_REFUSED.labels(service, name, reason).inc()


@dataclass(slots=True)
class _Call:
    """One call as it goes: its request id, when it started, its caller's key id, and its status so far."""

    request_id: str
    started: float
    code: grpc.StatusCode = grpc.StatusCode.OK
    key_id: str = ""


class _ObservedUnary:
    """A unary method's behavior with the cross-cutting work around each call: request id, metrics, the RPC span,
    the status of a failure, the access log."""

    def __init__(
        self,
        details: grpc.HandlerCallDetails,
        inner: Behavior,
        *,
        guard: Guard | None,
        access_log: bool,
        facts: RequestFacts,
        max_call_s: float,
        audit: AdminAudit | None = None,
        limits: RateGate | None = None,
    ) -> None:
        self._details = details
        self._audit = audit
        self._limits = limits
        self._inner = inner
        self._guard = guard
        self._max_call_s = max_call_s
        self._access_log = access_log
        self._facts = facts
        _, self._service, self._method = details.method.split("/", 2)
        self._policy_name = short_method(details.method)[1]
        # Label children looked up once per method, not per call.
        self._started_total = metrics.RPC_STARTED.labels("unary", self._service, self._method)
        self._in_flight = metrics.RPC_IN_FLIGHT.labels(self._service, self._method)
        self._latency = metrics.RPC_LATENCY.labels("unary", self._service, self._method)

    async def behavior(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id = _request_id(self._details)
        token = REQUEST_ID.set(request_id)
        caller_token = CALLER.set(None)
        try:
            context.set_trailing_metadata((("x-request-id", request_id),))
            self._started_total.inc()
            self._in_flight.inc()
            call = _Call(request_id, time.perf_counter())
            # The span ends as the call does, whatever the handler raised: its outcome is the status code set in
            # _finish, and rpc_span records no exception (an error status travels as one, AbortError).
            with tracing.rpc_span(self._details.method):
                try:
                    return await self._answer(request, context, call)
                finally:
                    self._finish(request, call)
        finally:
            CALLER.reset(caller_token)
            REQUEST_ID.reset(token)

    async def _answer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any], call: _Call) -> Any:
        """The handler's response; a failure sets `call.code` and, unless it already is one, becomes an abort."""
        try:
            await self._admit(request, context, call)
            if request is UNDECODABLE:
                raise InvalidArgument("request", f"is not a valid {self._method} request message")
            return await self._within_limit(request, context)
        except asyncio.CancelledError:
            # The caller went away: its deadline passed, or it cancelled.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            call.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            call.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:
            if isinstance(exc, Unauthenticated | PermissionDenied):
                _count_refusal(self._policy_name, exc)
                if self._audit is not None:
                    self._audit.refused(self._policy_name, exc, self._details.invocation_metadata, context.peer())
            call.code, message = status_of(exc)
            if call.code is grpc.StatusCode.INTERNAL:
                log.exception("unhandled error in %s", self._method, extra={"request_id": call.request_id})
                message = f"internal error (request id {call.request_id})"
            elif call.code is grpc.StatusCode.UNAVAILABLE:
                # The type only: a driver's message can quote bound parameters (customer ids).
                log.warning(
                    "store unavailable in %s: %s",
                    self._method,
                    type(exc).__name__,
                    extra={"request_id": call.request_id},
                )
            message = bounded(message, MAX_MESSAGE_CHARS)
            if isinstance(exc, RateLimited):  # abort's trailers replace those set before: repeat the request id
                trailers = (("x-request-id", call.request_id), *retry_trailers(exc, message))
                await context.abort(call.code, message, trailing_metadata=trailers)
            await context.abort(call.code, message)

    async def _within_limit(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The handler, ended after max_call_s whatever the caller's deadline (or none) says: no call holds the
        server's memory and a Redis connection indefinitely."""
        limit = asyncio.timeout(self._max_call_s)
        try:
            async with limit:
                return await self._inner(request, context)
        except TimeoutError:
            if not limit.expired():
                raise
            raise DeadlineExceeded(f"the call ran past the server's limit of {self._max_call_s:g} s; retry") from None

    async def _admit(self, request: Any, context: grpc.aio.ServicerContext[Any, Any], call: _Call) -> None:
        """Authentication, then permission (the role, then the store the request acts for), then the rate limits:
        before the handler validates anything, so a caller without the right key learns nothing about its request
        and a limited caller gets no work done, not even validation."""
        if self._guard is None:
            return
        key = self._guard.admit(self._policy_name, self._details.invocation_metadata)
        call.key_id = key.key_id
        CALLER.set(key)  # reset when the call ends (behavior)
        if request is not UNDECODABLE:
            self._guard.check_store(key, self._policy_name, request, context)
        if self._limits is not None:
            await self._limits.admit(key, request)

    def _finish(self, request: Any, call: _Call) -> None:
        """Metrics, the access log line and the span's status code, once the call's status is known."""
        elapsed = time.perf_counter() - call.started
        self._in_flight.dec()
        metrics.RPC_HANDLED.labels("unary", self._service, self._method, call.code.name).inc()
        self._latency.observe(elapsed)
        if self._access_log or call.code is not grpc.StatusCode.OK:
            log.info(
                "rpc",
                extra={
                    "request_id": call.request_id,
                    "method": self._method,
                    "status": call.code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                    **({"key_id": call.key_id} if call.key_id else {}),
                    **self._facts.of(request),
                    **({"trace_id": trace_id} if (trace_id := tracing.current_trace_id()) else {}),
                },
            )
        tracing.set_attribute("rpc.grpc.status_code", call.code.value[0])
