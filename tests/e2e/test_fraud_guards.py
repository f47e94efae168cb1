"""Loyalty-fraud guards, end to end through gRPC with real Redis and SQL: a receipt earns once across servers and
terminals; a basket split into several sales earns a fixed bonus no more often than the whole basket (per member,
offer and day); velocity (commits, stores, returns) is counted in a metric and written to the audit log, under the
member's salted hash, never her id."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import grpc
import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb
from prometheus_client import REGISTRY

from domain.access import Role
from tests.e2e.conftest import visit
from tests.support.builders import DRESS, basket, bonus_offer, commit_request
from tests.support.server_thread import ServerThread

ServerFactory = Callable[..., ServerThread]
SCARF = ("scarf-1", "SKU-SCARF", "scarves", 1, 3_000)
SCARF_2 = ("scarf-2", "SKU-SCARF-2", "scarves", 1, 3_000)
BONUS = 500


def alerts(kind: str) -> float:
    return REGISTRY.get_sample_value("pos_offers_velocity_alerts_total", {"kind": kind}) or 0.0


def bonus(evaluation: pb.BasketEvaluation) -> int:
    """The bonus points of the scarves offer in an evaluation."""
    return sum(a.bonus_points for a in evaluation.applied_offers if a.offer_id == "gold-scarves-bonus")


def audit_events(server: ServerThread) -> list[admin_pb.AuditEvent]:
    server.drain()
    with server.channel() as channel:
        return list(admin_grpc.OfferAdminStub(channel).ListAuditEvents(admin_pb.ListAuditEventsRequest()).events)


def test_a_receipt_earns_once_across_servers_and_terminals(make_server: ServerFactory) -> None:
    first = make_server(demo_data=True)
    second = make_server(
        demo_data=True, redis_prefix=first.settings.redis_prefix, database_url=first.settings.database_url
    )
    with visit(first) as shop:
        before = shop.profile().points_balance
        request = commit_request(basket(shop.member, DRESS))
        receipt = shop.till.CommitPurchase(request)
        with second.channel(Role.POS) as channel:
            other_server = svc_grpc.OfferServiceStub(channel)
            again = other_server.CommitPurchase(request)  # the same receipt sent again, to another server
            other_till = svc.CommitPurchaseRequest()
            other_till.CopyFrom(request)
            other_till.basket.terminal_id = "till-9"  # the same transaction rung up again at another terminal
            with pytest.raises(grpc.RpcError) as twice:
                other_server.CommitPurchase(other_till)
        assert again.replayed and again.evaluation.points_earned == receipt.evaluation.points_earned
        assert twice.value.code() is grpc.StatusCode.ALREADY_EXISTS
        assert shop.profile().points_balance == before + receipt.evaluation.points_earned


def test_splitting_a_basket_earns_a_fixed_bonus_once_a_day_and_a_void_gives_the_use_back(
    make_server: ServerFactory,
) -> None:
    server = make_server(demo_data=True)
    with visit(server) as shop:
        shop.admin.UpsertOffer(admin_pb.UpsertOfferRequest(offer=bonus_offer("gold", "scarves", BONUS, limit=0)))
        whole = shop.till.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(shop.member, SCARF, SCARF_2)))
        assert bonus(whole) == BONUS  # the whole basket earns the bonus once
        first = shop.till.CommitPurchase(commit_request(basket(shop.member, SCARF)))
        second = shop.till.CommitPurchase(commit_request(basket(shop.member, SCARF_2)))
        assert [bonus(first.evaluation), bonus(second.evaluation)] == [BONUS, 0]
        assert bonus(first.evaluation) + bonus(second.evaluation) == bonus(whole)
        shop.till.VoidPurchase(
            svc.VoidPurchaseRequest(transaction_id=first.transaction_id, customer_id=shop.member, store_id="soho")
        )
        third = shop.till.CommitPurchase(commit_request(basket(shop.member, SCARF)))
        assert bonus(third.evaluation) == BONUS  # the void took the bonus back, and with it the day's use
        other = shop.another_member()  # the limit is hers, not the offer's
        assert bonus(shop.till.CommitPurchase(commit_request(basket(other, SCARF))).evaluation) == BONUS


def test_the_per_day_limit_can_be_turned_off(make_server: ServerFactory) -> None:
    server = make_server(demo_data=True, offer_uses_per_customer_per_day=0)
    with visit(server) as shop:
        shop.admin.UpsertOffer(admin_pb.UpsertOfferRequest(offer=bonus_offer("gold", "scarves", BONUS, limit=0)))
        earned = [
            bonus(shop.till.CommitPurchase(commit_request(basket(shop.member, SCARF))).evaluation) for _ in range(2)
        ]
    assert earned == [BONUS, BONUS]


def test_velocity_alerts_are_counted_and_audited_under_a_hash_of_the_member(make_server: ServerFactory) -> None:
    server = make_server(demo_data=True, velocity_commits=3, velocity_stores=2, velocity_returns=1)
    commits, stores, returns = alerts("commits"), alerts("stores"), alerts("returns")
    with visit(server) as shop:
        receipts = [shop.till.CommitPurchase(commit_request(basket(shop.member, DRESS))) for _ in range(4)]
        assert alerts("commits") == commits + 1  # once per window, however many more follow
        shop.admin.UpsertStore(
            admin_pb.UpsertStoreRequest(
                store=pb.Store(store_id="midtown", name="Midtown", location=pb.GeoPoint(latitude=40.75, longitude=-74))
            )
        )
        shop.till.CommitPurchase(commit_request(basket(shop.member, DRESS, store_id="midtown")))
        assert alerts("stores") == stores + 1
        shop.till.VoidPurchase(
            svc.VoidPurchaseRequest(transaction_id=receipts[0].transaction_id, customer_id=shop.member, store_id="soho")
        )
        assert alerts("returns") == returns + 1
        member = shop.member
    velocity = {e.action: e for e in audit_events(server) if e.action.startswith("velocity.")}
    assert sorted(velocity) == ["velocity.commits", "velocity.returns", "velocity.stores"]
    commit_alert = velocity["velocity.commits"]
    assert member not in str(list(velocity.values()))
    assert len(commit_alert.target) == 16 and commit_alert.target == velocity["velocity.stores"].target
    assert json.loads(commit_alert.detail) == {"threshold": 3, "window_s": 600}
    assert (commit_alert.outcome, commit_alert.count) == ("ALERT", 1)


def test_quiet_members_raise_no_alert(make_server: ServerFactory) -> None:
    server = make_server(demo_data=True)
    commits = alerts("commits")
    with visit(server) as shop:
        shop.till.CommitPurchase(commit_request(basket(shop.member, DRESS, store_id="soho"), f"t-{uuid.uuid4().hex}"))
    assert alerts("commits") == commits
    assert not [e for e in audit_events(server) if e.action.startswith("velocity.")]
