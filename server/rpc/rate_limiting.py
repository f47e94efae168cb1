"""Rate limits in the interceptor: the customer a request names, the limiter's verdict counted in the metrics, and
the retry delay of a refusal as gRPC carries it (google.rpc.RetryInfo in the status details, and
grpc-retry-pushback-ms, which gRPC's own retry policy understands)."""

from __future__ import annotations

import hashlib
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.access import ApiKey
from domain.errors import Unavailable
from domain.limits import RateLimited
from domain.validation import MAX_ID_CHARS
from server.rpc.call_facts import named_customer
from telemetry import metrics
from usecases.rate_limits import RateLimiter

PUSHBACK_KEY = "grpc-retry-pushback-ms"


def customer_of(request: Any) -> str:
    """The customer a request names (basket.customer_id, or customer_id), "" when none. An id longer than any
    valid one (validation refuses it after the limit) is counted under its hash, never stored whole in a key."""
    customer = named_customer(request)
    if len(customer) > MAX_ID_CHARS:
        return "sha256:" + hashlib.sha256(customer.encode()).hexdigest()
    return customer


class RateGate:
    """Asks the limiter before a call runs, and counts what it answered."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def admit(self, key: ApiKey, request: Any, *, revoking: bool = False) -> None:
        """`revoking`: a RevokeApiKey call, let through unchecked when the limits cannot be checked (an admin call
        otherwise fails closed): revoking a stolen key must work during a Redis outage."""
        role = key.role.value
        try:
            admission = await self._limiter.admit(key, customer_of(request))
        except RateLimited as exc:
            metrics.RATE_LIMITED.labels(role, exc.kind.value).inc()
            raise
        except Unavailable:
            metrics.RATE_LIMIT_UNCHECKED.labels(role).inc()
            if revoking:
                return
            raise
        if admission == "unchecked":
            metrics.RATE_LIMIT_UNCHECKED.labels(role).inc()


def retry_trailers(exc: RateLimited, message: str) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata of a rate-limited call: `grpc-status-details-bin` (a google.rpc.Status with RetryInfo, whose
    message is the call's status message, as grpcio-status requires) and `grpc-retry-pushback-ms`."""
    delay_ms = exc.retry_after_ms
    retry = error_details_pb2.RetryInfo(
        retry_delay=Duration(seconds=delay_ms // 1000, nanos=(delay_ms % 1000) * 1_000_000)
    )
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
    status.details.add().Pack(retry)
    details: tuple[tuple[str, str | bytes], ...] = tuple(rpc_status.to_status(status).trailing_metadata)
    return (*details, (PUSHBACK_KEY, str(delay_ms)))
