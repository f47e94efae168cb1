"""The client library: typed errors, request ids, deadlines and retries, basket helpers, price parsing.

Tests taking `server_target` / `fresh_customer_id` (tests/e2e/conftest.py) run against this module's read-only server
with the demo catalog, the admin upserts against a server of their own; the others need no server.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from posoffers.v1 import admin_service_pb2, offer_service_pb2, types_pb2

from client import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PosOffersClient,
    PosOffersError,
    ResourceExhaustedError,
    UnavailableError,
    make_basket,
    new_transaction_id,
)
from client.cli import format_money, parse_line, parse_price
from client.client import IDEMPOTENT_METHODS, parse_channel, service_config
from client.errors import from_rpc_error
from tests.e2e.conftest import visit
from tests.support.server_thread import ServerThread, key_for

DRESS = ("1", "dress-1", "dresses", 1, 120_00)
SHOES = ("2", "shoe-1", "shoes", 1, 80_00)


# --- no server needed ---------------------------------------------------------------------------------------------


class FakeRpcError(grpc.RpcError):
    """What a failed blocking call raises, minus the network."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str | bytes], ...] = ()) -> None:
        super().__init__()
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:  # grpc-stubs say _Metadatum; at runtime these are (key, value) tuples
        return self._trailing


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.INTERNAL, PosOffersError),
    ],
)
def test_error_class_follows_status_code(code: grpc.StatusCode, cls: type[PosOffersError]) -> None:
    err = from_rpc_error(FakeRpcError(code, "boom"))
    assert type(err) is cls
    assert err.code is code
    assert err.message == "boom"
    assert err.request_id is None
    assert str(err) == f"{code.name}: boom"


def test_error_carries_request_id_from_trailing_metadata() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "x", (("other", "1"), ("x-request-id", b"rid-7"))))
    assert err.request_id == "rid-7"


def _retry_details(delay_ms: int, message: str = "slow down") -> bytes:
    status = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message=message)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(nanos=delay_ms * 1_000_000)))
    return bytes(status.SerializeToString())


def test_a_rate_limited_error_carries_the_retry_delay_of_its_status_details_or_pushback() -> None:
    rich = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", (("grpc-status-details-bin", _retry_details(250)),)
    )
    assert from_rpc_error(rich).retry_delay == 0.25
    pushback = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", (("grpc-retry-pushback-ms", "1500"),))
    assert from_rpc_error(pushback).retry_delay == 1.5
    garbage = (("grpc-status-details-bin", b"\xff\xff"), ("grpc-retry-pushback-ms", "-1"))
    assert from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big", garbage)).retry_delay is None
    assert from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "x")).retry_delay is None


def test_invalid_argument_names_the_field() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "basket.lines[0].quantity: must be positive"))
    assert isinstance(err, InvalidArgumentError)
    assert err.field == "basket.lines[0].quantity"
    plain = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "the basket is empty"))
    assert isinstance(plain, InvalidArgumentError)
    assert plain.field is None


def test_bare_rpc_error_becomes_unknown() -> None:
    # grpc.RpcError itself has no code()/details(); the translation must not blow up on it.
    err = from_rpc_error(grpc.RpcError())
    assert type(err) is PosOffersError
    assert err.code is grpc.StatusCode.UNKNOWN


def test_service_config_retries_only_unavailable_on_known_methods() -> None:
    config = json.loads(service_config(4))
    [method_config] = config["methodConfig"]
    assert method_config["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.05s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    services = {
        "posoffers.v1.OfferService": offer_service_pb2.DESCRIPTOR.services_by_name["OfferService"],
        "posoffers.v1.OfferAdmin": admin_service_pb2.DESCRIPTOR.services_by_name["OfferAdmin"],
    }
    for name in method_config["name"]:
        service = services[name["service"]]  # a typo here would silently disable retries
        if "method" in name:
            assert name["method"] in service.methods_by_name
    assert {(s, m) for s, m in IDEMPOTENT_METHODS} == {(n["service"], n.get("method")) for n in method_config["name"]}
    # One attempt means no retryPolicy at all (gRPC rejects maxAttempts < 2).
    assert "retryPolicy" not in json.loads(service_config(1))["methodConfig"][0]


