"""`make bench`: start the service and an echo baseline, seed customers, drive each workload open-loop, report.

Each workload runs alone, one after another (echo first), from a separate driver process (bench/driver.py), so the
orchestrator's own work never competes with the measurement. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from posoffers.v1 import admin_service_pb2, admin_service_pb2_grpc, types_pb2

from bench import driver, report
from bench.echo_server import FULL_METHOD as ECHO_METHOD
from bench.processes import Child, free_port, wait_until
from client.auth import API_KEY_ENV, aio_bearer_interceptors

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
SEED_CONCURRENCY = 16
SETTLE_WINDOW_S = 0.5
SETTLE_IDLE_CPU = 0.10  # share of one core below which the service counts as idle
SETTLE_MAX_S = 20.0
# The demo member's neighbourhood: Flatiron, about 2 km from the SoHo store.
HOME = types_pb2.GeoPoint(latitude=40.7411, longitude=-73.9897)

_started = time.monotonic()


def note(message: str) -> None:
    print(f"[bench {time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A step failed; the message says which and why."""


def bench_fail(message: str) -> NoReturn:
    raise BenchError(message)


def group_cpu_seconds(pgid: int) -> float | None:
    """CPU time used so far by the live processes of one process group (Linux /proc), or None without /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the parenthesised command: state ppid pgrp ... utime (12th) stime (13th).
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(child: Child) -> None:
    """Waits until the child's process group is nearly idle, so background work (the write-behind writer flushing
    what the previous step wrote) does not land in the next workload's figures."""
    deadline = time.monotonic() + SETTLE_MAX_S
    started = time.monotonic()
    before = group_cpu_seconds(child.process.pid)
    while before is not None and time.monotonic() < deadline:
        time.sleep(SETTLE_WINDOW_S)
        child.check_alive()
        after = group_cpu_seconds(child.process.pid)
        if after is None:
            return
        busy = (after - before) / SETTLE_WINDOW_S
        if busy <= SETTLE_IDLE_CPU:
            if time.monotonic() - started > 2 * SETTLE_WINDOW_S:
                note(f"{child.name} settled after {time.monotonic() - started:.1f} s")
            return
        before = after
    if before is not None:
        note(f"{child.name} still busy after {SETTLE_MAX_S:g} s; measuring anyway")


