"""Exactly once: replays, conflicting reuse of an id, racing tills, and a Redis that lost the customer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from domain.model import PurchaseKey
from server.demo import demo_customer
from server.rpc.convert import customer_to_pb
from tests.e2e.conftest import clone_samantha
from tests.integration.sql_queries import ledger_balance, list_categories
from tests.support.builders import DRESS, SHOES, basket, commit_request, demo_offer
from tests.support.server_thread import ServerThread, aio_channel_to, channel_to


@pytest.fixture(scope="module")
def stub(server_target: str) -> Iterator[svc_grpc.OfferServiceStub]:
    with channel_to(server_target) as channel:
        yield svc_grpc.OfferServiceStub(channel)


def balance(stub: svc_grpc.OfferServiceStub, customer_id: str) -> int:
    return stub.GetProfile(svc.GetProfileRequest(customer_id=customer_id)).points_balance


def test_same_id_with_another_basket_is_refused_and_changes_nothing(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str
) -> None:
    first = commit_request(basket(fresh_customer_id, DRESS))
    stub.CommitPurchase(first)
    credited = balance(stub, fresh_customer_id)
    other = commit_request(basket(fresh_customer_id, DRESS, SHOES), first.transaction_id)
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitPurchase(other)
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "different basket" in (err.value.details() or "")
    assert balance(stub, fresh_customer_id) == credited


def test_same_id_for_another_customer_is_refused(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub
) -> None:
    alice, bob = clone_samantha(admin_stub), clone_samantha(admin_stub)
    request = commit_request(basket(alice, DRESS))
    stub.CommitPurchase(request)
    bob_before = balance(stub, bob)
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitPurchase(commit_request(basket(bob, DRESS), request.transaction_id))
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert balance(stub, bob) == bob_before


async def _commit_all(target: str, requests: list[svc.CommitPurchaseRequest]) -> list[object]:
    async with aio_channel_to(target) as channel:
        aio_stub = svc_grpc.OfferServiceStub(channel)
        calls = [aio_stub.CommitPurchase(r, timeout=30) for r in requests]
        return await asyncio.gather(*calls, return_exceptions=True)


def test_a_hundred_concurrent_identical_commits_pay_once(
    stub: svc_grpc.OfferServiceStub, server_target: str, fresh_customer_id: str
) -> None:
    before = balance(stub, fresh_customer_id)
    request = commit_request(basket(fresh_customer_id, DRESS, SHOES))
    results = asyncio.run(_commit_all(server_target, [request] * 100))
    receipts = [r for r in results if isinstance(r, svc.PurchaseReceipt)]
    assert len(receipts) == 100, [r for r in results if not isinstance(r, svc.PurchaseReceipt)][:3]
    assert sum(not r.replayed for r in receipts) == 1
    assert {r.evaluation.balance_after for r in receipts} == {before + 329}
    assert balance(stub, fresh_customer_id) == before + 329


def test_concurrent_redemptions_never_overdraw(
    stub: svc_grpc.OfferServiceStub, server_target: str, fresh_customer_id: str
) -> None:
    # 500 points; each purchase (USD 1.50) redeems 100 (USD 1.00) and earns nothing on the 0.50 paid in money:
    # exactly five can be paid, whatever the order.
    assert balance(stub, fresh_customer_id) == 500
    item = ("cheap-1", "SKU-SOCKS", "socks", 1, 150)
    requests = [commit_request(basket(fresh_customer_id, item, points_to_redeem=100)) for _ in range(20)]
    results = asyncio.run(_commit_all(server_target, requests))
    paid = [r for r in results if isinstance(r, svc.PurchaseReceipt)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(paid) == 5 and len(refused) == 15
    assert {e.code() for e in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert all(r.evaluation.balance_after >= 0 for r in paid)
    assert balance(stub, fresh_customer_id) == 500 - 5 * 100 + 0


def test_redis_losing_the_customer_rebuilds_her_from_sql_and_old_ids_still_pay_nothing(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str, demo_server: ServerThread
) -> None:
    request = commit_request(basket(fresh_customer_id, DRESS, SHOES))
    stub.CommitPurchase(request)
    profile = stub.GetProfile(svc.GetProfileRequest(customer_id=fresh_customer_id))
    demo_server.drain()

    customers = demo_server.service.components.customers_store
    demo_server.run(
        customers.forget_customer(fresh_customer_id, [PurchaseKey(request.basket.store_id, request.transaction_id)])
    )
    assert demo_server.run(customers.read(fresh_customer_id)).state is None

    rebuilt = stub.GetProfile(svc.GetProfileRequest(customer_id=fresh_customer_id))
    assert rebuilt.points_balance == profile.points_balance
    assert rebuilt.lifetime_value_minor == profile.lifetime_value_minor
    assert sorted(rebuilt.categories_purchased) == sorted(profile.categories_purchased)
    assert rebuilt.purchase_count == profile.purchase_count

    replay = stub.CommitPurchase(request)
    assert replay.replayed
    assert balance(stub, fresh_customer_id) == profile.points_balance


def test_upserting_a_customer_keeps_sql_ledger_equal_to_balance(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub, demo_server: ServerThread
) -> None:
    member = clone_samantha(admin_stub)
    stub.CommitPurchase(commit_request(basket(member, DRESS, SHOES)))
    earned = stub.GetProfile(svc.GetProfileRequest(customer_id=member)).points_balance
    profile = customer_to_pb(demo_customer(member))
    profile.points_balance = earned  # the CRM re-sends her balance unchanged, with a new name
    profile.display_name = "Sam"
    admin_stub.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile))
    after = stub.GetProfile(svc.GetProfileRequest(customer_id=member))
    assert (after.points_balance, after.display_name) == (earned, "Sam")
    assert "shoes" in after.categories_purchased  # an import adds categories, never forgets purchases
    demo_server.drain()
    assert ledger_balance(demo_server.service.components.sql_engine, member) == earned


def test_writer_restart_loses_nothing(make_server: Callable[..., ServerThread]) -> None:
    # A server whose writer is off accepts purchases; they wait in the outbox, not in SQL.
    first = make_server(writer_enabled=False, demo_data=True)
    with first.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        admin = admin_grpc.OfferAdminStub(channel)
        members = [clone_samantha(admin) for _ in range(3)]
        for member in members:
            till.CommitPurchase(commit_request(basket(member, DRESS, SHOES)))
    assert first.run(first.service.components.writer.backlog()) >= 3 + 3
    assert all(ledger_balance(first.service.components.sql_engine, member) == 0 for member in members)
    settings = first.settings
    first.stop()

    # A new process with the writer on (same Redis, same SQL) writes every one of them, once.
    second = make_server(
        writer_enabled=True,
        redis_prefix=settings.redis_prefix,
        database_url=settings.database_url,
        writer_claim_idle_ms=0,
    )
    second.drain()
    engine = second.service.components.sql_engine
    for member in members:
        assert ledger_balance(engine, member) == 500 + 329
        assert "shoes" in list_categories(engine, member)


def test_unknown_customer_commit_is_not_found_and_frees_the_id(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str
) -> None:
    request = commit_request(basket("nobody-" + fresh_customer_id, DRESS))
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitPurchase(request)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    # The id was not burnt: the same terminal can reuse it for the right customer.
    retry = commit_request(basket(fresh_customer_id, DRESS), request.transaction_id)
    assert not stub.CommitPurchase(retry).replayed


def test_channel_restricted_offers_follow_the_channel(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)  # its own: a new offer changes what every member is offered
    offer = demo_offer(datetime.now(UTC))
    offer.offer_id = "app-only-offer"
    offer.eligibility.channels[:] = [pb.CHANNEL_APP]
    with server.channel() as grpc_channel:
        admin_stub, stub = admin_grpc.OfferAdminStub(grpc_channel), svc_grpc.OfferServiceStub(grpc_channel)
        admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        member = clone_samantha(admin_stub)

        def ids(channel: pb.Channel.ValueType) -> set[str]:
            request = svc.ListActiveOffersRequest(customer_id=member, channel=channel)
            return {o.offer_id for o in stub.ListActiveOffers(request).offers}

        assert offer.offer_id in ids(pb.CHANNEL_APP)
        assert offer.offer_id not in ids(pb.CHANNEL_POS)
        # At the till (POS) the app-only offer is not applied either.
        evaluation = stub.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(member, DRESS, SHOES)))
        assert offer.offer_id not in {a.offer_id for a in evaluation.applied_offers}


def test_a_customer_lost_while_her_purchase_waits_for_sql_is_not_rebuilt_without_it(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(writer_enabled=False, demo_data=True)
    with server.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        member = clone_samantha(admin_grpc.OfferAdminStub(channel))
        request = commit_request(basket(member, DRESS, SHOES))
        till.CommitPurchase(request)
        server.run(
            server.service.components.customers_store.forget_customer(
                member, [PurchaseKey(request.basket.store_id, request.transaction_id)]
            )
        )
        # SQL does not have her purchase yet: rebuilding now would pay the replay again, so she must wait.
        with pytest.raises(grpc.RpcError) as err:
            till.CommitPurchase(request)
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        server.drain()
        replay = till.CommitPurchase(request)
        assert replay.replayed
        assert balance(till, member) == 500 + 329
