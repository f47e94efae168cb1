"""Python client and CLI of the pos-offers service."""

from client.client import (
    DEFAULT_TARGET,
    PosOffersClient,
    make_basket,
    new_transaction_id,
)
from client.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PosOffersError,
    ResourceExhaustedError,
    UnavailableError,
)

__all__ = [
    "DEFAULT_TARGET",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PosOffersClient",
    "PosOffersError",
    "ResourceExhaustedError",
    "UnavailableError",
    "make_basket",
    "new_transaction_id",
]