def base_env() -> dict[str, str]:
    # Inherited POS_OFFERS_* could point the service at a real database or Redis: the bench sets its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POS_OFFERS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_write_behind(service: Child, metrics_listen: str, timeout: float = 120.0) -> None:
    """Seeding leaves a write-behind backlog (and a Redis and SQLite busy with it): measure from steady state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check_alive()
        text = report.scrape(metrics_listen) or ""
        backlog = next(
            (line.split()[-1] for line in text.splitlines() if line.startswith("pos_offers_outbox_backlog ")), ""
        )
        if backlog and float(backlog) == 0:
            note("write-behind backlog drained")
            return
        time.sleep(0.5)
    note("write-behind backlog still not drained; measuring anyway")


def wait_echo(child: Child, target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        echo = channel.unary_unary(ECHO_METHOD, None, None)
        wait_until(child, lambda: echo(b"", timeout=1.0) == b"", "echo server", READY_TIMEOUT_S)


def wait_service(child: Child, target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING

        def probe() -> bool:
            return bool(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0).status == serving)

        wait_until(child, probe, "service", READY_TIMEOUT_S)


def bench_customer(i: int) -> types_pb2.CustomerProfile:
    """A clone of the demo member: a gold customer who buys dresses and lives near the SoHo store."""
    return types_pb2.CustomerProfile(
        customer_id=driver.customer_id(i),
        display_name=f"Bench Customer {i}",
        tier="gold",
        lifetime_value_minor=2_500_000,
        points_balance=10_000,
        categories_purchased=["dresses"],
        currency="USD",
        home_location=HOME,
        propensity={"dresses": 0.9, "shoes": 0.35},
    )


def demo_key(data_dir: Path, role: str) -> str:
    """A demo key the service wrote at start (POS_OFFERS_DEMO_DATA=1): admin to seed, pos for the till calls."""
    secret: str = json.loads((data_dir / "demo-credentials.json").read_text())[role]["secret"]
    return secret


async def seed(target: str, customers: int, admin_key: str) -> None:
    numbers: Iterator[int] = iter(range(customers))
    async with grpc.aio.insecure_channel(target, interceptors=aio_bearer_interceptors(admin_key)) as channel:
        admin = admin_service_pb2_grpc.OfferAdminStub(channel)

        async def worker() -> None:
            for i in numbers:  # shared iterator: each number goes to exactly one worker
                request = admin_service_pb2.UpsertCustomerRequest(customer=bench_customer(i))
                await admin.UpsertCustomer(request, timeout=10.0)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(SEED_CONCURRENCY, customers)):
                    group.create_task(worker())
        except* grpc.aio.AioRpcError as failures:
            first = failures.exceptions[0]
            assert isinstance(first, grpc.aio.AioRpcError)
            raise BenchError(f"UpsertCustomer failed: {first.code().name}: {first.details()}") from None


def run_driver(target: str, workload: str, args: argparse.Namespace, api_key: str = "") -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.driver",
        f"--target={target}",
        f"--workload={workload}",
        f"--rate={args.rate}",
        f"--duration={args.duration}",
        f"--warmup={args.warmup}",
        f"--customers={args.customers}",
        f"--max-inflight={args.max_inflight}",
        f"--timeout={args.timeout}",
    ]
    budget = args.warmup + args.duration + args.timeout + 60.0
    # Own session so Ctrl-C is ours to handle; run() kills the driver if we are interrupted.
    env = {**os.environ, API_KEY_ENV: api_key}  # the till's pos key, sent to the echo server too (same bytes)
    done = subprocess.run(command, stdout=subprocess.PIPE, timeout=budget, start_new_session=True, check=False, env=env)
    if done.returncode != 0:
        raise BenchError(f"driver for {workload} exited with code {done.returncode} (its stderr is above)")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def service_available() -> bool:
    try:
        return importlib.util.find_spec("server.__main__") is not None
    except ImportError:
        return False


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "grpcio": grpc.__version__,
    }


def cleanup_redis(url: str, prefix: str) -> None:
    """Deletes the keys this run wrote under its own prefix on a shared Redis."""
    import redis  # only needed with --redis-url

    client = redis.Redis.from_url(url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
        note(f"deleted {deleted} Redis keys under {prefix}:")
    except redis.RedisError as exc:
        note(f"could not delete Redis keys under {prefix}: ({exc})")
    finally:
        client.close()


def parse_workloads(raw: str) -> list[str]:
    aliases = {name: name for name in driver.WORKLOADS}
    aliases.update({v.lower(): k for k, v in driver.DISPLAY_NAMES.items()})
    aliases["all"] = "all"
    chosen: set[str] = set()
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in aliases:
            raise argparse.ArgumentTypeError(
                f"unknown workload {part!r}; choose from all, {', '.join(driver.WORKLOADS)}"
            )
        chosen.update(driver.WORKLOADS if aliases[name] == "all" else (aliases[name],))
    # Echo always: it is the baseline the other rows are divided by. Fixed order: commit (the writer) last.
    chosen.add("echo")
    return [w for w in driver.WORKLOADS if w in chosen]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Open-loop latency benchmark of the pos-offers service against a gRPC echo baseline.",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s per workload (default 500)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per workload (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before each (default 2)")
    parser.add_argument("--customers", type=int, default=2000, help="customers to seed (default 2000)")
    parser.add_argument(
        "--workloads",
        type=parse_workloads,
        default="all",
        help="comma list of echo, list, evaluate, commit, or all (default); echo, the baseline, always runs",
    )
    parser.add_argument("--max-inflight", type=int, default=2000, help="in-flight cap per driver (default 2000)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-call deadline in seconds (default 5)")
    parser.add_argument(
        "--redis-url", default="", help="use this Redis (under a unique key prefix) instead of embedded"
    )
    parser.add_argument(
        "--service-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a POS_OFFERS_* setting for the service, e.g. ACCESS_LOG=0 (repeatable)",
    )
    parser.add_argument(
        "--writer",
        choices=("process", "inprocess"),
        default="process",
        help="the service's write-behind writer as a child process (the default) or on the server's event loop",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write every figure as JSON to FILE")
    parser.add_argument("--markdown", action="store_true", help="print the report as Markdown (for BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--rate, --duration and --timeout must be positive, --warmup not negative")
    if args.customers < 1 or args.max_inflight < 1:
        parser.error("--customers and --max-inflight must be at least 1")
    return args


@dataclass(frozen=True)
class Server:
    """A started child process and where it serves."""

    child: Child
    target: str
    metrics_listen: str = ""
    data_dir: Path | None = None  # the service's: where its demo keys are


def start_echo(tmp: Path, stack: contextlib.ExitStack) -> Server:
    target = f"127.0.0.1:{free_port()}"
    note(f"starting echo server on {target}")
    child = Child.start(
        "echo",
        [sys.executable, "-m", "bench.echo_server", f"--listen={target}"],
        tmp / "echo.log",
        env=base_env(),
        fail=bench_fail,
    )
    stack.callback(child.stop, STOP_GRACE_S, on_slow=note)
    return Server(child, target)


def service_env(
    args: argparse.Namespace, tmp: Path, target: str, metrics_listen: str, redis_prefix: str
) -> dict[str, str]:
    """The service's settings: its addresses, its data under `tmp`, demo data, and what the command line asks."""
    env = base_env()
    env.update(
        POS_OFFERS_LISTEN=target,
        POS_OFFERS_METRICS_LISTEN=metrics_listen,
        POS_OFFERS_DATA_DIR=str(tmp / "data"),
        POS_OFFERS_DEMO_DATA="1",
        # One key drives every workload at hundreds of calls a second (a whole fleet's traffic): the limits are
        # checked on every call, as in production, but set where the bench never reaches them.
        POS_OFFERS_RATE_LIMIT_PER_KEY="1000000",
    )
    if redis_prefix:
        env.update(POS_OFFERS_REDIS_URL=args.redis_url, POS_OFFERS_REDIS_PREFIX=redis_prefix)
    if args.writer == "inprocess":
        env["POS_OFFERS_WRITER_PROCESS"] = "0"
    for setting in args.service_setting:
        name, _, value = setting.partition("=")
        env[f"POS_OFFERS_{name.upper().removeprefix('POS_OFFERS_')}"] = value
    return env


