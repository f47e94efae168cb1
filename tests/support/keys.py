"""API keys for tests: one per role on a real server, or on an in-memory key ring; channels that send them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from client.auth import BearerKey, aio_bearer_interceptors
from domain.access import Role
from tests.support.fakes import FakeApiKeys
from usecases.api_keys import ApiKeys, KeyRing

# Stores the test pos key acts for: every store the tests commit at.
TEST_STORES = ("soho", "midtown", "other-store", "store-b", "store-2")


@dataclass(frozen=True)
class RoleKeys:
    admin: str
    pos: str
    app: str

    def of(self, role: Role) -> str:
        return {Role.ADMIN: self.admin, Role.POS: self.pos, Role.APP: self.app}[role]


async def make_test_keys(api_keys: ApiKeys, stores: Sequence[str] = TEST_STORES) -> RoleKeys:
    secrets: dict[Role, str] = {}
    for role in Role:
        bound = stores if role is Role.POS else ()
        _, secrets[role] = await api_keys.create(name=f"test {role.value}", role=role, store_ids=bound)
    return RoleKeys(admin=secrets[Role.ADMIN], pos=secrets[Role.POS], app=secrets[Role.APP])


async def in_memory_keys() -> tuple[KeyRing, RoleKeys]:
    """A key ring over in-memory keys, with one key per role (for tests of the interceptor without a server)."""
    store = FakeApiKeys()
    ring = KeyRing(store, store, lambda: datetime.now(UTC))
    keys = await make_test_keys(ApiKeys(store, store, ring, lambda: datetime.now(UTC)))
    return ring, keys


def keyed_channel(target: str, secret: str, tls: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel (plaintext, or TLS with `tls`) whose every call carries `authorization: Bearer <secret>`."""
    channel = grpc.secure_channel(target, tls) if tls is not None else grpc.insecure_channel(target)
    return grpc.intercept_channel(channel, BearerKey(secret))


def keyed_aio_channel(target: str, secret: str, tls: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    interceptors = aio_bearer_interceptors(secret)
    if tls is not None:
        return grpc.aio.secure_channel(target, tls, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, interceptors=interceptors)
