"""Domain errors. The server maps each to one gRPC status in a single interceptor."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller is meant to see; the message is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """A field is missing or malformed (→ INVALID_ARGUMENT). `field` names it, e.g. `basket.lines[2].quantity`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(DomainError):
    """An unknown customer, offer or store (→ NOT_FOUND)."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class FailedPrecondition(DomainError):
    """A business rule refuses the request, e.g. insufficient points (→ FAILED_PRECONDITION)."""

    def __init__(self, message: str, reason: str = "rule") -> None:
        super().__init__(message)
        self.reason = reason


class AlreadyExists(DomainError):
    """The id is taken by a different request, e.g. a transaction id reused for another basket."""


class ResourceExhausted(DomainError):
    """A limit of the service itself was hit (→ RESOURCE_EXHAUSTED)."""


class Conflict(DomainError):
    """Concurrent writers kept winning; the caller may retry (→ ABORTED)."""


class Unavailable(DomainError):
    """The request cannot be served right now but may succeed on retry (→ UNAVAILABLE)."""


class Unauthenticated(DomainError):
    """No valid API key: missing, malformed, unknown, revoked or expired (→ UNAUTHENTICATED). `reason` is one of
    those words (for metrics and the audit log; the message says no more than the caller may know)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(DomainError):
    """The key is valid but may not do this, e.g. a till key committing another store's basket."""


class DeadlineExceeded(DomainError):
    """The call ran past the server's own limit on any call (→ DEADLINE_EXCEEDED); the caller may retry."""
