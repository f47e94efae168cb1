"""Tiers the loyalty team configures: reached by rolling 12-month spend, earning multiplied base points."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

import grpc
import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from tests.e2e.conftest import clone_samantha
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread

POLICY = pb.TierPolicy(
    tiers=[
        pb.TierRule(name="silver", min_spend_12m_minor=0, earn_multiplier_percent=100),
        pb.TierRule(name="gold", min_spend_12m_minor=50_000, earn_multiplier_percent=150),  # USD 500.00
        pb.TierRule(name="platinum", min_spend_12m_minor=500_000, earn_multiplier_percent=200),
    ]
)


def test_a_purchase_crossing_the_threshold_upgrades_the_tier_and_the_next_one_earns_more(
    make_server: Callable[..., ServerThread],
) -> None:
    # Its own server: a tier policy changes what every member earns.
    server = make_server(demo_data=True)
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        till = svc_grpc.OfferServiceStub(channel)
        saved = admin.SetTierPolicy(admin_pb.SetTierPolicyRequest(policy=POLICY))
        assert [t.name for t in saved.tiers] == ["silver", "gold", "platinum"] and saved.version == 1
        member = clone_samantha(admin, tier="")

        first = till.CommitPurchase(commit_request(basket(member, DRESS, SHOES)))  # USD 209.00
        assert (first.evaluation.tier_before, first.evaluation.tier_after) == ("silver", "silver")
        three_dresses = ("dress-3", "SKU-DRESS-BLU", "dresses", 3, 12_000)  # USD 360.00: 569.00 in 12 months
        second = till.CommitPurchase(commit_request(basket(member, three_dresses)))
        assert (second.evaluation.tier_before, second.evaluation.tier_after) == ("silver", "gold")
        assert second.evaluation.points_earned == 360  # this one still at silver rates

        profile = till.GetProfile(svc.GetProfileRequest(customer_id=member))
        assert profile.tier == "gold" and profile.spend_12m_minor == 56_900
        third = till.CommitPurchase(commit_request(basket(member, DRESS)))
        line = third.evaluation.lines[0]
        assert (line.base_points, line.bonus_points) == (120, 60)  # gold: 1.5x base points
        assert "tier:gold" in {a.offer_id for a in third.evaluation.applied_offers}

        server.drain()
        snapshot = server.service.components.sql_profiles.load_customer(
            member, receipts_since=profile.last_purchase_at.ToDatetime(tzinfo=UTC)
        )
        assert snapshot is not None and snapshot.tier == "gold"
        # Redis loses her: the rebuilt profile keeps the rolling spend.
        k, redis = server.service.components.customers_store.keys.customer(member), server.service.components.redis

        async def lose_her() -> None:
            await redis.delete(k.profile, k.categories, k.offer_uses, k.spend)

        server.run(lose_her())
        rebuilt = till.GetProfile(svc.GetProfileRequest(customer_id=member))
        assert rebuilt.tier == "gold" and rebuilt.spend_12m_minor == 56_900 + 12_000


def test_bad_tier_policies_are_refused_naming_the_field(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        bad = pb.TierPolicy(
            tiers=[
                pb.TierRule(name="silver", min_spend_12m_minor=0, earn_multiplier_percent=100),
                pb.TierRule(name="silver", min_spend_12m_minor=10, earn_multiplier_percent=120),
            ]
        )
        with pytest.raises(grpc.RpcError) as err:
            admin.SetTierPolicy(admin_pb.SetTierPolicyRequest(policy=bad))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith("policy.tiers[1].name")
        assert list(admin.GetTierPolicy(admin_pb.GetTierPolicyRequest()).tiers) == []


def test_a_sale_older_than_the_rolling_window_does_not_upgrade(make_server: Callable[..., ServerThread]) -> None:
    from datetime import datetime, timedelta

    server = make_server(demo_data=True)
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        till = svc_grpc.OfferServiceStub(channel)
        admin.SetTierPolicy(admin_pb.SetTierPolicyRequest(policy=POLICY))
        member = clone_samantha(admin, tier="")
        big = ("coat-1", "SKU-COAT", "coats", 1, 60_000)  # USD 600.00: gold, were it recent
        old = commit_request(basket(member, big))
        old.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=420))  # found in an offline till
        receipt = till.CommitPurchase(old)
        assert receipt.evaluation.tier_after == receipt.evaluation.tier_before == "silver"
        assert till.GetProfile(svc.GetProfileRequest(customer_id=member)).spend_12m_minor == 0
