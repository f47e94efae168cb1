"""Returns and voids at the till: exactly the points those lines earned come back, never below zero, once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from domain.ids import void_return_id
from domain.model import PurchaseKey
from server.demo import OFFER_ID
from tests.e2e.conftest import clone_samantha, visit
from tests.integration.sql_queries import ledger_balance, list_categories
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread, aio_channel_to, channel_to


@pytest.fixture(scope="module")
def stub(server_target: str) -> Iterator[svc_grpc.OfferServiceStub]:
    with channel_to(server_target) as channel:
        yield svc_grpc.OfferServiceStub(channel)


def profile(stub: svc_grpc.OfferServiceStub, customer_id: str) -> pb.CustomerProfile:
    return stub.GetProfile(svc.GetProfileRequest(customer_id=customer_id))


def return_request(
    customer_id: str,
    purchase: svc.CommitPurchaseRequest,
    *lines: tuple[str, int],
    return_id: str | None = None,
    returning_store_id: str = "",
) -> svc.ReturnPurchaseRequest:
    """A return of `purchase`'s lines, naming it as its receipt prints it: its store and transaction id."""
    return svc.ReturnPurchaseRequest(
        return_id=f"ret-{uuid.uuid4().hex[:12]}" if return_id is None else return_id,
        transaction_id=purchase.transaction_id,
        store_id=purchase.basket.store_id,
        customer_id=customer_id,
        lines=[svc.ReturnLine(line_id=line_id, quantity=qty) for line_id, qty in lines],
        returning_store_id=returning_store_id,
    )


def void_request(customer_id: str, purchase: svc.CommitPurchaseRequest) -> svc.VoidPurchaseRequest:
    return svc.VoidPurchaseRequest(
        transaction_id=purchase.transaction_id, store_id=purchase.basket.store_id, customer_id=customer_id
    )


def test_returning_the_shoes_takes_back_their_points_and_the_dress_bonus(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str, demo_server: ServerThread
) -> None:
    member = fresh_customer_id
    before = profile(stub, member)
    purchase = commit_request(basket(member, DRESS, SHOES))
    stub.CommitPurchase(purchase)

    shoes_back = return_request(member, purchase, ("shoes-1", 1))
    receipt = stub.ReturnPurchase(shoes_back)
    assert receipt.points_reversed == 89 + 120  # the shoes' base points and the dress's double-points bonus
    assert list(receipt.offers_lost) == [OFFER_ID]
    assert receipt.value_minor == 8_900
    assert receipt.balance_after == before.points_balance + 329 - 209
    assert any("no longer applies" in e or OFFER_ID in e or "Double points" in e for e in receipt.explanations)

    # A retried return is the same receipt, marked replayed, and changes nothing.
    again = stub.ReturnPurchase(shoes_back)
    assert again.replayed and again.points_reversed == receipt.points_reversed
    # The same return id for other lines is refused.
    with pytest.raises(grpc.RpcError) as err:
        stub.ReturnPurchase(return_request(member, purchase, ("dress-1", 1), return_id=shoes_back.return_id))
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS

    dress_back = stub.ReturnPurchase(return_request(member, purchase, ("dress-1", 1)))
    assert dress_back.points_reversed == 120
    after = profile(stub, member)
    assert after.points_balance == before.points_balance
    assert after.lifetime_value_minor == before.lifetime_value_minor

    with pytest.raises(grpc.RpcError) as err:
        stub.ReturnPurchase(return_request(member, purchase, ("dress-1", 1)))
    assert err.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)

    demo_server.drain()
    repo = demo_server.service.components.sql_profiles
    snapshot = repo.load_customer(member, receipts_since=datetime.now(UTC) - timedelta(days=1))
    assert snapshot is not None
    assert snapshot.points_balance == after.points_balance and snapshot.points_debt == 0
    assert ledger_balance(demo_server.service.components.sql_engine, member) == after.points_balance
    assert snapshot.lifetime_value_minor == before.lifetime_value_minor


