"""Bad input gets one clear status naming the field, and loses nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from tests.support.builders import DRESS, SHOES, basket, commit_request, demo_offer
from tests.support.server_thread import channel_to


@pytest.fixture(scope="module")
def stub(server_target: str) -> Iterator[svc_grpc.OfferServiceStub]:
    with channel_to(server_target) as channel:
        yield svc_grpc.OfferServiceStub(channel)


def _line(**changes: object) -> Callable[[pb.Basket], None]:
    def mutate(b: pb.Basket) -> None:
        for name, value in changes.items():
            setattr(b.lines[0], name, value)

    return mutate


def _set(**changes: object) -> Callable[[pb.Basket], None]:
    def mutate(b: pb.Basket) -> None:
        for name, value in changes.items():
            setattr(b, name, value)

    return mutate


def _empty(b: pb.Basket) -> None:
    del b.lines[:]


def _oversized(b: pb.Basket) -> None:
    b.lines.extend(
        pb.LineItem(line_id=f"x{i}", sku="S", category="socks", quantity=1, unit_price_minor=100) for i in range(501)
    )


def _duplicate_line(b: pb.Basket) -> None:
    b.lines.append(pb.LineItem(line_id=b.lines[0].line_id, sku="S", category="shoes", quantity=1, unit_price_minor=1))


BAD_BASKETS = [
    ("negative quantity", _line(quantity=-1), "basket.lines[0].quantity"),
    ("zero quantity", _line(quantity=0), "basket.lines[0].quantity"),
    ("negative price", _line(unit_price_minor=-5), "basket.lines[0].unit_price_minor"),
    ("blank sku", _line(sku=" "), "basket.lines[0].sku"),
    ("blank category", _line(category=""), "basket.lines[0].category"),
    ("control character in sku", _line(sku="SKU\x00X"), "basket.lines[0].sku"),
    ("basket in another currency", _set(currency="EUR"), "basket.currency"),
    ("empty basket", _empty, "basket.lines"),
    ("oversized basket", _oversized, "basket.lines"),
    ("duplicate line id", _duplicate_line, "basket.lines[2].line_id"),
    ("unknown currency", _set(currency="XXX"), "basket.currency"),
    ("blank customer", _set(customer_id="  "), "basket.customer_id"),
    ("blank store", _set(store_id=""), "basket.store_id"),
    ("negative redemption", _set(points_to_redeem=-1), "basket.points_to_redeem"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), BAD_BASKETS, ids=[c[0] for c in BAD_BASKETS])
def test_bad_baskets_are_invalid_argument_naming_the_field(
    stub: svc_grpc.OfferServiceStub,
    fresh_customer_id: str,
    case: str,
    mutate: Callable[[pb.Basket], None],
    field: str,
) -> None:
    before = stub.GetProfile(svc.GetProfileRequest(customer_id=fresh_customer_id))
    bad = basket(fresh_customer_id, DRESS, SHOES)
    mutate(bad)
    for call in (
        lambda: stub.EvaluateBasket(svc.EvaluateBasketRequest(basket=bad)),
        lambda: stub.CommitPurchase(commit_request(bad)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, case
        assert (err.value.details() or "").startswith(field), err.value.details()
    after = stub.GetProfile(svc.GetProfileRequest(customer_id=fresh_customer_id))
    assert after == before  # nothing was applied


def test_missing_transaction_id_and_basket(stub: svc_grpc.OfferServiceStub, fresh_customer_id: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitPurchase(svc.CommitPurchaseRequest(transaction_id="", basket=basket(fresh_customer_id, DRESS)))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("transaction_id")
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitPurchase(svc.CommitPurchaseRequest(transaction_id="t-1"))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("basket")


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda s: s.GetProfile(svc.GetProfileRequest(customer_id="no-such-member")), grpc.StatusCode.NOT_FOUND),
        (
            lambda s: s.ListActiveOffers(svc.ListActiveOffersRequest(customer_id="no-such-member")),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda s: s.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket("no-such-member", DRESS))),
            grpc.StatusCode.NOT_FOUND,
        ),
        (lambda s: s.GetProfile(svc.GetProfileRequest(customer_id="")), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["profile", "offers", "evaluate", "blank id"],
)
def test_unknown_and_blank_customers(
    stub: svc_grpc.OfferServiceStub, call: Callable[[svc_grpc.OfferServiceStub], object], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(stub)
    assert err.value.code() is code


def test_unknown_store_is_not_found(stub: svc_grpc.OfferServiceStub, fresh_customer_id: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(fresh_customer_id, DRESS, store_id="atlantis")))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert "atlantis" in (err.value.details() or "")


def test_redeeming_more_than_the_balance_is_failed_precondition(
    stub: svc_grpc.OfferServiceStub, fresh_customer_id: str
) -> None:
    greedy = basket(fresh_customer_id, DRESS, points_to_redeem=5_000)
    for call in (
        lambda: stub.EvaluateBasket(svc.EvaluateBasketRequest(basket=greedy)),
        lambda: stub.CommitPurchase(commit_request(greedy)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "insufficient points" in (err.value.details() or "")
    assert stub.GetProfile(svc.GetProfileRequest(customer_id=fresh_customer_id)).points_balance == 500


def test_paying_with_points_shows_value_and_balances(stub: svc_grpc.OfferServiceStub, fresh_customer_id: str) -> None:
    receipt = stub.CommitPurchase(commit_request(basket(fresh_customer_id, DRESS, points_to_redeem=300)))
    ev = receipt.evaluation
    assert ev.points_redeemed == 300 and ev.redeemed_value_minor == 300  # 100 points = USD 1.00
    assert ev.total_due_minor == 12_000 - 300
    assert ev.balance_after == 500 - 300 + ev.points_earned


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: setattr(o, "offer_id", ""), "offer.offer_id"),
        (lambda o: setattr(o.reward, "multiplier_percent", 50), "offer.reward.multiplier_percent"),
        (lambda o: setattr(o.reward, "type", pb.REWARD_TYPE_UNSPECIFIED), "offer.reward.type"),
        (lambda o: o.ends_at.FromSeconds(o.starts_at.seconds - 10), "offer.ends_at"),
    ],
    ids=["blank id", "multiplier below 100", "no reward type", "ends before start"],
)
def test_bad_offers_are_refused_by_admin(
    admin_stub: admin_grpc.OfferAdminStub, mutate: Callable[[pb.Offer], None], field: str
) -> None:
    from datetime import UTC, datetime

    offer = demo_offer(datetime.now(UTC))
    offer.offer_id = "bad-offer-test"
    mutate(offer)
    with pytest.raises(grpc.RpcError) as err:
        admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field), err.value.details()


def test_offer_for_an_unknown_store_is_not_found(admin_stub: admin_grpc.OfferAdminStub) -> None:
    from datetime import UTC, datetime

    offer = demo_offer(datetime.now(UTC))
    offer.offer_id = "offer-unknown-store"
    offer.eligibility.store_ids.append("atlantis")
    with pytest.raises(grpc.RpcError) as err:
        admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        admin_stub.GetOffer(admin_pb.GetOfferRequest(offer_id="offer-unknown-store"))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_out_of_range_occurred_at_is_invalid_argument(stub: svc_grpc.OfferServiceStub, fresh_customer_id: str) -> None:
    request = commit_request(basket(fresh_customer_id, DRESS))
    request.occurred_at.seconds = 10**12  # year ~33658
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitPurchase(request)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("occurred_at")


def test_unknown_enum_values_are_invalid_argument(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub, fresh_customer_id: str
) -> None:
    from datetime import UTC, datetime

    offer = demo_offer(datetime.now(UTC))
    offer.offer_id = "offer-bad-enum"
    offer.reward.type = pb.RewardType.ValueType(99)  # a number the enum does not define
    with pytest.raises(grpc.RpcError) as err:
        admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    unknown_channel = pb.Channel.ValueType(42)  # nor this one
    with pytest.raises(grpc.RpcError) as err:
        stub.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=fresh_customer_id, channel=unknown_channel))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_absurd_crm_values_are_refused_before_they_reach_redis(admin_stub: admin_grpc.OfferAdminStub) -> None:
    from server.demo import demo_customer
    from server.rpc.convert import customer_to_pb

    profile = customer_to_pb(demo_customer("crm-absurd"))
    profile.lifetime_value_minor = 2**63 - 100
    with pytest.raises(grpc.RpcError) as err:
        admin_stub.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("customer.lifetime_value_minor")
    profile.lifetime_value_minor, profile.tier = 100, "t" * 65
    with pytest.raises(grpc.RpcError) as err:
        admin_stub.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile))
    assert (err.value.details() or "").startswith("customer.tier")
