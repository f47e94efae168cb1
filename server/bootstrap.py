"""One place that wires pos-offers: settings -> adapters -> use cases. Used by the server, the writer process
and the tests; `bootstrap()` only builds objects (no I/O), `Components.open()` then connects and prepares.

Overrides replace one part (a clock, a Redis client, a codec) and everything built on it uses the replacement.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
import sqlalchemy as sa

from server.config import Settings
from server.demo import load_demo
from server.rpc.codecs import ProtobufOfferDefinitions, ProtobufReceipts
from store.hot_state import RedisHotState
from store.keys import Keys
from store.records import OutboxRecord
from store.redis_audit import RedisAuditOutbox
from store.redis_guards import GuardParams
from store.redis_rate_limits import RedisRateBuckets
from store.redis_state import CustomerStore
from store.sql_api_keys import SqlApiKeys
from store.sql_async import SqlApiKeyStore, SqlAuditStore, SqlCatalogStore, SqlPrivacyStore, SqlProfileStore
from store.sql_audit import SqlAuditLog
from store.sql_budgets import SqlBudgets
from store.sql_catalog import SqlCatalog
from store.sql_db import make_engine, migrate
from store.sql_outbox import SqlOutboxSink
from store.sql_privacy import SqlPrivacy
from store.sql_profile import SqlProfiles
from store.writer import OutboxWriter, WriterStats
from telemetry import metrics
from telemetry.observe import redis_call, sql_call
from usecases.adjustments import PointsAdjustments
from usecases.admin import AdminApp
from usecases.api_keys import ApiKeys, KeyRing
from usecases.audit import AuditTrail, RefusalTally
from usecases.budgets import Budgets
from usecases.catalog import CatalogCache
from usecases.commit import CommitPurchase
from usecases.customers import Customers
from usecases.evaluation import BasketEvaluator
from usecases.expiry import PointsExpiry
from usecases.offers import OffersApp
from usecases.ports import (
    ApiKeyStore,
    CatalogStore,
    CatalogVersions,
    Clock,
    CustomerHotState,
    OfferBudgets,
    OfferCodec,
    PrivacyStore,
    ProfileStore,
    ReceiptCodec,
)
from usecases.privacy import CustomerPrivacy
from usecases.rate_limits import RateLimiter
from usecases.returns import ReturnsApp


def utc_now() -> datetime:
    return datetime.now(UTC)


class ObservedSink:
    """The SQL repository as the writer sees it, timed and counted like every other SQL call."""

    def __init__(self, sink: SqlOutboxSink) -> None:
        self._sink = sink

    def apply_records(self, records: list[OutboxRecord]) -> int:
        with sql_call("apply_records"):
            return self._sink.apply_records(records)


def writer_alive() -> None:
    metrics.WRITER_LAST_SUCCESS.set(time.time())


def writer_metrics_hook() -> Callable[[WriterStats, float], None]:
    """Turns the writer's running totals into Prometheus increments."""
    last = WriterStats()

    def on_batch(stats: WriterStats, seconds: float) -> None:
        metrics.WRITER_RECORDS.labels(result="applied").inc(stats.applied - last.applied)
        metrics.WRITER_RECORDS.labels(result="duplicate").inc(stats.duplicates - last.duplicates)
        metrics.WRITER_RECORDS.labels(result="dead_letter").inc(stats.dead_letters - last.dead_letters)
        metrics.WRITER_FAILURES.inc(stats.failures - last.failures)
        metrics.WRITER_BATCH_SECONDS.observe(seconds)
        last.applied, last.duplicates = stats.applied, stats.duplicates
        last.dead_letters, last.failures = stats.dead_letters, stats.failures

    return on_batch


@dataclass
class Components:
    """Everything one process of pos-offers runs on, wired."""

    settings: Settings
    redis: aioredis.Redis
    sql_engine: sa.Engine
    sql_profiles: SqlProfiles  # the profile of record's reads, synchronous (health probe, tests)
    customers_store: CustomerStore  # Redis: keys and scripts (also the budget counters and catalog version)
    hot: CustomerHotState
    catalog: CatalogCache
    budgets: Budgets
    customers: Customers
    offers: OffersApp
    commits: CommitPurchase
    returns: ReturnsApp
    admin: AdminApp
    expiry: PointsExpiry
    adjustments: PointsAdjustments
    privacy: CustomerPrivacy
    writer: OutboxWriter
    key_ring: KeyRing  # the keys calls are checked against, in memory
    api_keys: ApiKeys  # creating, listing, revoking them
    audit: AuditTrail  # the audit log of record: admin calls written to it, ListAuditEvents reads it
    refusals: RefusalTally  # till-path audit events counted per minute, flushed to Redis for the writer
    clock: Clock
    rate_limiter: RateLimiter  # per-key and per-customer limits, shared through Redis

    async def open(self, *, demo_data: bool = False) -> None:
        """Connects and prepares: Redis answers, SQL is migrated, the catalog is loaded, the outbox groups exist."""
        await self.redis.ping()
        await self.migrate()
        await self.catalog.refresh(force=True)
        await self.key_ring.refresh(force=True)
        if demo_data:
            await load_demo(self.admin, self.customers)
        await self.writer.ensure_groups()

    async def migrate(self) -> None:
        """Brings the profile database to the newest migration (a no-op when it is there)."""
        await asyncio.to_thread(migrate, self.sql_engine, schema=self.settings.database_schema or None)

    async def close(self) -> None:
        await self.redis.aclose()
        await asyncio.to_thread(self.sql_engine.dispose)


