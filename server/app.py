"""A running server: the components bootstrap wired, served over gRPC, with its background tasks (catalog
refresh, health, gauges, the writer) and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1._async import HealthServicer
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from domain.model import Catalog
from server.bootstrap import Components, bootstrap
from server.config import Settings, is_loopback
from server.demo_keys import ensure_demo_keys
from server.rpc.dropped_calls import CoreDrops
from server.rpc.grpc_server import build_server, listen, set_health
from server.rpc.transport import ServerCertificates
from store.embedded_redis import EmbeddedRedis
from telemetry import metrics, metrics_setup, tracing

log = logging.getLogger(__name__)


def _announce_auth(settings: Settings) -> None:
    metrics.AUTH_ENABLED.set(1 if settings.auth else 0)
    if not settings.auth:
        log.error(
            "AUTHENTICATION IS OFF (POS_OFFERS_AUTH=off): any local process can move points; never in production",
            extra={"listen": settings.listen},
        )
    if not settings.tls_cert and not is_loopback(settings.listen):
        log.warning(
            "plaintext gRPC on a non-loopback address (POS_OFFERS_ALLOW_PLAINTEXT=1): keys travel in clear unless a "
            "proxy or mesh in front terminates TLS",
            extra={"listen": settings.listen},
        )


def _record_catalog(catalog: Catalog) -> None:
    metrics.CATALOG_VERSION.set(catalog.version)
    metrics.CATALOG_OFFERS.set(len(catalog.offers))
    metrics.CATALOG_LOADED_AT.set(time.time())


def _lower_priority(pid: int, nice: int) -> None:
    """Runs the writer child below the server (CPU): the till path first, the write-behind when a core is free."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    except OSError as exc:  # the child already gone (restarted by the loop), or a platform without it
        log.warning("cannot lower the writer's priority: %s", exc)