def test_client_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        PosOffersClient(timeout=0)
    with pytest.raises(ValueError):
        PosOffersClient(max_attempts=6)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused, and nobody else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_nothing_listening_raises_unavailable_within_deadline(closed_port: int) -> None:
    timeout = 2.0
    with PosOffersClient(f"127.0.0.1:{closed_port}", timeout=timeout) as client:
        start = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            client.get_profile("samantha")
        elapsed = time.monotonic() - start
    assert not isinstance(caught.value, grpc.RpcError)
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert elapsed < timeout + 0.5


def test_silent_server_raises_deadline_exceeded() -> None:
    # Accepts TCP but never speaks HTTP/2, so the call waits for its deadline.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with PosOffersClient(f"127.0.0.1:{sock.getsockname()[1]}", timeout=0.3) as client:
            start = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                client.list_offers()
            assert time.monotonic() - start < 2.0


def test_naive_occurred_at_is_refused_before_sending(closed_port: int) -> None:
    with PosOffersClient(f"127.0.0.1:{closed_port}") as client, pytest.raises(ValueError, match="timezone"):
        client.evaluate_basket(make_basket("c", "s", [DRESS]), occurred_at=datetime(2026, 1, 1))


def test_make_basket_from_tuples_and_line_items() -> None:
    item = types_pb2.LineItem(sku="sock-1", category="socks", quantity=3, unit_price_minor=5_00)
    basket = make_basket("samantha", "soho", [DRESS, ("", *SHOES[1:])], currency="EUR", terminal_id="t1")
    assert basket.customer_id == "samantha" and basket.store_id == "soho" and basket.terminal_id == "t1"
    assert basket.currency == "EUR"
    assert [(li.line_id, li.sku, li.quantity, li.unit_price_minor) for li in basket.lines] == [
        ("1", "dress-1", 1, 120_00),
        ("2", "shoe-1", 1, 80_00),  # blank line_id → its position
    ]
    from_items = make_basket("samantha", "soho", [item], points_to_redeem=100)
    assert from_items.lines[0].line_id == "1" and from_items.lines[0].sku == "sock-1"
    assert from_items.points_to_redeem == 100
    assert item.line_id == ""  # the caller's message is copied, not modified


def test_new_transaction_id() -> None:
    a, b = new_transaction_id(), new_transaction_id()
    assert a != b
    assert a.startswith("txn-") and len(a) == 4 + 32


