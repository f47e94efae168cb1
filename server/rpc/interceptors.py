"""Cross-cutting RPC work in one place: request id, the concurrency bound, keys and permissions, rate limits,
the server's call limit, domain error -> status mapping (statuses.py), metrics, the access log (call_facts.py).

Handlers raise domain errors; this interceptor turns each into one clear gRPC status. Anything unexpected
becomes INTERNAL with the request id (the stack trace goes to the log, never to the caller). Streaming methods
are guarded in guarded_streams.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError

from domain.access import ApiKey
from domain.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from domain.limits import RateLimited
from server.rpc.audit import AdminAudit
from server.rpc.authorization import CALLER, Guard
from server.rpc.call_facts import MAX_MESSAGE_CHARS, RequestFacts, bounded, request_id_of
from server.rpc.guarded_streams import count_refusal, guarded_stream, short_method
from server.rpc.rate_limiting import RateGate, retry_trailers
from server.rpc.statuses import status_of
from telemetry import metrics, tracing
from telemetry.logs import REQUEST_ID

log = logging.getLogger("pos_offers.access")


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


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def initialize_rpc_metrics(services: Sequence[ServiceDescriptor]) -> None:
    """Creates every method's RPC series at zero before the first call, as go-grpc-prometheus does: a series that
    appears already at 1 hides its first call from increase() and rate(), and so from alerts."""
    for service in services:
        for method in service.methods:
            metrics.RPC_STARTED.labels("unary", service.full_name, method.name)
            for code in grpc.StatusCode:
                metrics.RPC_HANDLED.labels("unary", service.full_name, method.name, code.name)
    for reason in DROP_REASONS:
        metrics.RPC_DROPPED.labels(reason)


DROP_REASONS = ("concurrency_limit",)
"""Why the service dropped a call unhandled: refused beyond POS_OFFERS_MAX_CONCURRENT_RPCS. (Calls the gRPC core drops
never reach the service: server/rpc/dropped_calls.py counts them.)"""

REVOKE_METHOD = "OfferAdmin/RevokeApiKey"  # must work while the limiter cannot be checked (Redis down)
HEALTH_SERVICE = "grpc.health.v1.Health"  # exempt from authentication: load balancers and probes carry no key


class CallBound:
    """At most `limit` unary calls in progress at once (0: no bound), counted from when a call's headers arrive,
    so calls whose request message never comes count too. The server's event loop is the only caller."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def enter(self) -> bool:
        if self.limit and self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    def __init__(
        self,
        *,
        guard: Guard | None,
        access_log: bool = True,
        facts: RequestFacts | None = None,
        max_concurrent_rpcs: int = 0,
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
        self._bound = CallBound(max_concurrent_rpcs)
        self.received = 0
        """Calls gRPC handed to this server's code (every method, known or not): with the calls its transport
        started (channelz), what the gRPC core dropped before any of our code saw them (server/rpc/dropped_calls.py)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        self.received += 1
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _ = short_method(handler_call_details.method)
        if handler.unary_unary is None:
            if service == HEALTH_SERVICE or self._guard is None:
                return handler  # health Watch: exempt; streaming calls are otherwise left as gRPC runs them
            return guarded_stream(handler, handler_call_details, self._guard)  # reflection: any valid key
        inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # aio handlers are coroutines
        if self._audit is not None:
            inner = self._audit.wrap(short_method(handler_call_details.method)[1], inner, status_of)
        health = service == HEALTH_SERVICE
        observed = _ObservedUnary(
            handler_call_details,
            inner,
            guard=None if health else self._guard,
            access_log=self._access_log,
            facts=self._facts,
            bound=None if health else self._bound,  # a saturated server still answers its probes
            max_call_s=self._max_call_s,
            audit=self._audit,
            limits=self._limits,
        )
        # Served as client-streaming (the same bytes on the wire): gRPC then runs our code as soon as the headers
        # arrive, not once the message has, so a call whose message never comes, or that gRPC fails while reading
        # it, still ends in the log and the metrics, and counts against the bound while it waits.
        return grpc.stream_unary_rpc_method_handler(
            observed.behavior,  # a coroutine function: grpc.aio runs an object with async __call__ in a thread
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class _NoRequest(Exception):
    """The call's request stream ended without a message: the caller sent none, went away first, or gRPC failed
    the call while reading it (a compressed message it cannot read)."""


@dataclass(slots=True)
class _Call:
    """One call as it goes: its request id, when it started, its caller's key id, its status so far, its request
    once read, and whether it holds a place under the server's bound."""

    request_id: str
    started: float
    code: grpc.StatusCode = grpc.StatusCode.OK
    key_id: str = ""
    request: Any = None
    received: bool = False
    bounded: bool = False


class _ObservedUnary:
    """A unary method's behavior with the cross-cutting work around each call: the server's bound, request id,
    metrics, the RPC span, the status of a failure, the access log."""

    def __init__(
        self,
        details: grpc.HandlerCallDetails,
        inner: Behavior,
        *,
        guard: Guard | None,
        access_log: bool,
        facts: RequestFacts,
        bound: CallBound | None,
        max_call_s: float,
        audit: AdminAudit | None = None,
        limits: RateGate | None = None,
    ) -> None:
        self._details = details
        self._max_call_s = max_call_s
        self._audit = audit
        self._limits = limits
        self._inner = inner
        self._guard = guard
        self._access_log = access_log
        self._facts = facts
        self._bound = bound
        _, self._service, self._method = details.method.split("/", 2)
        self._policy_name = short_method(details.method)[1]
        # Label children looked up once per method, not per call.
        self._started_total = metrics.RPC_STARTED.labels("unary", self._service, self._method)
        self._in_flight = metrics.RPC_IN_FLIGHT.labels(self._service, self._method)
        self._latency = metrics.RPC_LATENCY.labels("unary", self._service, self._method)

    async def behavior(self, requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Client-streaming in shape (see intercept_service); reads the one request message itself."""
        request_id, usable_id = request_id_of(self._details)
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
                    return await self._answer(context, call, usable_id)
                finally:
                    self._finish(call)
        finally:
            CALLER.reset(caller_token)
            REQUEST_ID.reset(token)

    async def _answer(self, context: grpc.aio.ServicerContext[Any, Any], call: _Call, usable_id: bool) -> Any:
        """The handler's response; a failure sets `call.code` and, unless it already is one, becomes an abort."""
        try:
            self._enter_bound(call)
            key = self._admit_key(call)  # before waiting for the message: a caller without a key holds nothing
            return await self._within_limit(self._served(key, context, call, usable_id))
        except asyncio.CancelledError:
            call.code = _gone(context)  # the caller went away: its deadline passed, or it cancelled
            raise
        except grpc.aio.AbortError:
            call.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except _NoRequest:
            if _gone(context) is grpc.StatusCode.DEADLINE_EXCEEDED:
                call.code = grpc.StatusCode.DEADLINE_EXCEEDED
                raise asyncio.CancelledError from None  # gRPC has answered DEADLINE_EXCEEDED itself
            call.code = grpc.StatusCode.INVALID_ARGUMENT
            await _abort(context, call, "request: no request message arrived")
        except Exception as exc:
            call.code, message = self._status(exc, call, context)
            await _abort(context, call, bounded(message, MAX_MESSAGE_CHARS), exc)

    async def _served(
        self, key: ApiKey | None, context: grpc.aio.ServicerContext[Any, Any], call: _Call, usable_id: bool
    ) -> Any:
        """Once the key is admitted: the message, the store it acts for, the rate limits, validation, the handler."""
        request = call.request = await self._receive(context, call)
        await self._admit_request(key, request, context)
        if not usable_id:
            raise InvalidArgument("x-request-id", "must be 1 to 128 printable ASCII characters")
        if request is UNDECODABLE:
            raise InvalidArgument("request", f"is not a valid {self._method} request message")
        return await self._inner(request, context)

    async def _within_limit(self, work: Awaitable[Any]) -> Any:
        """`work` (from the wait for the message to the handler's answer), ended after max_call_s whatever the
        caller's deadline (or none) says: no call holds the server's memory, a Redis connection or a place under
        the bound indefinitely, not even one whose message never comes."""
        limit = asyncio.timeout(self._max_call_s)
        try:
            async with limit:
                return await work
        except TimeoutError:
            if not limit.expired():
                raise
            raise DeadlineExceeded(f"the call ran past the server's limit of {self._max_call_s:g} s; retry") from None

    def _enter_bound(self, call: _Call) -> None:
        if self._bound is None:
            return
        if not self._bound.enter():
            metrics.RPC_DROPPED.labels("concurrency_limit").inc()
            raise ResourceExhausted(f"server busy: {self._bound.limit} calls in progress; retry shortly")
        call.bounded = True

    async def _receive(self, context: grpc.aio.ServicerContext[Any, Any], call: _Call) -> Any:
        request = await context.read()
        if request is grpc.aio.EOF:  # type: ignore[attr-defined]  # not in grpc-stubs
            raise _NoRequest
        call.received = True
        return request

    def _status(
        self, exc: Exception, call: _Call, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[grpc.StatusCode, str]:
        """The status and message of a failure, logged when it is the server's (INTERNAL) or a store's; a refusal
        counted, and audited."""
        if isinstance(exc, Unauthenticated | PermissionDenied):
            count_refusal(self._policy_name, exc)
            if self._audit is not None:
                self._audit.refused(self._policy_name, exc, self._details.invocation_metadata, context.peer())
        code, message = status_of(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("unhandled error in %s", self._method, extra={"request_id": call.request_id})
            message = f"internal error (request id {call.request_id})"
        elif code is grpc.StatusCode.UNAVAILABLE:
            # The type only: a driver's message can quote bound parameters (customer ids).
            log.warning(
                "store unavailable in %s: %s", self._method, type(exc).__name__, extra={"request_id": call.request_id}
            )
        return code, message

    def _admit_key(self, call: _Call) -> ApiKey | None:
        """Authentication, then permission by role: before the handler validates anything, so a caller without the
        right key learns nothing about its request."""
        if self._guard is None:
            return None
        key = self._guard.admit(self._policy_name, self._details.invocation_metadata)
        call.key_id = key.key_id
        CALLER.set(key)  # reset when the call ends (behavior)
        return key

    async def _admit_request(
        self, key: ApiKey | None, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Once the message is here: permission by store (the store the request acts for, for a store-bound key),
        then the rate limits (the key's bucket and the customer's, taken together in one script): before the
        handler validates anything, so a limited caller gets no work done, not even validation."""
        if self._guard is None or key is None:
            return
        if request is not UNDECODABLE:
            self._guard.check_store(key, self._policy_name, request, context)
        if self._limits is not None:
            await self._limits.admit(key, request, revoking=self._policy_name == REVOKE_METHOD)

    def _finish(self, call: _Call) -> None:
        """Metrics, the access log line and the span's status code, once the call's status is known."""
        elapsed = time.perf_counter() - call.started
        if call.bounded and self._bound is not None:
            self._bound.leave()
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
                    **({} if call.received else {"request_received": False}),
                    **self._facts.of(call.request),
                    **({"trace_id": trace_id} if (trace_id := tracing.current_trace_id()) else {}),
                },
            )
        tracing.set_attribute("rpc.grpc.status_code", call.code.value[0])


def _gone(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """Why a call ended without our answer: its deadline passed, else it was cancelled."""
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= 0
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], call: _Call, message: str, exc: Exception | None = None
) -> None:
    """Ends the call with `call.code` (a rate-limited one with its retry delay). When gRPC can no longer send a
    status (the caller went away, or gRPC failed the call itself, e.g. a compressed message it could not read) the
    call ends CANCELLED, quietly: gRPC would otherwise log an ExecuteBatchError per such call."""
    try:
        if isinstance(exc, RateLimited):  # abort's trailers replace those set before: repeat the request id
            trailers = (("x-request-id", call.request_id), *retry_trailers(exc, message))
            await context.abort(call.code, message, trailing_metadata=trailers)
        await context.abort(call.code, message)
    except grpc.aio.AbortError:
        raise
    except Exception:  # grpc's own error types for a status it could not send are private (cygrpc)
        call.code = grpc.StatusCode.CANCELLED
        raise asyncio.CancelledError from None
