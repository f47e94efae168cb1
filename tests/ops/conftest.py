"""Fixtures for the operations tests: promtool/prometheus (skip when missing), the real service as a subprocess.

The service runs the way production runs it (`python -m server`: its own embedded Redis under a temporary data
dir, the writer as a child process, multiprocess metrics), on free 127.0.0.1 ports, in a session of its own so
that stopping it also stops what it started. Tests reach it only through gRPC and its HTTP metrics endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from bench.processes import Child, free_port, wait_until
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.keys import keyed_channel

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"
PROMETHEUS_TEMPLATE = OPS / "prometheus" / "prometheus.yml.tmpl"
DASHBOARD = OPS / "grafana" / "pos-offers.json"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
RPC_TIMEOUT_S = 5.0
# The demo data (POS_OFFERS_DEMO_DATA=1): Samantha, the SoHo store, her offer dress-shoes-2x.
CUSTOMER = "samantha"
STORE = "soho"
INSTALL_HINT = "run scripts/ensure_prometheus.sh as root (`make test` does) or apt-get install prometheus"


def tool(name: str) -> str:
    """The path of a Prometheus tool, or skip the test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {INSTALL_HINT}")
    return path


@dataclass
class Service:
    target: str
    metrics_url: str
    child: Child
    data_dir: Path

    def key(self, role: str) -> str:
        """A demo key the service wrote at start (demo data on), as `make run` does."""
        secret: str = json.loads((self.data_dir / "demo-credentials.json").read_text())[role]["secret"]
        return secret

    def scrape(self) -> str:
        self.child.check_alive()
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text: str = response.read().decode()
            return text


def service_env(data_dir: Path, listen: str, metrics_listen: str) -> dict[str, str]:
    # Inherited POS_OFFERS_* could point the service at a real database or Redis: this one uses only its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POS_OFFERS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        PYTHONUNBUFFERED="1",
        POS_OFFERS_LISTEN=listen,
        POS_OFFERS_METRICS_LISTEN=metrics_listen,
        POS_OFFERS_DATA_DIR=str(data_dir),
        POS_OFFERS_DEMO_DATA="1",
        # drive_traffic calls about the one demo member ~100-200 times a second on one key, as no till would: the
        # default limits (5/s per customer, 100/s per key) are for real traffic; this run keeps them on but out of
        # its way.
        POS_OFFERS_RATE_LIMIT_PER_CUSTOMER="100000",
        POS_OFFERS_RATE_LIMIT_PER_KEY="100000",
    )
    return env


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return tool("prometheus")


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`python -m server` with demo data, its own data dir and free ports; SERVING before the tests get it."""
    base = tmp_path_factory.mktemp("ops-service")
    data_dir = base / "data"
    data_dir.mkdir()
    listen = f"127.0.0.1:{free_port()}"
    metrics_listen = f"127.0.0.1:{free_port()}"
    env = service_env(data_dir, listen, metrics_listen)
    command = [sys.executable, "-m", "server"]
    child = Child.start("service", command, base / "service.log", env=env, cwd=ROOT, fail=pytest.fail)
    try:
        with grpc.insecure_channel(listen) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            serving = health_pb2.HealthCheckResponse.SERVING

            def probe() -> bool:
                answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                return bool(answer.status == serving)

            wait_until(child, probe, "service (gRPC health)")
        running = Service(listen, f"http://{metrics_listen}/metrics", child, data_dir)
        wait_until(child, lambda: bool(running.scrape()), "service metrics endpoint")
        yield running
    finally:
        child.stop()


def drive_traffic(service: Service, seconds: float, pause_s: float = 0.02) -> Counter[str]:
    """Real till traffic for the demo member for about `seconds`: ListActiveOffers, EvaluateBasket, CommitPurchase
    (a fresh transaction each time), GetProfile; plus one replayed commit and one NOT_FOUND, so those series exist.
    Returns the calls made per method; any unexpected status fails the test."""
    calls: Counter[str] = Counter()
    with keyed_channel(service.target, service.key("pos")) as channel:  # a till's key, bound to the demo store
        stub = svc_grpc.OfferServiceStub(channel)
        sale = basket(CUSTOMER, DRESS, SHOES, store_id=STORE)
        first = commit_request(sale, f"ops-{uuid.uuid4().hex}")
        stub.CommitPurchase(first, timeout=RPC_TIMEOUT_S)
        replay = stub.CommitPurchase(first, timeout=RPC_TIMEOUT_S)  # a till's retry: the stored receipt
        assert replay.replayed, "the second commit of one transaction id should be a replay"
        calls["CommitPurchase"] += 2
        with pytest.raises(grpc.RpcError) as unknown:
            stub.GetProfile(svc.GetProfileRequest(customer_id=f"nobody-{uuid.uuid4().hex[:8]}"), timeout=RPC_TIMEOUT_S)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
        calls["GetProfile"] += 1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stub.ListActiveOffers(
                svc.ListActiveOffersRequest(customer_id=CUSTOMER, store_id=STORE), timeout=RPC_TIMEOUT_S
            )
            stub.EvaluateBasket(
                svc.EvaluateBasketRequest(basket=basket(CUSTOMER, DRESS, store_id=STORE)), timeout=RPC_TIMEOUT_S
            )
            stub.CommitPurchase(commit_request(sale, f"ops-{uuid.uuid4().hex}"), timeout=RPC_TIMEOUT_S)
            stub.GetProfile(svc.GetProfileRequest(customer_id=CUSTOMER), timeout=RPC_TIMEOUT_S)
            for method in ("ListActiveOffers", "EvaluateBasket", "CommitPurchase", "GetProfile"):
                calls[method] += 1
            time.sleep(pause_s)  # paces the traffic over the scrapes: the spread in time is the point, no wait
    return calls
