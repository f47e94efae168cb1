"""Human text for offers: what a reward is, what a basket has, what it still needs. Shown at tills and in the app."""

from __future__ import annotations

from collections.abc import Sequence

from domain.model import Condition, Daypart, Reward, RewardType
from domain.money import format_minor

_NAMED_MULTIPLIERS = {200: "double", 300: "triple", 400: "quadruple"}


def count(n: int, noun: str) -> str:
    """ "1 item", "2 items"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def multiplier_word(multiplier_percent: int) -> str:
    """200 -> "double", 150 -> "1.5x", 1000 -> "10x"; exact, no floats."""
    named = _NAMED_MULTIPLIERS.get(multiplier_percent)
    if named:
        return named
    whole, frac = divmod(multiplier_percent, 100)
    digits = f"{frac:02d}".rstrip("0")
    return f"{whole}.{digits}x" if digits else f"{whole}x"


def multiplier_phrase(multiplier_percent: int) -> str:
    """200 -> "double points", 150 -> "1.5x points", 1000 -> "10x points"; exact, no floats."""
    return f"{multiplier_word(multiplier_percent)} points"


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


_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MINUTES_PER_DAY = 24 * 60


def clock_phrase(minute: int) -> str:
    """Minutes since midnight as a 24-hour clock: 1020 -> "17:00", 1440 -> "24:00"."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def until_phrase(minute: int) -> str:
    """When a window closes: "until 19:00", "until midnight"."""
    return "until midnight" if minute % MINUTES_PER_DAY == 0 else f"until {clock_phrase(minute)}"


def weekdays_phrase(weekdays: frozenset[int]) -> str:
    """ "Mon–Fri", "Sat, Sun", "Fri–Mon"; "" for every day (empty or all seven). Runs of 3+ days use a dash."""
    days = {day for day in weekdays if 0 <= day <= 6}
    if not days or len(days) == 7:
        return ""
    # Start at the first day that follows a gap, so a run across the weekend (Fri–Mon) stays one run.
    start = min(day for day in days if (day - 1) % 7 not in days)
    runs: list[list[int]] = []
    for step in range(7):
        day = (start + step) % 7
        if day not in days:
            continue
        if runs and (runs[-1][-1] + 1) % 7 == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_WEEKDAY_NAMES[run[0]]}–{_WEEKDAY_NAMES[run[-1]]}")
        else:
            parts.extend(_WEEKDAY_NAMES[day] for day in run)
    return ", ".join(parts)


def daypart_phrase(daypart: Daypart) -> str:
    """ "Mon–Fri 17:00–19:00", "Fri 22:00–02:00" (past midnight), "17:00–19:00" (every day)."""
    hours = f"{clock_phrase(daypart.start_minute)}–{clock_phrase(daypart.end_minute)}"
    days = weekdays_phrase(daypart.weekdays)
    return f"{days} {hours}" if days else hours


def dayparts_refusal(dayparts: Sequence[Daypart]) -> str:
    """ "only Mon–Fri 17:00–19:00 (store time)"; several windows are joined with "or"."""
    return "only " + " or ".join(daypart_phrase(part) for part in dayparts) + " (store time)"


def worth_phrase(discount_minor: int, points: int, points_value_minor: int, currency: str) -> str:
    """What a reward is worth to the customer: "USD 20.00 off", "500 points worth USD 5.00", "nothing"."""
    parts: list[str] = []
    if discount_minor:
        parts.append(f"{format_minor(discount_minor, currency)} off")
    if points:
        parts.append(f"{points_phrase(points)} worth {format_minor(points_value_minor, currency)}")
    return " + ".join(parts) if parts else "nothing"


def tier_bonus_title(name: str) -> str:
    """ "Gold member bonus": the title a tier bonus is listed under among the applied offers."""
    return f"{capitalize(name)} member bonus"


def tier_bonus_phrase(name: str, multiplier_percent: int, points: int) -> str:
    """ "gold members earn 1.5x base points: +60 points"."""
    return f"{name} members earn {multiplier_word(multiplier_percent)} base points: +{points_phrase(points)}"


def tier_upgrade_phrase(before: str, after: str) -> str:
    """ "upgraded from silver to gold", "upgraded to gold" (no tier before); "" when the tier did not change."""
    if not after or after == before:
        return ""
    return f"upgraded from {before} to {after}" if before else f"upgraded to {after}"
