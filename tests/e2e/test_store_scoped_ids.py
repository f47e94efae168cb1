"""A purchase is its store's transaction id (issue 10): tills number their own sales, so nobody can take another
store's next transaction id, returns and voids name the purchase as its receipt prints it (store and transaction
id), and the store that took the goods back reaches the profile of record."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import types_pb2 as pb

from domain.ids import void_return_id
from domain.model import PurchaseKey
from server.demo import OFFER_ID
from tests.e2e.conftest import Visit, visit
from tests.integration.sql_queries import ledger_balance, returns_of
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread

TRIBECA = "tribeca"


@pytest.fixture
def shop(make_server: Callable[..., ServerThread]) -> Iterator[Visit]:
    """The demo server with a second store next to SoHo (so the demo offer holds at both), and a fresh member."""
    server = make_server(demo_data=True)
    with visit(server) as v:
        nearby = pb.Store(store_id=TRIBECA, name="TriBeCa", timezone="America/New_York")
        nearby.location.latitude, nearby.location.longitude = 40.7163, -74.0086
        v.admin.UpsertStore(admin_pb.UpsertStoreRequest(store=nearby))
        yield v


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


def test_the_same_transaction_id_at_two_stores_is_two_purchases_and_both_earn(shop: Visit) -> None:
    till, alice, bob = shop.till, shop.member, shop.another_member()
    txn = f"till7-{uuid.uuid4().hex[:6]}"
    at_soho = till.CommitPurchase(commit_request(basket(alice, DRESS, SHOES), txn))
    at_tribeca = till.CommitPurchase(commit_request(basket(bob, DRESS, SHOES, store_id=TRIBECA), txn))
    assert not (at_soho.replayed or at_tribeca.replayed)
    assert at_soho.evaluation.points_earned == at_tribeca.evaluation.points_earned == 329
    assert [a.offer_id for a in at_tribeca.evaluation.applied_offers] == [OFFER_ID]
    assert shop.profile(alice).points_balance == 500 + 329
    assert shop.profile(bob).points_balance == 500 + 329
    # Each replays as its own store's purchase.
    assert till.CommitPurchase(commit_request(basket(bob, DRESS, SHOES, store_id=TRIBECA), txn)).replayed
    code, _ = _code(lambda: till.CommitPurchase(commit_request(basket(bob, DRESS, SHOES), txn)))
    assert code is grpc.StatusCode.ALREADY_EXISTS  # SoHo's is Alice's
    shop.server.drain()
    engine = shop.server.service.components.sql_engine
    assert ledger_balance(engine, alice) == ledger_balance(engine, bob) == 500 + 329


def test_a_zero_basket_at_one_store_cannot_take_another_stores_next_transaction_id(shop: Visit) -> None:
    till, member, squatter = shop.till, shop.member, shop.another_member()
    next_at_soho = f"till7-{uuid.uuid4().hex[:6]}"  # SoHo's till 7 will use this id next
    nothing = ("free-1", "SKU-FREE", "bags", 1, 0)
    till.CommitPurchase(commit_request(basket(squatter, nothing, store_id=TRIBECA), next_at_soho))
    receipt = till.CommitPurchase(commit_request(basket(member, DRESS, SHOES), next_at_soho))
    assert not receipt.replayed and receipt.evaluation.points_earned == 329
    assert shop.profile(member).points_balance == 500 + 329


def test_a_return_or_void_naming_another_store_is_not_found_and_claims_nothing(shop: Visit) -> None:
    till, member = shop.till, shop.member
    sale = commit_request(basket(member, DRESS, SHOES))
    till.CommitPurchase(sale)
    return_id = f"ret-{uuid.uuid4().hex[:8]}"
    elsewhere = svc.ReturnPurchaseRequest(
        return_id=return_id,
        transaction_id=sale.transaction_id,
        store_id=TRIBECA,  # a store that has no such purchase
        customer_id=member,
        lines=[svc.ReturnLine(line_id="shoes-1", quantity=1)],
    )
    void_elsewhere = svc.VoidPurchaseRequest(transaction_id=sale.transaction_id, customer_id=member, store_id=TRIBECA)
    assert _code(lambda: till.ReturnPurchase(elsewhere))[0] is grpc.StatusCode.NOT_FOUND
    assert _code(lambda: till.VoidPurchase(void_elsewhere))[0] is grpc.StatusCode.NOT_FOUND
    keys = shop.server.service.components.customers_store.keys
    claims = [
        keys.return_claim(PurchaseKey(store, sale.transaction_id), rid)
        for store in ("soho", TRIBECA)
        for rid in (return_id, void_return_id(sale.transaction_id))
    ]
    with redis.Redis.from_url(shop.server.settings.redis_url) as client:
        assert client.exists(*claims, keys.transaction_claim(PurchaseKey(TRIBECA, sale.transaction_id))) == 0
    assert shop.profile().points_balance == 500 + 329  # nothing taken back

    right = svc.ReturnPurchaseRequest()
    right.CopyFrom(elsewhere)
    right.store_id = "soho"
    assert till.ReturnPurchase(right).points_reversed == 89 + 120


def test_a_return_or_void_without_the_purchases_store_is_invalid(shop: Visit) -> None:
    till, member = shop.till, shop.member
    sale = commit_request(basket(member, DRESS))
    till.CommitPurchase(sale)
    no_store = svc.ReturnPurchaseRequest(
        return_id="r-1",
        transaction_id=sale.transaction_id,
        customer_id=member,
        lines=[svc.ReturnLine(line_id="dress-1", quantity=1)],
    )
    for call in (
        lambda: till.ReturnPurchase(no_store),
        lambda: till.VoidPurchase(svc.VoidPurchaseRequest(transaction_id=sale.transaction_id, customer_id=member)),
    ):
        code, details = _code(call)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("store_id: "), details
    bad_returning_store = svc.ReturnPurchaseRequest()
    bad_returning_store.CopyFrom(no_store)
    bad_returning_store.store_id, bad_returning_store.returning_store_id = "soho", "x" * 129
    code, details = _code(lambda: till.ReturnPurchase(bad_returning_store))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("returning_store_id: "), details


def test_the_returning_store_is_on_the_receipt_and_reaches_sql(shop: Visit) -> None:
    till, member = shop.till, shop.member
    sale = commit_request(basket(member, DRESS, SHOES))
    till.CommitPurchase(sale)
    back = till.ReturnPurchase(
        svc.ReturnPurchaseRequest(
            return_id="r-shoes",
            transaction_id=sale.transaction_id,
            store_id="soho",
            returning_store_id=TRIBECA,
            customer_id=member,
            lines=[svc.ReturnLine(line_id="shoes-1", quantity=1)],
        )
    )
    assert (back.store_id, back.returning_store_id) == ("soho", TRIBECA)
    unsaid = till.ReturnPurchase(
        svc.ReturnPurchaseRequest(
            return_id="r-dress",
            transaction_id=sale.transaction_id,
            store_id="soho",
            customer_id=member,
            lines=[svc.ReturnLine(line_id="dress-1", quantity=1)],
        )
    )
    assert (unsaid.store_id, unsaid.returning_store_id) == ("soho", "")

    other = commit_request(basket(member, DRESS), sale.transaction_id)  # TriBeCa's sale with the same id
    other.basket.store_id = TRIBECA
    till.CommitPurchase(other)
    void = till.VoidPurchase(
        svc.VoidPurchaseRequest(transaction_id=sale.transaction_id, store_id=TRIBECA, customer_id=member)
    )
    assert (void.store_id, void.returning_store_id, void.voided) == (TRIBECA, TRIBECA, True)
    shop.server.drain()
    engine = shop.server.service.components.sql_engine
    assert returns_of(engine, "soho", sale.transaction_id) == [("r-dress", None), ("r-shoes", TRIBECA)]
    assert returns_of(engine, TRIBECA, sale.transaction_id) == [(void_return_id(sale.transaction_id), TRIBECA)]
    assert ledger_balance(engine, member) == 500
