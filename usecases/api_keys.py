"""API keys: created with a secret shown once, stored as a hash, revoked; and the key ring every server checks
calls against, in memory, refreshed when the shared version moves (a new or revoked key counts everywhere within
the refresh interval).

Secrets are `pok_<key_id>_<43 random url-safe characters>` (256 random bits): the key id lets a server find the
one record to compare with, and a fast hash (SHA-256) is enough for a secret nobody can guess, unlike a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime

from domain.access import ApiKey, Role
from domain.errors import InvalidArgument, NotFound, Unauthenticated
from domain.validation import validate_id
from usecases.ports import ApiKeyStore, ApiKeyVersions, Clock, StoredApiKey

log = logging.getLogger(__name__)

SECRET_PREFIX = "pok"
MAX_NAME_CHARS = 128
MAX_STORES_PER_KEY = 1_000
MAX_RATE_LIMIT = 1_000_000
FULL_RELOAD_S = 30.0  # a reload whatever the version says: a version lost with Redis's data still converges


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The key id a secret names, or None when it is not shaped like one of ours."""
    prefix, sep, rest = secret.partition("_")
    key_id, sep2, random_part = rest.partition("_")
    if prefix != SECRET_PREFIX or not sep or not sep2 or not key_id or len(key_id) > 32 or len(random_part) < 32:
        return None
    return key_id


def _validated(
    name: str, role: Role, store_ids: Iterable[str], expires_at: datetime | None, rate_limit: int, now: datetime
) -> tuple[str, frozenset[str]]:
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument("key.name", f"at most {MAX_NAME_CHARS} characters")
    stores = frozenset(store_ids)
    for store_id in stores:
        validate_id(store_id, "key.store_ids")
    if role is Role.POS and not stores:
        raise InvalidArgument("key.store_ids", "a pos key is bound to at least one store")
    if role is not Role.POS and stores:
        raise InvalidArgument("key.store_ids", "only pos keys are bound to stores")
    if len(stores) > MAX_STORES_PER_KEY:
        raise InvalidArgument("key.store_ids", f"at most {MAX_STORES_PER_KEY} stores")
    if expires_at is not None and expires_at <= now:
        raise InvalidArgument("key.expires_at", "must be in the future")
    if not 0 <= rate_limit <= MAX_RATE_LIMIT:
        raise InvalidArgument("key.rate_limit_per_second", f"must be between 0 and {MAX_RATE_LIMIT}")
    return name, stores


class KeyRing:
    """The keys every call is checked against, held in memory: no I/O on the call path."""

    def __init__(
        self, store: ApiKeyStore, versions: ApiKeyVersions, clock: Clock, *, full_reload_s: float = FULL_RELOAD_S
    ) -> None:
        self._store = store
        self._versions = versions
        self._clock = clock
        self._full_reload_s = full_reload_s
        self._keys: dict[str, StoredApiKey] = {}
        self._version: int | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        return len(self._keys)

    def named_by(self, secret: str) -> ApiKey | None:
        """The existing key a presented secret names by its id, whether or not the secret is right (the audit
        log records who a refused call claimed to be, never the secret); None for an id no key has."""
        key_id = key_id_of(secret)
        stored = self._keys.get(key_id) if key_id else None
        return stored.key if stored is not None else None

    def authenticate(self, secret: str) -> ApiKey:
        """The key `secret` belongs to, if it may be used now; else Unauthenticated (which says no more than
        "revoked" or "expired" to a caller who holds the right secret)."""
        key_id = key_id_of(secret)
        stored = self._keys.get(key_id) if key_id else None
        if stored is None or not hmac.compare_digest(stored.secret_hash, hash_secret(secret)):
            raise Unauthenticated("invalid API key", "invalid")
        key = stored.key
        if key.revoked_at is not None:
            raise Unauthenticated(f"API key {key.key_id} is revoked", "revoked")
        if not key.usable_at(self._clock()):
            raise Unauthenticated(f"API key {key.key_id} has expired", "expired")
        return key

    async def refresh(self, *, force: bool = False) -> None:
        """Reloads the keys when the shared version moved, when forced, and every FULL_RELOAD_S whatever the
        version says, also when the version cannot be read (Redis down): a key revoked in SQL then still stops
        working within FULL_RELOAD_S."""
        async with self._lock:
            now = asyncio.get_running_loop().time()
            try:
                version: int | None = await self._versions.api_keys_version()
            except Exception:
                if not force and now - self._loaded_at <= self._full_reload_s:
                    raise
                log.warning("api key version unreadable; reloading the keys from their store anyway")
                version = None
            stale = now - self._loaded_at > self._full_reload_s
            if force or version is None or version != self._version or stale:
                records = await self._store.all_api_keys()
                self._keys = {r.key.key_id: r for r in records}
                if version is not None and version != self._version:
                    log.info("api keys loaded", extra={"version": version, "keys": len(records)})
                self._version = version if version is not None else self._version
                self._loaded_at = now

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:
                # Keep checking calls against the keys we hold: an outage must not lock every till out.
                log.exception("api key refresh failed; keeping %d keys", len(self._keys))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)


class ApiKeys:
    """Creating, listing and revoking keys (the admin API and `pos-offers-server keys`)."""

    def __init__(self, store: ApiKeyStore, versions: ApiKeyVersions, ring: KeyRing, clock: Clock) -> None:
        self._store = store
        self._versions = versions
        self._ring = ring
        self._clock = clock

    async def create(
        self,
        *,
        name: str,
        role: Role,
        store_ids: Sequence[str] = (),
        expires_at: datetime | None = None,
        rate_limit_per_second: int = 0,
        created_by: str = "",
    ) -> tuple[ApiKey, str]:
        """The new key and its secret (returned once, never stored)."""
        now = self._clock()
        name, stores = _validated(name, role, store_ids, expires_at, rate_limit_per_second, now)
        key_id = secrets.token_hex(8)
        secret = f"{SECRET_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, name, role, stores, expires_at, rate_limit_per_second, now, None, created_by)
        await self._store.add_api_key(StoredApiKey(key, hash_secret(secret)))
        await self._changed()
        return key, secret

    async def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        keys = [stored.key for stored in await self._store.all_api_keys()]
        keys.sort(key=lambda k: (k.created_at or self._clock(), k.key_id))
        return [k for k in keys if include_revoked or k.revoked_at is None]

    async def revoke(self, key_id: str) -> ApiKey:
        validate_id(key_id, "key_id")
        key = await self._store.revoke_api_key(key_id, self._clock())
        if key is None:
            raise NotFound("API key", key_id)
        await self._changed()
        return key

    async def _changed(self) -> None:
        """Every server reloads at its next check of the version; this one at once. The key of record is already
        changed: when the version cannot be moved (Redis down) the other servers still reload it within
        FULL_RELOAD_S, so the change stands rather than failing after the fact."""
        try:
            await self._versions.bump_api_keys_version()
        except Exception:
            log.warning("api key version not moved; other servers load the change within %s s", FULL_RELOAD_S)
        await self._ring.refresh(force=True)
