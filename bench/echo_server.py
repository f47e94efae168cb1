"""The baseline: a grpc.aio server whose only method returns the request bytes untouched.

Same runtime as the service (grpc.aio on uvloop) but no protobuf, no handler work, so its latency is what a
Python gRPC round trip costs on this machine. Run: `python -m bench.echo_server --listen 127.0.0.1:50099`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import grpc
import uvloop

SERVICE = "bench.Echo"
METHOD = "Echo"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve(listen: str) -> None:
    server = grpc.aio.server()
    # No (de)serializers: grpc hands the handler raw bytes and sends back what it returns.
    handler = grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(listen)
    await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait_for_termination())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
    await server.stop(grace=1.0)
    for task in (waiter, stopper):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server", description="gRPC echo baseline server")
    parser.add_argument("--listen", default="127.0.0.1:50099", help="host:port to serve on")
    args = parser.parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args.listen))
    except RuntimeError as exc:  # grpc raises RuntimeError when the port cannot be bound
        print(f"echo server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
