"""`python -m server` (or `pos-offers-server`): run pos-offers until SIGTERM or Ctrl-C;
`pos-offers-server keys ...` manages API keys (server/keys_cli.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop

from server.config import Settings
from telemetry import metrics_setup
from telemetry.logs import configure_logging

log = logging.getLogger("pos_offers")


async def serve(settings: Settings) -> None:
    from server.app import Service  # after metrics_setup.prepare: prometheus_client reads its env at import

    service = await Service.start(settings)
    # Everything built at start-up lives for the process: keep it out of the cyclic collector's full passes,
    # which otherwise pause the till path for tens of milliseconds on a busy server.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.reload_certificates)  # certificate rotation
    redis_where = service.embedded.url if service.embedded else "external"
    metrics_where = f"http://127.0.0.1:{service.metrics_port}/metrics" if service.metrics_port else "off"
    print(
        f"pos-offers listening on {service.target} (gRPC, {service.transport}; health and reflection on)\n"
        f"  metrics: {metrics_where}\n  redis:   {redis_where}\n  sql:     {settings.sql_url.split('@')[-1]}\n"
        f"  demo:    {'customer samantha, store soho, offer dress-shoes-2x' if settings.demo_data else 'off'}\n"
        f"  keys:    {_keys_line(service.demo_credentials, settings.auth)}\n"
        "  stop with Ctrl-C",
        flush=True,
    )
    await stop.wait()
    log.info("stopping")
    await service.stop()


def _keys_line(credentials: Path | None, auth: bool) -> str:
    if not auth:
        return "AUTHENTICATION OFF (POS_OFFERS_AUTH=off): loopback only, never in production"
    if credentials is None:
        return "every call needs one; make the first with `pos-offers-server keys create --role admin`"
    return (
        f"demo keys (admin, pos for soho, app) in {credentials} (mode 0600); for the CLI:\n"
        f"           export POS_OFFERS_API_KEY=$(python3 -c \"import json; print(json.load(open('{credentials}'))"
        f"['admin']['secret'])\")"
    )


def main() -> int:
    if sys.argv[1:2] == ["keys"]:
        from server.keys_cli import main as keys_main

        return keys_main(sys.argv[2:])
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"pos-offers: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if not settings.metrics_dir:
        settings = settings.with_(metrics_dir=str((settings.data_dir / "prometheus").resolve()))
    metrics_setup.prepare(Path(settings.metrics_dir))
    # The only fork is the writer child's fork+exec, which never uses gRPC: without this gRPC's fork handlers
    # log "skipping fork() handlers" when it starts. Read by gRPC at import, hence before serve() imports it.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
