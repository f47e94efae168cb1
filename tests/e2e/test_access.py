"""Who may call what, through real gRPC against a real server: API keys (missing, malformed, unknown, revoked,
expired), the role x RPC matrix for every RPC of the contract, store-bound till keys, the order of the checks,
propagation of new and revoked keys between servers, the key CLI on the server host, and the one way to turn
authentication off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from domain.access import Role
from server.config import Settings
from server.rpc.grpc_server import SERVICES
from tests.support.builders import DRESS, basket, commit_request
from tests.support.keys import keyed_channel
from tests.support.server_thread import ServerThread
from tests.support.waiting import wait_until

ADMIN, POS, APP = Role.ADMIN, Role.POS, Role.APP
EVERYONE = frozenset({ADMIN, POS, APP})
TILL = frozenset({ADMIN, POS})
ADMIN_ONLY = frozenset({ADMIN})

# The role x RPC matrix, written out by hand (not read from the policy it checks). Every RPC of the contract must
# be here: a new RPC without a row fails test_the_matrix_names_every_rpc_of_the_contract.
MATRIX: dict[str, frozenset[Role]] = {
    "OfferService/ListActiveOffers": EVERYONE,
    "OfferService/GetProfile": EVERYONE,
    "OfferService/EvaluateBasket": TILL,
    "OfferService/CommitPurchase": TILL,
    "OfferService/ReturnPurchase": TILL,
    "OfferService/VoidPurchase": TILL,
    "OfferAdmin/UpsertOffer": ADMIN_ONLY,
    "OfferAdmin/GetOffer": ADMIN_ONLY,
    "OfferAdmin/ListOffers": ADMIN_ONLY,
    "OfferAdmin/ArchiveOffer": ADMIN_ONLY,
    "OfferAdmin/PauseOffer": ADMIN_ONLY,
    "OfferAdmin/ResumeOffer": ADMIN_ONLY,
    "OfferAdmin/UpsertStore": ADMIN_ONLY,
    "OfferAdmin/SetTierPolicy": ADMIN_ONLY,
    "OfferAdmin/GetTierPolicy": ADMIN_ONLY,
    "OfferAdmin/ExpirePoints": ADMIN_ONLY,
    "OfferAdmin/UpsertCustomer": ADMIN_ONLY,
    "OfferAdmin/CreateApiKey": ADMIN_ONLY,
    "OfferAdmin/ListApiKeys": ADMIN_ONLY,
    "OfferAdmin/RevokeApiKey": ADMIN_ONLY,
    "OfferAdmin/ListAuditEvents": ADMIN_ONLY,
    "OfferAdmin/AdjustPoints": ADMIN_ONLY,
    "OfferAdmin/ExportCustomer": ADMIN_ONLY,
    "OfferAdmin/ForgetCustomer": ADMIN_ONLY,
}
REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
NO_SUCH_ID = "nobody-at-all"  # every id-taking request names something that does not exist: no call changes state


def contract_methods() -> list[MethodDescriptor]:
    return [method for service in SERVICES for method in service.methods]


def policy_name(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}/{method.name}"


def harmless_request(method: MethodDescriptor) -> Message:
    """A request of the method's type that a permitted caller gets through the checks with, at the demo store, and
    that changes nothing (unknown ids; validation or NOT_FOUND ends it)."""
    request: Any = svc.__dict__.get(method.input_type.name) or admin_pb.__dict__[method.input_type.name]
    message: Any = request()
    names = message.DESCRIPTOR.fields_by_name
    if "basket" in names:
        message.basket.CopyFrom(basket(NO_SUCH_ID, DRESS, store_id="soho"))
    for field in ("store_id", "returning_store_id"):
        if field in names:
            setattr(message, field, "soho")
    for field in ("customer_id", "offer_id", "key_id", "transaction_id"):
        if field in names:
            setattr(message, field, NO_SUCH_ID)
    chosen: Message = message
    return chosen


def call(channel: grpc.Channel, method: MethodDescriptor, request: Message, metadata: Any = ()) -> grpc.StatusCode:
    full = f"/{method.containing_service.full_name}/{method.name}"
    output = svc.__dict__.get(method.output_type.name) or admin_pb.__dict__.get(method.output_type.name)
    output = output or pb.__dict__[method.output_type.name]
    stub = channel.unary_unary(
        full, request_serializer=type(request).SerializeToString, response_deserializer=output.FromString
    )
    try:
        stub(request, timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_the_matrix_names_every_rpc_of_the_contract() -> None:
    assert sorted(MATRIX) == sorted(policy_name(m) for m in contract_methods())


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_reaches_exactly_its_rpcs(make_server: Callable[..., ServerThread], role: Role) -> None:
    server = make_server(demo_data=True)
    outcomes = {}
    with server.channel(role) as channel:
        for method in contract_methods():
            outcomes[policy_name(method)] = call(channel, method, harmless_request(method))
    for name, code in outcomes.items():
        if role in MATRIX[name]:
            assert code not in REFUSED, f"{role.value} should reach {name}, got {code.name}"
        else:
            assert code is grpc.StatusCode.PERMISSION_DENIED, f"{role.value} calling {name}: {code.name}"


def test_no_key_malformed_or_unknown_key_is_unauthenticated_everywhere(demo_server: ServerThread) -> None:
    forged = "pok_0123456789abcdef_" + "A" * 43
    cases = {
        "missing": (),
        "not bearer": (("authorization", f"Basic {demo_server.keys.admin}"),),
        "empty bearer": (("authorization", "Bearer "),),
        "two keys": (("authorization", f"Bearer {demo_server.keys.admin}"), ("authorization", "Bearer x")),
        "unknown": (("authorization", f"Bearer {forged}"),),
        "admin id, wrong secret": (("authorization", f"Bearer {demo_server.keys.admin[:-4]}AAAA"),),
    }
    with grpc.insecure_channel(demo_server.target) as channel:
        for label, metadata in cases.items():
            for method in contract_methods():
                code = call(channel, method, harmless_request(method), metadata)
                assert code is grpc.StatusCode.UNAUTHENTICATED, f"{label}: {policy_name(method)} {code.name}"


def test_health_needs_no_key_and_reflection_needs_one(demo_server: ServerThread) -> None:
    with grpc.insecure_channel(demo_server.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_authentication_comes_before_validation_and_permission_before_the_store(demo_server: ServerThread) -> None:
    bad = svc.EvaluateBasketRequest()  # no basket: INVALID_ARGUMENT for whoever may call it
    method = svc.DESCRIPTOR.services_by_name["OfferService"].methods_by_name["EvaluateBasket"]
    with grpc.insecure_channel(demo_server.target) as channel:
        assert call(channel, method, bad) is grpc.StatusCode.UNAUTHENTICATED
    with demo_server.channel(APP) as channel:
        assert call(channel, method, bad) is grpc.StatusCode.PERMISSION_DENIED
    with demo_server.channel(POS) as channel:
        assert call(channel, method, bad) is grpc.StatusCode.PERMISSION_DENIED  # basket of no store of its own
    with demo_server.channel(ADMIN) as channel:
        assert call(channel, method, bad) is grpc.StatusCode.INVALID_ARGUMENT


def test_a_till_key_acts_only_for_its_stores(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    with server.channel(ADMIN) as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        created = admin.CreateApiKey(
            admin_pb.CreateApiKeyRequest(
                key=admin_pb.ApiKey(name="soho till 3", role=admin_pb.API_KEY_ROLE_POS, store_ids=["soho"])
            )
        )
        midtown = pb.Store(store_id="midtown", name="Midtown", location=pb.GeoPoint(latitude=40.75, longitude=-73.98))
        admin.UpsertStore(admin_pb.UpsertStoreRequest(store=midtown))
    assert created.key.store_ids == ["soho"] and created.secret.startswith("pok_")
    with keyed_channel(server.target, created.secret) as channel:
        till = svc_grpc.OfferServiceStub(channel)
        sale = commit_request(basket("samantha", DRESS, store_id="soho"), "soho-till-3-0001")
        assert till.CommitPurchase(sale).evaluation.points_earned > 0
        elsewhere = commit_request(basket("samantha", DRESS, store_id="midtown"), "soho-till-3-0002")
        with pytest.raises(grpc.RpcError) as denied:
            till.CommitPurchase(elsewhere)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED and "midtown" in (denied.value.details() or "")
        with pytest.raises(grpc.RpcError) as void_elsewhere:
            till.VoidPurchase(svc.VoidPurchaseRequest(transaction_id="x", customer_id="samantha", store_id="midtown"))
        assert void_elsewhere.value.code() is grpc.StatusCode.PERMISSION_DENIED
        # The till still reads the balance and lists offers for any store.
        assert till.GetProfile(svc.GetProfileRequest(customer_id="samantha")).points_balance > 0
        till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id="samantha", store_id="midtown"))


def test_keys_are_created_listed_and_revoked_with_the_secret_shown_once(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True)
    expires = datetime.now(UTC) + timedelta(days=90)
    with server.channel(ADMIN) as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        key = admin_pb.ApiKey(name="app backend", role=admin_pb.API_KEY_ROLE_APP, rate_limit_per_second=50)
        key.expires_at.FromDatetime(expires)
        created = admin.CreateApiKey(admin_pb.CreateApiKeyRequest(key=key))
        listed = {k.key_id: k for k in admin.ListApiKeys(admin_pb.ListApiKeysRequest()).keys}
        assert created.key.key_id in listed and listed[created.key.key_id].name == "app backend"
        assert listed[created.key.key_id].created_by  # the admin key that made it
        assert created.secret not in str(admin.ListApiKeys(admin_pb.ListApiKeysRequest()))
        with keyed_channel(server.target, created.secret) as app_channel:
            app = svc_grpc.OfferServiceStub(app_channel)
            app.GetProfile(svc.GetProfileRequest(customer_id="samantha"))
            admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(key_id=created.key.key_id))
            with pytest.raises(grpc.RpcError) as revoked:  # on this server at once
                app.GetProfile(svc.GetProfileRequest(customer_id="samantha"))
            assert revoked.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (revoked.value.details() or "")
        assert created.key.key_id not in {k.key_id for k in admin.ListApiKeys(admin_pb.ListApiKeysRequest()).keys}
        every = admin.ListApiKeys(admin_pb.ListApiKeysRequest(include_revoked=True)).keys
        assert any(k.key_id == created.key.key_id and k.HasField("revoked_at") for k in every)
        for bad, field in (
            (admin_pb.ApiKey(role=admin_pb.API_KEY_ROLE_POS), "key.store_ids"),
            (admin_pb.ApiKey(role=admin_pb.API_KEY_ROLE_APP, store_ids=["soho"]), "key.store_ids"),
            (admin_pb.ApiKey(name="x"), "key.role"),
        ):
            with pytest.raises(grpc.RpcError) as invalid:
                admin.CreateApiKey(admin_pb.CreateApiKeyRequest(key=bad))
            assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT and field in (invalid.value.details() or "")


def test_an_expired_key_is_refused(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    secret = server.run(server.service.components.api_keys.create(name="short", role=Role.APP, expires_at=expires_at))[
        1
    ]
    with keyed_channel(server.target, secret) as channel:
        app = svc_grpc.OfferServiceStub(channel)
        app.GetProfile(svc.GetProfileRequest(customer_id="samantha"))

        def expired() -> bool:
            try:
                app.GetProfile(svc.GetProfileRequest(customer_id="samantha"))
            except grpc.RpcError as error:
                return error.code() is grpc.StatusCode.UNAUTHENTICATED and "expired" in (error.details() or "")
            return False

        wait_until(expired, timeout=5, message="the key's expiry")


def test_a_new_and_a_revoked_key_count_on_every_server_within_two_seconds(
    make_server: Callable[..., ServerThread],
) -> None:
    first = make_server(demo_data=True)
    second = make_server(
        demo_data=False,
        redis_prefix=first.settings.redis_prefix,
        database_url=first.settings.database_url,
        api_key_refresh_ms=500,
    )
    with first.channel(ADMIN) as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        created = admin.CreateApiKey(
            admin_pb.CreateApiKeyRequest(key=admin_pb.ApiKey(name="new", role=admin_pb.API_KEY_ROLE_APP))
        )
        with keyed_channel(second.target, created.secret) as other:
            app = svc_grpc.OfferServiceStub(other)
            started = time.monotonic()
            wait_until(lambda: _answers(app), timeout=2.0, message="the new key on the second server")
            admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(key_id=created.key.key_id))
            wait_until(lambda: not _answers(app), timeout=2.0, message="the revocation on the second server")
    assert time.monotonic() - started < 4.0


def _answers(app: svc_grpc.OfferServiceStub) -> bool:
    try:
        app.GetProfile(svc.GetProfileRequest(customer_id="samantha"), timeout=2)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.UNAUTHENTICATED:
            return False
        raise
    return True


def test_the_server_host_makes_the_first_admin_key(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POS_OFFERS_")}
    env.update({k: v for k, v in server.settings.to_env().items() if k in _HOST_SETTINGS})
    script = Path(sys.executable).parent / "pos-offers-server"

    def keys(*args: str) -> str:
        done = subprocess.run(
            [str(script), "keys", *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    made = json.loads(
        keys("create", "--role", "pos", "--store", "soho", "--name", "till 9", "--expires-in", "90d", "--json")
    )
    assert set(made) == {"key_id", "secret"}
    with keyed_channel(server.target, made["secret"]) as channel:
        till = svc_grpc.OfferServiceStub(channel)
        wait_until(lambda: _answers(till), timeout=2.0, message="the CLI's key on the running server")
        listed = keys("list")
        assert made["key_id"] in listed and "till 9" in listed and made["secret"] not in listed
        keys("revoke", made["key_id"])
        wait_until(lambda: not _answers(till), timeout=2.0, message="the CLI's revocation on the running server")
    with server.channel(ADMIN) as channel:
        events = admin_grpc.OfferAdminStub(channel).ListAuditEvents(admin_pb.ListAuditEventsRequest()).events
    host = [(e.action, e.outcome) for e in events if e.target == made["key_id"]]
    assert host == [("host/keys.create", "OK"), ("host/keys.revoke", "OK")]  # made on the host, audited all the same
    assert all(e.key_name.startswith("host ") and made["secret"] not in str(e) for e in events)


_HOST_SETTINGS = {"POS_OFFERS_DATABASE_URL", "POS_OFFERS_REDIS_URL", "POS_OFFERS_REDIS_PREFIX", "POS_OFFERS_DATA_DIR"}


def test_authentication_off_works_only_on_loopback_and_says_so(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Settings(listen="0.0.0.0:50051", auth=False).validate()
    server = make_server(demo_data=True, auth=False)
    assert any("AUTHENTICATION IS OFF" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    with grpc.insecure_channel(server.target) as channel:  # the only test without a key: it shows the setting
        profile = svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id="samantha"))
    assert profile.customer_id == "samantha"


def test_a_till_key_of_several_stores_must_name_the_returning_store(demo_server: ServerThread) -> None:
    request = svc.ReturnPurchaseRequest(
        return_id="r-1", transaction_id="t-1", customer_id="samantha", store_id="soho", lines=[svc.ReturnLine()]
    )
    with demo_server.channel(POS) as channel:  # the test till key acts for several stores
        till = svc_grpc.OfferServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unnamed:
            till.ReturnPurchase(request)
        assert unnamed.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "returning_store_id" in (unnamed.value.details() or "")
        request.returning_store_id = "soho"
        with pytest.raises(grpc.RpcError) as named:
            till.ReturnPurchase(request)
        assert named.value.code() is grpc.StatusCode.NOT_FOUND  # past the checks: no such purchase
