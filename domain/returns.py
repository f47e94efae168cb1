"""Returns: what giving back some units of a committed purchase takes back (points), refunds (redeemed points) and
is worth (merchandise value), computed from the purchase's stored facts alone.

Everything is cumulative. For `kept` units per line (bought minus returned so far), a purchase is credited with

    kept_earned(kept) = Σ_i base_i × kept_i // q_i  +  Σ_{offers o still holding} Σ_i bonus_{o,i} × kept_i // q_i
    value(kept)       = Σ_i (q_i × p_i − discount_i) × kept_i // q_i
    refunded(kept)    = redeemed − redeemed × value(kept) // value(everything)

and a return reports the difference between before and after. The differences telescope, so any sequence of
partial returns adds up exactly to one full return, and a full return takes back exactly the points the purchase
earned, refunds exactly the points it redeemed and returns exactly what it was paid for (net of discounts).

An applied offer still holds while the kept units meet its condition (units and spend in its required category)
and at least one kept unit is in its target category. Once it stops holding, the bonus it gave is taken back from
every line, including lines the customer keeps: returning the shoes takes back the dress's double points.

Bonus points not attributed to an offer (receipts written before `bonus_by_offer` existed), or attributed to an
offer whose terms the facts do not carry, are treated like base points: taken back in proportion to the units.

Every function is pure: integers only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain.describe import not_kept_phrase, points_phrase
from domain.errors import FailedPrecondition, InvalidArgument
from domain.model import (
    CustomerState,
    LineItem,
    Offer,
    PurchaseFacts,
    ReturnedLine,
    ReturnOutcome,
    ReturnRequestLine,
    RewardType,
)

# Bonus without a known offer behind it: never lost, only returned with its units.
_UNCONDITIONAL = ""


@dataclass(frozen=True, slots=True)
class _Line:
    item: LineItem
    base: int
    bonuses: tuple[tuple[str, int], ...]  # (offer_id or _UNCONDITIONAL, points)
    net_minor: int  # what the whole line sold for, net of discounts

    @property
    def quantity(self) -> int:
        return self.item.quantity

    def share(self, amount: int, kept: int) -> int:
        """The part of `amount` (earned by the whole line) that `kept` units carry, rounded down."""
        return amount * kept // self.quantity

    def earned(self, kept: int, holding: frozenset[str]) -> int:
        bonus = sum(self.share(points, kept) for offer_id, points in self.bonuses if offer_id in holding)
        return self.share(self.base, kept) + bonus

    def value(self, kept: int) -> int:
        return self.share(self.net_minor, kept)


@dataclass(frozen=True, slots=True)
class _State:
    """The purchase with `kept` units per line (basket order)."""

    kept: tuple[int, ...]
    holding: frozenset[str]  # offer ids still holding, plus _UNCONDITIONAL
    earned: int
    value: int


def _purchase_lines(facts: PurchaseFacts) -> list[_Line]:
    """The basket's lines with what each earned; ValueError if the stored facts contradict themselves."""
    results = {result.line_id: result for result in facts.lines}
    if len(results) != len(facts.lines) or len({item.line_id for item in facts.basket.lines}) != len(results):
        raise ValueError(f"purchase {facts.transaction_id}: line ids of the basket and its results do not match")
    lines: list[_Line] = []
    for item in facts.basket.lines:
        result = results.get(item.line_id)
        if result is None:
            raise ValueError(f"purchase {facts.transaction_id}: no result for line {item.line_id}")
        if item.quantity < 1:
            raise ValueError(f"purchase {facts.transaction_id}: line {item.line_id} has quantity {item.quantity}")
        bonuses = [
            (offer_id if offer_id in facts.offers else _UNCONDITIONAL, points)
            for offer_id, points in result.bonus_by_offer
        ]
        unattributed = result.bonus_points - sum(points for _, points in result.bonus_by_offer)
        if unattributed < 0:
            raise ValueError(f"purchase {facts.transaction_id}: line {item.line_id} attributes more bonus than it got")
        if unattributed:
            bonuses.append((_UNCONDITIONAL, unattributed))
        net = item.total_minor - result.discount_minor
        lines.append(_Line(item, result.base_points, tuple(bonuses), net))
    return lines