def start_service(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> Server:
    target = f"127.0.0.1:{free_port()}"
    metrics_listen = f"127.0.0.1:{free_port()}"
    redis_prefix = f"bench-{uuid.uuid4().hex[:12]}" if args.redis_url else ""
    env = service_env(args, tmp, target, metrics_listen, redis_prefix)
    (tmp / "data").mkdir()
    redis_note = f"Redis {args.redis_url} prefix {redis_prefix}" if redis_prefix else "embedded Redis"
    note(f"starting service on {target} (metrics {metrics_listen}, {redis_note})")
    child = Child.start("service", [sys.executable, "-m", "server"], tmp / "service.log", env=env, fail=bench_fail)
    if redis_prefix:
        # Registered before stop so it runs after it (ExitStack is last in, first out).
        stack.callback(cleanup_redis, args.redis_url, redis_prefix)
    stack.callback(child.stop, STOP_GRACE_S, on_slow=note)
    return Server(child, target, metrics_listen, tmp / "data")


def prepare(echo: Server, service: Server | None, customers: int) -> float | None:
    """Waits until both serve, then seeds the customers and waits for the write-behind; the seconds seeding took."""
    wait_echo(echo.child, echo.target)
    note("echo server ready")
    if service is None:
        return None
    wait_service(service.child, service.target)
    note(f"service serving; seeding {customers} customers")
    started = time.monotonic()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert service.data_dir is not None
        runner.run(seed(service.target, customers, demo_key(service.data_dir, "admin")))
    seed_s = round(time.monotonic() - started, 2)
    note(f"seeded in {seed_s:.1f} s")
    wait_for_write_behind(service.child, service.metrics_listen)
    return seed_s


def run_workload(workload: str, echo: Server, service: Server | None, args: argparse.Namespace) -> dict[str, Any]:
    """One workload against its server (echo or the service), once the service is idle."""
    server = echo if workload == "echo" else service
    assert server is not None
    if service is not None:
        settle(service.child)
    server.child.check_alive()
    name = driver.DISPLAY_NAMES[workload]
    note(f"{name}: {args.rate:g}/s, {args.warmup:g} s warm-up + {args.duration:g} s measured")
    try:
        key = demo_key(service.data_dir, "pos") if service and service.data_dir else ""
        result = run_driver(server.target, workload, args, key)
    except BenchError:
        server.child.check_alive()  # a dead server explains a dead driver: show its log instead
        raise
    p99 = result["latency_us"].get("p99")
    p99_text = "–" if p99 is None else f"{p99 / 1000:.2f} ms"
    note(f"{name}: {result['throughput_rps']:.0f} ok/s, {result['error_count']} errors, p99 {p99_text}")
    return result


def figures_of(
    args: argparse.Namespace, service: Server | None, seed_s: float | None, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every figure of the run, with its configuration and what the service's metrics say."""
    scraped = report.scrape(service.metrics_listen) if service is not None else None
    rpc_counts = report.parse_rpc_counts(scraped) if scraped else None
    server_p99 = report.server_quantile_bounds(scraped) if scraped else {}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "customers": args.customers,
            "max_inflight": args.max_inflight,
            "timeout_s": args.timeout,
            "redis": None if service is None else "external" if args.redis_url else "embedded",
            "writer": args.writer,
            "workloads": args.workloads,
        },
        "seed_s": seed_s,
        "results": results,
        "server_rpc_counts": None if rpc_counts is None else {"metric": rpc_counts[0], "counts": rpc_counts[1]},
        "server_p99_bound_s": server_p99,
    }