def test_a_return_never_drives_the_balance_below_zero_and_the_debt_is_repaid_first(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str, demo_server: ServerThread
) -> None:
    member = fresh_customer_id  # 500 points
    first = commit_request(basket(member, DRESS, SHOES))
    stub.CommitPurchase(first)  # +329 = 829
    # She spends her whole balance on a gift paid entirely with points (100 points = USD 1.00).
    balance = profile(stub, member).points_balance
    gift = ("gift-1", "SKU-GIFT", "gifts", 1, balance)
    stub.CommitPurchase(commit_request(basket(member, gift, points_to_redeem=balance)))
    low = profile(stub, member)
    assert low.points_balance < 329

    receipt = stub.ReturnPurchase(return_request(member, first, ("dress-1", 1), ("shoes-1", 1)))
    assert receipt.points_reversed == 329
    assert receipt.balance_after == 0
    assert receipt.points_debt_after == 329 - low.points_balance
    assert any("debt" in e for e in receipt.explanations)
    owed = profile(stub, member)
    assert owed.points_balance == 0 and owed.points_debt == receipt.points_debt_after

    # The next purchase pays the debt back before anything reaches the balance.
    later = stub.CommitPurchase(commit_request(basket(member, ("belt-1", "SKU-BELT", "belts", 1, 50_000))))
    repaid = later.evaluation.points_debt_repaid
    assert repaid == min(owed.points_debt, later.evaluation.points_earned)
    now = profile(stub, member)
    assert now.points_debt == owed.points_debt - repaid
    assert now.points_balance == later.evaluation.points_earned - repaid

    demo_server.drain()
    engine = demo_server.service.components.sql_engine
    assert ledger_balance(engine, member) == now.points_balance - now.points_debt


def test_bad_returns_are_refused_naming_the_field(stub: svc_grpc.OfferServiceStub, fresh_customer_id: str) -> None:
    purchase = commit_request(basket(fresh_customer_id, DRESS))
    stub.CommitPurchase(purchase)
    cases = [
        (return_request(fresh_customer_id, purchase, ("dress-1", 2)), "lines[0].quantity"),
        (return_request(fresh_customer_id, purchase, ("nope", 1)), "lines[0].line_id"),
        (return_request(fresh_customer_id, purchase), "lines"),
        (return_request(fresh_customer_id, purchase, ("dress-1", 1), return_id=""), "return_id"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.ReturnPurchase(request)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
        assert (err.value.details() or "").startswith(field), err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        never = commit_request(basket(fresh_customer_id, DRESS), "txn-that-never-was")
        stub.ReturnPurchase(return_request(fresh_customer_id, never, ("dress-1", 1)))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_another_customers_purchase_cannot_be_returned(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub
) -> None:
    alice, bob = clone_samantha(admin_stub), clone_samantha(admin_stub)
    purchase = commit_request(basket(alice, DRESS))
    stub.CommitPurchase(purchase)
    with pytest.raises(grpc.RpcError) as err:
        stub.ReturnPurchase(return_request(bob, purchase, ("dress-1", 1)))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


async def _return_all(target: str, requests: list[svc.ReturnPurchaseRequest]) -> list[object]:
    async with aio_channel_to(target) as channel:
        aio = svc_grpc.OfferServiceStub(channel)
        return await asyncio.gather(*(aio.ReturnPurchase(r, timeout=30) for r in requests), return_exceptions=True)


def test_concurrent_returns_of_one_item_take_it_back_once(
    stub: svc_grpc.OfferServiceStub, server_target: str, fresh_customer_id: str
) -> None:
    purchase = commit_request(basket(fresh_customer_id, DRESS))
    stub.CommitPurchase(purchase)
    requests = [return_request(fresh_customer_id, purchase, ("dress-1", 1)) for _ in range(10)]
    results = asyncio.run(_return_all(server_target, requests))
    accepted = [r for r in results if isinstance(r, svc.ReturnReceipt)]
    assert len(accepted) == 1
    assert profile(stub, fresh_customer_id).points_balance == 500


def test_void_undoes_the_purchase_whole_on_its_business_day_only(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str
) -> None:
    before = profile(stub, fresh_customer_id)
    purchase = commit_request(basket(fresh_customer_id, DRESS, SHOES))
    stub.CommitPurchase(purchase)
    void = void_request(fresh_customer_id, purchase)
    receipt = stub.VoidPurchase(void)
    assert receipt.voided and receipt.points_reversed == 329
    after = profile(stub, fresh_customer_id)
    assert after.points_balance == before.points_balance
    assert after.purchase_count == before.purchase_count
    assert after.lifetime_value_minor == before.lifetime_value_minor
    assert stub.VoidPurchase(void).replayed

    old = commit_request(basket(fresh_customer_id, DRESS))
    old.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=2))  # an offline till's sale, two days ago
    stub.CommitPurchase(old)
    with pytest.raises(grpc.RpcError) as err:
        stub.VoidPurchase(void_request(fresh_customer_id, old))
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "business day" in (err.value.details() or "")


