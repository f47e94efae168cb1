"""Points expire after a period without purchases: shown on the profile beforehand, taken once by the job."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from server.demo import demo_customer
from server.rpc.convert import customer_to_pb
from tests.e2e.conftest import clone_samantha, visit
from tests.integration.sql_queries import ledger_balance
from tests.support.builders import DRESS, basket, commit_request
from tests.support.server_thread import ServerThread


def test_inactive_members_points_expire_once_and_active_members_keep_theirs(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, points_expire_after_days=1, points_expiring_soon_days=30)
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        till = svc_grpc.OfferServiceStub(channel)
        idle, active = clone_samantha(admin), clone_samantha(admin)
        old_sale = commit_request(basket(idle, DRESS))
        old_sale.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=2))  # an offline till, 2 days ago
        till.CommitPurchase(old_sale)
        till.CommitPurchase(commit_request(basket(active, DRESS)))

        warned = till.GetProfile(svc.GetProfileRequest(customer_id=idle))
        assert warned.points_expiring == 620 and warned.points_expire_at.ToDatetime(tzinfo=UTC) < datetime.now(UTC)
        server.drain()  # the job finds candidates in SQL

        report = admin.ExpirePoints(admin_pb.ExpirePointsRequest())
        assert (report.customers_expired, report.points_expired) == (1, 620)
        assert till.GetProfile(svc.GetProfileRequest(customer_id=idle)).points_balance == 0
        assert till.GetProfile(svc.GetProfileRequest(customer_id=active)).points_balance == 620

        server.drain()
        again = admin.ExpirePoints(admin_pb.ExpirePointsRequest())  # safe to run twice
        assert again.points_expired == 0
        engine = server.service.components.sql_engine
        assert ledger_balance(engine, idle) == 0 and ledger_balance(engine, active) == 620


def test_expiry_is_off_by_default(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    with server.channel() as channel, pytest.raises(grpc.RpcError) as err:
        admin_grpc.OfferAdminStub(channel).ExpirePoints(admin_pb.ExpirePointsRequest())
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_points_that_come_back_after_an_expiry_expire_again_in_redis_and_sql(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, points_expire_after_days=1)
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        till = svc_grpc.OfferServiceStub(channel)
        idle = clone_samantha(admin)
        old_sale = commit_request(basket(idle, DRESS))
        old_sale.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=2))
        till.CommitPurchase(old_sale)
        server.drain()
        assert admin.ExpirePoints(admin_pb.ExpirePointsRequest()).points_expired == 620
        # An operator gives her points back, still without a purchase.
        admin.AdjustPoints(
            admin_pb.AdjustPointsRequest(adjustment_id=f"adj-{idle}", customer_id=idle, points=300, reason="goodwill")
        )
        server.drain()
        assert admin.ExpirePoints(admin_pb.ExpirePointsRequest()).points_expired == 300
        server.drain()
        assert ledger_balance(server.service.components.sql_engine, idle) == 0  # SQL took both, not only the first


def test_lapsed_members_rebuilt_only_for_the_job_leave_redis_again_unless_they_buy(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, points_expire_after_days=1)
    customers = server.service.components.customers_store
    with visit(server) as v:
        admin, till = v.admin, v.till
        lapsed, returning = v.member, v.another_member()
        for member in (lapsed, returning):
            old_sale = commit_request(basket(member, DRESS))
            old_sale.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=2))
            till.CommitPurchase(old_sale)
        server.drain()
        for member in (lapsed, returning):  # as after a Redis restart, or long ago: only SQL holds them
            server.run(customers.forget_customer(member))

        assert admin.ExpirePoints(admin_pb.ExpirePointsRequest()).points_expired == 2 * 620

        def ttl(member: str) -> int:
            async def read() -> int:
                return int(await customers.redis.ttl(customers.keys.customer(member).profile))

            return server.run(read())

        assert 0 < ttl(lapsed) <= 3600 and 0 < ttl(returning) <= 3600  # rebuilt for the job only
        till.CommitPurchase(commit_request(basket(returning, DRESS)))
        assert ttl(returning) == -1  # she bought: Redis keeps her
        assert ttl(lapsed) > 0
        assert till.GetProfile(svc.GetProfileRequest(customer_id=lapsed)).points_balance == 0


def test_a_crm_import_as_her_job_lifetime_runs_out_rebuilds_her_instead_of_doubling_sql(
    make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member rebuilt for the expiry job leaves Redis after an hour; an import landing just then must not create
    her from scratch (SQL would get her whole balance and lifetime value again as deltas)."""
    server = make_server(demo_data=True, points_expire_after_days=30)
    customers = server.service.components.customers_store
    cid = f"cust-ttl-{uuid.uuid4().hex[:8]}"
    k = customers.keys.customer(cid)
    with server.channel() as channel:
        admin, till = admin_grpc.OfferAdminStub(channel), svc_grpc.OfferServiceStub(channel)
        profile = customer_to_pb(demo_customer(cid))
        admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile))
        sale = commit_request(basket(cid, DRESS))
        till.CommitPurchase(sale)
        server.drain()
        server.run(customers.forget_customer(cid))
        server.run(server.service.components.customers.rehydrate(cid, keep_s=3600))  # as the expiry job does
        before = till.GetProfile(svc.GetProfileRequest(customer_id=cid))

        upsert = customers.upsert_customer

        fired: list[int] = []

        async def lifetime_ends_now(state: Any, record: Any, **kw: Any) -> Any:
            # The hour is up between OffersApp.upsert_customer's read and the script.
            if fired:
                return await upsert(state, record, **kw)
            fired.append(1)
            for key in (k.profile, k.categories, k.offer_uses, k.ledger):
                # An expiry time already past: Redis lets the key go at once, with no wait for a clock to tick.
                await customers.redis.pexpireat(key, 1)
            return await upsert(state, record, **kw)

        with monkeypatch.context() as patched:
            patched.setattr(customers, "upsert_customer", lifetime_ends_now)
            changed = admin_pb.UpsertCustomerRequest(customer=before)
            changed.customer.display_name = "Renamed"
            admin.UpsertCustomer(changed)
        in_redis = till.GetProfile(svc.GetProfileRequest(customer_id=cid))
        assert in_redis.display_name == "Renamed" and in_redis.points_balance == before.points_balance
        server.drain()
        snap = server.service.components.sql_profiles.load_customer(
            cid, receipts_since=datetime.now(UTC) - timedelta(days=1)
        )
        assert snap is not None
        assert snap.points_balance == before.points_balance, (before.points_balance, snap.points_balance)
