"""Waiting for a condition instead of sleeping for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold in time; an AssertionError so pytest reports it as a test failure."""


def _failure(message: str | Callable[[], str], timeout: float, last: object) -> WaitTimeout:
    text = message() if callable(message) else message
    return WaitTimeout(f"{text} (still false after {timeout:g} s; last value: {last!r})")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition never held",
) -> T:
    """Calls `predicate` until it returns something truthy and returns that; fails after `timeout` seconds with
    `message` (a string, or a function giving one: state to show at the moment of the failure) and the last value.
    The predicate is always tried once more at the deadline, so a slow machine only ever makes this slower."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, value)
        time.sleep(interval)
