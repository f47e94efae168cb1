"""Offer statuses and dayparts: an offer is live only when ACTIVE, and a happy hour follows the store's wall clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from domain.basket import evaluate_basket
from domain.describe import daypart_phrase, dayparts_refusal, weekdays_phrase
from domain.eligibility import DAYPART, STATUS, Verdict, check_eligibility, local_time, relevant_store
from domain.errors import InvalidArgument
from domain.model import (
    Catalog,
    Channel,
    CustomerState,
    Daypart,
    GeoPoint,
    Offer,
    OfferContext,
    OfferStatus,
    Reward,
    RewardType,
    Store,
)
from domain.ranking import list_active_offers
from domain.validation import validate_offer
from tests.unit import (
    COVENT_GARDEN,
    EVERY_EVENING,
    HAPPY_HOUR,
    MIDTOWN,
    NEAR_COVENT_GARDEN,
    POLICY,
    SOHO,
    app_ctx,
    basket,
    catalog,
    dress_shoes_offer,
    line,
    pos_ctx,
    samantha,
    simple_offer,
    utc,
)

BONUS = Reward(RewardType.BONUS_POINTS, bonus_points=500)
WORLD = (SOHO, MIDTOWN, COVENT_GARDEN)


def happy(*dayparts: Daypart, **changes: Any) -> Offer:
    return simple_offer("happy", BONUS, dayparts=dayparts or (HAPPY_HOUR,), **changes)


def verdict(offer: Offer, ctx: OfferContext, customer: CustomerState | None = None) -> Verdict:
    return check_eligibility(offer, customer or samantha(), ctx, catalog(offer, stores=WORLD))


def open_at(offer: Offer, now: datetime, store_id: str = "soho") -> bool:
    return verdict(offer, pos_ctx(now=now, store_id=store_id)).eligible


# --- statuses --------------------------------------------------------------------------------------------------


def test_offers_are_active_by_default() -> None:
    assert simple_offer("x", BONUS).status == OfferStatus.ACTIVE
    assert verdict(simple_offer("x", BONUS), pos_ctx()).eligible


@pytest.mark.parametrize(("status", "refusal"), [(OfferStatus.DRAFT, "draft"), (OfferStatus.PAUSED, "paused")])
def test_draft_and_paused_offers_are_refused(status: OfferStatus, refusal: str) -> None:
    result = verdict(simple_offer("x", BONUS, status=status), pos_ctx())
    assert result == Verdict(False, (), refusal)
    assert result.rule == STATUS


def test_archived_is_told_before_the_status() -> None:
    assert verdict(simple_offer("x", BONUS, status=OfferStatus.PAUSED, archived=True), pos_ctx()).refusal == "archived"


def test_status_is_checked_before_the_dates() -> None:
    ended = simple_offer("x", BONUS, status=OfferStatus.DRAFT, ends_at=utc(2020, 1, 1, 0))
    assert verdict(ended, pos_ctx()).refusal == "draft"


def test_paused_offers_are_neither_listed_nor_applied_nor_explained() -> None:
    paused = simple_offer("paused", BONUS, status=OfferStatus.PAUSED)
    draft = simple_offer("draft", BONUS, status=OfferStatus.DRAFT)
    live = simple_offer("live", BONUS)
    cat = catalog(paused, draft, live)
    assert [o.offer_id for o in list_active_offers(cat, samantha(), app_ctx(), page_size=10)] == ["live"]
    evaluation = evaluate_basket(cat, samantha(), basket(line("bag", "bags", 10_00)), pos_ctx(), POLICY)
    assert [a.offer_id for a in evaluation.applied_offers] == ["live"]
    assert (evaluation.near_misses, evaluation.not_applied) == ((), ())


# --- dayparts: the store's wall clock, not UTC -----------------------------------------------------------------


def test_half_past_five_in_new_york_is_not_half_past_five_utc() -> None:
    offer = happy()
    # Monday 2 June 2025, 17:30 UTC is 13:30 in New York (EDT, UTC-4): before the happy hour.
    result = verdict(offer, pos_ctx(now=utc(2025, 6, 2, 17, 30)))
    assert result == Verdict(False, (), "only Mon–Fri 17:00–19:00 (store time)")
    assert result.rule == DAYPART
    # 21:30 UTC is 17:30 in New York.
    assert verdict(offer, pos_ctx(now=utc(2025, 6, 2, 21, 30))) == Verdict(True, ("happy hour until 19:00",))
    # At a store on UTC the same offer follows UTC.
    utc_store = Store("utc-shop", "UTC shop", None, "UTC")
    cat = catalog(offer, stores=(*WORLD, utc_store))
    assert check_eligibility(offer, samantha(), pos_ctx(now=utc(2025, 6, 2, 17, 30), store_id="utc-shop"), cat).eligible


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        # Spring forward on Sunday 8 March 2026 (02:00 EST -> 03:00 EDT): 17:00 local moves from 22:00 to 21:00 UTC.
        (utc(2026, 3, 7, 21, 59), False),  # Sat 16:59 EST
        (utc(2026, 3, 7, 22, 0), True),  # Sat 17:00 EST
        (utc(2026, 3, 7, 23, 59), True),  # Sat 18:59 EST
        (utc(2026, 3, 8, 0, 0), False),  # Sat 19:00 EST
        (utc(2026, 3, 8, 20, 59), False),  # Sun 16:59 EDT
        (utc(2026, 3, 8, 21, 0), True),  # Sun 17:00 EDT: a day earlier this instant was 16:00
        (utc(2026, 3, 8, 22, 59), True),  # Sun 18:59 EDT
        (utc(2026, 3, 8, 23, 0), False),  # Sun 19:00 EDT: a day earlier this instant was 18:00, inside
        # Fall back on Sunday 1 November 2026 (02:00 EDT -> 01:00 EST): 17:00 local moves from 21:00 to 22:00 UTC.
        (utc(2026, 10, 31, 21, 0), True),  # Sat 17:00 EDT
        (utc(2026, 10, 31, 22, 59), True),  # Sat 18:59 EDT
        (utc(2026, 10, 31, 23, 0), False),  # Sat 19:00 EDT
        (utc(2026, 11, 1, 21, 0), False),  # Sun 16:00 EST: a day earlier this instant was 17:00, inside
        (utc(2026, 11, 1, 22, 0), True),  # Sun 17:00 EST
        (utc(2026, 11, 1, 23, 59), True),  # Sun 18:59 EST
        (utc(2026, 11, 2, 0, 0), False),  # Sun 19:00 EST
    ],
)
def test_happy_hour_follows_new_york_across_daylight_saving_changes(now: datetime, inside: bool) -> None:
    assert open_at(happy(EVERY_EVENING), now) is inside


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (utc(2026, 3, 6, 21, 30), False),  # Fri 16:30 EST
        (utc(2026, 3, 6, 22, 30), True),  # Fri 17:30 EST
        (utc(2026, 3, 9, 21, 30), True),  # Mon 17:30 EDT
        (utc(2026, 3, 9, 23, 30), False),  # Mon 19:30 EDT
        (utc(2026, 10, 30, 21, 30), True),  # Fri 17:30 EDT
        (utc(2026, 11, 2, 21, 30), False),  # Mon 16:30 EST
        (utc(2026, 11, 2, 22, 30), True),  # Mon 17:30 EST
        (utc(2026, 11, 1, 22, 30), False),  # Sun 17:30 EST: not a weekday
    ],
)
def test_weekday_happy_hour_around_the_daylight_saving_weekends(now: datetime, inside: bool) -> None:
    assert open_at(happy(), now) is inside


def test_a_window_over_the_repeated_and_the_missing_hour() -> None:
    night = happy(Daypart(frozenset(), 60, 3 * 60))  # 01:00–03:00 every day
    # 1 November 2026: 01:00–02:00 happens twice (EDT, then EST); both are inside, then 02:00–03:00 EST.
    assert open_at(night, utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    assert open_at(night, utc(2026, 11, 1, 6, 30))  # 01:30 EST
    assert open_at(night, utc(2026, 11, 1, 7, 30))  # 02:30 EST
    assert not open_at(night, utc(2026, 11, 1, 8, 0))  # 03:00 EST
    # 8 March 2026: 02:00–03:00 does not exist; 01:59 EST is followed by 03:00 EDT.
    assert open_at(night, utc(2026, 3, 8, 6, 59))  # 01:59 EST
    assert not open_at(night, utc(2026, 3, 8, 7, 0))  # 03:00 EDT


# --- dayparts past midnight ------------------------------------------------------------------------------------

FRIDAY_LATE = Daypart(frozenset({4}), 22 * 60, 2 * 60)  # Friday 22:00 to Saturday 02:00


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (utc(2025, 6, 7, 1, 59), False),  # Fri 21:59 EDT
        (utc(2025, 6, 7, 2, 0), True),  # Fri 22:00 EDT
        (utc(2025, 6, 7, 3, 0), True),  # Fri 23:00 EDT
        (utc(2025, 6, 7, 5, 0), True),  # Sat 01:00 EDT: the window started on Friday
        (utc(2025, 6, 7, 5, 59), True),  # Sat 01:59 EDT
        (utc(2025, 6, 7, 6, 0), False),  # Sat 02:00 EDT: the end is exclusive
        (utc(2025, 6, 6, 5, 0), False),  # Fri 01:00 EDT: that would be Thursday's window
        (utc(2025, 6, 8, 3, 0), False),  # Sat 23:00 EDT: Saturday has no window
    ],
)
def test_a_window_past_midnight_counts_the_weekday_it_started_on(now: datetime, inside: bool) -> None:
    assert open_at(happy(FRIDAY_LATE), now) is inside


def test_a_window_past_midnight_says_when_it_ends() -> None:
    offer = happy(FRIDAY_LATE)
    assert verdict(offer, pos_ctx(now=utc(2025, 6, 7, 5, 0))).reasons == ("happy hour until 02:00",)
    assert verdict(offer, pos_ctx(now=utc(2025, 6, 7, 6, 0))).refusal == "only Fri 22:00–02:00 (store time)"


def test_any_of_several_dayparts_opens_the_offer_and_the_longest_open_one_is_told() -> None:
    lunch = Daypart(frozenset(), 12 * 60, 14 * 60)
    offer = happy(HAPPY_HOUR, lunch, Daypart(frozenset(), 17 * 60 + 30, 24 * 60))
    assert verdict(offer, pos_ctx(now=utc(2025, 6, 1, 17, 0))).reasons == ("happy hour until 14:00",)  # Sun 13:00
    assert verdict(offer, pos_ctx(now=utc(2025, 6, 2, 21, 0))).reasons == ("happy hour until 19:00",)  # Mon 17:00
    assert verdict(offer, pos_ctx(now=utc(2025, 6, 2, 21, 45))).reasons == ("happy hour until midnight",)
    closed = verdict(offer, pos_ctx(now=utc(2025, 6, 1, 15, 0)))  # Sun 11:00
    assert closed.refusal == "only Mon–Fri 17:00–19:00 or 12:00–14:00 or 17:30–24:00 (store time)"


# --- whose clock ------------------------------------------------------------------------------------------------


def test_the_tills_store_sets_the_clock_even_for_a_visitor() -> None:
    # Mon 2 June 2025 16:30 UTC is 17:30 in London (BST) and 12:30 in New York.
    now = utc(2025, 6, 2, 16, 30)
    assert open_at(happy(), now, store_id="london")
    assert not open_at(happy(), now, store_id="soho")
    cat = catalog(happy(), stores=WORLD)
    assert relevant_store(happy(), samantha(), pos_ctx(now=now, store_id="london"), cat) == COVENT_GARDEN


def test_the_app_uses_the_nearest_eligible_store_to_where_she_is_or_lives() -> None:
    now = utc(2025, 6, 2, 16, 30)  # 17:30 London, 12:30 New York
    # In the app without a location: her home in New York, so SoHo's clock.
    assert not verdict(happy(), app_ctx(now=now)).eligible
    # The app sends a location in London: the London store's clock.
    assert verdict(happy(), app_ctx(now=now, location=NEAR_COVENT_GARDEN)).eligible
    # Only stores the offer is valid at count: a London-located member at a New York-only offer follows New York.
    ny_only = replace(happy(), eligibility=replace(happy().eligibility, store_ids=frozenset({"soho"})))
    assert not verdict(ny_only, app_ctx(now=now, location=NEAR_COVENT_GARDEN)).eligible


def test_without_a_store_or_a_location_the_clock_is_utc() -> None:
    nowhere = samantha(home=None)
    ctx = OfferContext(now=utc(2025, 6, 2, 17, 30), channel=Channel.APP)  # 17:30 UTC
    assert verdict(happy(), ctx, nowhere).eligible
    assert relevant_store(happy(), nowhere, ctx, catalog(happy(), stores=WORLD)) is None
    assert local_time(utc(2025, 6, 2, 17, 30), None).hour == 17


def test_a_store_with_an_unknown_zone_falls_back_to_utc() -> None:
    broken = Store("broken", "Broken", None, "Mars/Olympus_Mons")
    assert local_time(utc(2025, 6, 2, 17, 30), broken).hour == 17


def test_naive_now_is_utc() -> None:
    assert open_at(happy(), utc(2025, 6, 2, 21, 30).replace(tzinfo=None))


def test_app_listing_shows_the_happy_hour_with_the_nearest_stores_clock() -> None:
    offer = happy()
    cat = catalog(offer, simple_offer("always", BONUS), stores=WORLD)

    def listed(now: datetime, location: GeoPoint | None = None) -> dict[str, str]:
        offers = list_active_offers(cat, samantha(), app_ctx(now=now, location=location), page_size=10)
        return {o.offer_id: o.reason for o in offers}

    # Mon 21:30 UTC: 17:30 at SoHo near her home, 22:30 in London.
    assert listed(utc(2025, 6, 2, 21, 30)) == {"happy": "happy hour until 19:00", "always": "available to all members"}
    assert listed(utc(2025, 6, 2, 21, 30), NEAR_COVENT_GARDEN) == {"always": "available to all members"}
    # Mon 16:30 UTC: 17:30 in London, 12:30 at SoHo.
    assert "happy" in listed(utc(2025, 6, 2, 16, 30), NEAR_COVENT_GARDEN)
    assert "happy" not in listed(utc(2025, 6, 2, 16, 30))


def test_the_daypart_reason_follows_the_other_reasons() -> None:
    offer = replace(dress_shoes_offer(), dayparts=(HAPPY_HOUR,))
    assert verdict(offer, app_ctx(now=utc(2025, 6, 2, 21, 30))).reasons == (
        "you buy dresses",
        "2.0 km from SoHo",
        "happy hour until 19:00",
    )


def test_other_refusals_come_before_the_daypart() -> None:
    offer = replace(dress_shoes_offer(), dayparts=(HAPPY_HOUR,))
    assert verdict(offer, pos_ctx(), samantha(lifetime_value_minor=0)).refusal == "lifetime value below 1000000"
    assert verdict(offer, pos_ctx(), samantha(offer_uses={"dress-shoes-2x": 1})).rule == DAYPART


# --- wording ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (frozenset(), ""),
        (frozenset(range(7)), ""),
        (frozenset(range(5)), "Mon–Fri"),
        (frozenset({5, 6}), "Sat, Sun"),
        (frozenset({4, 5, 6, 0}), "Fri–Mon"),
        (frozenset({0, 2, 4}), "Mon, Wed, Fri"),
        (frozenset({0, 1, 2, 5}), "Mon–Wed, Sat"),
        (frozenset({6}), "Sun"),
    ],
)
def test_weekdays_in_words(days: frozenset[int], text: str) -> None:
    assert weekdays_phrase(days) == text


def test_dayparts_in_words() -> None:
    assert daypart_phrase(HAPPY_HOUR) == "Mon–Fri 17:00–19:00"
    assert daypart_phrase(Daypart(frozenset(), 0, 24 * 60)) == "00:00–24:00"
    assert daypart_phrase(FRIDAY_LATE) == "Fri 22:00–02:00"
    assert dayparts_refusal((HAPPY_HOUR, FRIDAY_LATE)) == "only Mon–Fri 17:00–19:00 or Fri 22:00–02:00 (store time)"


# --- validation -------------------------------------------------------------------------------------------------


def field_of(offer: Offer) -> str:
    with pytest.raises(InvalidArgument) as caught:
        validate_offer(offer)
    return caught.value.field


def test_good_dayparts_and_statuses_validate() -> None:
    for status in OfferStatus:
        validate_offer(dress_shoes_offer(status=status))
    validate_offer(dress_shoes_offer(dayparts=(HAPPY_HOUR, FRIDAY_LATE, Daypart(frozenset(range(7)), 0, 24 * 60))))
    validate_offer(dress_shoes_offer(dayparts=(Daypart(frozenset({6}), 24 * 60 - 1, 24 * 60),)))


@pytest.mark.parametrize(
    ("dayparts", "field"),
    [
        ((Daypart(frozenset({7}), 0, 60),), "offer.dayparts[0].weekdays"),
        ((Daypart(frozenset({-1}), 0, 60),), "offer.dayparts[0].weekdays"),
        ((Daypart(frozenset(), -1, 60),), "offer.dayparts[0].start_minute"),
        ((Daypart(frozenset(), 24 * 60, 60),), "offer.dayparts[0].start_minute"),
        ((Daypart(frozenset(), 0, 0),), "offer.dayparts[0].end_minute"),
        ((Daypart(frozenset(), 0, 24 * 60 + 1),), "offer.dayparts[0].end_minute"),
        ((HAPPY_HOUR, Daypart(frozenset(), 600, 600)), "offer.dayparts[1].end_minute"),
    ],
)
def test_bad_dayparts(dayparts: tuple[Daypart, ...], field: str) -> None:
    assert field_of(dress_shoes_offer(dayparts=dayparts)) == field


def test_unknown_status_is_refused() -> None:
    assert field_of(dress_shoes_offer(status=7)) == "offer.status"


def test_catalog_without_the_till_store_falls_back_to_the_nearest() -> None:
    # A till store the catalog does not know (the servers refuse it earlier): the nearest store's clock, not a crash.
    offer = happy()
    cat: Catalog = catalog(offer, stores=WORLD)
    ctx = pos_ctx(now=utc(2025, 6, 2, 21, 30), store_id="gone")
    assert relevant_store(offer, samantha(), ctx, cat) == SOHO
