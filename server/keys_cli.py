"""`pos-offers-server keys create|list|revoke`: API keys managed from the server host, with the service's own
settings (POS_OFFERS_DATABASE_URL, POS_OFFERS_REDIS_URL, ...). This is how the first admin key is made.

Writes the key to SQL, then moves the shared key version in Redis so every server loads it within a second; when
Redis cannot be reached (or an embedded one is not running) servers still load it at their next full reload
(usecases/api_keys.py FULL_RELOAD_S) or start.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domain.access import ApiKey, Role
from domain.errors import DomainError
from server.config import Settings
from store.keys import Keys
from store.sql_api_keys import SqlApiKeys
from store.sql_async import SqlApiKeyStore, SqlAuditStore
from store.sql_audit import SqlAuditLog
from store.sql_db import make_engine, migrate
from usecases.api_keys import ApiKeys, KeyRing
from usecases.audit import AuditTrail, new_event_id
from usecases.ports import AuditEvent

_DURATION = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 90d, 12h, 30m: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class _SharedVersion:
    """ApiKeyVersions on the deployment's Redis, or nothing to move when it cannot be reached."""

    def __init__(self, settings: Settings) -> None:
        url = settings.redis_url
        socket = settings.data_dir / "redis" / "redis.sock"  # the embedded Redis of a running `make run`
        if not url and socket.exists():
            url = f"unix://{socket.resolve()}"
        self._redis = aioredis.from_url(url, socket_timeout=2) if url else None
        self._key = Keys(settings.redis_prefix, settings.partitions).api_keys_version()
        self.moved = False

    async def api_keys_version(self) -> int:
        return 0

    async def bump_api_keys_version(self) -> int:
        if self._redis is None:
            return 0
        try:
            version = int(await self._redis.incr(self._key))
        except (RedisError, OSError):
            return 0
        self.moved = True
        return version

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _row(key: ApiKey) -> dict[str, object]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role.value,
        "store_ids": sorted(key.store_ids),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "rate_limit_per_second": key.rate_limit_per_second,
        "created_at": key.created_at.isoformat() if key.created_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pos-offers-server keys", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument("--store", action="append", default=[], metavar="ID", help="pos keys: a store (repeat)")
    create.add_argument("--name", default="")
    create.add_argument("--expires-in", type=parse_duration, metavar="90d", help="d, h, m or s")
    create.add_argument("--rate-limit", type=int, default=0, metavar="N", help="calls per second (0: default)")
    create.add_argument("--json", action="store_true", help='print {"key_id": ..., "secret": ...}')
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    revoke = sub.add_parser("revoke", help="revoke a key: it stops working on every server within 2 seconds")
    revoke.add_argument("key_id", metavar="KEY_ID")
    return parser


def _host_event(action: str, key: ApiKey, at: datetime) -> AuditEvent:
    """The audit row of a change made on the server host: no key made it, the host's user did."""
    return AuditEvent(
        event_id=new_event_id(),
        occurred_at=at,
        action=f"host/keys.{action}",
        key_name=f"host {getpass.getuser()}@{socket.gethostname()}"[:128],
        target=key.key_id,
        peer=socket.gethostname()[:128],
        outcome="OK",
        detail=json.dumps({"role": key.role.value, "stores": len(key.store_ids)}),
    )


async def _create(args: argparse.Namespace, keys: ApiKeys, trail: AuditTrail, at: datetime) -> None:
    key, secret = await keys.create(
        name=args.name,
        role=Role(args.role),
        store_ids=args.store,
        expires_at=at + args.expires_in if args.expires_in else None,
        rate_limit_per_second=args.rate_limit,
    )
    try:
        await trail.record(_host_event("create", key, at))
    except DomainError:
        await keys.revoke(key.key_id)  # an unaudited key must not work; its secret is never shown
        raise
    if args.json:
        print(json.dumps({"key_id": key.key_id, "secret": secret}))
    else:
        print(f"key_id: {key.key_id}\nrole:   {key.role.value}\nsecret: {secret}\n(shown once: store it now)")


async def _list(args: argparse.Namespace, keys: ApiKeys) -> None:
    rows = [_row(key) for key in await keys.list(include_revoked=args.all)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        stores = ",".join(row["store_ids"]) or "-"  # type: ignore[arg-type]
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        print(f"{row['key_id']}  {row['role']:<5}  {stores:<20}  {row['name']!s:<24}  {state}")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.sql_url, schema=settings.database_schema or None)
    await asyncio.to_thread(migrate, engine, schema=settings.database_schema or None)
    store = SqlApiKeyStore(SqlApiKeys(engine))
    version = _SharedVersion(settings)

    def now() -> datetime:
        return datetime.now(UTC)

    keys = ApiKeys(store, version, KeyRing(store, version, now), now)
    trail = AuditTrail(SqlAuditStore(SqlAuditLog(engine)))
    try:
        if args.action == "create":
            await _create(args, keys, trail, now())
        elif args.action == "list":
            await _list(args, keys)
        else:
            key = await keys.revoke(args.key_id)
            await trail.record(_host_event("revoke", key, now()))
            print(f"revoked {key.key_id} at {key.revoked_at.isoformat() if key.revoked_at else '?'}")
        if args.action != "list" and not version.moved:
            print("note: Redis not reachable; servers pick the change up within 30 s", file=sys.stderr)
    finally:
        await version.close()
        engine.dispose()
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"pos-offers-server keys: bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings))
    except DomainError as exc:
        print(f"pos-offers-server keys: {exc.message}", file=sys.stderr)
        return 1