def _returned_so_far(facts: PurchaseFacts, lines: Sequence[_Line], already_returned: Mapping[str, int]) -> list[int]:
    known = {line.item.line_id: line for line in lines}
    for line_id, quantity in already_returned.items():
        line = known.get(line_id)
        if line is None or not 0 <= quantity <= line.quantity:
            raise ValueError(f"purchase {facts.transaction_id}: recorded return of {quantity} of line {line_id!r}")
    return [already_returned.get(line.item.line_id, 0) for line in lines]


def _in_category(line: _Line, category: str) -> bool:
    return not category or line.item.category == category


def _condition_kept(offer: Offer, lines: Sequence[_Line], kept: Sequence[int]) -> tuple[int, int, bool]:
    """Units and spend kept in the offer's required category, and whether a unit of its target is kept."""
    required = [
        (line, k) for line, k in zip(lines, kept, strict=True) if _in_category(line, offer.condition.required_category)
    ]
    units = sum(k for _, k in required)
    spend = sum(k * line.item.unit_price_minor for line, k in required)
    has_target = any(
        k > 0 and _in_category(line, offer.reward.target_category) for line, k in zip(lines, kept, strict=True)
    )
    return units, spend, has_target


def _is_discount(offer: Offer | None) -> bool:
    return offer is not None and offer.reward.type in (RewardType.PERCENT_OFF, RewardType.AMOUNT_OFF)


def _holds(offer: Offer, lines: Sequence[_Line], kept: Sequence[int]) -> bool:
    units, spend, has_target = _condition_kept(offer, lines, kept)
    return units >= offer.condition.min_quantity and spend >= offer.condition.min_spend_minor and has_target


def _state(facts: PurchaseFacts, lines: Sequence[_Line], kept: Sequence[int]) -> _State:
    holding = frozenset(
        {_UNCONDITIONAL} | {offer_id for offer_id, offer in facts.offers.items() if _holds(offer, lines, kept)}
    )
    return _State(
        kept=tuple(kept),
        holding=holding,
        earned=sum(line.earned(k, holding) for line, k in zip(lines, kept, strict=True)),
        value=sum(line.value(k) for line, k in zip(lines, kept, strict=True)),
    )


def _refunded(facts: PurchaseFacts, state: _State, value_all: int) -> int:
    """Redeemed points given back once only `state.kept` is kept: in proportion to the value returned."""
    redeemed = facts.points_redeemed
    if value_all <= 0:
        return redeemed if not any(state.kept) else 0
    return redeemed - redeemed * state.value // value_all


def remaining_lines(facts: PurchaseFacts, already_returned: Mapping[str, int]) -> tuple[ReturnRequestLine, ...]:
    """Every line with a quantity left to return, in basket order: the request that voids what is left."""
    lines = _purchase_lines(facts)
    returned = _returned_so_far(facts, lines, already_returned)
    return tuple(
        ReturnRequestLine(line.item.line_id, line.quantity - done)
        for line, done in zip(lines, returned, strict=True)
        if line.quantity > done
    )


def _validate_request(
    facts: PurchaseFacts, left: Mapping[str, int], lines: Sequence[ReturnRequestLine], field_prefix: str
) -> None:
    if not lines:
        raise InvalidArgument(field_prefix, "must name at least one line")
    seen: set[str] = set()
    for index, request in enumerate(lines):
        field = f"{field_prefix}[{index}]"
        if request.line_id not in left:
            raise InvalidArgument(
                f"{field}.line_id", f"purchase {facts.transaction_id} has no line {request.line_id!r}"
            )
        if request.line_id in seen:
            raise InvalidArgument(f"{field}.line_id", f"line {request.line_id} is named more than once")
        seen.add(request.line_id)
        available = left[request.line_id]
        if available == 0:
            raise InvalidArgument(f"{field}.quantity", f"line {request.line_id} has been returned in full")
        if request.quantity < 1:
            raise InvalidArgument(f"{field}.quantity", "must be at least 1")
        if request.quantity > available:
            raise InvalidArgument(f"{field}.quantity", f"only {available} of line {request.line_id} left to return")


