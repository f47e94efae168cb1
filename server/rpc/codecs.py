"""The codec ports (usecases.ports) in protobuf: stored receipts are the messages the tills got back, offer
definitions and the tier policy are kept as the contract's JSON, so what was stored reads back as it was sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf import json_format
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import types_pb2 as pb

from domain.model import Offer, PurchaseFacts, Receipt, ReturnOutcome, TierRule
from server.rpc import convert
from usecases.ports import StoredOffer


def _json(message: pb.Offer | pb.TierPolicy) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None)


class ProtobufReceipts:
    """ReceiptCodec: read and written here only."""

    def purchase_receipt(self, receipt: Receipt) -> bytes:
        return convert.receipt_to_pb(receipt).SerializeToString(deterministic=True)

    def facts(self, purchase_receipt: bytes) -> PurchaseFacts:
        return convert.facts_from_receipt(svc.PurchaseReceipt.FromString(purchase_receipt))

    def return_receipt(
        self,
        outcome: ReturnOutcome,
        *,
        return_id: str,
        returning_store_id: str,
        facts: PurchaseFacts,
        voided: bool,
        at: datetime,
    ) -> bytes:
        message = convert.return_receipt_to_pb(
            outcome,
            return_id=return_id,
            returning_store_id=returning_store_id,
            facts=facts,
            voided=voided,
            returned_at=at,
        )
        return message.SerializeToString(deterministic=True)


class ProtobufOfferDefinitions:
    """OfferCodec: an offer's definition is its contract message as JSON, without what the store owns."""

    def definition(self, offer: Offer) -> str:
        message = convert.offer_to_pb(offer)
        message.ClearField("version")
        message.ClearField("updated_at")
        return _json(message)

    def offer(self, stored: StoredOffer) -> Offer:
        message = json_format.Parse(stored.definition, pb.Offer(), ignore_unknown_fields=True)
        message.version, message.archived = stored.version, stored.archived
        convert.set_timestamp(message.updated_at, stored.updated_at)
        return convert.offer_from_pb(message)

    def tier_policy(self, rules: Sequence[TierRule]) -> str:
        return _json(convert.tier_policy_to_pb(rules, 0))

    def tier_rules(self, value: str) -> tuple[TierRule, ...]:
        policy = json_format.Parse(value, pb.TierPolicy(), ignore_unknown_fields=True)
        return convert.tier_rules_from_pb(policy)