def bootstrap(
    settings: Settings,
    *,
    redis: aioredis.Redis | None = None,
    sql_engine: sa.Engine | None = None,
    clock: Clock = utc_now,
    receipts: ReceiptCodec | None = None,
    offer_codec: OfferCodec | None = None,
    hot: CustomerHotState | None = None,
    budgets: OfferBudgets | None = None,
    versions: CatalogVersions | None = None,
    profiles: ProfileStore | None = None,
    catalog_store: CatalogStore | None = None,
    privacy_store: PrivacyStore | None = None,
    api_key_store: ApiKeyStore | None = None,
) -> Components:
    """Builds the components for `settings` (whose redis_url must be set: the server starts an embedded Redis
    first when it is not). No I/O. A port given (an in-memory fake in tests) replaces its adapter everywhere."""
    redis = redis or redis_client(settings)
    sql_engine = sql_engine or make_engine(settings.sql_url, schema=settings.database_schema or None)
    rules, keys = settings.rules(), Keys(settings.redis_prefix, settings.partitions)
    sql_profiles = SqlProfiles(sql_engine)
    store = customer_store(settings, redis, keys)
    hot = hot or RedisHotState(store)
    counters, versions = budgets or store, versions or store
    profiles = profiles or SqlProfileStore(sql_profiles, SqlBudgets(sql_engine))
    catalog_store = catalog_store or SqlCatalogStore(SqlCatalog(sql_engine))
    offer_codec = offer_codec or ProtobufOfferDefinitions()
    receipts = receipts or ProtobufReceipts()
    catalog = CatalogCache(catalog_store, versions, offer_codec)
    budget_keeper = Budgets(counters, profiles)
    customers = Customers(rules, hot, profiles, catalog, budget_keeper, clock)
    evaluator = BasketEvaluator(rules, clock)
    api_key_store = api_key_store or SqlApiKeyStore(SqlApiKeys(sql_engine))
    key_ring = KeyRing(api_key_store, store, clock)
    return Components(
        settings=settings,
        redis=redis,
        sql_engine=sql_engine,
        sql_profiles=sql_profiles,
        customers_store=store,
        hot=hot,
        catalog=catalog,
        customers=customers,
        offers=OffersApp(rules, customers, catalog, evaluator, clock),
        budgets=budget_keeper,
        commits=CommitPurchase(rules, hot, customers, catalog, evaluator, budget_keeper, receipts, clock),
        returns=ReturnsApp(rules, hot, profiles, customers, catalog, budget_keeper, receipts, clock),
        admin=AdminApp(catalog_store, versions, counters, catalog, offer_codec),
        expiry=PointsExpiry(hot, profiles, customers, expire_after_days=rules.points_expire_after_days, clock=clock),
        adjustments=PointsAdjustments(rules, hot, profiles, customers, clock),
        privacy=CustomerPrivacy(hot, privacy_store or SqlPrivacyStore(SqlPrivacy(sql_engine)), clock),
        writer=build_writer(settings, redis, keys, SqlOutboxSink(sql_engine)),
        key_ring=key_ring,
        api_keys=ApiKeys(api_key_store, store, key_ring, clock),
        audit=AuditTrail(SqlAuditStore(SqlAuditLog(sql_engine))),
        refusals=RefusalTally(RedisAuditOutbox(redis, keys), clock),
        clock=clock,
        rate_limiter=RateLimiter(RedisRateBuckets(redis, keys, observe=redis_call), settings.rate_limits()),
    )


def customer_store(settings: Settings, redis: aioredis.Redis, keys: Keys) -> CustomerStore:
    """The Redis adapter: customers' hot state (with the fraud guards), budget counters, versions."""
    rules = settings.rules()
    return CustomerStore(
        redis,
        keys,
        receipt_retention_s=int(rules.receipt_retention.total_seconds()),
        observe=redis_call,
        guards=GuardParams(rules.guards, settings.log_hash_salt.encode()),
    )


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client whose calls wait for a free connection when all of the pool's are busy (a burst beyond the pool
    queues briefly instead of failing), and fail UNAVAILABLE only after POS_OFFERS_REDIS_POOL_TIMEOUT_MS."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_ms / 1000,
        decode_responses=False,
        socket_timeout=5,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


def build_writer(settings: Settings, redis: aioredis.Redis, keys: Keys, sink: SqlOutboxSink) -> OutboxWriter:
    """The write-behind writer: drains the outbox streams into SQL, reporting to the writer metrics."""
    return OutboxWriter(
        redis,
        keys,
        ObservedSink(sink),
        consumer=f"{socket.gethostname()}-{os.getpid()}",
        batch=settings.writer_batch,
        idle_ms=settings.writer_idle_ms,
        claim_idle_ms=settings.writer_claim_idle_ms,
        on_batch=writer_metrics_hook(),
        on_healthy_pass=writer_alive,
    )