def test_a_void_or_return_naming_the_wrong_customer_claims_nothing_and_blocks_no_one(
    demo_server: ServerThread,
    stub: svc_grpc.OfferServiceStub,
    admin_stub: admin_grpc.OfferAdminStub,
    fresh_customer_id: str,
) -> None:
    """A junk call (a mistyped card, or someone trying to block a receipt) is NOT_FOUND and leaves no claim behind:
    the real void and return still go through."""
    stranger = clone_samantha(admin_stub)
    purchase = commit_request(basket(fresh_customer_id, DRESS, SHOES))
    stub.CommitPurchase(purchase)
    junk_return = return_request(stranger, purchase, (DRESS[0], 1))
    junk_void = void_request(stranger, purchase)
    with pytest.raises(grpc.RpcError) as refused_void:
        stub.VoidPurchase(junk_void)
    with pytest.raises(grpc.RpcError) as refused_return:
        stub.ReturnPurchase(junk_return)
    assert refused_void.value.code() is refused_return.value.code() is grpc.StatusCode.NOT_FOUND
    keys = demo_server.service.components.customers_store.keys
    bought = PurchaseKey(purchase.basket.store_id, purchase.transaction_id)
    claims = [
        keys.return_claim(bought, junk_return.return_id),
        keys.return_claim(bought, void_return_id(bought.transaction_id)),
    ]
    with redis.Redis.from_url(demo_server.settings.redis_url) as client:
        assert client.exists(*claims) == 0

    real_return = svc.ReturnPurchaseRequest()
    real_return.CopyFrom(junk_return)
    real_return.customer_id = fresh_customer_id
    assert stub.ReturnPurchase(real_return).points_reversed > 0
    void = void_request(fresh_customer_id, purchase)
    assert stub.VoidPurchase(void).voided


def test_a_void_takes_back_the_new_category_so_the_new_category_offer_applies_again(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True)
    with visit(server) as v:
        till, member = v.till, v.member
        sale = commit_request(basket(member, DRESS, SHOES))
        assert [a.offer_id for a in till.CommitPurchase(sale).evaluation.applied_offers] == [OFFER_ID]
        assert "shoes" in v.profile().categories_purchased

        till.VoidPurchase(void_request(member, sale))
        # The sale never happened: she has still never bought shoes, and the offer for new shoppers is hers again.
        assert list(v.profile().categories_purchased) == ["dresses"]
        listed = till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=member))
        assert OFFER_ID in {o.offer_id for o in listed.offers}
        again = till.CommitPurchase(commit_request(basket(member, DRESS, SHOES)))
        assert [a.offer_id for a in again.evaluation.applied_offers] == [OFFER_ID]
        server.drain()
        assert list_categories(server.service.components.sql_engine, member) == [
            "dresses",
            "shoes",
        ]  # the second sale's

        other = v.another_member()
        first = commit_request(basket(other, SHOES))
        till.CommitPurchase(first)
        till.CommitPurchase(commit_request(basket(other, SHOES)))  # she bought shoes again since
        till.VoidPurchase(void_request(other, first))
        assert "shoes" in v.profile(other).categories_purchased
        server.drain()
        assert "shoes" in list_categories(server.service.components.sql_engine, other)

        voided_alone = v.another_member()
        only = commit_request(basket(voided_alone, SHOES))
        till.CommitPurchase(only)
        server.drain()  # SQL has her shoes before the void arrives
        assert "shoes" in list_categories(server.service.components.sql_engine, voided_alone)
        till.VoidPurchase(void_request(voided_alone, only))
        server.drain()
        assert list_categories(server.service.components.sql_engine, voided_alone) == ["dresses"]


