"""The tests' wait_until helpers: return the first truthy value, fail with a message saying what never happened."""

from __future__ import annotations

import itertools

import pytest

from tests.support.waiting import WaitTimeout, wait_until


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until(lambda: [n for n in [next(calls)] if n >= 3], interval=0) == [3]


def test_fails_with_the_message_and_the_last_value() -> None:
    with pytest.raises(WaitTimeout, match=r"the writer never ran \(still false after 0.05 s; last value: 0\)"):
        wait_until(lambda: 0, timeout=0.05, interval=0.01, message="the writer never ran")
    assert issubclass(WaitTimeout, AssertionError)


def test_a_message_function_is_called_only_on_failure() -> None:
    described: list[int] = []

    def describe() -> str:
        described.append(1)
        return "described"

    assert wait_until(lambda: True, message=describe)
    assert described == []
    with pytest.raises(WaitTimeout, match="described"):
        wait_until(lambda: None, timeout=0, message=describe)
    assert described == [1]


def test_the_predicate_is_tried_at_least_once_even_with_no_time_left() -> None:
    assert wait_until(lambda: "yes", timeout=0) == "yes"
