"""A real pos-offers server for tests, on its own event loop in a background thread.

Tests then talk to it through real gRPC (sync client or their own asyncio loop), and can run coroutines on the
server's loop (drain the writer, drop a customer from Redis) with `run()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from server.app import Service
from server.config import Settings

T = TypeVar("T")


class ServerThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pos-offers-test-server", daemon=True)
        self._thread.start()
        self.service: Service = self.run(Service.start(settings), timeout=60)

    @property
    def target(self) -> str:
        return self.service.target

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def drain(self, timeout: float = 10) -> None:
        """Waits until every committed purchase is in SQL."""
        self.run(self.service.components.writer.drain(timeout_s=timeout), timeout=timeout + 5)

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self.run(self.service.stop(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
