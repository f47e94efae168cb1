"""`python -m server.writer_main` (`pos-offers-writer`): the write-behind writer as a process of its own.

Production runs the writer beside the servers (POS_OFFERS_WRITER_ENABLED=0 on them), so SQL work never
competes with the till path for a server's interpreter. Any number may run: a consumer group shares the
partitions' outboxes between them and claims what a dead one left pending.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop

from server.config import Settings
from telemetry import metrics_setup, tracing
from telemetry.logs import configure_logging

log = logging.getLogger("pos_offers.writer")


def redis_url_of(settings: Settings) -> str:
    """The configured Redis, else the embedded one a server on the same data dir started."""
    if settings.redis_url:
        return settings.redis_url
    socket_path = (settings.data_dir / "redis" / "redis.sock").resolve()
    if socket_path.exists():
        return f"unix://{socket_path}"
    raise SystemExit("pos-offers-writer: set POS_OFFERS_REDIS_URL (no embedded Redis found under the data dir)")


async def run(settings: Settings) -> None:
    from server.bootstrap import bootstrap  # after metrics_setup.prepare: prometheus_client reads its env at import

    components = bootstrap(settings.with_(redis_url=redis_url_of(settings)))
    await components.migrate()
    writer = components.writer
    if settings.otlp_endpoint:
        tracing.configure_tracing(endpoint=settings.otlp_endpoint, service_name="pos-offers-writer")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def stop_when_orphaned() -> None:
        # A writer child whose server died must not live on as an orphan (one more per crash).
        while not stop.is_set():
            if settings.writer_process and os.getppid() != parent:
                log.warning("server process gone; writer stopping")
                stop.set()
            await asyncio.sleep(1.0)

    watchdog = asyncio.create_task(stop_when_orphaned())
    log.info("writer started", extra={"consumer": writer.consumer})
    try:
        await writer.run(stop)
    finally:
        watchdog.cancel()
        await components.close()
        tracing.shutdown_tracing()


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"pos-offers-writer: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.metrics_dir:
        metrics_setup.prepare(Path(settings.metrics_dir))
    uvloop.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
