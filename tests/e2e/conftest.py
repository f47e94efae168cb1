"""End-to-end fixtures: a demo-data server per test module, shared read-only; each test makes its own members.

A test that changes what every member sees (offers, stores, the tier policy, an expiry run) starts its own server
with `make_server` (tests/conftest.py) instead; a check after each test on the shared server fails a test that
changed its catalog all the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from server.demo import demo_customer
from server.rpc.convert import customer_to_pb
from tests.conftest import build_settings
from tests.support.redis_env import delete_prefix
from tests.support.server_thread import ServerThread, channel_to


@pytest.fixture(scope="module")
def demo_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The demo data (store soho, offer dress-shoes-2x, member samantha) for one module's tests, read-only."""
    data_dir: Path = tmp_path_factory.mktemp("demo-server")
    server = ServerThread(build_settings(redis_url, data_dir, demo_data=True))
    yield server
    server.stop()
    delete_prefix(redis_url, server.settings.redis_prefix)


def catalog_version(server: ServerThread) -> int:
    return server.run(server.service.components.customers_store.catalog_version())


@pytest.fixture(autouse=True)
def demo_server_stays_read_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every change to offers, stores or the tier policy moves the catalog version: a test that moved the shared
    server's fails here, so that it gets a server of its own rather than changing what the next test sees."""
    if "demo_server" not in request.fixturenames:
        yield
        return
    server: ServerThread = request.getfixturevalue("demo_server")
    before = catalog_version(server)
    yield
    after = catalog_version(server)
    assert after == before, (
        f"{request.node.nodeid} changed the catalog of its module's shared demo server (version {before} -> "
        f"{after}): start a server of its own with make_server"
    )


@pytest.fixture(scope="module")
def server_target(demo_server: ServerThread) -> str:
    return demo_server.target


@pytest.fixture(scope="module")
def admin_stub(server_target: str) -> Iterator[admin_grpc.OfferAdminStub]:
    with channel_to(server_target) as channel:
        yield admin_grpc.OfferAdminStub(channel)


def clone_samantha(
    admin: admin_grpc.OfferAdminStub,
    *,
    tier: str | None = None,
    lifetime_value_minor: int | None = None,
    categories_purchased: Sequence[str] | None = None,
    home_location: pb.GeoPoint | None = None,
) -> str:
    """A new member like the demo one (gold, LTV USD 25,000, only dresses, 2.3 km from SoHo) under a fresh id, but
    for what is given."""
    customer_id = f"cust-{uuid.uuid4().hex[:12]}"
    profile = customer_to_pb(demo_customer(customer_id))
    if tier is not None:
        profile.tier = tier
    if lifetime_value_minor is not None:
        profile.lifetime_value_minor = lifetime_value_minor
    if categories_purchased is not None:
        del profile.categories_purchased[:]
        profile.categories_purchased.extend(categories_purchased)
    if home_location is not None:
        profile.home_location.CopyFrom(home_location)
    admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile))
    return customer_id


@pytest.fixture
def fresh_customer_id(admin_stub: admin_grpc.OfferAdminStub) -> str:
    return clone_samantha(admin_stub)


@dataclass
class Visit:
    """A server, its two stubs on one channel, and a fresh demo member: what most end-to-end tests start from."""

    server: ServerThread
    till: svc_grpc.OfferServiceStub
    admin: admin_grpc.OfferAdminStub
    member: str

    def profile(self, customer_id: str = "") -> pb.CustomerProfile:
        return self.till.GetProfile(svc.GetProfileRequest(customer_id=customer_id or self.member))

    def another_member(self) -> str:
        return clone_samantha(self.admin)


@contextmanager
def visit(server: ServerThread) -> Iterator[Visit]:
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        yield Visit(server, svc_grpc.OfferServiceStub(channel), admin, clone_samantha(admin))
