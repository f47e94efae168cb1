"""Synchronous client of the pos-offers service: one channel, deadlines on every call, typed errors."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from posoffers.v1 import admin_service_pb2, admin_service_pb2_grpc, offer_service_pb2, offer_service_pb2_grpc, types_pb2

from client.auth import api_key_from_env, bearer_metadata
from client.errors import REQUEST_ID_KEY, PosOffersError, ResourceExhaustedError, from_rpc_error
from client.tls import channel_credentials, is_loopback_target, open_channel

__all__ = [
    "DEFAULT_TARGET",
    "IDEMPOTENT_METHODS",
    "LineTuple",
    "PosOffersClient",
    "make_basket",
    "new_transaction_id",
    "parse_channel",
    "service_config",
]

DEFAULT_TARGET: Final = "127.0.0.1:50051"

# (line_id, sku, category, quantity, unit_price_minor): the field order of posoffers.v1.LineItem.
LineTuple = tuple[str, str, str, int, int]

# Only calls that are safe to repeat are retried. CommitPurchase is: the server keys it by (store, transaction_id)
# and returns the stored receipt on a retry; ReturnPurchase likewise by the purchase and return_id, VoidPurchase by
# the purchase.
# Upserts are keyed by id; archiving twice leaves the same state.
IDEMPOTENT_METHODS: Final[tuple[tuple[str, str | None], ...]] = (
    ("posoffers.v1.OfferService", None),  # None = every method of the service
    ("posoffers.v1.OfferAdmin", "GetOffer"),
    ("posoffers.v1.OfferAdmin", "ListOffers"),
    ("posoffers.v1.OfferAdmin", "UpsertOffer"),
    ("posoffers.v1.OfferAdmin", "UpsertStore"),
    ("posoffers.v1.OfferAdmin", "UpsertCustomer"),
    ("posoffers.v1.OfferAdmin", "ArchiveOffer"),
    ("posoffers.v1.OfferAdmin", "PauseOffer"),
    ("posoffers.v1.OfferAdmin", "ResumeOffer"),
    ("posoffers.v1.OfferAdmin", "SetTierPolicy"),
    ("posoffers.v1.OfferAdmin", "GetTierPolicy"),
    ("posoffers.v1.OfferAdmin", "ExpirePoints"),  # safe to run twice: one expiry per period of inactivity
    ("posoffers.v1.OfferAdmin", "AdjustPoints"),  # once per adjustment_id: a retry replays the first result
    ("posoffers.v1.OfferAdmin", "ExportCustomer"),
    # Not ForgetCustomer: a retry after a lost answer would say NOT_FOUND for an erasure that happened.
)

# gRPC caps retry attempts at 5 whatever the config says; we refuse more rather than silently cap.
_MAX_GRPC_ATTEMPTS: Final = 5

_CHANNELS: Final[dict[str, types_pb2.Channel.ValueType]] = {
    "app": types_pb2.CHANNEL_APP,
    "pos": types_pb2.CHANNEL_POS,
    "web": types_pb2.CHANNEL_WEB,
}

_Resp = TypeVar("_Resp", bound=Message)


def service_config(max_attempts: int) -> str:
    """The channel's service config: retry UNAVAILABLE on the idempotent methods, with exponential backoff.
    The overall deadline still bounds all attempts together."""
    method_config: dict[str, Any] = {
        "name": [{"service": service} if method is None else {"service": service, "method": method}
                 for service, method in IDEMPOTENT_METHODS],
    }  # fmt: skip
    if max_attempts > 1:  # gRPC rejects a retryPolicy with maxAttempts < 2
        method_config["retryPolicy"] = {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"methodConfig": [method_config]})


def _rate_limit_delay(error: PosOffersError) -> float | None:
    """How long to wait before sending a call again that a rate limit refused before it ran; None otherwise."""
    return error.retry_delay if isinstance(error, ResourceExhaustedError) else None


def parse_channel(channel: types_pb2.Channel.ValueType | str) -> types_pb2.Channel.ValueType:
    """Accepts the enum value or its short name ("app", "pos", "web")."""
    if isinstance(channel, str):
        try:
            return _CHANNELS[channel.lower()]
        except KeyError:
            raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(_CHANNELS)}") from None
    return channel


def new_adjustment_id() -> str:
    """A fresh idempotency key for AdjustPoints; keep it for retries of the same adjustment."""
    return f"adj-{uuid.uuid4().hex}"


def new_transaction_id() -> str:
    """A fresh idempotency key for CommitPurchase; keep it for retries of the same sale."""
    return f"txn-{uuid.uuid4().hex}"


def make_basket(
    customer_id: str,
    store_id: str,
    lines: Iterable[LineTuple] | Iterable[types_pb2.LineItem],
    *,
    currency: str = "USD",
    terminal_id: str = "",
    points_to_redeem: int = 0,
) -> types_pb2.Basket:
    """Build a Basket. Lines are LineItem messages (copied) or (line_id, sku, category, quantity, unit_price_minor)
    tuples; an empty line_id becomes the line's 1-based position."""
    basket = types_pb2.Basket(
        customer_id=customer_id,
        store_id=store_id,
        terminal_id=terminal_id,
        currency=currency,
        points_to_redeem=points_to_redeem,
    )
    mixed: Iterable[LineTuple | types_pb2.LineItem] = lines
    for position, line in enumerate(mixed, start=1):
        item = basket.lines.add()
        if isinstance(line, types_pb2.LineItem):
            item.CopyFrom(line)
        else:
            line_id, sku, category, quantity, unit_price_minor = line
            item.line_id, item.sku, item.category = line_id, sku, category
            item.quantity, item.unit_price_minor = quantity, unit_price_minor
        if not item.line_id:
            item.line_id = str(position)
    return basket


