"""A customer's profile hash in Redis: the one place Python names its fields, writes them and reads them back.

The scripts name only the fields they change (balance, lifetime value, purchases, version ...). A new per-customer
field is thus the domain's (CustomerState), this module's (its name, how it is written and read) and, when a script
changes it, that script's: a CRM import (upsert_customer.lua) and a rebuild (hydrate_customer.lua) set whatever
fields they are given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from domain.model import CustomerState, GeoPoint
from usecases.snapshot import CustomerSnapshot


class ProfileField(StrEnum):
    NAME = "name"
    TIER = "tier"
    CURRENCY = "cur"
    LIFETIME_VALUE = "ltv"  # minor units
    BALANCE = "bal"  # points, pending ones included
    DEBT = "debt"  # points owed (a return took back more than she had)
    PURCHASES = "cnt"
    LAST_PURCHASE = "last"  # epoch ms; "0" = never
    HOME_LATITUDE = "hlat"
    HOME_LONGITUDE = "hlon"
    PROPENSITY = "prop"  # JSON object category -> score
    VERSION = "ver"  # every change adds one; a rebuild starts from its own time (epoch ms), never a value seen before
    LEDGER_BASE = "lbase"  # sum of her ledger entries no longer kept in the ledger list


F = ProfileField


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _display(
    name: str, tier: str, currency: str, home: GeoPoint | None, propensity: Mapping[str, float]
) -> dict[str, str]:
    return {
        F.NAME: name,
        F.TIER: tier,
        F.CURRENCY: currency,
        F.HOME_LATITUDE: repr(home.latitude) if home else "",
        F.HOME_LONGITUDE: repr(home.longitude) if home else "",
        F.PROPENSITY: json.dumps(dict(propensity), sort_keys=True) if propensity else "",
    }


def display_fields(state: CustomerState) -> dict[str, str]:
    """The profile fields a CRM import sets; "" deletes the field."""
    return _display(state.display_name, state.tier, state.currency, state.home, state.propensity)


def snapshot_fields(snapshot: CustomerSnapshot, *, now: datetime) -> dict[str, str]:
    """Every profile field of a customer rebuilt from SQL at `now` (empty ones left out)."""
    lat, lon = snapshot.home_latitude, snapshot.home_longitude
    home = GeoPoint(lat, lon) if lat is not None and lon is not None else None
    display = _display(snapshot.display_name, snapshot.tier, snapshot.currency, home, snapshot.propensity)
    kept = sum(e.points for e in snapshot.ledger)  # the entries the ledger list gets
    return {
        **{name: value for name, value in display.items() if value},
        F.LIFETIME_VALUE: str(snapshot.lifetime_value_minor),
        F.BALANCE: str(snapshot.points_balance),
        F.DEBT: str(snapshot.points_debt),
        F.PURCHASES: str(snapshot.purchase_count),
        F.LAST_PURCHASE: str(epoch_ms(snapshot.last_purchase_at)) if snapshot.last_purchase_at else "0",
        # Never a version a commit in flight before the loss could have read (no ABA).
        F.VERSION: str(epoch_ms(now)),
        F.LEDGER_BASE: str(snapshot.points_balance - snapshot.points_debt - kept),
    }


def _text(raw: bytes | None) -> str:
    return raw.decode() if raw is not None else ""


def parse_profile(
    customer_id: str,
    raw: Mapping[bytes, bytes],
    categories: set[bytes],
    uses: Mapping[bytes, bytes],
    spend: Sequence[bytes | None] = (),
    pending: Mapping[bytes, bytes] | None = None,
    now: datetime | None = None,
) -> CustomerState | None:
    """Her state from one pipelined read of her keys; None when Redis does not hold her profile."""
    if not raw:
        return None
    fields = {name.decode(): value for name, value in raw.items()}
    now_ms = epoch_ms(now or datetime.now(UTC))
    # The hash keeps fields that became spendable until a script next touches it: only later ones are pending.
    not_yet = sorted((int(at), int(points)) for at, points in (pending or {}).items() if int(at) > now_ms)
    lat, lon = fields.get(F.HOME_LATITUDE), fields.get(F.HOME_LONGITUDE)
    last = fields.get(F.LAST_PURCHASE)
    return CustomerState(
        customer_id=customer_id,
        display_name=_text(fields.get(F.NAME)),
        tier=_text(fields.get(F.TIER)),
        currency=_text(fields.get(F.CURRENCY)) or "USD",
        lifetime_value_minor=int(fields.get(F.LIFETIME_VALUE, b"0")),
        points_balance=int(fields.get(F.BALANCE, b"0")),
        purchase_count=int(fields.get(F.PURCHASES, b"0")),
        last_purchase_at=datetime.fromtimestamp(int(last) / 1000, UTC) if last and int(last) else None,
        home=GeoPoint(float(lat), float(lon)) if lat and lon else None,
        propensity=json.loads(fields[F.PROPENSITY]) if fields.get(F.PROPENSITY) else {},
        categories=frozenset(c.decode() for c in categories),
        offer_uses={k.decode(): int(v) for k, v in uses.items()},
        points_debt=int(fields.get(F.DEBT, b"0")),
        spend_12m_minor=sum(int(v) for v in spend if v is not None),
        version=int(fields.get(F.VERSION, b"0")),
        pending_points=tuple((datetime.fromtimestamp(at / 1000, UTC), points) for at, points in not_yet if points),
    )