def _points_noun(n: int) -> str:
    return "point" if n == 1 else "points"


def _explain(
    facts: PurchaseFacts,
    purchase: Sequence[_Line],
    request: Sequence[ReturnRequestLine],
    returned: Sequence[ReturnedLine],
    kept_after: Sequence[int],
    lost: Sequence[str],
) -> list[str]:
    """One text per returned line, then one per offer lost; their points add up to the total taken back."""
    skus = {line.item.line_id: line.item.sku for line in purchase}
    texts = [
        f"returned {r.quantity} × {skus[r.line_id]}: {points_phrase(r.points_reversed)} taken back" for r in returned
    ]
    requested = {r.line_id for r in request}
    for offer_id in lost:
        offer = facts.offers[offer_id]
        units, spend, has_target = _condition_kept(offer, purchase, kept_after)
        why = not_kept_phrase(offer.condition, offer.reward, units, spend, has_target, facts.basket.currency)
        # Bonus of lines kept as they were counts only in the total, so it is told here; requested lines told theirs.
        kept_bonus = sum(
            line.share(points, k)
            for line, k in zip(purchase, kept_after, strict=True)
            if line.item.line_id not in requested
            for bonus_offer, points in line.bonuses
            if bonus_offer == offer_id
        )
        text = f"{offer.title} no longer applies ({why})"
        texts.append(
            f"{text}: its {kept_bonus} bonus {_points_noun(kept_bonus)} {'is' if kept_bonus == 1 else 'are'} taken back"
            if kept_bonus
            else text
        )
    return texts


def _kept_before(
    facts: PurchaseFacts,
    purchase: Sequence[_Line],
    already_returned: Mapping[str, int],
    request: Sequence[ReturnRequestLine],
    field_prefix: str,
) -> list[int]:
    """Units kept per line (basket order) before this return, once the request checks out against them."""
    returned = _returned_so_far(facts, purchase, already_returned)
    kept = [line.quantity - done for line, done in zip(purchase, returned, strict=True)]
    left = {line.item.line_id: k for line, k in zip(purchase, kept, strict=True)}
    if not any(left.values()):
        raise FailedPrecondition(
            f"purchase {facts.transaction_id} has been returned in full", reason="already_returned"
        )
    _validate_request(facts, left, request, field_prefix)
    return kept


def _kept_after(
    kept_before: Sequence[int], index: Mapping[str, int], request: Sequence[ReturnRequestLine]
) -> list[int]:
    kept = list(kept_before)
    for line in request:
        kept[index[line.line_id]] -= line.quantity
    return kept


def _returned_lines(
    purchase: Sequence[_Line],
    index: Mapping[str, int],
    request: Sequence[ReturnRequestLine],
    before: _State,
    after: _State,
) -> tuple[ReturnedLine, ...]:
    """Each requested line, in request order, with its own points taken back and the value it returns."""
    return tuple(
        ReturnedLine(
            line_id=line.line_id,
            quantity=line.quantity,
            points_reversed=purchase[i].earned(before.kept[i], before.holding)
            - purchase[i].earned(after.kept[i], after.holding),
            value_minor=purchase[i].value(before.kept[i]) - purchase[i].value(after.kept[i]),
        )
        for line in request
        for i in (index[line.line_id],)
    )


def _offers_lost(facts: PurchaseFacts, purchase: Sequence[_Line], before: _State, after: _State) -> list[str]:
    """The offers this return gives back, sorted by id.

    A discount stays on the units she keeps, so its offer is given back when the last discounted unit comes back;
    a points offer as soon as its condition no longer holds (its bonus is taken back then)."""

    def discount_lost(offer: Offer) -> bool:
        return _condition_kept(offer, purchase, before.kept)[2] and not _condition_kept(offer, purchase, after.kept)[2]

    return sorted(
        offer_id
        for offer_id, offer in facts.offers.items()
        if (discount_lost(offer) if _is_discount(offer) else offer_id in before.holding - after.holding)
    )


