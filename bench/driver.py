"""Open-loop load driver: one workload at a fixed rate against one target, results as JSON on stdout.

`python -m bench` runs it in a process of its own so that its CPU is not the orchestrator's. It also works alone:
    python -m bench.driver --target 127.0.0.1:50051 --workload evaluate --rate 200 --duration 10

Request k is due at t0 + k/rate whatever happened to earlier ones, and its latency is measured from that due time,
not from when it actually left: a stalled server or a late driver shows up in the figures instead of silently
lowering the offered load (coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import uvloop
from hdrh.histogram import HdrHistogram
from posoffers.v1 import offer_service_pb2, types_pb2

from bench.echo_server import FULL_METHOD as ECHO_METHOD
from client.auth import api_key_from_env, bearer_metadata

WORKLOADS = ("echo", "list", "evaluate", "commit")
"""Run order too: the baseline first, the one RPC that writes last."""
DISPLAY_NAMES = {
    "echo": "Echo",
    "list": "ListActiveOffers",
    "evaluate": "EvaluateBasket",
    "commit": "CommitPurchase",
}

CUSTOMER_PREFIX = "bench-"
STORE_ID = "soho"
TERMINAL_ID = "t1"
CURRENCY = "USD"
# A few hundred metres from the SoHo store (40.7233,-74.0030): inside any "near the store" radius.
NEAR_SOHO = (40.7251, -74.0018)

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
SAMPLE_TIMEOUT_S = 10.0
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}

_OFFER_SERVICE = offer_service_pb2.DESCRIPTOR.services_by_name["OfferService"].full_name


def customer_id(i: int) -> str:
    return f"{CUSTOMER_PREFIX}{i}"


def method_path(workload: str) -> str:
    if workload == "echo":
        return ECHO_METHOD
    return f"/{_OFFER_SERVICE}/{DISPLAY_NAMES[workload]}"


def basket(customer: str) -> types_pb2.Basket:
    """A dress and a pair of shoes at the SoHo till: what the demo offer dress-shoes-2x is about."""
    return types_pb2.Basket(
        customer_id=customer,
        store_id=STORE_ID,
        terminal_id=TERMINAL_ID,
        currency=CURRENCY,
        lines=[
            types_pb2.LineItem(line_id="1", sku="DRESS-0042", category="dresses", quantity=1, unit_price_minor=12_000),
            types_pb2.LineItem(line_id="2", sku="SHOE-0107", category="shoes", quantity=1, unit_price_minor=8_900),
        ],
    )


def list_request(customer: str) -> offer_service_pb2.ListActiveOffersRequest:
    return offer_service_pb2.ListActiveOffersRequest(
        customer_id=customer,
        channel=types_pb2.CHANNEL_APP,
        location=types_pb2.GeoPoint(latitude=NEAR_SOHO[0], longitude=NEAR_SOHO[1]),
    )


RequestFactory = Callable[[int], bytes]
"""Request number -> serialized request."""


def request_factory(workload: str, customers: int, run_id: str, rng: random.Random) -> RequestFactory:
    """Requests are serialized up front where they can be, so the driver's per-request cost is the same
    (bytes in, bytes out) for every workload and the echo baseline compares like with like."""
    if workload == "echo":
        # As many bytes as a typical basket request, so the wire cost matches too.
        payload = offer_service_pb2.EvaluateBasketRequest(basket=basket(customer_id(0))).SerializeToString()
        return lambda k: payload
    if workload == "list":
        lists = [list_request(customer_id(i)).SerializeToString() for i in range(customers)]
        return lambda k: lists[rng.randrange(customers)]
    if workload == "evaluate":
        evaluations = [
            offer_service_pb2.EvaluateBasketRequest(basket=basket(customer_id(i))).SerializeToString()
            for i in range(customers)
        ]
        return lambda k: evaluations[rng.randrange(customers)]
    if workload == "commit":
        baskets = [basket(customer_id(i)) for i in range(customers)]

        def commit(k: int) -> bytes:
            # A fresh transaction id each time: a replayed id would measure the idempotency shortcut instead.
            request = offer_service_pb2.CommitPurchaseRequest(
                transaction_id=f"{run_id}-{k}", basket=baskets[rng.randrange(customers)]
            )
            return request.SerializeToString()

        return commit
    raise ValueError(f"unknown workload {workload!r}")


async def sample(channel: grpc.aio.Channel, workload: str, run_id: str) -> str:
    """One typed call before the run, to show the workload does real work (offers found, points earned)."""
    customer = customer_id(0)
    try:
        if workload == "echo":
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD, None, None)
            reply = await echo(b"ping", timeout=SAMPLE_TIMEOUT_S, metadata=METADATA)
            return f"echoed {len(reply)} bytes"
        if workload == "list":
            offers = await _typed(channel, workload, list_request(customer), offer_service_pb2.ListActiveOffersResponse)
            return f"{len(offers.offers)} offer(s): " + ", ".join(o.offer_id for o in offers.offers)
        if workload == "evaluate":
            request = offer_service_pb2.EvaluateBasketRequest(basket=basket(customer))
            evaluation = await _typed(channel, workload, request, types_pb2.BasketEvaluation)
            return _describe(evaluation)
        commit = offer_service_pb2.CommitPurchaseRequest(transaction_id=f"{run_id}-sample", basket=basket(customer))
        receipt = await _typed(channel, workload, commit, offer_service_pb2.PurchaseReceipt)
        return _describe(receipt.evaluation)
    except grpc.aio.AioRpcError as exc:
        return f"sample call failed: {exc.code().name}: {exc.details()}"


async def _typed(channel: grpc.aio.Channel, workload: str, request: Any, response_type: Any) -> Any:
    call: grpc.aio.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        method_path(workload),
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return await call(request, timeout=SAMPLE_TIMEOUT_S, metadata=METADATA)


def _describe(evaluation: types_pb2.BasketEvaluation) -> str:
    applied = ", ".join(a.offer_id for a in evaluation.applied_offers) or "none"
    return f"applied: {applied}; points earned {evaluation.points_earned}"


# Every call carries the till's key (POS_OFFERS_API_KEY, set by `make bench`), the echo server's too, so the
# baseline sends the same bytes.
_SECRET = api_key_from_env()
METADATA = (bearer_metadata(_SECRET),) if _SECRET else ()


@dataclass(frozen=True, slots=True)
class Plan:
    target: str
    workload: str
    rate: float
    duration: float
    warmup: float
    customers: int
    max_inflight: int
    timeout: float
    seed: int


def new_histogram() -> Any:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record(histogram: Any, seconds: float) -> None:
    histogram.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6))))


def summarize(histogram: Any) -> dict[str, float]:
    if histogram.get_total_count() == 0:
        return {}
    figures = {name: float(histogram.get_value_at_percentile(p)) for name, p in PERCENTILES.items()}
    figures["max"] = float(histogram.get_max_value())
    figures["mean"] = round(float(histogram.get_mean_value()), 1)
    return figures


class OpenLoop:
    """Sends plan.rate requests per second for warmup + duration seconds; records only the measured part."""

    def __init__(self, plan: Plan, call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], make: RequestFactory) -> None:
        self.plan = plan
        self.call = call
        self.make = make
        self.latency = new_histogram()
        self.send_lag = new_histogram()
        self.errors: Counter[str] = Counter()
        self.ok = self.dropped = self.sent = self.warmup_sent = 0
        self.total = round((plan.warmup + plan.duration) * plan.rate)
        self.first_measured = round(plan.warmup * plan.rate)
        self.tasks: set[asyncio.Task[None]] = set()

    async def one(self, request: bytes, due: float, measured: bool) -> None:
        try:
            await self.call(request, timeout=self.plan.timeout, metadata=METADATA)
        except grpc.aio.AioRpcError as exc:
            if measured:
                self.errors[exc.code().name] += 1
        except Exception as exc:  # a broken client must show up as errors, not as a missing tail
            if measured:
                self.errors[type(exc).__name__] += 1
        else:
            if measured:
                record(self.latency, time.perf_counter() - due)
                self.ok += 1

    def launch(self, k: int, due: float, now: float) -> None:
        measured = k >= self.first_measured
        if len(self.tasks) >= self.plan.max_inflight:
            if measured:
                self.dropped += 1
            return
        if measured:
            record(self.send_lag, now - due)
            self.sent += 1
        else:
            self.warmup_sent += 1
        task = asyncio.create_task(self.one(self.make(k), due, measured))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def schedule(self) -> None:
        interval = 1.0 / self.plan.rate
        t0 = time.perf_counter() + 0.05
        k = 0
        while k < self.total:
            now = time.perf_counter()
            due = t0 + k * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # Everything due by now goes out at once; how late it leaves is charged to its latency.
            while k < self.total and (due := t0 + k * interval) <= now:
                self.launch(k, due, now)
                k += 1

    async def drain(self) -> None:
        """Every call carries a deadline so this ends; the margin only covers a wedged client."""
        if not self.tasks:
            return
        _, late = await asyncio.wait(self.tasks, timeout=self.plan.timeout + 5.0)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if late:
            self.errors["UNFINISHED"] += len(late)


async def run(plan: Plan) -> dict[str, Any]:
    run_id = f"bench-{uuid.uuid4().hex[:12]}"
    make = request_factory(plan.workload, plan.customers, run_id, random.Random(plan.seed))
    async with grpc.aio.insecure_channel(plan.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10.0)
        # Also warms the connection and the server's code paths before the clock starts.
        sample_text = await sample(channel, plan.workload, run_id)
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            method_path(plan.workload), request_serializer=None, response_deserializer=None
        )
        loop = OpenLoop(plan, call, make)
        gc.collect()
        gc.freeze()  # setup objects stay out of the collector's way during the run
        await loop.schedule()
        schedule_end = time.perf_counter()
        await loop.drain()
        drain_s = time.perf_counter() - schedule_end
        gc.unfreeze()

    errors = loop.errors
    return {
        "workload": plan.workload,
        "name": DISPLAY_NAMES[plan.workload],
        "method": method_path(plan.workload),
        "target": plan.target,
        "rate": plan.rate,
        "duration_s": plan.duration,
        "warmup_s": plan.warmup,
        "max_inflight": plan.max_inflight,
        "timeout_s": plan.timeout,
        "scheduled": loop.total - loop.first_measured,
        "sent": loop.sent,
        "warmup_sent": loop.warmup_sent,
        "ok": loop.ok,
        "errors": dict(sorted(errors.items())),
        "error_count": sum(errors.values()),
        "dropped": loop.dropped,
        "throughput_rps": round(loop.ok / plan.duration, 1),
        "latency_us": summarize(loop.latency),
        "send_lag_us": summarize(loop.send_lag),
        "drain_s": round(drain_s, 3),
        "histogram": loop.latency.encode().decode("ascii") if loop.ok else "",
        "sample": sample_text,
    }


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench.driver", description="Open-loop gRPC load driver")
    parser.add_argument("--target", required=True, help="host:port of the server")
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (default 500)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent first and discarded (default 2)")
    parser.add_argument("--customers", type=int, default=2000, help="customers bench-0..N-1 to pick from")
    parser.add_argument("--max-inflight", type=int, default=2000, help="beyond this, due requests are dropped")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-call deadline in seconds (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for customer choice")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rate and --duration must be positive, --warmup not negative")
    if args.customers < 1 or args.max_inflight < 1 or args.timeout <= 0:
        parser.error("--customers, --max-inflight and --timeout must be positive")
    return Plan(
        target=args.target,
        workload=args.workload,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        customers=args.customers,
        max_inflight=args.max_inflight,
        timeout=args.timeout,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(plan))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
