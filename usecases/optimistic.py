"""One optimistic-write loop for every write to a customer (commits, returns, CRM imports): read, decide,
write with a version check, and read again when another write got there first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from domain.errors import Conflict
from telemetry import metrics

T = TypeVar("T")


class Retry(Enum):
    """Why an attempt wants another: REBUILT (she was just rebuilt into the hot state: not a race) or CONFLICT
    (another write changed her state between our read and our write)."""

    REBUILT = "rebuilt"
    CONFLICT = "conflict"


async def write_optimistically(attempt: Callable[[], Awaitable[T | Retry]], *, attempts: int, what: str) -> T:
    for _ in range(attempts):
        outcome = await attempt()
        if not isinstance(outcome, Retry):
            return outcome
        if outcome is Retry.CONFLICT:
            metrics.COMMIT_CONFLICTS.inc()
    raise Conflict(f"the customer's state kept changing under this {what}; retry")
