"""The member's journey from the app to the till to the profile, through real gRPC, Redis and SQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from server.demo import OFFER_ID
from tests.e2e.conftest import clone_samantha
from tests.integration.sql_queries import ledger_balance
from tests.support.builders import DRESS, SHOES, basket, commit_request, demo_offer
from tests.support.server_thread import ServerThread, channel_to


@pytest.fixture(scope="module")
def stub(server_target: str) -> Iterator[svc_grpc.OfferServiceStub]:
    with channel_to(server_target) as channel:
        yield svc_grpc.OfferServiceStub(channel)


def listed(
    stub: svc_grpc.OfferServiceStub,
    customer_id: str,
    *,
    channel: pb.Channel.ValueType,
    location: pb.GeoPoint | None = None,
) -> dict[str, svc.ActiveOffer]:
    request = svc.ListActiveOffersRequest(customer_id=customer_id, channel=channel, location=location)
    return {o.offer_id: o for o in stub.ListActiveOffers(request).offers}


def test_the_whole_story(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub, demo_server: ServerThread
) -> None:
    member = clone_samantha(admin_stub)

    # She opens the app: the offer is there, with a reason she can read.
    offers = listed(stub, member, channel=pb.CHANNEL_APP)
    assert OFFER_ID in offers
    assert "dresses" in offers[OFFER_ID].reason and "km from SoHo" in offers[OFFER_ID].reason
    assert offers[OFFER_ID].remaining_uses == 1

    # At the till, a dress alone earns no offer but shows what would.
    dress_only = stub.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(member, DRESS)))
    assert not dress_only.applied_offers
    assert [n.offer_id for n in dress_only.near_misses] == [OFFER_ID]
    assert "add 1 item from shoes" in dress_only.near_misses[0].hint

    # She adds shoes: recognised; the dress earns its base points again as bonus, the shoes only base.
    both = basket(member, DRESS, SHOES)
    evaluation = stub.EvaluateBasket(svc.EvaluateBasketRequest(basket=both))
    assert [a.offer_id for a in evaluation.applied_offers] == [OFFER_ID]
    lines = {line.line_id: line for line in evaluation.lines}
    assert lines["dress-1"].base_points == 120 and lines["dress-1"].bonus_points == 120
    assert lines["shoes-1"].base_points == 89 and lines["shoes-1"].bonus_points == 0
    assert evaluation.points_earned == sum(line.base_points + line.bonus_points for line in evaluation.lines) == 329

    before = stub.GetProfile(svc.GetProfileRequest(customer_id=member))
    request = commit_request(both)
    receipt = stub.CommitPurchase(request)
    assert not receipt.replayed
    assert receipt.new_categories == ["shoes"]
    after = stub.GetProfile(svc.GetProfileRequest(customer_id=member))
    assert after.points_balance == before.points_balance + 329 == receipt.evaluation.balance_after

    # The terminal retries (network blip): same receipt, marked replayed, no second credit.
    retry = stub.CommitPurchase(request)
    assert retry.replayed
    assert retry.evaluation == receipt.evaluation
    assert stub.GetProfile(svc.GetProfileRequest(customer_id=member)).points_balance == after.points_balance

    # Her profile shows the new category, a higher lifetime value and one more purchase.
    assert "shoes" in after.categories_purchased and "dresses" in after.categories_purchased
    assert after.lifetime_value_minor == before.lifetime_value_minor + 20_900
    assert after.purchase_count == before.purchase_count + 1

    # The offer, used up and no longer matching, is gone from her list.
    assert OFFER_ID not in listed(stub, member, channel=pb.CHANNEL_APP)

    # The unified profile in SQL has the same purchase, once.
    demo_server.drain()
    repo = demo_server.service.components.sql_profiles
    snapshot = repo.load_customer(member, receipts_since=datetime.now(UTC) - timedelta(days=1))
    assert snapshot is not None
    assert snapshot.points_balance == after.points_balance
    assert snapshot.lifetime_value_minor == after.lifetime_value_minor
    assert "shoes" in snapshot.categories and snapshot.purchase_count == 1
    assert ledger_balance(demo_server.service.components.sql_engine, member) == after.points_balance


@pytest.mark.parametrize(
    ("who", "changes"),
    [
        ("below the value threshold", {"lifetime_value_minor": 500_000}),
        ("already buys shoes", {"categories_purchased": ["dresses", "shoes"]}),
        ("never bought dresses", {"categories_purchased": ["bags"]}),
    ],
)
def test_offer_is_not_listed_for_members_it_is_not_for(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub, who: str, changes: dict[str, Any]
) -> None:
    member = clone_samantha(admin_stub, **changes)
    assert OFFER_ID not in listed(stub, member, channel=pb.CHANNEL_APP), who


def test_distance_uses_the_request_location_else_home(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub
) -> None:
    boston = pb.GeoPoint(latitude=42.3601, longitude=-71.0589)
    far_member = clone_samantha(admin_stub, home_location=boston)
    assert OFFER_ID not in listed(stub, far_member, channel=pb.CHANNEL_APP)
    # Visiting New York, her phone's location puts her 1 km from the store.
    nearby = pb.GeoPoint(latitude=40.7301, longitude=-73.9950)
    offers = listed(stub, far_member, channel=pb.CHANNEL_APP, location=nearby)
    assert OFFER_ID in offers and "km from SoHo" in offers[OFFER_ID].reason


def test_offer_is_listed_only_between_its_start_and_end(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)  # its own: new offers change what every member is offered
    now = datetime.now(UTC)
    windows = {
        "current": (now - timedelta(hours=1), now + timedelta(hours=1)),
        "future": (now + timedelta(hours=1), now + timedelta(days=2)),
        "past": (now - timedelta(days=2), now - timedelta(hours=1)),
    }
    with server.channel() as channel:
        admin_stub, stub = admin_grpc.OfferAdminStub(channel), svc_grpc.OfferServiceStub(channel)
        for name, (start, end) in windows.items():
            offer = demo_offer(now)
            offer.offer_id = f"timing-{name}"
            offer.starts_at.FromDatetime(start)
            offer.ends_at.FromDatetime(end)
            admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        member = clone_samantha(admin_stub)
        ids = set(listed(stub, member, channel=pb.CHANNEL_APP))
        assert "timing-current" in ids
        assert "timing-future" not in ids and "timing-past" not in ids
        for name in windows:
            admin_stub.ArchiveOffer(admin_pb.ArchiveOfferRequest(offer_id=f"timing-{name}"))
        assert "timing-current" not in listed(stub, member, channel=pb.CHANNEL_APP)


def test_offers_come_best_first_and_page_size_is_honoured(
    stub: svc_grpc.OfferServiceStub, admin_stub: admin_grpc.OfferAdminStub
) -> None:
    member = clone_samantha(admin_stub)
    reply = stub.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=member, page_size=1))
    assert len(reply.offers) == 1
    full = stub.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=member))
    scores = [o.score for o in full.offers]
    assert scores == sorted(scores, reverse=True)