def test_returns_survive_redis_losing_the_customer(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    with server.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        member = clone_samantha(admin_grpc.OfferAdminStub(channel))
        three = ("sock-1", "SKU-SOCK", "socks", 3, 1_000)
        purchase = commit_request(basket(member, three))
        till.CommitPurchase(purchase)
        first = return_request(member, purchase, ("sock-1", 2))
        till.ReturnPurchase(first)
        server.drain()
        bought = PurchaseKey(purchase.basket.store_id, purchase.transaction_id)
        k, redis = server.service.components.customers_store.keys.customer(member), server.service.components.redis

        async def lose_her() -> None:
            await redis.delete(
                k.profile,
                k.categories,
                k.offer_uses,
                k.transaction(bought),
                k.returned(bought),
                k.return_record(bought, first.return_id),
            )

        server.run(lose_her())
        # Rebuilt from SQL: two of three already returned, the first return still a replay.
        assert till.ReturnPurchase(first).replayed
        with pytest.raises(grpc.RpcError) as err:
            till.ReturnPurchase(return_request(member, purchase, ("sock-1", 2)))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        last = till.ReturnPurchase(return_request(member, purchase, ("sock-1", 1)))
        assert last.balance_after == 500


def test_a_return_id_is_scoped_by_its_purchase(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub
) -> None:
    """Tills number their returns like their sales: the same return id of two purchases is two returns. Of one
    purchase it is one return, its customer's: another customer naming it is NOT_FOUND (not hers)."""
    alice, bob = clone_samantha(admin_stub), clone_samantha(admin_stub)
    shared = f"R-{uuid.uuid4().hex[:8]}"
    purchases = {}
    for member in (alice, bob):
        purchases[member] = commit_request(basket(member, DRESS))
        stub.CommitPurchase(purchases[member])
        receipt = stub.ReturnPurchase(return_request(member, purchases[member], ("dress-1", 1), return_id=shared))
        assert receipt.points_reversed == 120 and not receipt.replayed
    with pytest.raises(grpc.RpcError) as err:
        stub.ReturnPurchase(return_request(bob, purchases[alice], ("dress-1", 1), return_id=shared))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert profile(stub, alice).points_balance == profile(stub, bob).points_balance == 500


def test_a_retried_return_with_a_new_timestamp_is_the_same_return(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str
) -> None:
    purchase = commit_request(basket(fresh_customer_id, DRESS))
    stub.CommitPurchase(purchase)
    request = return_request(fresh_customer_id, purchase, ("dress-1", 1))
    request.occurred_at.FromDatetime(datetime.now(UTC))
    stub.ReturnPurchase(request)
    request.occurred_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=5))  # the till re-stamped its retry
    assert stub.ReturnPurchase(request).replayed


def test_returns_of_purchases_redis_no_longer_keeps_go_through_sql_once(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True)
    with server.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        member = clone_samantha(admin_grpc.OfferAdminStub(channel))
        purchase = commit_request(basket(member, DRESS, SHOES))
        till.CommitPurchase(purchase)
        server.drain()
        k, redis = server.service.components.customers_store.keys, server.service.components.redis

        async def expire_receipt() -> None:  # what the retention window does after 30 days
            bought = PurchaseKey(purchase.basket.store_id, purchase.transaction_id)
            await redis.delete(k.customer(member).transaction(bought), k.transaction_claim(bought))

        server.run(expire_receipt())
        first = till.ReturnPurchase(return_request(member, purchase, ("dress-1", 1)))
        assert first.points_reversed == 240
        # The same units again, right away, before or after the writer caught up: refused both times.
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                till.ReturnPurchase(return_request(member, purchase, ("dress-1", 1)))
            assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE)
            server.drain()
        assert profile(till, member).points_balance == 500 + 329 - 240
