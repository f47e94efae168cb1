"""Thin gRPC servicers: protobuf in, engine call, protobuf out. Errors are mapped by the interceptor."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from domain.errors import InvalidArgument
from domain.model import Channel, PurchaseKey, ReturnRequestLine
from server.rpc import convert, convert_audit
from server.rpc.authorization import CALLER, only_store
from server.rpc.convert_access import api_key_to_pb, role_from_pb
from server.rpc.profile_fields import ProfileFields
from usecases.adjustments import PointsAdjustments
from usecases.admin import AdminApp, TierPolicy
from usecases.api_keys import ApiKeys
from usecases.audit import AuditTrail
from usecases.commit import CommitPurchase
from usecases.customers import Customers
from usecases.expiry import PointsExpiry
from usecases.offers import OffersApp
from usecases.ports import Adjustment
from usecases.privacy import CustomerPrivacy
from usecases.returns import ReturnResult, ReturnsApp

Context = grpc.aio.ServicerContext[Any, Any]


def _channel(value: int) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise InvalidArgument("channel", f"unknown channel {value}") from None


def _required(message: Any, field: str) -> None:
    if not message.HasField(field):
        raise InvalidArgument(field, "is required")


def request_digest(request: Any) -> str:
    """Fingerprint of what the terminal asked: a retry matches it, a different basket under the same id does not."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


class OfferServicer(svc_grpc.OfferServiceServicer):
    def __init__(
        self,
        app: OffersApp,
        commits: CommitPurchase,
        returns: ReturnsApp,
        customers: Customers,
        profile_fields: ProfileFields,
    ) -> None:
        self._app = app
        self._commits = commits
        self._returns = returns
        self._customers = customers
        self._profile_fields = profile_fields

    async def ListActiveOffers(
        self, request: svc.ListActiveOffersRequest, context: Context
    ) -> svc.ListActiveOffersResponse:
        offers, version = await self._app.list_active_offers(
            request.customer_id,
            _channel(request.channel),
            request.store_id,
            convert.geo_from_pb(request.location, request.HasField("location")),
            request.page_size,
        )
        return svc.ListActiveOffersResponse(
            offers=[convert.active_offer_to_pb(o) for o in offers], catalog_version=version
        )

    async def EvaluateBasket(self, request: svc.EvaluateBasketRequest, context: Context) -> pb.BasketEvaluation:
        _required(request, "basket")
        occurred_at = convert.to_datetime(request.occurred_at, request.HasField("occurred_at"), "occurred_at")
        evaluation = await self._app.evaluate(convert.basket_from_pb(request.basket), occurred_at)
        return convert.evaluation_to_pb(evaluation)

    async def CommitPurchase(self, request: svc.CommitPurchaseRequest, context: Context) -> svc.PurchaseReceipt:
        _required(request, "basket")
        outcome = await self._commits.commit(
            request.transaction_id,
            convert.basket_from_pb(request.basket),
            convert.to_datetime(request.occurred_at, request.HasField("occurred_at"), "occurred_at"),
            request_digest(request),
        )
        receipt = svc.PurchaseReceipt.FromString(outcome.receipt)
        receipt.replayed = outcome.replayed
        return receipt

    async def GetProfile(self, request: svc.GetProfileRequest, context: Context) -> pb.CustomerProfile:
        state = await self._customers.customer(request.customer_id)
        profile = convert.customer_to_pb(state)
        points, at = self._customers.expiring(state)
        if points:
            profile.points_expiring = points
            convert.set_timestamp(profile.points_expire_at, at)
        return self._profile_fields.shown(profile, CALLER.get())

    async def ReturnPurchase(self, request: svc.ReturnPurchaseRequest, context: Context) -> svc.ReturnReceipt:
        lines = [ReturnRequestLine(line.line_id, line.quantity) for line in request.lines]
        # The digest covers what the return does: not when the till says it happened (a retry may re-stamp it), nor
        # the purchase's store (part of the key it is stored under), nor which store took the goods (recorded from
        # the first call), so a return retried across the upgrade to store-scoped ids still matches.
        what = svc.ReturnPurchaseRequest()
        what.CopyFrom(request)
        for name in ("occurred_at", "store_id", "returning_store_id"):
            what.ClearField(name)
        result = await self._returns.return_lines(
            request.return_id,
            PurchaseKey(request.store_id, request.transaction_id),
            request.customer_id,
            lines,
            request_digest(what),
            # A till key of one store takes goods back at that store unless the request names another of its own.
            returning_store_id=request.returning_store_id or only_store(CALLER.get()),
        )
        return _return_receipt(result)

    async def VoidPurchase(self, request: svc.VoidPurchaseRequest, context: Context) -> svc.ReturnReceipt:
        what = svc.VoidPurchaseRequest()
        what.CopyFrom(request)
        what.ClearField("store_id")  # part of the key, as for returns
        purchase = PurchaseKey(request.store_id, request.transaction_id)
        result = await self._returns.void(purchase, request.customer_id, request_digest(what))
        return _return_receipt(result)


