"""Typed errors of the client: every grpc.RpcError a call raises becomes one of these."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

REQUEST_ID_KEY = "x-request-id"
PUSHBACK_KEY = "grpc-retry-pushback-ms"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# The server words INVALID_ARGUMENT as "<field path>: <problem>", e.g. "basket.lines[0].quantity: must be positive".
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.]*(?:\[\d+\][\w.]*)*): ")


class PosOffersError(Exception):
    """A failed call: the gRPC status code, the server's message and the request id the server logged it under."""

    def __init__(
        self, code: grpc.StatusCode, message: str, request_id: str | None = None, retry_delay: float | None = None
    ) -> None:
        super().__init__(code, message, request_id)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_delay = retry_delay
        """Seconds the server asked the caller to wait before trying again (google.rpc.RetryInfo, or
        grpc-retry-pushback-ms), when it sent one: a rate limit refused the call before anything ran."""

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, message={self.message!r}, request_id={self.request_id!r})"


class InvalidArgumentError(PosOffersError):
    @property
    def field(self) -> str | None:
        """The field path the server named, e.g. "basket.lines[0].quantity", when the message starts with one."""
        match = _FIELD_PREFIX.match(self.message)
        return match.group(1) if match else None


class NotFoundError(PosOffersError):
    pass


class FailedPreconditionError(PosOffersError):
    pass


class AlreadyExistsError(PosOffersError):
    pass


class UnavailableError(PosOffersError):
    pass


class DeadlineExceededError(PosOffersError):
    pass


class UnauthenticatedError(PosOffersError):
    """No valid API key: set POS_OFFERS_API_KEY (or pass api_key=) to a key's secret."""


class PermissionDeniedError(PosOffersError):
    """The key may not do this (its role, or a store it is not bound to)."""


class ResourceExhaustedError(PosOffersError):
    """A limit refused the call: with `retry_delay` a rate limit (nothing ran; try again after that many seconds),
    without one a size limit (a message too big)."""


_BY_CODE: dict[grpc.StatusCode, type[PosOffersError]] = {
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}


def error_class(code: grpc.StatusCode) -> type[PosOffersError]:
    return _BY_CODE.get(code, PosOffersError)


def from_rpc_error(exc: grpc.RpcError) -> PosOffersError:
    """Translate a raised grpc.RpcError. grpc.RpcError itself declares no accessors at runtime (only the
    concrete call objects do), hence the getattr checks."""
    code_fn = getattr(exc, "code", None)
    code = code_fn() if callable(code_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_fn = getattr(exc, "details", None)
    details = details_fn() if callable(details_fn) else None
    message = details if isinstance(details, str) and details else str(code.value[1])
    trailing_fn = getattr(exc, "trailing_metadata", None)
    trailing = list(trailing_fn() or ()) if callable(trailing_fn) else []
    return error_class(code)(code, message, _request_id(trailing), retry_delay(trailing))


def _values(trailing: Iterable[Any], wanted: str) -> list[str | bytes]:
    return [value for key, value in trailing if isinstance(key, str) and key.lower() == wanted]


def _request_id(trailing: list[Any]) -> str | None:
    for value in _values(trailing, REQUEST_ID_KEY):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def retry_delay(trailing: list[Any]) -> float | None:
    """Seconds to wait before a retry, from the status details' google.rpc.RetryInfo or else from
    grpc-retry-pushback-ms; None when the server sent neither."""
    for raw in _values(trailing, STATUS_DETAILS_KEY):
        try:
            status = status_pb2.Status.FromString(raw if isinstance(raw, bytes) else raw.encode())
        except DecodeError:
            continue
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                seconds: float = info.retry_delay.ToTimedelta().total_seconds()
                return max(0.0, seconds)
    for value in _values(trailing, PUSHBACK_KEY):
        text = value.decode() if isinstance(value, bytes) else value
        if text.isdigit():
            return int(text) / 1000
    return None
