"""GetProfile shows each role what it needs, with real keys on a real server: admin everything, a till the balance,
tier and name, the app her points. Where she lives, what the models predict and what she has spent stay with head
office; the offers an app key lists say how far a store is, never where she lives."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf import text_format
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from domain.access import Role
from server.config import Settings
from server.demo import SAMANTHA_HOME
from tests.e2e.conftest import clone_samantha
from tests.support.server_thread import ServerThread, channel_to

ROOT = Path(__file__).resolve().parents[2]
HEAD_OFFICE_ONLY = {"home_location", "propensity", "lifetime_value_minor", "spend_12m_minor", "categories_purchased"}
POS_FIELDS = set(Settings().pos_profile_fields.split(","))
APP_FIELDS = set(Settings().app_profile_fields.split(","))


def shown(profile: pb.CustomerProfile) -> set[str]:
    return {field.name for field, _ in profile.ListFields()} - {"withheld_fields"}


@pytest.fixture(scope="module")
def stubs(server_target: str) -> Iterator[dict[Role, svc_grpc.OfferServiceStub]]:
    channels = {role: channel_to(server_target, role) for role in Role}
    yield {role: svc_grpc.OfferServiceStub(channel) for role, channel in channels.items()}
    for channel in channels.values():
        channel.close()


def profile_as(stubs: dict[Role, svc_grpc.OfferServiceStub], role: Role, customer_id: str) -> pb.CustomerProfile:
    return stubs[role].GetProfile(svc.GetProfileRequest(customer_id=customer_id))


def test_an_admin_key_sees_the_whole_profile(
    stubs: dict[Role, svc_grpc.OfferServiceStub], fresh_customer_id: str
) -> None:
    profile = profile_as(stubs, Role.ADMIN, fresh_customer_id)
    assert {"display_name", "home_location", "propensity", "lifetime_value_minor", "points_balance"} <= shown(profile)
    assert profile.home_location.latitude == SAMANTHA_HOME.latitude and profile.propensity["dresses"] == 0.9


def test_a_till_sees_the_balance_the_tier_and_her_name(
    stubs: dict[Role, svc_grpc.OfferServiceStub], fresh_customer_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    whole = profile_as(stubs, Role.ADMIN, fresh_customer_id)
    profile = profile_as(stubs, Role.POS, fresh_customer_id)
    assert shown(profile) <= POS_FIELDS and not shown(profile) & HEAD_OFFICE_ONLY
    assert (profile.display_name, profile.tier, profile.points_balance) == ("Samantha", "gold", whole.points_balance)
    assert profile.points_available == whole.points_available
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert "Samantha" not in logged and fresh_customer_id not in logged  # the access log never records them


def test_the_app_sees_her_points_and_nothing_personal(
    stubs: dict[Role, svc_grpc.OfferServiceStub], fresh_customer_id: str
) -> None:
    whole = profile_as(stubs, Role.ADMIN, fresh_customer_id)
    profile = profile_as(stubs, Role.APP, fresh_customer_id)
    assert shown(profile) <= APP_FIELDS and not shown(profile) & (HEAD_OFFICE_ONLY | {"display_name", "currency"})
    assert (profile.customer_id, profile.tier, profile.points_balance) == (
        fresh_customer_id,
        "gold",
        whole.points_balance,
    )


def test_offers_listed_for_an_app_key_say_how_far_a_store_is_not_where_she_lives(
    stubs: dict[Role, svc_grpc.OfferServiceStub], fresh_customer_id: str
) -> None:
    listed = stubs[Role.APP].ListActiveOffers(
        svc.ListActiveOffersRequest(customer_id=fresh_customer_id, channel=pb.CHANNEL_APP)
    )
    reasons = [offer.reason for offer in listed.offers]
    assert any("km from SoHo" in reason for reason in reasons), reasons
    text = text_format.MessageToString(listed)
    for coordinate in (SAMANTHA_HOME.latitude, SAMANTHA_HOME.longitude):
        assert f"{coordinate:.2f}" not in text and f"{abs(coordinate):.2f}" not in text
    assert "Samantha" not in text


def test_the_settings_name_the_fields(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(
        app_profile_fields="customer_id, display_name,points_balance", pos_profile_fields="points_balance"
    )
    with server.channel(Role.ADMIN) as admin_channel:
        member = clone_samantha(admin_grpc.OfferAdminStub(admin_channel))
    for role, expected in (
        (Role.APP, {"customer_id", "display_name", "points_balance"}),
        (Role.POS, {"customer_id", "points_balance"}),  # whose profile it is, always
    ):
        with server.channel(role) as channel:
            profile = svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id=member))
        assert shown(profile) == expected


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("POS_OFFERS_APP_PROFILE_FIELDS", "points_balance,home", "not CustomerProfile fields: home"),
        ("POS_OFFERS_APP_PROFILE_FIELDS", "points_balance,home_location", "home_location is shown to admin keys only"),
        ("POS_OFFERS_POS_PROFILE_FIELDS", "propensity", "propensity is shown to admin keys only"),
    ],
)
def test_a_field_the_contract_lacks_or_keeps_for_admins_stops_the_server_at_start(
    variable: str, value: str, why: str, tmp_path: Path
) -> None:
    env = {**os.environ, "POS_OFFERS_DATA_DIR": str(tmp_path), variable: value}
    started = subprocess.run(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert started.returncode == 2
    assert f"pos-offers: bad setting: {variable}: {why}" in started.stderr


def test_each_key_is_told_which_fields_it_is_not_shown(
    stubs: dict[Role, svc_grpc.OfferServiceStub], fresh_customer_id: str
) -> None:
    """A 0 lifetime value on a till is "not shown", not "nothing spent": the profile says which fields are withheld."""
    assert profile_as(stubs, Role.ADMIN, fresh_customer_id).withheld_fields == []
    for role in (Role.POS, Role.APP):
        profile = profile_as(stubs, role, fresh_customer_id)
        every = {field.name for field in pb.CustomerProfile.DESCRIPTOR.fields} - {"customer_id", "withheld_fields"}
        visible = POS_FIELDS if role is Role.POS else APP_FIELDS
        assert set(profile.withheld_fields) == every - visible and set(profile.withheld_fields) >= HEAD_OFFICE_ONLY
