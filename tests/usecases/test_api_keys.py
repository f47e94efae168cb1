"""The key ring and key management on in-memory ports: what holds when the shared version (Redis) is down."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.access import Role
from domain.errors import Unauthenticated
from tests.support.fakes import FakeApiKeys
from usecases.api_keys import ApiKeys, KeyRing


class RedisDown(FakeApiKeys):
    """Keys of record still readable (SQL), the shared version not (Redis down)."""

    down = False

    async def api_keys_version(self) -> int:
        if self.down:
            raise ConnectionError("redis down")
        return await super().api_keys_version()

    async def bump_api_keys_version(self) -> int:
        if self.down:
            raise ConnectionError("redis down")
        return await super().bump_api_keys_version()


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_key_revoked_while_redis_is_down_stops_at_the_next_full_reload() -> None:
    store = RedisDown()
    # Another server: reloads whatever the version says once the full-reload interval has passed (0 s here).
    other = KeyRing(store, store, now, full_reload_s=0.0)
    this = KeyRing(store, store, now)
    keys = ApiKeys(store, store, this, now)
    key, secret = await keys.create(name="till", role=Role.POS, store_ids=["soho"])
    await other.refresh(force=True)
    assert other.authenticate(secret).key_id == key.key_id
    store.down = True
    revoked = await keys.revoke(key.key_id)  # from the host or the admin API: the SQL row changes regardless
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        this.authenticate(secret)  # the server that revoked it, at once
    await other.refresh()  # its periodic refresh: the version is unreadable, the keys are reloaded anyway
    with pytest.raises(Unauthenticated, match="revoked"):
        other.authenticate(secret)


async def test_within_the_interval_an_unreadable_version_keeps_the_keys_held() -> None:
    store = RedisDown()
    ring = KeyRing(store, store, now)  # 30 s between full reloads
    _, secret = await ApiKeys(store, store, ring, now).create(name="app", role=Role.APP)
    store.down = True
    with pytest.raises(ConnectionError):
        await ring.refresh()  # the run loop logs it and keeps serving
    assert ring.authenticate(secret).role is Role.APP
