"""The engine's vocabulary. Money is integer minor units, points are integers, times are aware datetimes (UTC)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING

from domain.pending import spendable_points

if TYPE_CHECKING:
    from domain.catalog_index import CatalogIndex


class Channel(IntEnum):
    UNSPECIFIED = 0
    APP = 1
    POS = 2
    WEB = 3


class RewardType(IntEnum):
    UNSPECIFIED = 0
    POINTS_MULTIPLIER = 1
    BONUS_POINTS = 2
    PERCENT_OFF = 3
    AMOUNT_OFF = 4


@dataclass(frozen=True, slots=True)
class GeoPoint:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Store:
    store_id: str
    name: str
    location: GeoPoint | None = None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Who an offer is for; empty sets and zeros mean no restriction."""

    min_lifetime_value_minor: int = 0
    tiers: frozenset[str] = frozenset()
    store_ids: frozenset[str] = frozenset()
    max_distance_km: float = 0.0
    purchased_any_categories: frozenset[str] = frozenset()
    not_purchased_categories: frozenset[str] = frozenset()
    channels: frozenset[Channel] = frozenset()


@dataclass(frozen=True, slots=True)
class Condition:
    """What the basket must hold: units and spend in `required_category` ("" = any line)."""

    required_category: str = ""
    min_quantity: int = 0
    min_spend_minor: int = 0


@dataclass(frozen=True, slots=True)
class Reward:
    type: RewardType
    target_category: str = ""  # "" = every line
    multiplier_percent: int = 0  # 200 = double points
    bonus_points: int = 0
    percent_off: int = 0
    amount_off_minor: int = 0


class OfferStatus(IntEnum):
    """Where an offer is in its life: only ACTIVE offers are listed or applied (and only within their dates)."""

    ACTIVE = 0  # the default, so offers defined before statuses existed stay live
    DRAFT = 1
    PAUSED = 2


@dataclass(frozen=True, slots=True)
class Daypart:
    """A weekly window in the store's local time: weekdays 0 = Monday .. 6 = Sunday (empty = every day);
    minutes since local midnight, start inclusive, end exclusive (end <= start wraps past midnight)."""

    weekdays: frozenset[int] = frozenset()
    start_minute: int = 0
    end_minute: int = 24 * 60


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    title: str
    description: str
    eligibility: Eligibility
    condition: Condition
    reward: Reward
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    per_customer_limit: int = 0  # 0 = unlimited
    total_redemption_limit: int = 0  # 0 = unlimited
    priority: int = 0  # higher applies first
    exclusive_group: str = ""
    archived: bool = False
    version: int = 0
    updated_at: datetime | None = None
    status: OfferStatus = OfferStatus.ACTIVE
    dayparts: tuple[Daypart, ...] = ()  # empty = any time; else valid inside any one of them


@dataclass(frozen=True, slots=True)
class TierRule:
    """A loyalty tier: reached at this rolling 12-month spend; its members earn base points times the multiplier."""

    name: str
    min_spend_12m_minor: int
    earn_multiplier_percent: int = 100  # 150 = 1.5x base points


@dataclass(frozen=True, slots=True)
class Catalog:
    """An immutable snapshot of offers and stores; servers swap whole snapshots when `version` moves."""

    version: int
    offers: tuple[Offer, ...]
    stores: Mapping[str, Store]
    tiers: tuple[TierRule, ...] = ()  # the admin's tier policy; empty = tiers come only from the CRM
    # Which offers could apply to a request (domain.catalog_index), built with the snapshot; None = scan them all.
    index: CatalogIndex | None = field(default=None, repr=False, compare=False)
    # Derived once per snapshot, not per request: lookups by id and the order offers apply in.
    by_id: Mapping[str, Offer] = field(init=False, repr=False, compare=False)
    in_priority_order: tuple[Offer, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {o.offer_id: o for o in self.offers})
        ordered = tuple(sorted(self.offers, key=lambda o: (-o.priority, o.offer_id)))
        object.__setattr__(self, "in_priority_order", ordered)

    def offer(self, offer_id: str) -> Offer | None:
        return self.by_id.get(offer_id)


@dataclass(frozen=True, slots=True)
class CustomerState:
    """What the till needs to know about one customer, read in one round trip."""

    customer_id: str
    display_name: str = ""
    tier: str = ""
    lifetime_value_minor: int = 0
    points_balance: int = 0
    categories: frozenset[str] = frozenset()
    purchase_count: int = 0
    last_purchase_at: datetime | None = None
    home: GeoPoint | None = None
    propensity: Mapping[str, float] = field(default_factory=dict)
    offer_uses: Mapping[str, int] = field(default_factory=dict)
    # offer_id -> her uses today (UTC, the service's clock) of offers limited per day (see limited_per_day).
    offer_uses_today: Mapping[str, int] = field(default_factory=dict)
    currency: str = "USD"
    # Points a return took back that the balance could not cover; repaid first from later earnings.
    points_debt: int = 0
    # Net spend of the last 12 calendar months including this one (purchases minus returns), for tiers.
    spend_12m_minor: int = 0
    # Bumped by every write; a commit is applied only if the state it was evaluated on is still current.
    version: int = 0
    # Ledger points not yet spendable when she was read (the returns window), by when they become spendable.
    pending_points: tuple[tuple[datetime, int], ...] = ()

    @property
    def points_available(self) -> int:
        """What she can spend now: the balance minus its pending part."""
        return spendable_points(self.points_balance, self.pending_points)


