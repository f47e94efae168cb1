"""Domain errors -> gRPC status codes, in one table: what a caller is told when a call fails."""

from __future__ import annotations

import grpc
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

STATUS_OF: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
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


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code in STATUS_OF:
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
