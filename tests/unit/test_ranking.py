from __future__ import annotations

from domain.model import ActiveOffer, Catalog, Condition, CustomerState, Reward, RewardType
from domain.ranking import list_active_offers
from tests.unit import BOSTON, app_ctx, catalog, dress_shoes_offer, samantha, simple_offer

BONUS_500 = Reward(RewardType.BONUS_POINTS, bonus_points=500)  # worth 5.00


def ranked(cat: Catalog, customer: CustomerState | None = None, page_size: int = 20) -> tuple[ActiveOffer, ...]:
    return list_active_offers(cat, customer or samantha(), app_ctx(), page_size=page_size)


def ids(offers: tuple[ActiveOffer, ...]) -> list[str]:
    return [offer.offer_id for offer in offers]


def test_more_valuable_offers_rank_first() -> None:
    small = simple_offer("small", Reward(RewardType.PERCENT_OFF, percent_off=4))  # 4.00 on a nominal 100.00
    large = simple_offer("large", Reward(RewardType.PERCENT_OFF, percent_off=30))
    points = simple_offer("points", BONUS_500)  # 5.00
    result = ranked(catalog(small, points, large))
    assert ids(result) == ["large", "points", "small"]
    assert result[0].score > result[1].score > result[2].score


def test_propensity_for_the_required_category_raises_the_rank() -> None:
    hats = simple_offer("hats", BONUS_500, Condition(required_category="hats", min_quantity=1))
    bags = simple_offer("bags", BONUS_500, Condition(required_category="bags", min_quantity=1))
    assert ids(ranked(catalog(hats, bags), samantha(propensity={"hats": 0.9, "bags": 0.1}))) == ["hats", "bags"]
    assert ids(ranked(catalog(hats, bags), samantha(propensity={"hats": 0.1, "bags": 0.9}))) == ["bags", "hats"]


def test_affinity_for_the_target_category_raises_the_rank() -> None:
    on_dresses = simple_offer("z-dresses", Reward(RewardType.BONUS_POINTS, target_category="dresses", bonus_points=500))
    on_hats = simple_offer("a-hats", Reward(RewardType.BONUS_POINTS, target_category="hats", bonus_points=500))
    assert ids(ranked(catalog(on_hats, on_dresses))) == ["z-dresses", "a-hats"]


def test_nearness_to_an_eligible_store_raises_the_score() -> None:
    cat = catalog(simple_offer("anywhere", BONUS_500))
    (near,) = ranked(cat)
    (far,) = ranked(cat, samantha(home=BOSTON))
    (unknown,) = ranked(cat, samantha(home=None))
    assert near.score > far.score
    assert far.score == unknown.score


def test_priority_and_offer_id_only_break_ties() -> None:
    b = simple_offer("b", BONUS_500)
    a = simple_offer("a", BONUS_500)
    c = simple_offer("c", BONUS_500, priority=1)
    assert ids(ranked(catalog(b, c, a))) == ["c", "a", "b"]
    better = simple_offer("z-better", Reward(RewardType.BONUS_POINTS, bonus_points=501))
    assert ids(ranked(catalog(c, better))) == ["z-better", "c"]


def test_only_eligible_offers_up_to_page_size() -> None:
    offers = [simple_offer(f"o{i}", Reward(RewardType.BONUS_POINTS, bonus_points=100 + i)) for i in range(5)]
    archived = simple_offer("gone", Reward(RewardType.BONUS_POINTS, bonus_points=10_000), archived=True)
    cat = catalog(*offers, archived)
    assert ids(ranked(cat, page_size=3)) == ["o4", "o3", "o2"]
    assert ranked(cat, page_size=0) == ()


def test_reason_and_remaining_uses() -> None:
    limited = simple_offer("limited", BONUS_500, per_customer_limit=3)
    cat = catalog(limited, dress_shoes_offer())
    by_id = {offer.offer_id: offer for offer in ranked(cat, samantha(offer_uses={"limited": 1}))}
    assert by_id["limited"].reason == "available to all members"
    assert by_id["limited"].remaining_uses == 2
    assert by_id["dress-shoes-2x"].reason == "you buy dresses; 2.0 km from SoHo"
    assert by_id["dress-shoes-2x"].remaining_uses == 1
    unlimited = ranked(catalog(simple_offer("free", BONUS_500)))
    assert unlimited[0].remaining_uses == 0


def test_listing_is_deterministic_whatever_the_catalog_order() -> None:
    offers = [dress_shoes_offer(), *(simple_offer(f"o{i}", BONUS_500) for i in range(10))]
    # Equal scores tie-break by offer id, not by where the offer sits in the snapshot.
    assert ranked(catalog(*offers)) == ranked(catalog(*reversed(offers)))