@dataclass(frozen=True, slots=True)
class LineItem:
    line_id: str
    sku: str
    category: str
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


@dataclass(frozen=True, slots=True)
class Basket:
    customer_id: str
    store_id: str
    terminal_id: str
    currency: str
    lines: tuple[LineItem, ...]
    points_to_redeem: int = 0


@dataclass(frozen=True, slots=True)
class PointsPolicy:
    """Base earn and redemption value, per whole currency unit (default: 1 point per 1.00; 100 points = 1.00)."""

    earn_points_per_unit: int = 1
    redeem_points_per_unit: int = 100


@dataclass(frozen=True, slots=True)
class OfferContext:
    """Where and when a customer asks: the till's store, the app's location, the channel."""

    now: datetime
    channel: Channel = Channel.UNSPECIFIED
    store_id: str = ""
    location: GeoPoint | None = None
    # Uses per member per day of an offer whose reward is fixed per basket (0 = no limit): splitting a basket
    # into several sales must not earn such a reward more often than the whole basket would.
    fixed_reward_uses_per_day: int = 0


@dataclass(frozen=True, slots=True)
class LineResult:
    line_id: str
    base_points: int
    bonus_points: int
    discount_minor: int
    offer_ids: tuple[str, ...] = ()
    # (offer_id, bonus points) for each offer that gave this line bonus points: what a return takes back.
    bonus_by_offer: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class AppliedOffer:
    offer_id: str
    title: str
    bonus_points: int
    discount_minor: int
    explanation: str


@dataclass(frozen=True, slots=True)
class NotApplied:
    """An offer whose condition the basket met but that did not apply, and why (lost an exclusive group, its lines
    already multiplied, sold out, outside its daypart)."""

    offer_id: str
    title: str
    reason: str


@dataclass(frozen=True, slots=True)
class NearMiss:
    offer_id: str
    title: str
    hint: str


@dataclass(frozen=True, slots=True)
class BasketEvaluation:
    customer_id: str
    currency: str
    lines: tuple[LineResult, ...]
    applied_offers: tuple[AppliedOffer, ...]
    near_misses: tuple[NearMiss, ...]
    points_earned: int
    points_redeemed: int
    redeemed_value_minor: int
    balance_before: int
    balance_after: int
    subtotal_minor: int
    total_discount_minor: int
    total_due_minor: int
    evaluated_at: datetime
    catalog_version: int
    points_debt_before: int = 0
    points_debt_repaid: int = 0  # taken from points_earned before they reach the balance
    not_applied: tuple[NotApplied, ...] = ()
    tier_before: str = ""
    tier_after: str = ""  # differs from tier_before when this purchase reaches a higher tier
    points_available_before: int = 0  # the part of balance_before she could spend (the rest is pending)
    points_available_at: datetime | None = None  # when the points earned become spendable; None: at once


@dataclass(frozen=True, slots=True)
class ActiveOffer:
    offer_id: str
    title: str
    description: str
    ends_at: datetime | None
    score: float
    reason: str
    remaining_uses: int  # 0 when the offer has no per-customer limit


@dataclass(frozen=True, slots=True)
class PurchaseKey:
    """What names one purchase, and its idempotency key: the store's transaction id. Tills number their own sales,
    so the same transaction id at two stores is two purchases."""

    store_id: str
    transaction_id: str


@dataclass(frozen=True, slots=True)
class Receipt:
    transaction_id: str
    evaluation: BasketEvaluation
    new_categories: tuple[str, ...]
    committed_at: datetime
    replayed: bool = False
    basket: Basket | None = None  # as committed: returns are computed from the receipt
    offers: tuple[Offer, ...] = ()  # the applied offers as defined at purchase time
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReturnRequestLine:
    line_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PurchaseFacts:
    """What a committed purchase was and earned, as its stored receipt tells: enough to compute any return."""

    transaction_id: str
    customer_id: str
    basket: Basket
    lines: tuple[LineResult, ...]  # with bonus_by_offer
    offers: Mapping[str, Offer]  # the applied offers as they were defined at purchase time
    points_redeemed: int
    redeemed_value_minor: int
    occurred_at: datetime
    points_available_at: datetime | None = None  # its points were pending until then (None: spendable at once)
    new_categories: tuple[str, ...] = ()  # categories it added to her profile (a void takes them back)

    @property
    def key(self) -> PurchaseKey:
        return PurchaseKey(self.basket.store_id, self.transaction_id)


@dataclass(frozen=True, slots=True)
class ReturnedLine:
    line_id: str
    quantity: int
    points_reversed: int  # base + bonus this return takes back for the line
    value_minor: int  # what the returned units sold for, net of discounts


@dataclass(frozen=True, slots=True)
class ReturnOutcome:
    lines: tuple[ReturnedLine, ...]
    points_reversed: int  # base + bonus taken back, >= 0 (includes bonus of lines kept whose offer no longer holds)
    points_refunded: int  # redeemed points given back pro rata, >= 0
    value_minor: int  # merchandise value returned, net of discounts, >= 0
    offers_lost: tuple[str, ...]  # offers whose condition no longer holds after this return
    explanations: tuple[str, ...]
    returned_after: Mapping[str, int]  # cumulative returned quantity per line once this return is applied
    balance_before: int
    balance_after: int  # never negative
    debt_before: int
    debt_after: int  # grows by what the balance could not cover
