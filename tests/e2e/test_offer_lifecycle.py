"""Marketing ops run an offer's life: draft, publish, pause, resume, archive; every edit a new version that
receipts record.

Each test has a server of its own: what it does to offers changes what every member is offered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from tests.e2e.conftest import clone_samantha
from tests.support.builders import DRESS, SHOES, basket, commit_request, demo_offer
from tests.support.server_thread import ServerThread


def test_draft_publish_pause_resume_archive(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    offer = demo_offer(datetime.now(UTC))
    offer.offer_id = "dress-shoes-draft"
    offer.priority = 100  # ahead of the demo offer, which would otherwise claim the same dress line
    offer.status = pb.OFFER_STATUS_DRAFT
    with server.channel() as channel:
        admin_stub = admin_grpc.OfferAdminStub(channel)
        till = svc_grpc.OfferServiceStub(channel)
        draft = admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        assert draft.status == pb.OFFER_STATUS_DRAFT
        member = clone_samantha(admin_stub)

        def listed() -> bool:
            reply = till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=member))
            return offer.offer_id in {o.offer_id for o in reply.offers}

        assert not listed()  # a draft is not live
        published = admin_stub.ResumeOffer(admin_pb.ResumeOfferRequest(offer_id=offer.offer_id))
        assert published.status == pb.OFFER_STATUS_ACTIVE and published.version == draft.version + 1
        assert listed()
        paused = admin_stub.PauseOffer(admin_pb.PauseOfferRequest(offer_id=offer.offer_id))
        assert paused.status == pb.OFFER_STATUS_PAUSED and not listed()
        evaluation = till.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(member, DRESS, SHOES)))
        assert offer.offer_id not in {a.offer_id for a in evaluation.applied_offers}
        resumed = admin_stub.ResumeOffer(admin_pb.ResumeOfferRequest(offer_id=offer.offer_id))
        assert listed()

        # The receipt records the terms (and version) the purchase earned under.
        receipt = till.CommitPurchase(commit_request(basket(member, DRESS, SHOES)))
        terms = {t.offer_id: t for t in receipt.applied_offer_terms}
        assert terms[offer.offer_id].version == resumed.version

        admin_stub.ArchiveOffer(admin_pb.ArchiveOfferRequest(offer_id=offer.offer_id))
        with pytest.raises(grpc.RpcError) as err:
            admin_stub.ResumeOffer(admin_pb.ResumeOfferRequest(offer_id=offer.offer_id))
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:
            admin_stub.PauseOffer(admin_pb.PauseOfferRequest(offer_id="no-such-offer"))
        assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_dayparts_follow_the_stores_clock_and_say_why_an_offer_did_not_apply(
    make_server: Callable[..., ServerThread],
) -> None:
    from zoneinfo import ZoneInfo

    server = make_server(demo_data=True)
    today = datetime.now(ZoneInfo("America/New_York")).isoweekday()  # SoHo's clock, 1 = Monday
    other_day = today % 7 + 1
    with server.channel() as channel:
        admin_stub = admin_grpc.OfferAdminStub(channel)
        offers = {}
        for name, weekday in (("today", today), ("other-day", other_day)):
            offer = demo_offer(datetime.now(UTC))
            offer.offer_id = f"daypart-{name}"
            offer.priority = 100 if name == "today" else 90
            offer.exclusive_group = "daypart"
            offer.dayparts.append(pb.Daypart(weekdays=[weekday], start_minute=0, end_minute=24 * 60))
            offers[name] = admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        assert [d.weekdays for d in offers["today"].dayparts] == [[today]]
        member = clone_samantha(admin_stub)
        evaluation = svc_grpc.OfferServiceStub(channel).EvaluateBasket(
            svc.EvaluateBasketRequest(basket=basket(member, DRESS, SHOES))
        )
    applied = {a.offer_id for a in evaluation.applied_offers}
    assert "daypart-today" in applied and "daypart-other-day" not in applied
    reasons = {n.offer_id: n.reason for n in evaluation.not_applied}
    assert "store time" in reasons["daypart-other-day"]


def test_lifecycle_rules_hold_for_edits_drafts_and_archives(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    offer = demo_offer(datetime.now(UTC))
    offer.offer_id = "rules-offer"
    with server.channel() as channel:
        admin_stub = admin_grpc.OfferAdminStub(channel)
        admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        admin_stub.PauseOffer(admin_pb.PauseOfferRequest(offer_id=offer.offer_id))
        offer.title = "Edited while paused"
        edited = admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))  # no status given
        assert edited.status == pb.OFFER_STATUS_PAUSED and edited.title == "Edited while paused"

        draft = pb.Offer()
        draft.CopyFrom(offer)
        draft.offer_id, draft.status = offer.offer_id + "-draft", pb.OFFER_STATUS_DRAFT
        admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=draft))
        with pytest.raises(grpc.RpcError) as err:
            admin_stub.PauseOffer(admin_pb.PauseOfferRequest(offer_id=draft.offer_id))
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION

        admin_stub.ArchiveOffer(admin_pb.ArchiveOfferRequest(offer_id=offer.offer_id))
        with pytest.raises(grpc.RpcError) as err:
            admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION

        bad_day = pb.Offer()
        bad_day.CopyFrom(draft)
        bad_day.offer_id = offer.offer_id + "-bad-day"
        bad_day.dayparts.append(pb.Daypart(weekdays=[8], start_minute=0, end_minute=60))
        with pytest.raises(grpc.RpcError) as err:
            admin_stub.UpsertOffer(admin_pb.UpsertOfferRequest(offer=bad_day))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith("offer.dayparts[0].weekdays")
