"""Python client and CLI of the pos-offers service."""

from client.client import (
    DEFAULT_TARGET,
    PosOffersClient,
    make_basket,
    new_adjustment_id,
    new_transaction_id,
)
from client.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PosOffersError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "DEFAULT_TARGET",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "PosOffersClient",
    "PosOffersError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "make_basket",
    "new_adjustment_id",
    "new_transaction_id",
]