def _return_receipt(result: ReturnResult) -> svc.ReturnReceipt:
    receipt = svc.ReturnReceipt.FromString(result.receipt)
    receipt.replayed = result.replayed
    return receipt


def _tier_policy(policy: TierPolicy) -> pb.TierPolicy:
    return convert.tier_policy_to_pb(policy.rules, policy.version)


class AdminServicer(admin_grpc.OfferAdminServicer):
    def __init__(
        self,
        admin: AdminApp,
        customers: Customers,
        expiry: PointsExpiry,
        api_keys: ApiKeys,
        audit: AuditTrail,
        adjustments: PointsAdjustments,
        privacy: CustomerPrivacy,
    ) -> None:
        self._admin = admin
        self._audit = audit
        self._customers = customers
        self._expiry = expiry
        self._api_keys = api_keys
        self._adjustments = adjustments
        self._privacy = privacy

    async def CreateApiKey(
        self, request: admin_pb.CreateApiKeyRequest, context: Context
    ) -> admin_pb.CreateApiKeyResponse:
        _required(request, "key")
        sent = request.key
        caller = CALLER.get()
        key, secret = await self._api_keys.create(
            name=sent.name,
            role=role_from_pb(sent.role),
            store_ids=list(sent.store_ids),
            expires_at=convert.to_datetime(sent.expires_at, sent.HasField("expires_at"), "key.expires_at"),
            rate_limit_per_second=sent.rate_limit_per_second,
            created_by=caller.key_id if caller else "",
        )
        return admin_pb.CreateApiKeyResponse(key=api_key_to_pb(key), secret=secret)

    async def ListApiKeys(self, request: admin_pb.ListApiKeysRequest, context: Context) -> admin_pb.ListApiKeysResponse:
        keys = await self._api_keys.list(include_revoked=request.include_revoked)
        return admin_pb.ListApiKeysResponse(keys=[api_key_to_pb(key) for key in keys])

    async def RevokeApiKey(self, request: admin_pb.RevokeApiKeyRequest, context: Context) -> admin_pb.ApiKey:
        return api_key_to_pb(await self._api_keys.revoke(request.key_id))

    async def UpsertOffer(self, request: admin_pb.UpsertOfferRequest, context: Context) -> pb.Offer:
        _required(request, "offer")
        sent = pb.Offer()
        sent.CopyFrom(request.offer)
        for server_owned in ("version", "updated_at"):  # set by the server, ignored when sent
            sent.ClearField(server_owned)
        keep_status = sent.status == pb.OFFER_STATUS_UNSPECIFIED  # an edit keeps a paused offer paused
        return convert.offer_to_pb(await self._admin.upsert_offer(convert.offer_from_pb(sent), keep_status=keep_status))

    async def GetOffer(self, request: admin_pb.GetOfferRequest, context: Context) -> pb.Offer:
        return convert.offer_to_pb(await self._admin.get_offer(request.offer_id))

    async def ListOffers(self, request: admin_pb.ListOffersRequest, context: Context) -> admin_pb.ListOffersResponse:
        offers, token = await self._admin.list_offers(request.include_archived, request.page_size, request.page_token)
        return admin_pb.ListOffersResponse(offers=[convert.offer_to_pb(o) for o in offers], next_page_token=token)

    async def ArchiveOffer(self, request: admin_pb.ArchiveOfferRequest, context: Context) -> pb.Offer:
        return convert.offer_to_pb(await self._admin.archive_offer(request.offer_id))

    async def PauseOffer(self, request: admin_pb.PauseOfferRequest, context: Context) -> pb.Offer:
        return convert.offer_to_pb(await self._admin.pause_offer(request.offer_id))

    async def ResumeOffer(self, request: admin_pb.ResumeOfferRequest, context: Context) -> pb.Offer:
        return convert.offer_to_pb(await self._admin.resume_offer(request.offer_id))

    async def SetTierPolicy(self, request: admin_pb.SetTierPolicyRequest, context: Context) -> pb.TierPolicy:
        rules = convert.tier_rules_from_pb(request.policy)
        return _tier_policy(await self._admin.set_tier_policy(rules))

    async def GetTierPolicy(self, request: admin_pb.GetTierPolicyRequest, context: Context) -> pb.TierPolicy:
        return _tier_policy(await self._admin.get_tier_policy())

    async def ExpirePoints(
        self, request: admin_pb.ExpirePointsRequest, context: Context
    ) -> admin_pb.ExpirePointsResponse:
        report = await self._expiry.run()
        return admin_pb.ExpirePointsResponse(
            customers_checked=report.customers_checked,
            customers_expired=report.customers_expired,
            points_expired=report.points_expired,
        )

    async def UpsertStore(self, request: admin_pb.UpsertStoreRequest, context: Context) -> pb.Store:
        _required(request, "store")
        return convert.store_to_pb(await self._admin.upsert_store(convert.store_from_pb(request.store)))

    async def UpsertCustomer(self, request: admin_pb.UpsertCustomerRequest, context: Context) -> pb.CustomerProfile:
        _required(request, "customer")
        state = await self._customers.upsert_customer(convert.customer_from_pb(request.customer))
        return convert.customer_to_pb(state)

    async def ListAuditEvents(
        self, request: admin_pb.ListAuditEventsRequest, context: Context
    ) -> admin_pb.ListAuditEventsResponse:
        since = convert.to_datetime(request.since, request.HasField("since"), "since")
        events, token = await self._audit.page(
            since=since, key_id=request.key_id, page_size=request.page_size, page_token=request.page_token
        )
        return admin_pb.ListAuditEventsResponse(
            events=[convert_audit.audit_event_to_pb(e) for e in events], next_page_token=token
        )

    async def AdjustPoints(
        self, request: admin_pb.AdjustPointsRequest, context: Context
    ) -> admin_pb.AdjustPointsResponse:
        adjustment = Adjustment(
            request.adjustment_id, request.customer_id, request.points, request.reason, request_digest(request)
        )
        answer = await self._adjustments.adjust(adjustment)
        o = answer.outcome
        response = admin_pb.AdjustPointsResponse(
            adjustment_id=o.adjustment_id,
            customer_id=o.customer_id,
            points=o.points,
            balance_before=o.balance_before,
            balance_after=o.balance_after,
            replayed=answer.replayed,
            points_debt_before=o.debt_before,
            points_debt_after=o.debt_after,
        )
        convert.set_timestamp(response.adjusted_at, o.adjusted_at)
        return response

    async def ExportCustomer(
        self, request: admin_pb.ExportCustomerRequest, context: Context
    ) -> admin_pb.ExportCustomerResponse:
        document = await self._privacy.export(request.customer_id)
        return admin_pb.ExportCustomerResponse(customer_id=request.customer_id, json=document)

    async def ForgetCustomer(
        self, request: admin_pb.ForgetCustomerRequest, context: Context
    ) -> admin_pb.ForgetCustomerResponse:
        forgotten_at = await self._privacy.forget(request.customer_id, request.reason)
        response = admin_pb.ForgetCustomerResponse(customer_id=request.customer_id)
        convert.set_timestamp(response.forgotten_at, forgotten_at)
        return response