def execute(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    workloads: list[str] = args.workloads
    need_service = any(w != "echo" for w in workloads)
    if need_service and not service_available():
        raise BenchError("the service (python -m server) is not there yet; try --workloads echo")
    echo = start_echo(tmp, stack)
    service = start_service(args, tmp, stack) if need_service else None
    seed_s = prepare(echo, service, args.customers)
    results = [run_workload(workload, echo, service, args) for workload in workloads]
    return figures_of(args, service, seed_s, results)


def render(figures: dict[str, Any], markdown: bool) -> str:
    m = figures["machine"]
    c = figures["config"]
    results = figures["results"]
    what = (
        f"open loop at {c['rate']:g} req/s per workload, one workload at a time, {c['warmup_s']:g} s warm-up "
        f"discarded + {c['duration_s']:g} s measured; latency from each request's scheduled send time "
        "(coordinated-omission corrected), successful calls only"
        + (f"; {c['redis']} Redis, write-behind writer {c['writer']}" if c["redis"] else "")
    )
    host = f"{m['cpus']} CPUs, {m['platform']}, {m['python']}, grpcio {m['grpcio']}"
    notes = []
    errors = report.error_lines(results)
    if errors:
        notes.append("errors: " + "; ".join(errors))
    notes.extend(f"{r['name']} sample: {r['sample']}" for r in results)
    counts = figures["server_rpc_counts"]
    if counts:
        listed = ", ".join(f"{method} {n:.0f}" for method, n in counts["counts"].items())
        notes.append(f"server-side RPC count ({counts['metric']}): {listed}")
    bounds = figures.get("server_p99_bound_s") or {}
    if bounds:
        listed = ", ".join(f"{method} ≤ {bound * 1000:g} ms" for method, bound in bounds.items())
        notes.append(f"server-side p99 (grpc_server_handling_seconds bucket bound, whole run): {listed}")
    if markdown:
        lines = [f"- date: {figures['date']}", f"- machine: {host}", f"- {what}", "", report.markdown_table(results)]
        lines += ["", *(f"- {n}" for n in notes)] if notes else []
    else:
        lines = [f"pos-offers bench, {figures['date']}", f"machine: {host}", what, "", report.text_table(results)]
        lines += ["", *notes] if notes else []
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM takes the Ctrl-C path so the children are stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pos-offers-bench-")))
            figures = execute(args, tmp, stack)
            note("stopping")
    except KeyboardInterrupt:
        note("interrupted; children stopped")
        return 130
    except (BenchError, subprocess.TimeoutExpired) as exc:
        note(f"failed: {exc}")
        return 1
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        note(f"figures written to {args.json}")
    print(render(figures, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
