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

import grpc

from domain.access import Role
from server.app import Service
from server.config import Settings
from tests.support.keys import RoleKeys, keyed_aio_channel, keyed_channel, make_test_keys

T = TypeVar("T")

KEYS_BY_TARGET: dict[str, RoleKeys] = {}
"""The keys of every running test server, by address: for tests that hold only a server's target."""


def channel_to(target: str, role: Role = Role.ADMIN) -> grpc.Channel:
    return keyed_channel(target, KEYS_BY_TARGET[target].of(role))


def aio_channel_to(target: str, role: Role = Role.ADMIN) -> grpc.aio.Channel:
    return keyed_aio_channel(target, KEYS_BY_TARGET[target].of(role))


def key_for(target: str, role: Role = Role.ADMIN) -> str:
    return KEYS_BY_TARGET[target].of(role)


class ServerThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pos-offers-test-server", daemon=True)
        self._thread.start()
        self.service: Service = self.run(Service.start(settings), timeout=60)
        # One key per role, as an operator would make them; tests call with the admin key unless they test roles.
        self.keys: RoleKeys = self.run(make_test_keys(self.service.components.api_keys))
        KEYS_BY_TARGET[self.target] = self.keys

    @property
    def target(self) -> str:
        return self.service.target

    def channel(self, role: Role = Role.ADMIN, tls: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        """A channel with `role`'s key; `tls`: the client's credentials for a server with TLS settings."""
        return keyed_channel(self.target, self.keys.of(role), tls)

    def aio_channel(self, role: Role = Role.ADMIN, tls: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
        return keyed_aio_channel(self.target, self.keys.of(role), tls)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def drain(self, timeout: float = 10) -> None:
        """Waits until every committed purchase, and every refused call counted so far, is in SQL."""
        self.run(self.service.components.refusals.flush(everything=True))
        self.run(self.service.components.writer.drain(timeout_s=timeout), timeout=timeout + 5)

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        try:
            KEYS_BY_TARGET.pop(self.target, None)
            self.run(self.service.stop(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