def _timestamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    # A naive datetime would be read as UTC by protobuf; on a till in another zone that is a silent error.
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("occurred_at must be timezone-aware")
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


class PosOffersClient:
    """Blocking client over one channel (plaintext, or TLS: see __init__). Use as a context manager, or call
    close().

    Every call has a deadline (`timeout` seconds, overridable per call), sends an x-request-id, and raises
    client.errors.PosOffersError (or a subclass) instead of grpc.RpcError. UNAVAILABLE is retried by gRPC itself
    for the idempotent methods (all of them today), up to max_attempts within the deadline. A call a rate limit
    refused (RESOURCE_EXHAUSTED with a retry delay: nothing ran on the server) is sent again after that delay, any
    method, up to max_attempts times, while the delay ends before the deadline; otherwise the
    ResourceExhaustedError is raised at once with its `retry_delay`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = 2.0,
        max_attempts: int = 4,
        metadata: Sequence[tuple[str, str]] = (),
        api_key: str | None = None,
        tls: bool | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        allow_plaintext: bool | None = None,
    ) -> None:
        """`api_key`: the secret of an API key (default: $POS_OFFERS_API_KEY); every call sends it as
        `authorization: Bearer <secret>`. Without one every call but health checks is UNAUTHENTICATED.

        TLS (client/tls.py): `tls_ca` is the PEM file of the CA that signed the server's certificate (default
        $POS_OFFERS_TLS_CA, else the system's roots); `tls_cert` and `tls_key` the till's own certificate and key
        for a server that requires mutual TLS (default $POS_OFFERS_TLS_CLIENT_CERT/KEY). Any of them, or
        `tls=True` ($POS_OFFERS_TLS=1), makes the channel TLS; a file that cannot be read is a ValueError.

        A key is never sent in plaintext beyond this machine: a non-loopback target without TLS is a ValueError
        unless `allow_plaintext=True` ($POS_OFFERS_ALLOW_PLAINTEXT=1: a proxy or mesh on the way adds TLS)."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= max_attempts <= _MAX_GRPC_ATTEMPTS:
            raise ValueError(f"max_attempts must be between 1 and {_MAX_GRPC_ATTEMPTS}")
        self.target = target
        self.timeout = timeout
        self.max_attempts = max_attempts
        # gRPC metadata keys are lowercase on the wire; normalise so our x-request-id check sees the caller's.
        self._metadata = tuple((key.lower(), value) for key, value in metadata if key.lower() != "authorization")
        secret = api_key_from_env() if api_key is None else api_key.strip()
        if secret:
            self._metadata = (*self._metadata, bearer_metadata(secret))
        self._has_request_id = any(key == REQUEST_ID_KEY for key, _ in self._metadata)
        credentials = channel_credentials(tls=tls, ca=tls_ca, cert=tls_cert, key=tls_key)
        self.tls = credentials is not None
        if allow_plaintext is None:
            allow_plaintext = os.environ.get("POS_OFFERS_ALLOW_PLAINTEXT", "").strip() in {"1", "true", "yes"}
        if secret and not self.tls and not allow_plaintext and not is_loopback_target(target):
            raise ValueError(
                f"refusing to send an API key in plaintext to {target}: use TLS (tls=True, tls_ca=...) or, behind a "
                "proxy that adds it, allow_plaintext=True (POS_OFFERS_ALLOW_PLAINTEXT=1)"
            )
        options: list[tuple[str, object]] = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(max_attempts)),
        ]
        self._channel = open_channel(target, credentials, options)
        self._offers = offer_service_pb2_grpc.OfferServiceStub(self._channel)
        self._admin = admin_service_pb2_grpc.OfferAdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PosOffersClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., _Resp], request: Message, timeout: float | None) -> _Resp:
        metadata = self._metadata
        if not self._has_request_id:
            metadata = (*metadata, (REQUEST_ID_KEY, uuid.uuid4().hex))  # the same id for every attempt
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        attempt = 1
        while True:
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.001), metadata=metadata)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
            delay = _rate_limit_delay(error)
            # Not gRPC's retry policy: it would sleep a pushback past the deadline and end DEADLINE_EXCEEDED,
            # losing the delay the caller could act on (docs/decisions.md).
            if delay is None or attempt >= self.max_attempts or time.monotonic() + delay >= deadline:
                raise error from None
            time.sleep(delay)
            attempt += 1

    # OfferService

    def list_active_offers(
        self,
        customer_id: str,
        *,
        channel: types_pb2.Channel.ValueType | str = types_pb2.CHANNEL_APP,
        store_id: str = "",
        location: tuple[float, float] | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> offer_service_pb2.ListActiveOffersResponse:
        """Offers the customer can use now, best first. location is (latitude, longitude)."""
        request = offer_service_pb2.ListActiveOffersRequest(
            customer_id=customer_id, channel=parse_channel(channel), store_id=store_id, page_size=page_size
        )
        if location is not None:
            request.location.latitude, request.location.longitude = location
        return self._call(self._offers.ListActiveOffers, request, timeout)

    def evaluate_basket(
        self, basket: types_pb2.Basket, *, occurred_at: datetime | None = None, timeout: float | None = None
    ) -> types_pb2.BasketEvaluation:
        """Dry run: what the basket would earn. Changes nothing on the server."""
        request = offer_service_pb2.EvaluateBasketRequest(basket=basket, occurred_at=_timestamp(occurred_at))
        return self._call(self._offers.EvaluateBasket, request, timeout)

    def commit_purchase(
        self,
        transaction_id: str,
        basket: types_pb2.Basket,
        *,
        occurred_at: datetime | None = None,
        timeout: float | None = None,
    ) -> offer_service_pb2.PurchaseReceipt:
        """Apply the sale once per transaction_id; calling again with the same id returns the stored receipt."""
        request = offer_service_pb2.CommitPurchaseRequest(
            transaction_id=transaction_id, basket=basket, occurred_at=_timestamp(occurred_at)
        )
        return self._call(self._offers.CommitPurchase, request, timeout)

    def get_profile(self, customer_id: str, *, timeout: float | None = None) -> types_pb2.CustomerProfile:
        request = offer_service_pb2.GetProfileRequest(customer_id=customer_id)
        return self._call(self._offers.GetProfile, request, timeout)

    def return_purchase(
        self,
        return_id: str,
        transaction_id: str,
        customer_id: str,
        lines: Iterable[tuple[str, int]],
        *,
        store_id: str,
        returning_store_id: str = "",
        timeout: float | None = None,
    ) -> offer_service_pb2.ReturnReceipt:
        """Take back (line_id, quantity) of the purchase `store_id`'s `transaction_id` (both as printed on the
        receipt), once per return_id of that purchase; a retry returns the stored receipt. `returning_store_id`:
        the store taking the goods back."""
        request = offer_service_pb2.ReturnPurchaseRequest(
            return_id=return_id,
            transaction_id=transaction_id,
            customer_id=customer_id,
            lines=[offer_service_pb2.ReturnLine(line_id=line_id, quantity=qty) for line_id, qty in lines],
            store_id=store_id,
            returning_store_id=returning_store_id,
        )
        return self._call(self._offers.ReturnPurchase, request, timeout)

    def void_purchase(
        self, transaction_id: str, customer_id: str, *, store_id: str, timeout: float | None = None
    ) -> offer_service_pb2.ReturnReceipt:
        """Undo the purchase `store_id`'s `transaction_id` whole, on its business day."""
        request = offer_service_pb2.VoidPurchaseRequest(
            transaction_id=transaction_id, customer_id=customer_id, store_id=store_id
        )
        return self._call(self._offers.VoidPurchase, request, timeout)

    # OfferAdmin

    def upsert_offer(self, offer: types_pb2.Offer, *, timeout: float | None = None) -> types_pb2.Offer:
        return self._call(self._admin.UpsertOffer, admin_service_pb2.UpsertOfferRequest(offer=offer), timeout)

    def get_offer(self, offer_id: str, *, timeout: float | None = None) -> types_pb2.Offer:
        return self._call(self._admin.GetOffer, admin_service_pb2.GetOfferRequest(offer_id=offer_id), timeout)

    def list_offers(
        self,
        *,
        include_archived: bool = False,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> admin_service_pb2.ListOffersResponse:
        request = admin_service_pb2.ListOffersRequest(
            include_archived=include_archived, page_size=page_size, page_token=page_token
        )
        return self._call(self._admin.ListOffers, request, timeout)

    def iter_offers(
        self, *, include_archived: bool = False, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[types_pb2.Offer]:
        """Every offer, following next_page_token; each page is its own call with its own deadline."""
        token = ""
        while True:
            page = self.list_offers(
                include_archived=include_archived, page_size=page_size, page_token=token, timeout=timeout
            )
            yield from page.offers
            token = page.next_page_token
            if not token:
                return

    def pause_offer(self, offer_id: str, *, timeout: float | None = None) -> types_pb2.Offer:
        return self._call(self._admin.PauseOffer, admin_service_pb2.PauseOfferRequest(offer_id=offer_id), timeout)

    def resume_offer(self, offer_id: str, *, timeout: float | None = None) -> types_pb2.Offer:
        return self._call(self._admin.ResumeOffer, admin_service_pb2.ResumeOfferRequest(offer_id=offer_id), timeout)

    def expire_points(self, *, timeout: float | None = None) -> admin_service_pb2.ExpirePointsResponse:
        """Runs the points-expiry job on the server (safe to run twice)."""
        return self._call(self._admin.ExpirePoints, admin_service_pb2.ExpirePointsRequest(), timeout)

    def archive_offer(self, offer_id: str, *, timeout: float | None = None) -> types_pb2.Offer:
        return self._call(self._admin.ArchiveOffer, admin_service_pb2.ArchiveOfferRequest(offer_id=offer_id), timeout)

    def upsert_store(self, store: types_pb2.Store, *, timeout: float | None = None) -> types_pb2.Store:
        return self._call(self._admin.UpsertStore, admin_service_pb2.UpsertStoreRequest(store=store), timeout)

    def upsert_customer(
        self, customer: types_pb2.CustomerProfile, *, timeout: float | None = None
    ) -> types_pb2.CustomerProfile:
        request = admin_service_pb2.UpsertCustomerRequest(customer=customer)
        return self._call(self._admin.UpsertCustomer, request, timeout)

    # API keys (admin role)

    def create_api_key(
        self,
        *,
        role: int,
        name: str = "",
        store_ids: Sequence[str] = (),
        expires_at: datetime | None = None,
        rate_limit_per_second: int = 0,
        timeout: float | None = None,
    ) -> admin_service_pb2.CreateApiKeyResponse:
        """A new key; `role` is an admin_service_pb2.API_KEY_ROLE_* value. The secret is in the response only."""
        key = admin_service_pb2.ApiKey(
            name=name, store_ids=list(store_ids), rate_limit_per_second=rate_limit_per_second
        )
        key.role = role  # type: ignore[assignment]  # an int from the caller, checked by the server
        expiry = _timestamp(expires_at)
        if expiry is not None:
            key.expires_at.CopyFrom(expiry)
        return self._call(self._admin.CreateApiKey, admin_service_pb2.CreateApiKeyRequest(key=key), timeout)

    def list_api_keys(
        self, *, include_revoked: bool = False, timeout: float | None = None
    ) -> admin_service_pb2.ListApiKeysResponse:
        request = admin_service_pb2.ListApiKeysRequest(include_revoked=include_revoked)
        return self._call(self._admin.ListApiKeys, request, timeout)

    def revoke_api_key(self, key_id: str, *, timeout: float | None = None) -> admin_service_pb2.ApiKey:
        return self._call(self._admin.RevokeApiKey, admin_service_pb2.RevokeApiKeyRequest(key_id=key_id), timeout)

    # The audit log (admin role)

    def list_audit_events(
        self,
        *,
        since: datetime | None = None,
        key_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> admin_service_pb2.ListAuditEventsResponse:
        """One page of the audit log, oldest first: events at or after `since` (aware), of `key_id` if given."""
        request = admin_service_pb2.ListAuditEventsRequest(key_id=key_id, page_size=page_size, page_token=page_token)
        start = _timestamp(since)
        if start is not None:
            request.since.CopyFrom(start)
        return self._call(self._admin.ListAuditEvents, request, timeout)

    def iter_audit_events(
        self, *, since: datetime | None = None, key_id: str = "", page_size: int = 0, timeout: float | None = None
    ) -> Iterator[admin_service_pb2.AuditEvent]:
        """Every audit event from `since`, oldest first, following next_page_token (a call per page)."""
        token = ""
        while True:
            page = self.list_audit_events(
                since=since, key_id=key_id, page_size=page_size, page_token=token, timeout=timeout
            )
            yield from page.events
            token = page.next_page_token
            if not token:
                return

    def adjust_points(
        self,
        customer_id: str,
        points: int,
        reason: str,
        *,
        adjustment_id: str | None = None,
        timeout: float | None = None,
    ) -> admin_service_pb2.AdjustPointsResponse:
        """Adds (or, negative, takes) points, once per adjustment id (a new one when not given: keep it from the
        response to retry); positive points repay points debt first, negative ones never go below zero."""
        request = admin_service_pb2.AdjustPointsRequest(
            adjustment_id=adjustment_id or new_adjustment_id(), customer_id=customer_id, points=points, reason=reason
        )
        return self._call(self._admin.AdjustPoints, request, timeout)

    def export_customer(
        self, customer_id: str, *, timeout: float | None = None
    ) -> admin_service_pb2.ExportCustomerResponse:
        """Everything the service holds about a member: `.json` is one JSON document (format: docs/security.md)."""
        request = admin_service_pb2.ExportCustomerRequest(customer_id=customer_id)
        return self._call(self._admin.ExportCustomer, request, timeout)

    def forget_customer(
        self, customer_id: str, reason: str, *, timeout: float | None = None
    ) -> admin_service_pb2.ForgetCustomerResponse:
        """Erases a member (her purchases and points stay, under an anonymous id); not retried automatically."""
        request = admin_service_pb2.ForgetCustomerRequest(customer_id=customer_id, reason=reason)
        return self._call(self._admin.ForgetCustomer, request, timeout)
