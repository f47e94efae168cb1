"""Campaign management: offers and stores of record in SQL, then a catalog version bump all servers follow."""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import datetime
from typing import Protocol

from google.protobuf import json_format
from posoffers.v1 import types_pb2 as pb

from domain.errors import FailedPrecondition, InvalidArgument, NotFound
from domain.model import Offer, Store, TierRule
from domain.tiers import validate_tiers
from domain.validation import validate_id, validate_offer, validate_store
from server.rpc.convert import offer_from_pb, set_timestamp, store_from_pb
from store.redis_state import CustomerStore
from telemetry.observe import sql_call
from usecases.catalog import CatalogCache, OfferRow

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


TIER_POLICY = "tier_policy"


def tier_rules(policy: pb.TierPolicy) -> tuple[TierRule, ...]:
    return tuple(TierRule(t.name, t.min_spend_12m_minor, t.earn_multiplier_percent) for t in policy.tiers)


def tier_policy_from_json(value: str, version: int) -> pb.TierPolicy:
    policy = json_format.Parse(value, pb.TierPolicy(), ignore_unknown_fields=True)
    policy.version = version
    return policy


class CatalogRepository(Protocol):
    def upsert_offer(self, offer_id: str, title: str, definition_json: str, archived: bool) -> tuple[int, datetime]: ...

    def get_offer(self, offer_id: str) -> OfferRow | None: ...

    def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[OfferRow]: ...

    def upsert_store(self, store: Store) -> None: ...

    def list_stores(self) -> list[Store]: ...

    def get_setting(self, key: str) -> tuple[str, int] | None: ...

    def put_setting(self, key: str, value_json: str) -> int: ...


def offer_pb_from_row(row: OfferRow) -> pb.Offer:
    definition, version, archived, updated_at = row
    offer = json_format.Parse(definition, pb.Offer(), ignore_unknown_fields=True)
    offer.version, offer.archived = version, archived
    set_timestamp(offer.updated_at, updated_at)
    return offer


def offer_from_row(row: OfferRow) -> Offer:
    return offer_from_pb(offer_pb_from_row(row))


def _normalise(offer: pb.Offer) -> pb.Offer:
    """The definition as stored: server-owned fields cleared, categories in one case."""
    out = pb.Offer()
    out.CopyFrom(offer)
    out.ClearField("version")
    out.ClearField("updated_at")
    e = out.eligibility
    for values in (e.purchased_any_categories, e.not_purchased_categories):
        cleaned = sorted({v.strip().lower() for v in values})
        del values[:]
        values.extend(cleaned)
    out.condition.required_category = out.condition.required_category.strip().lower()
    out.reward.target_category = out.reward.target_category.strip().lower()
    return out


def _with_status(offer: pb.Offer, status: pb.OfferStatus.ValueType) -> pb.Offer:
    out = pb.Offer()
    out.CopyFrom(offer)
    out.status = status
    return out


