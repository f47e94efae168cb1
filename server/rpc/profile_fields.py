"""What GetProfile shows each role: admin keys every field, pos and app keys only the fields their setting names
(POS_OFFERS_POS_PROFILE_FIELDS, POS_OFFERS_APP_PROFILE_FIELDS). A pure filter on the response, by the caller's role.

A till needs the balance, the tier and the name the cashier greets her by; the app, her points. Neither needs where
she lives, what the models predict she will buy, or what she has spent: those stay with head office (admin keys).
"""

from __future__ import annotations

from google.protobuf.message import Message
from posoffers.v1 import types_pb2 as pb

from domain.access import ApiKey, Role

NEVER_OUTSIDE_ADMIN = frozenset({"home_location", "propensity"})
"""Fields no setting can show to a pos or app key: where she lives, and what the models predict of her."""

_ALWAYS = frozenset({"customer_id", "withheld_fields"})  # who she is, and what this key is not shown

_SETTING = {Role.POS: "POS_OFFERS_POS_PROFILE_FIELDS", Role.APP: "POS_OFFERS_APP_PROFILE_FIELDS"}


def _field_names(setting: str, raw: str) -> frozenset[str]:
    """The names of a comma-separated setting, each a CustomerProfile field; else why not (checked at start)."""
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    known = set(pb.CustomerProfile.DESCRIPTOR.fields_by_name)
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"{setting}: not CustomerProfile fields: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    forbidden = sorted(names & NEVER_OUTSIDE_ADMIN)
    if forbidden:
        raise ValueError(f"{setting}: {', '.join(forbidden)} is shown to admin keys only")
    return names


class ProfileFields:
    def __init__(self, *, pos: str, app: str) -> None:
        """Raises ValueError, naming the setting, for a field the contract does not have or may not show."""
        self._visible = {
            Role.POS: _field_names(_SETTING[Role.POS], pos),
            Role.APP: _field_names(_SETTING[Role.APP], app),
        }

    def shown(self, profile: pb.CustomerProfile, caller: ApiKey | None) -> pb.CustomerProfile:
        """`profile` with the fields the caller may not see cleared. No caller: authentication is off (loopback
        experiments only), and the profile is shown whole, as to an admin."""
        visible = None if caller is None else self._visible.get(caller.role)
        if visible is None:
            return profile
        message: Message = profile  # cleared by name, as the setting names them
        withheld = [f.name for f in pb.CustomerProfile.DESCRIPTOR.fields if f.name not in visible | _ALWAYS]
        for name in withheld:
            message.ClearField(name)
        profile.withheld_fields.extend(withheld)  # so a 0 there is not read as "none"
        return profile