def _balance_after(customer: CustomerState, net: int) -> tuple[int, int, int]:
    """Her balance and points debt once `net` points come back (taken back when negative), and the debt repaid.
    The balance never goes negative: what it cannot cover becomes points debt."""
    balance, debt = customer.points_balance, customer.points_debt
    repaid = min(debt, net) if net > 0 else 0  # points coming back repay a debt first, like earnings
    if balance + net >= 0:
        return balance + net - repaid, debt - repaid, repaid
    return 0, debt - (balance + net), repaid


def _points_notes(points_refunded: int, repaid: int, debt: int, debt_after: int) -> list[str]:
    """What the return does to her points beyond what it takes back: refunds, debt repaid, debt grown."""
    notes: list[str] = []
    if points_refunded:
        notes.append(f"{points_refunded} redeemed {_points_noun(points_refunded)} refunded")
    if repaid:
        notes.append(f"{repaid} {_points_noun(repaid)} repay the points debt of {debt}")
    if debt_after > debt:
        why = "the points these items earned had already been spent"
        grown = debt_after - debt
        notes.append(
            f"points debt grows by {grown} to {debt_after}: {why}" if debt else f"points debt of {grown}: {why}"
        )
    return notes


def evaluate_return(
    facts: PurchaseFacts,
    customer: CustomerState,
    already_returned: Mapping[str, int],
    lines: Sequence[ReturnRequestLine],
    *,
    field_prefix: str = "lines",
) -> ReturnOutcome:
    """Return `lines` of the purchase `facts` describes, after `already_returned` (quantity per line_id).

    `customer` is the customer's current state: what she holds now, not at purchase time. Per-line
    `points_reversed` is that line's own base and bonus (including bonus it loses because an offer stops holding);
    bonus that lines kept lose through an offer that stops holding counts only in the total.
    The balance never goes negative: what it cannot cover becomes points debt, repaid from later purchases.

    Raises FailedPrecondition("already_returned") when nothing is left to return, else InvalidArgument naming
    the field (`lines[1].quantity`, with `field_prefix` for "lines") for an empty request, an unknown or repeated
    line, or a quantity below 1 or above what is left. ValueError if the facts or `already_returned` are corrupt.
    """
    purchase = _purchase_lines(facts)
    kept_before = _kept_before(facts, purchase, already_returned, lines, field_prefix)
    index = {line.item.line_id: i for i, line in enumerate(purchase)}
    kept_after = _kept_after(kept_before, index, lines)
    everything = _state(facts, purchase, [line.quantity for line in purchase])
    before = _state(facts, purchase, kept_before)
    after = _state(facts, purchase, kept_after)

    returned_lines = _returned_lines(purchase, index, lines, before, after)
    points_reversed = before.earned - after.earned
    points_refunded = _refunded(facts, after, everything.value) - _refunded(facts, before, everything.value)
    lost = _offers_lost(facts, purchase, before, after)
    balance_after, debt_after, repaid = _balance_after(customer, points_refunded - points_reversed)
    explanations = _explain(facts, purchase, lines, returned_lines, kept_after, lost)
    explanations += _points_notes(points_refunded, repaid, customer.points_debt, debt_after)
    returned_after = {
        line.item.line_id: line.quantity - k for line, k in zip(purchase, kept_after, strict=True) if line.quantity > k
    }
    return ReturnOutcome(
        lines=returned_lines,
        points_reversed=points_reversed,
        points_refunded=points_refunded,
        value_minor=before.value - after.value,
        offers_lost=tuple(lost),
        explanations=tuple(explanations),
        returned_after=returned_after,
        balance_before=customer.points_balance,
        balance_after=balance_after,
        debt_before=customer.points_debt,
        debt_after=debt_after,
    )
