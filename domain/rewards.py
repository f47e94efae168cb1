"""Integer arithmetic of rewards: base points, multiplier bonus, exact proration. No floats touch money or points."""

from __future__ import annotations

from collections.abc import Sequence

from domain.model import PointsPolicy


def base_points(net_minor: int, minor_per_unit: int, policy: PointsPolicy) -> int:
    """Points a line earns on what the customer pays for it: whole currency units (rounded down) × earn rate."""
    return (max(net_minor, 0) // minor_per_unit) * policy.earn_points_per_unit


def multiplier_bonus(base: int, multiplier_percent: int) -> int:
    """Extra points on top of `base`: 200% of 120 gives +120 (the base itself is already earned)."""
    return base * (multiplier_percent - 100) // 100


def prorate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split `amount` over `weights` exactly (largest remainder; ties go to the earlier weight).

    The shares always sum to `amount`. When `amount` <= sum(weights), no share exceeds its weight. Callers pass
    weights in a canonical order (by line_id) so the split does not depend on the order of basket lines.
    All-zero weights split evenly.
    """
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    total = sum(weights)
    shares = [amount * weight // total for weight in weights]
    remainders = [amount * weight % total for weight in weights]
    left = amount - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        shares[index] += 1
    return shares


def value_scaled(discount_minor: int, points: int, minor_per_unit: int, policy: PointsPolicy) -> int:
    """Worth to the customer of a discount plus points, in minor units × redeem_points_per_unit (stays integer)."""
    return discount_minor * policy.redeem_points_per_unit + points * minor_per_unit
