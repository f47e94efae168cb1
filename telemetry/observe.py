"""Timing, error counting and (when on) tracing of calls to Redis and SQL, by operation name."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from types import TracebackType

from prometheus_client import Counter, Histogram

from telemetry import metrics, tracing


class _Observed:
    """Times the block into `seconds`, counts it in `errors` when it raises, and runs it in a span (a shared
    no-op when tracing is off)."""

    __slots__ = ("_errors", "_seconds", "_span", "_started")

    def __init__(self, seconds: Histogram, errors: Counter, span: AbstractContextManager[None]) -> None:
        self._seconds = seconds
        self._errors = errors
        self._span = span
        self._started = 0.0

    def __enter__(self) -> None:
        self._span.__enter__()
        self._started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._seconds.observe(time.perf_counter() - self._started)
        if kind is not None and issubclass(kind, Exception):  # a cancelled caller is not a store error
            self._errors.inc()
        self._span.__exit__(kind, exc, tb)


def redis_call(operation: str) -> _Observed:
    return _Observed(
        metrics.REDIS_SECONDS.labels(operation), metrics.REDIS_ERRORS.labels(operation), tracing.redis_span(operation)
    )


def sql_call(operation: str) -> _Observed:
    return _Observed(
        metrics.SQL_SECONDS.labels(operation), metrics.SQL_ERRORS.labels(operation), tracing.sql_span(operation, "sql")
    )
