"""Human text for offers: what a reward is, what a basket has, what it still needs. Shown at tills and in the app."""

from __future__ import annotations

from server.engine.model import Condition, Reward, RewardType
from server.engine.money import format_minor

_NAMED_MULTIPLIERS = {200: "double", 300: "triple", 400: "quadruple"}


def count(n: int, noun: str) -> str:
    """ "1 item", "2 items"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def multiplier_phrase(multiplier_percent: int) -> str:
    """200 -> "double points", 150 -> "1.5x points", 1000 -> "10x points"; exact, no floats."""
    named = _NAMED_MULTIPLIERS.get(multiplier_percent)
    if named:
        return f"{named} points"
    whole, frac = divmod(multiplier_percent, 100)
    digits = f"{frac:02d}".rstrip("0")
    return f"{whole}.{digits}x points" if digits else f"{whole}x points"


def describe_reward(reward: Reward, currency: str) -> str:
    """ "double points on dresses", "500 bonus points", "10% off", "USD 5.00 off on shoes"."""
    if reward.type == RewardType.POINTS_MULTIPLIER:
        text = multiplier_phrase(reward.multiplier_percent)
    elif reward.type == RewardType.BONUS_POINTS:
        text = f"{reward.bonus_points} bonus points"
    elif reward.type == RewardType.PERCENT_OFF:
        text = f"{reward.percent_off}% off"
    elif reward.type == RewardType.AMOUNT_OFF:
        text = f"{format_minor(reward.amount_off_minor, currency)} off"
    else:
        text = "no reward"
    return f"{text} on {reward.target_category}" if reward.target_category else text


def capitalize(text: str) -> str:
    # str.capitalize() would lower-case the rest ("USD" -> "Usd").
    return text[:1].upper() + text[1:]


def describe_basket_against(condition: Condition, units: int, spend_minor: int, currency: str) -> str:
    """What the basket holds of the required category: "basket has 1 item from shoes"."""
    if condition.min_quantity == 0 and condition.min_spend_minor == 0:
        return "no minimum purchase"
    where = f" from {condition.required_category}" if condition.required_category else ""
    if condition.min_spend_minor == 0:
        return f"basket has {count(units, 'item')}{where}"
    spend = format_minor(spend_minor, currency)
    if condition.min_quantity == 0:
        return f"basket has {spend}{where}"
    return f"basket has {count(units, 'item')} ({spend}){where}"


def add_items_phrase(n: int, category: str) -> str:
    """ "add 1 item from shoes", or "add 2 more items" when any line counts."""
    if category:
        return f"add {count(n, 'item')} from {category}"
    return f"add {n} more {'item' if n == 1 else 'items'}"


def spend_more_phrase(amount_minor: int, category: str, currency: str) -> str:
    """ "spend USD 12.50 more on shoes"."""
    where = f" on {category}" if category else ""
    return f"spend {format_minor(amount_minor, currency)} more{where}"


def format_km(distance_km: float) -> str:
    return f"{distance_km:.1f} km"


def points_phrase(n: int) -> str:
    """ "1 point", "120 points"."""
    return count(n, "point")


def not_kept_phrase(
    condition: Condition, reward: Reward, units: int, spend_minor: int, has_target: bool, currency: str
) -> str:
    """Why an offer stops holding once items are returned: "no item from shoes kept", "only 1 item kept, 2 needed"."""
    parts: list[str] = []
    where = f" from {condition.required_category}" if condition.required_category else ""
    short_units, short_spend = units < condition.min_quantity, spend_minor < condition.min_spend_minor
    if units == 0 and (short_units or short_spend):
        parts.append(f"no item{where} kept")
    else:
        if short_units:
            parts.append(f"only {count(units, 'item')}{where} kept, {condition.min_quantity} needed")
        if short_spend:
            kept, needed = format_minor(spend_minor, currency), format_minor(condition.min_spend_minor, currency)
            parts.append(f"only {kept} kept{where}, {needed} needed")
    target = f"no item from {reward.target_category} kept" if reward.target_category else "no item kept"
    if not has_target and target not in parts:
        parts.append(target)
    return " and ".join(parts) if parts else "its condition is no longer met"


def debt_repaid_phrase(repaid: int, debt_before: int) -> str:
    """ "50 points repay the points debt of 50" (a purchase's earnings go to a debt before the balance)."""
    left = debt_before - repaid
    text = f"{points_phrase(repaid)} repay the points debt of {debt_before}"
    return f"{text}; {left} still owed" if left > 0 else text