class AdminApp:
    def __init__(self, repo: CatalogRepository, customers: CustomerStore, catalog: CatalogCache) -> None:
        self._repo = repo
        self._customers = customers
        self._catalog = catalog

    async def _published(self) -> None:
        """Every server reloads on the version bump; this one at once, so its next call sees the change."""
        await self._customers.bump_catalog_version()
        await self._catalog.refresh()

    async def upsert_offer(self, offer: pb.Offer) -> pb.Offer:
        validate_id(offer.offer_id, "offer.offer_id")
        with sql_call("get_offer"):
            existing = await asyncio.to_thread(self._repo.get_offer, offer.offer_id)
        if existing is not None:
            current = offer_pb_from_row(existing)
            if current.archived:
                raise FailedPrecondition(f"offer {offer.offer_id!r} is archived; create a new offer", "archived")
            if offer.status == pb.OFFER_STATUS_UNSPECIFIED:
                offer = _with_status(offer, current.status)  # an edit keeps a paused offer paused
        stored = _normalise(offer)
        engine_offer = offer_from_pb(stored)
        validate_offer(engine_offer)
        known = self._catalog.current.stores
        for store_id in engine_offer.eligibility.store_ids:
            if store_id not in known:
                raise NotFound("store", store_id)
        definition = json_format.MessageToJson(stored, preserving_proto_field_name=True, indent=None)
        with sql_call("upsert_offer"):
            await asyncio.to_thread(self._repo.upsert_offer, stored.offer_id, stored.title, definition, stored.archived)
        if existing is None and engine_offer.total_redemption_limit > 0:
            # A new offer's budget counter starts at zero here, before any server sees the offer, so a missing
            # counter always means a lost one (rebuilt from SQL). An edit never touches it: after a loss, setting
            # it here would restart the budget from zero; an edit that adds a budget leaves it to the first
            # redemption, which counts from SQL what the offer was earned before.
            await self._customers.seed_budget(stored.offer_id, 0)
        await self._published()
        return await self.get_offer(stored.offer_id)

    async def get_offer(self, offer_id: str) -> pb.Offer:
        validate_id(offer_id, "offer_id")
        with sql_call("get_offer"):
            row = await asyncio.to_thread(self._repo.get_offer, offer_id)
        if row is None:
            raise NotFound("offer", offer_id)
        return offer_pb_from_row(row)

    async def list_offers(self, include_archived: bool, page_size: int, page_token: str) -> tuple[list[pb.Offer], str]:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        try:
            after = base64.urlsafe_b64decode(page_token.encode()).decode() if page_token else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidArgument("page_token", "is not a token this server issued") from exc
        with sql_call("list_offers"):
            rows = await asyncio.to_thread(
                self._repo.list_offers, include_archived=include_archived, after_offer_id=after, limit=size + 1
            )
        offers = [offer_pb_from_row(r) for r in rows[:size]]
        token = base64.urlsafe_b64encode(offers[-1].offer_id.encode()).decode() if len(rows) > size else ""
        return offers, token

    async def _rewrite(self, offer: pb.Offer) -> pb.Offer:
        """Stores a changed definition as the offer's next version and publishes it."""
        definition = json_format.MessageToJson(_normalise(offer), preserving_proto_field_name=True, indent=None)
        with sql_call("upsert_offer"):
            await asyncio.to_thread(self._repo.upsert_offer, offer.offer_id, offer.title, definition, offer.archived)
        await self._published()
        return await self.get_offer(offer.offer_id)

    async def archive_offer(self, offer_id: str) -> pb.Offer:
        offer = await self.get_offer(offer_id)
        if offer.archived:
            return offer
        offer.archived = True
        return await self._rewrite(offer)

    async def pause_offer(self, offer_id: str) -> pb.Offer:
        offer = await self.get_offer(offer_id)
        if offer.archived:
            raise FailedPrecondition(f"offer {offer_id!r} is archived", reason="archived")
        if offer.status == pb.OFFER_STATUS_DRAFT:
            raise FailedPrecondition(f"offer {offer_id!r} is a draft: publish it with ResumeOffer first", "draft")
        if offer.status == pb.OFFER_STATUS_PAUSED:
            return offer
        offer.status = pb.OFFER_STATUS_PAUSED
        return await self._rewrite(offer)

    async def resume_offer(self, offer_id: str) -> pb.Offer:
        """Back to ACTIVE (also publishes a DRAFT)."""
        offer = await self.get_offer(offer_id)
        if offer.archived:
            raise FailedPrecondition(f"offer {offer_id!r} is archived and cannot be resumed", reason="archived")
        if offer.status in (pb.OFFER_STATUS_ACTIVE, pb.OFFER_STATUS_UNSPECIFIED):
            return offer
        offer.status = pb.OFFER_STATUS_ACTIVE
        return await self._rewrite(offer)

    async def set_tier_policy(self, policy: pb.TierPolicy) -> pb.TierPolicy:
        validate_tiers(tier_rules(policy), field_prefix="policy.tiers")
        stored = pb.TierPolicy(tiers=sorted(policy.tiers, key=lambda t: (t.min_spend_12m_minor, t.name)))
        value = json_format.MessageToJson(stored, preserving_proto_field_name=True, indent=None)
        with sql_call("put_setting"):
            await asyncio.to_thread(self._repo.put_setting, TIER_POLICY, value)
        await self._published()
        return await self.get_tier_policy()

    async def get_tier_policy(self) -> pb.TierPolicy:
        with sql_call("get_setting"):
            row = await asyncio.to_thread(self._repo.get_setting, TIER_POLICY)
        return pb.TierPolicy() if row is None else tier_policy_from_json(*row)

    async def upsert_store(self, store: pb.Store) -> Store:
        engine_store = store_from_pb(store)
        validate_store(engine_store)
        with sql_call("upsert_store"):
            await asyncio.to_thread(self._repo.upsert_store, engine_store)
        await self._published()
        return engine_store
