"""Wiring: settings -> stores, engine, servicers, interceptors, health, reflection, metrics, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from posoffers.v1 import admin_service_pb2, admin_service_pb2_grpc, offer_service_pb2, offer_service_pb2_grpc
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from domain.model import Catalog
from server.config import Settings
from server.demo import load_demo
from server.rpc.interceptors import RequestFacts, ServerInterceptor, initialize_rpc_metrics
from server.rpc.servicers import AdminServicer, OfferServicer, ProtobufReceipts
from store.embedded_redis import EmbeddedRedis
from store.keys import Keys
from store.records import OutboxRecord
from store.redis_state import CustomerStore
from store.sql_budgets import SqlBudgets
from store.sql_catalog import SqlCatalog
from store.sql_db import make_engine, migrate
from store.sql_outbox import SqlOutboxSink
from store.sql_profile import SqlProfiles
from store.writer import OutboxWriter, WriterStats
from telemetry import metrics, metrics_setup, tracing
from telemetry.observe import redis_call, sql_call
from usecases.admin import AdminApp, offer_from_row, tier_policy_from_json, tier_rules
from usecases.catalog import CatalogCache
from usecases.expiry import PointsExpiry
from usecases.offers import OffersApp
from usecases.returns import ReturnsApp

log = logging.getLogger(__name__)

SERVICES = (
    offer_service_pb2.DESCRIPTOR.services_by_name["OfferService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["OfferAdmin"],
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)


def _record_catalog(catalog: Catalog) -> None:
    metrics.CATALOG_VERSION.set(catalog.version)
    metrics.CATALOG_OFFERS.set(len(catalog.offers))
    metrics.CATALOG_LOADED_AT.set(time.time())


def writer_alive() -> None:
    metrics.WRITER_LAST_SUCCESS.set(time.time())


class ObservedSink:
    """The SQL repository as the writer sees it, timed and counted like every other SQL call."""

    def __init__(self, repo: SqlOutboxSink) -> None:
        self._repo = repo

    def apply_records(self, records: list[OutboxRecord]) -> int:
        with sql_call("apply_records"):
            return self._repo.apply_records(records)


def writer_metrics_hook() -> Any:
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
class Service:
    """A running pos-offers server; `await Service.start(settings)` then `await service.stop()`."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    redis: aioredis.Redis
    customers: CustomerStore
    repo: SqlProfiles
    catalog: CatalogCache
    offers: OffersApp
    admin: AdminApp
    writer: OutboxWriter
    health: HealthServicer
    sql_engine: Any = None
    embedded: EmbeddedRedis | None = None
    metrics_port: int = 0
    writer_pid: int | None = None  # the writer child, when it runs as one
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _metrics_server: Any = None
    _sql_probe: asyncio.Future[None] | None = None
    _budget_gauges: set[str] = field(default_factory=set)

    @property
    def target(self) -> str:
        host = self.settings.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @classmethod
    async def start(cls, settings: Settings) -> Service:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        embedded: EmbeddedRedis | None = None
        redis_url = settings.redis_url
        if not redis_url:
            embedded = EmbeddedRedis(settings.data_dir / "redis")
            redis_url = await asyncio.to_thread(embedded.start)
        try:
            return await cls._start(settings, redis_url, embedded)
        except BaseException:
            if embedded:
                embedded.stop()
            raise

    @classmethod
    async def _start(cls, settings: Settings, redis_url: str, embedded: EmbeddedRedis | None) -> Service:
        if settings.otlp_endpoint and not tracing.is_enabled():
            tracing.configure_tracing(endpoint=settings.otlp_endpoint)
        client = aioredis.Redis.from_url(redis_url, decode_responses=False, socket_timeout=5, max_connections=256)
        await client.ping()
        schema = settings.database_schema or None
        engine = make_engine(settings.sql_url, schema=schema)
        await asyncio.to_thread(lambda: migrate(engine, schema=schema))
        repo = SqlProfiles(engine)
        sql_catalog = SqlCatalog(engine)
        keys = Keys(settings.redis_prefix, settings.partitions)
        customers = CustomerStore(
            client, keys, receipt_retention_s=settings.idempotency_retention_days * 86_400, observe=redis_call
        )
        catalog = CatalogCache(
            sql_catalog, customers, offer_from_row, lambda value: tier_rules(tier_policy_from_json(value, 0))
        )
        catalog.on_swap = _record_catalog
        await catalog.refresh(force=True)
        offers = OffersApp(settings, customers, repo, SqlBudgets(engine), catalog)
        admin = AdminApp(sql_catalog, customers, catalog)
        if settings.demo_data:
            await load_demo(admin, offers)
        writer = OutboxWriter(
            client,
            keys,
            ObservedSink(SqlOutboxSink(engine)),
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            batch=settings.writer_batch,
            idle_ms=settings.writer_idle_ms,
            claim_idle_ms=settings.writer_claim_idle_ms,
            on_batch=writer_metrics_hook(),
            on_healthy_pass=writer_alive,
        )
        await writer.ensure_groups()

        server = grpc.aio.server(
            interceptors=[
                ServerInterceptor(
                    access_log=settings.access_log,
                    facts=RequestFacts(settings.log_customer_ids, settings.log_hash_salt),
                )
            ],
            options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 4 * 1024 * 1024)],
        )
        returns = ReturnsApp(settings, customers, repo, catalog, ProtobufReceipts(), offers.rehydrate)
        offer_service_pb2_grpc.add_OfferServiceServicer_to_server(OfferServicer(offers, returns), server)
        expiry = PointsExpiry(offers, customers, repo, expire_after_days=settings.points_expire_after_days)
        admin_service_pb2_grpc.add_OfferAdminServicer_to_server(AdminServicer(admin, offers, expiry), server)
        initialize_rpc_metrics(SERVICES)
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        if settings.reflection:
            names = (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, server)
        port = server.add_insecure_port(settings.listen)
        if port == 0:
            raise RuntimeError(f"cannot listen on {settings.listen}")
        await server.start()

        service = cls(
            settings=settings,
            server=server,
            port=port,
            redis=client,
            customers=customers,
            repo=repo,
            catalog=catalog,
            offers=offers,
            admin=admin,
            writer=writer,
            health=health_servicer,
            embedded=embedded,
            sql_engine=engine,
        )
        service._start_metrics()
        await service._set_health(True, True)
        service._spawn(catalog.run(service._stop, settings.catalog_refresh_ms / 1000))
        service._spawn(service._watch_health())
        service._spawn(service._watch_gauges())
        if settings.writer_enabled and settings.writer_process:
            service._spawn(service._supervise_writer(redis_url))
        elif settings.writer_enabled:
            service._spawn(writer.run(service._stop))
        return service

    async def _supervise_writer(self, redis_url: str) -> None:
        """Keeps one writer child running (restarted with back-off if it dies); stops it on shutdown."""
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(POS_OFFERS_REDIS_URL=redis_url, POS_OFFERS_METRICS_LISTEN="", POS_OFFERS_DEMO_DATA="0")
        backoff = 0.5
        while not self._stop.is_set():
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server.writer_main", env=env, stdin=asyncio.subprocess.DEVNULL
            )
            self.writer_pid = child.pid
            started = time.monotonic()
            waiter = asyncio.ensure_future(child.wait())
            stopper = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                metrics_setup.process_died(child.pid, self.settings.metrics_dir)
            if self._stop.is_set():
                stopper.cancel()
                if child.returncode is None:
                    child.terminate()
                    try:
                        await asyncio.wait_for(waiter, timeout=5.0)
                    except TimeoutError:
                        child.kill()
                        await waiter
                metrics_setup.process_died(child.pid, self.settings.metrics_dir)
                return
            stopper.cancel()
            log.error("writer process exited with %s; restarting", child.returncode)
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=backoff)

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro))

    def _start_metrics(self) -> None:
        if not self.settings.metrics_listen:
            return
        host, port = self.settings.metrics_listen.rsplit(":", 1)
        registry = metrics_setup.registry(self.settings.metrics_dir)
        try:
            self._metrics_server, _ = start_http_server(int(port), addr=host, registry=registry)
        except OSError:
            if not self.settings.metrics_dir:
                raise
            # Several servers of one host share the metrics directory: whichever bound the port first serves
            # the whole host's samples, so one scrape per host shows everything.
            log.info("metrics port taken by another process of this host; it serves our samples too")
            return
        self.metrics_port = self._metrics_server.server_port

    async def _set_health(self, till: bool, admin: bool) -> None:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        offer_service, admin_service = SERVICE_NAMES
        await self.health.set("", serving if till else not_serving)
        await self.health.set(offer_service, serving if till else not_serving)
        await self.health.set(admin_service, serving if admin else not_serving)

    async def _probe(self) -> tuple[bool, bool]:
        """(Redis answers, SQL answers). A SQL probe still running from last time is not doubled: a database
        that black-holes connections must not fill the thread pool with stuck probes."""
        try:
            await asyncio.wait_for(self.customers.ping(), timeout=1.0)
            redis_ok = True
        except (RedisError, OSError, TimeoutError):
            redis_ok = False
        if self._sql_probe is None or self._sql_probe.done():
            self._sql_probe = asyncio.ensure_future(asyncio.to_thread(self.repo.ping))
        try:
            await asyncio.wait_for(asyncio.shield(self._sql_probe), timeout=2.0)
            sql_ok = True
        except Exception:  # any failure of the probe, or no answer yet, means "not answering"
            sql_ok = False
        return redis_ok, sql_ok

    async def _watch_health(self) -> None:
        """The till path (OfferService) is SERVING while Redis answers and a catalog is loaded; admin also needs
        SQL. SQL trouble alone only delays the writer and the admin API: tills keep working."""
        current: tuple[bool, bool] | None = (True, True)
        while not self._stop.is_set():
            redis_ok, sql_ok = await self._probe()
            catalog_ok = self.catalog.ready
            for component, ok in (("redis", redis_ok), ("sql", sql_ok), ("catalog", catalog_ok)):
                metrics.COMPONENT_UP.labels(component).set(1 if ok else 0)
            wanted = (redis_ok and catalog_ok, redis_ok and catalog_ok and sql_ok)
            if wanted != current and not self._stop.is_set():
                log.warning("health changed", extra={"redis": redis_ok, "sql": sql_ok, "catalog": catalog_ok})
                await self._set_health(*wanted)
                current = wanted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    async def _watch_gauges(self) -> None:
        """Gauges read from Redis, off the request path: outbox lag and offer budgets."""
        while not self._stop.is_set():
            with contextlib.suppress(RedisError, OSError):
                metrics.OUTBOX_BACKLOG.set(await self.writer.backlog())
                metrics.OUTBOX_OLDEST_AGE.set(await self.writer.oldest_age_s())
                limits = {o.offer_id: o.total_redemption_limit for o in self.catalog.current.offers}
                budgeted = sorted(o for o, limit in limits.items() if limit > 0)
                for offer_id, used in (await self.customers.budget_counters(budgeted)).items():
                    metrics.OFFER_BUDGET_USED.labels(offer_id).set(used)
                    metrics.OFFER_BUDGET_LIMIT.labels(offer_id).set(limits[offer_id])
                for gone in self._budget_gauges - set(budgeted):  # archived, or the budget lifted
                    metrics.OFFER_BUDGET_USED.remove(gone)
                    metrics.OFFER_BUDGET_LIMIT.remove(gone)
                self._budget_gauges = set(budgeted)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=2.0)

    async def stop(self) -> None:
        """Graceful: NOT_SERVING first so balancers move away, then let in-flight RPCs finish, then stop tasks."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_s)
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=8.0)
        # What the writer has not written stays in the outbox: the next writer (or this server's next start)
        # writes it, so shutdown never waits for SQL to catch up.
        await self.redis.aclose()
        await asyncio.to_thread(self.sql_engine.dispose)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self.embedded:
            await asyncio.to_thread(self.embedded.stop)
        if self.settings.otlp_endpoint:
            await asyncio.to_thread(tracing.shutdown_tracing)