@dataclass
class Service:
    """A running pos-offers server; `await Service.start(settings)` then `await service.stop()`."""

    settings: Settings
    components: Components
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    embedded: EmbeddedRedis | None = None
    metrics_port: int = 0
    writer_pid: int | None = None  # the writer child, when it runs as one
    demo_credentials: Path | None = None  # where the demo keys were written (demo mode only)
    core_drops: CoreDrops | None = None  # calls the gRPC core dropped before our code saw them
    certificates: ServerCertificates | None = None  # TLS only: what reload_certificates() swaps
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
        if not settings.redis_url:
            embedded = EmbeddedRedis(settings.data_dir / "redis")
            settings = settings.with_(redis_url=await asyncio.to_thread(embedded.start))
        try:
            return await cls._start(settings, embedded)
        except BaseException:
            if embedded:
                embedded.stop()
            raise

    @classmethod
    async def _start(cls, settings: Settings, embedded: EmbeddedRedis | None) -> Service:
        if settings.otlp_endpoint and not tracing.is_enabled():
            tracing.configure_tracing(endpoint=settings.otlp_endpoint)
        components = bootstrap(settings)
        components.catalog.on_swap = _record_catalog
        await components.open(demo_data=settings.demo_data)
        credentials = None
        if settings.demo_data and settings.demo_credentials:
            credentials = await ensure_demo_keys(components.api_keys, components.key_ring, settings.data_dir)
        _announce_auth(settings)
        server, health, drops = build_server(components)
        port, certificates = listen(server, settings)
        if port == 0:
            raise RuntimeError(f"cannot listen on {settings.listen}")
        await server.start()
        service = cls(settings, components, server, port, health, embedded=embedded, demo_credentials=credentials)
        service.core_drops = drops
        service.certificates = certificates
        service._start_metrics()
        await set_health(health, till=True, admin=True)
        service._start_tasks()
        return service

    @property
    def transport(self) -> str:
        if self.certificates is None:
            return "plaintext"
        return "mutual TLS" if self.certificates.mutual else "TLS"

    def reload_certificates(self) -> bool:
        """SIGHUP: read the TLS files again; connections made from now on use them (False: kept the old ones)."""
        if self.certificates is None:
            log.warning("SIGHUP: no TLS certificates to reload (plaintext)")
            return False
        return self.certificates.reload()

    def _start_tasks(self) -> None:
        c, s = self.components, self.settings
        self._spawn(c.catalog.run(self._stop, s.catalog_refresh_ms / 1000))
        self._spawn(c.key_ring.run(self._stop, s.api_key_refresh_ms / 1000))
        self._spawn(self._watch_health())
        self._spawn(self._watch_gauges())
        self._spawn(self._count_core_drops())
        self._spawn(self._flush_audit())
        if s.writer_enabled and s.writer_process:
            self._spawn(self._supervise_writer(s.redis_url))
        elif s.writer_enabled:
            self._spawn(c.writer.run(self._stop))

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
            _lower_priority(child.pid, self.settings.writer_nice)
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

    async def _probe(self) -> tuple[bool, bool]:
        """(Redis answers, SQL answers). A SQL probe still running from last time is not doubled: a database
        that black-holes connections must not fill the thread pool with stuck probes."""
        try:
            await asyncio.wait_for(self.components.customers_store.ping(), timeout=1.0)
            redis_ok = True
        except (RedisError, OSError, TimeoutError):
            redis_ok = False
        if self._sql_probe is None or self._sql_probe.done():
            self._sql_probe = asyncio.ensure_future(asyncio.to_thread(self.components.sql_profiles.ping))
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
            catalog_ok = self.components.catalog.ready
            for component, ok in (("redis", redis_ok), ("sql", sql_ok), ("catalog", catalog_ok)):
                metrics.COMPONENT_UP.labels(component).set(1 if ok else 0)
            wanted = (redis_ok and catalog_ok, redis_ok and catalog_ok and sql_ok)
            if wanted != current and not self._stop.is_set():
                log.warning("health changed", extra={"redis": redis_ok, "sql": sql_ok, "catalog": catalog_ok})
                await set_health(self.health, till=wanted[0], admin=wanted[1])
                current = wanted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    async def _watch_gauges(self) -> None:
        """Gauges read from Redis, off the request path: outbox lag and offer budgets."""
        while not self._stop.is_set():
            metrics.API_KEYS_LOADED.set(self.components.key_ring.size)
            with contextlib.suppress(RedisError, OSError):
                metrics.OUTBOX_BACKLOG.set(await self.components.writer.backlog())
                metrics.OUTBOX_OLDEST_AGE.set(await self.components.writer.oldest_age_s())
                limits = {o.offer_id: o.total_redemption_limit for o in self.components.catalog.current.offers}
                budgeted = sorted(o for o, limit in limits.items() if limit > 0)
                for offer_id, used in (await self.components.customers_store.budget_counters(budgeted)).items():
                    metrics.OFFER_BUDGET_USED.labels(offer_id).set(used)
                    metrics.OFFER_BUDGET_LIMIT.labels(offer_id).set(limits[offer_id])
                for gone in self._budget_gauges - set(budgeted):  # archived, or the budget lifted
                    metrics.OFFER_BUDGET_USED.remove(gone)
                    metrics.OFFER_BUDGET_LIMIT.remove(gone)
                self._budget_gauges = set(budgeted)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=2.0)

    async def _count_core_drops(self) -> None:
        """Once a second: calls the gRPC core started but never handed to us (server/rpc/dropped_calls.py)."""
        while not self._stop.is_set() and self.core_drops is not None:
            self.core_drops.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    async def _flush_audit(self) -> None:
        """Sends each finished minute of refused calls and velocity alerts to the audit outbox (Redis)."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.audit_flush_ms / 1000)
            try:
                await self.components.refusals.flush(everything=self._stop.is_set())
            except (RedisError, OSError):
                log.warning("audit outbox unreachable; %d counted events kept", self.components.refusals.pending)

    async def stop(self) -> None:
        """Graceful: NOT_SERVING first so balancers move away, then let in-flight RPCs finish, then stop tasks."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_s)
        if self.core_drops is not None:
            self.core_drops.sample()  # the last count: the server's channelz node goes with it
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=8.0)
        # What the writer has not written stays in the outbox: the next writer (or this server's next start)
        # writes it, so shutdown never waits for SQL to catch up.
        await self.components.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self.embedded:
            await asyncio.to_thread(self.embedded.stop)
        if self.settings.otlp_endpoint:
            await asyncio.to_thread(tracing.shutdown_tracing)
