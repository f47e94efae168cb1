"""Small builders for protobuf requests used across the end-to-end tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import types_pb2 as pb

from server import demo
from server.rpc.convert import offer_to_pb

DRESS = ("dress-1", "SKU-DRESS-RED", "dresses", 1, 12_000)  # USD 120.00
SHOES = ("shoes-1", "SKU-SHOE-BLK", "shoes", 1, 8_900)  # USD 89.00


def basket(
    customer_id: str,
    *lines: tuple[str, str, str, int, int],
    store_id: str = "soho",
    currency: str = "USD",
    points_to_redeem: int = 0,
) -> pb.Basket:
    return pb.Basket(
        customer_id=customer_id,
        store_id=store_id,
        terminal_id="till-7",
        currency=currency,
        points_to_redeem=points_to_redeem,
        lines=[
            pb.LineItem(line_id=lid, sku=sku, category=cat, quantity=qty, unit_price_minor=price)
            for lid, sku, cat, qty, price in lines
        ],
    )


def commit_request(b: pb.Basket, transaction_id: str | None = None) -> svc.CommitPurchaseRequest:
    return svc.CommitPurchaseRequest(transaction_id=transaction_id or f"txn-{uuid.uuid4().hex}", basket=b)


def bonus_offer(tier: str, category: str, bonus_points: int, *, limit: int) -> pb.Offer:
    """Bonus points on a category for members of one tier, with a total budget."""
    offer = pb.Offer(
        offer_id=f"{tier}-{category}-bonus",
        title=f"{bonus_points} bonus points on {category}",
        description="While the budget lasts.",
        eligibility=pb.Eligibility(tiers=[tier]),
        condition=pb.Condition(required_category=category, min_quantity=1),
        reward=pb.Reward(type=pb.BONUS_POINTS, target_category=category, bonus_points=bonus_points),
        total_redemption_limit=limit,
    )
    offer.starts_at.FromDatetime(datetime(2020, 1, 1, tzinfo=UTC))
    return offer


def demo_offer(now: datetime) -> pb.Offer:
    """The demo offer (double points on dresses with shoes) as an admin sends it (no status named: an edit keeps the
    offer's status), for tests to vary."""
    offer = offer_to_pb(demo.demo_offer(now))
    offer.ClearField("status")
    return offer