def test_parse_channel() -> None:
    assert parse_channel("POS") == types_pb2.CHANNEL_POS
    assert parse_channel(types_pb2.CHANNEL_WEB) == types_pb2.CHANNEL_WEB
    with pytest.raises(ValueError):
        parse_channel("fax")


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12000", "USD", 12000),  # an integer is already minor units
        ("120.00", "USD", 12000),
        ("120.5", "USD", 12050),
        ("0.01", "USD", 1),
        ("19.99", "usd", 1999),
        ("1200", "JPY", 1200),
        ("1.234", "KWD", 1234),
        ("99999999999999999999.99", "USD", 9999999999999999999999),  # beyond float precision, still exact
        ("-1.50", "USD", -150),  # the sign is the server's to judge
    ],
)
def test_parse_price(text: str, currency: str, minor: int) -> None:
    assert parse_price(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "problem"),
    [
        ("120.001", "USD", "2 decimal places"),
        ("120.0", "JPY", "0 decimal places"),
        ("1.5", "XXX", "unknown currency"),
        ("12,00", "USD", "expected"),
        ("1e3", "USD", "expected"),
        ("", "USD", "expected"),
        ("NaN", "USD", "expected"),
    ],
)
def test_parse_price_rejects(text: str, currency: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_price(text, currency)


def test_parse_line() -> None:
    line = parse_line("ab:cd:dress-1:dresses:2:120.00", "USD", 3)
    assert (line.line_id, line.sku, line.category, line.quantity, line.unit_price_minor) == (
        "3",
        "ab:cd:dress-1",
        "dresses",
        2,
        12000,
    )
    # Values are the server's to validate, so quantity 0 parses.
    assert parse_line("x:y:0:1", "USD", 1).quantity == 0
    with pytest.raises(ValueError, match="SKU:CATEGORY:QTY:PRICE"):
        parse_line("dress-1:dresses:1", "USD", 1)
    with pytest.raises(ValueError, match="quantity"):
        parse_line("dress-1:dresses:one:1", "USD", 1)


def test_format_money() -> None:
    assert format_money(12000, "USD") == "USD 120.00"
    assert format_money(5, "USD") == "USD 0.05"
    assert format_money(-150, "EUR") == "EUR -1.50"
    assert format_money(1200, "JPY") == "JPY 1200"
    assert format_money(1234, "KWD") == "KWD 1.234"
    assert format_money(2_500_000, "USD") == "USD 25000.00"


# --- against a running server -------------------------------------------------------------------------------------


@pytest.fixture
def client(server_target: str) -> Iterator[PosOffersClient]:
    with PosOffersClient(server_target, timeout=5.0, api_key=key_for(server_target)) as c:
        yield c


def test_unknown_customer_is_not_found(client: PosOffersClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_profile(f"nobody-{uuid.uuid4().hex}")
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.message


def test_invalid_line_is_invalid_argument_with_field(client: PosOffersClient, fresh_customer_id: str) -> None:
    basket = make_basket(fresh_customer_id, "soho", [("1", "dress-1", "dresses", 0, 120_00)])
    with pytest.raises(InvalidArgumentError) as caught:
        client.evaluate_basket(basket)
    assert caught.value.field == "basket.lines[0].quantity", caught.value.message


def test_request_id_round_trip(server_target: str) -> None:
    request_id = f"rid-{uuid.uuid4().hex}"
    with (
        PosOffersClient(
            server_target, metadata=[("X-Request-Id", request_id)], api_key=key_for(server_target)
        ) as client,
        pytest.raises(NotFoundError) as caught,
    ):
        client.get_profile(f"nobody-{uuid.uuid4().hex}")
    if caught.value.request_id is None:
        pytest.skip("the server does not return x-request-id in trailing metadata")
    assert caught.value.request_id == request_id


def test_generated_request_id_is_reported(client: PosOffersClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_offer(f"no-offer-{uuid.uuid4().hex}")
    if caught.value.request_id is None:
        pytest.skip("the server does not return x-request-id in trailing metadata")
    assert len(caught.value.request_id) >= 8


def test_active_offers_include_dress_shoes(client: PosOffersClient, fresh_customer_id: str) -> None:
    response = client.list_active_offers(fresh_customer_id, channel="pos", store_id="soho")
    offer = next(o for o in response.offers if o.offer_id == "dress-shoes-2x")
    assert offer.reason
    assert offer.remaining_uses == 1
    near_home = client.list_active_offers(fresh_customer_id, location=(40.7233, -74.0030))
    assert "dress-shoes-2x" in [o.offer_id for o in near_home.offers]


def test_evaluate_then_commit_once(client: PosOffersClient, fresh_customer_id: str) -> None:
    before = client.get_profile(fresh_customer_id)
    dress_only = client.evaluate_basket(make_basket(fresh_customer_id, "soho", [DRESS]))
    assert "dress-shoes-2x" in [m.offer_id for m in dress_only.near_misses]
    basket = make_basket(fresh_customer_id, "soho", [DRESS, SHOES], terminal_id="till-1")
    preview = client.evaluate_basket(basket, occurred_at=datetime.now(UTC))
    assert "dress-shoes-2x" in [a.offer_id for a in preview.applied_offers]
    assert client.get_profile(fresh_customer_id).points_balance == before.points_balance  # a dry run

    txn = new_transaction_id()
    first = client.commit_purchase(txn, basket)
    again = client.commit_purchase(txn, basket)
    assert not first.replayed and again.replayed
    assert again.transaction_id == first.transaction_id == txn
    assert first.evaluation.points_earned == preview.points_earned > 0
    assert "shoes" in first.new_categories
    after = client.get_profile(fresh_customer_id)
    assert after.points_balance == before.points_balance + first.evaluation.points_earned
    assert "shoes" in after.categories_purchased


def test_admin_offer_listing_follows_pages(client: PosOffersClient) -> None:
    offer = client.get_offer("dress-shoes-2x")
    assert offer.per_customer_limit == 1
    paged = [o.offer_id for o in client.iter_offers(page_size=1)]
    assert "dress-shoes-2x" in paged
    assert len(paged) == len(set(paged))
    assert sorted(paged) == sorted(o.offer_id for o in client.iter_offers(page_size=500))


def test_admin_upserts_and_archive(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)  # its own: a new store and offer change what every member is offered
    with PosOffersClient(server.target, timeout=5.0, api_key=server.keys.admin) as client:
        store = client.upsert_store(
            types_pb2.Store(
                store_id="test-store",
                name="Test store",
                location=types_pb2.GeoPoint(latitude=40.0, longitude=-73.0),
                timezone="America/New_York",
            )
        )
        assert store.store_id == "test-store"
        offer = types_pb2.Offer(
            offer_id="test-offer",
            title="Test socks bonus",
            description="10 points for socks",
            eligibility=types_pb2.Eligibility(store_ids=[store.store_id]),
            condition=types_pb2.Condition(required_category="socks", min_quantity=1),
            reward=types_pb2.Reward(type=types_pb2.BONUS_POINTS, target_category="socks", bonus_points=10),
            per_customer_limit=1,
        )
        offer.starts_at.FromDatetime(datetime(2020, 1, 1, tzinfo=UTC))
        offer.ends_at.FromDatetime(datetime(2099, 1, 1, tzinfo=UTC))
        saved = client.upsert_offer(offer)
        assert saved.version >= 1
        assert client.get_offer(offer.offer_id).title == "Test socks bonus"
        archived = client.archive_offer(offer.offer_id)
        assert archived.archived
        assert offer.offer_id not in [o.offer_id for o in client.iter_offers()]
        assert offer.offer_id in [o.offer_id for o in client.iter_offers(include_archived=True)]

        customer = client.upsert_customer(
            types_pb2.CustomerProfile(
                customer_id="test-customer", tier="silver", currency="USD", lifetime_value_minor=1_000_00
            )
        )
        assert client.get_profile(customer.customer_id).tier == "silver"


def test_points_export_and_erasure_from_python(demo_server: ServerThread) -> None:
    with (
        visit(demo_server) as v,
        PosOffersClient(demo_server.target, timeout=5.0, api_key=demo_server.keys.admin) as pos,
    ):
        adjusted = pos.adjust_points(v.member, 10, "goodwill")
        assert adjusted.adjustment_id.startswith("adj-") and not adjusted.replayed
        again = pos.adjust_points(v.member, 10, "goodwill", adjustment_id=adjusted.adjustment_id)
        assert again.replayed and again.balance_after == adjusted.balance_after
        with pytest.raises(InvalidArgumentError) as refused:
            pos.adjust_points(v.member, 10, "")
        assert refused.value.field == "reason"
        assert json.loads(pos.export_customer(v.member).json)["customer_id"] == v.member
        demo_server.drain()
        assert pos.forget_customer(v.member, "erasure request").customer_id == v.member
        with pytest.raises(NotFoundError):
            pos.export_customer(v.member)


def test_a_key_is_never_sent_in_plaintext_beyond_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POS_OFFERS_ALLOW_PLAINTEXT", raising=False)
    with pytest.raises(ValueError, match="plaintext"):
        PosOffersClient("10.0.0.7:50051", api_key="pok_x_y")
    PosOffersClient("10.0.0.7:50051", api_key="pok_x_y", allow_plaintext=True).close()  # a TLS proxy on the way
    PosOffersClient("10.0.0.7:50051", api_key="pok_x_y", tls=True).close()
    PosOffersClient("127.0.0.1:50051", api_key="pok_x_y").close()
