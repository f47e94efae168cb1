"""Campaign management: offers, stores and the tier policy of record, then a catalog version bump every server
follows. Works on the domain's values; the catalog store keeps them in the offer codec's format."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from domain.errors import FailedPrecondition, InvalidArgument, NotFound
from domain.model import Offer, OfferStatus, Store, TierRule
from domain.tiers import validate_tiers
from domain.validation import validate_id, validate_offer, validate_store
from usecases.catalog import CatalogCache
from usecases.ports import TIER_POLICY, CatalogStore, CatalogVersions, OfferBudgets, OfferCodec

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class TierPolicy:
    rules: tuple[TierRule, ...]  # by threshold, then name
    version: int  # bumped by every change; 0 = never set


class AdminApp:
    def __init__(
        self,
        store: CatalogStore,
        versions: CatalogVersions,
        budgets: OfferBudgets,
        catalog: CatalogCache,
        codec: OfferCodec,
    ) -> None:
        self._store = store
        self._versions = versions
        self._budgets = budgets
        self._catalog = catalog
        self._codec = codec

    async def _published(self) -> None:
        """Every server reloads on the version bump; this one at once, so its next call sees the change."""
        await self._versions.bump_catalog_version()
        await self._catalog.refresh()

    async def upsert_offer(self, offer: Offer, *, keep_status: bool = False) -> Offer:
        """Creates or edits an offer; `keep_status` (the caller named none) keeps an edited offer's status, so an
        edit leaves a paused offer paused."""
        validate_id(offer.offer_id, "offer.offer_id")
        existing = await self._store.get_offer(offer.offer_id)
        if existing is not None:
            current = self._codec.offer(existing)
            if current.archived:
                raise FailedPrecondition(f"offer {offer.offer_id!r} is archived; create a new offer", "archived")
            if keep_status:
                offer = dataclasses.replace(offer, status=current.status)
        validate_offer(offer)
        known = self._catalog.current.stores
        for store_id in offer.eligibility.store_ids:
            if store_id not in known:
                raise NotFound("store", store_id)
        await self._store.upsert_offer(offer.offer_id, offer.title, self._codec.definition(offer), offer.archived)
        if existing is None and offer.total_redemption_limit > 0:
            # A new offer's budget counter starts at zero here, before any server sees the offer, so a missing
            # counter always means a lost one (rebuilt from SQL). An edit never touches it: after a loss, setting
            # it here would restart the budget from zero; an edit that adds a budget leaves it to the first
            # redemption, which counts from SQL what the offer was earned before.
            await self._budgets.seed_budget(offer.offer_id, 0)
        await self._published()
        return await self.get_offer(offer.offer_id)

    async def get_offer(self, offer_id: str) -> Offer:
        validate_id(offer_id, "offer_id")
        stored = await self._store.get_offer(offer_id)
        if stored is None:
            raise NotFound("offer", offer_id)
        return self._codec.offer(stored)

    async def list_offers(self, include_archived: bool, page_size: int, page_token: str) -> tuple[list[Offer], str]:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        try:
            after = base64.urlsafe_b64decode(page_token.encode()).decode() if page_token else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidArgument("page_token", "is not a token this server issued") from exc
        rows = await self._store.list_offers(include_archived=include_archived, after_offer_id=after, limit=size + 1)
        offers = [self._codec.offer(row) for row in rows[:size]]
        token = base64.urlsafe_b64encode(offers[-1].offer_id.encode()).decode() if len(rows) > size else ""
        return offers, token

    async def _rewrite(self, offer: Offer) -> Offer:
        """Stores a changed definition as the offer's next version and publishes it."""
        await self._store.upsert_offer(offer.offer_id, offer.title, self._codec.definition(offer), offer.archived)
        await self._published()
        return await self.get_offer(offer.offer_id)

    async def archive_offer(self, offer_id: str) -> Offer:
        offer = await self.get_offer(offer_id)
        if offer.archived:
            return offer
        return await self._rewrite(dataclasses.replace(offer, archived=True))

    async def pause_offer(self, offer_id: str) -> Offer:
        offer = await self.get_offer(offer_id)
        if offer.archived:
            raise FailedPrecondition(f"offer {offer_id!r} is archived", reason="archived")
        if offer.status == OfferStatus.DRAFT:
            raise FailedPrecondition(f"offer {offer_id!r} is a draft: publish it with ResumeOffer first", "draft")
        if offer.status == OfferStatus.PAUSED:
            return offer
        return await self._rewrite(dataclasses.replace(offer, status=OfferStatus.PAUSED))

    async def resume_offer(self, offer_id: str) -> Offer:
        """Back to ACTIVE (also publishes a DRAFT)."""
        offer = await self.get_offer(offer_id)
        if offer.archived:
            raise FailedPrecondition(f"offer {offer_id!r} is archived and cannot be resumed", reason="archived")
        if offer.status == OfferStatus.ACTIVE:
            return offer
        return await self._rewrite(dataclasses.replace(offer, status=OfferStatus.ACTIVE))

    async def set_tier_policy(self, rules: Sequence[TierRule]) -> TierPolicy:
        validate_tiers(rules, field_prefix="policy.tiers")
        ordered = sorted(rules, key=lambda t: (t.min_spend_12m_minor, t.name))
        await self._store.put_setting(TIER_POLICY, self._codec.tier_policy(ordered))
        await self._published()
        return await self.get_tier_policy()

    async def get_tier_policy(self) -> TierPolicy:
        row = await self._store.get_setting(TIER_POLICY)
        if row is None:
            return TierPolicy((), 0)
        value, version = row
        return TierPolicy(self._codec.tier_rules(value), version)

    async def upsert_store(self, store: Store) -> Store:
        validate_store(store)
        await self._store.upsert_store(store)
        await self._published()
        return store
