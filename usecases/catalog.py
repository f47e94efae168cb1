"""The in-process catalog snapshot: offers and stores read from SQL, swapped whole when the version moves.

Admin writes go to SQL and then bump the version in Redis; every server polls that version and reloads, so
the hot path never reads offers from SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from domain.model import Catalog, Offer, Store, TierRule
from telemetry.observe import sql_call

log = logging.getLogger(__name__)


# (definition JSON, version, archived, updated_at): how SQL holds an offer of record.
OfferRow = tuple[str, int, bool, datetime]
ParseOffer = Callable[[OfferRow], Offer]


class CatalogSource(Protocol):
    def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[OfferRow]: ...

    def list_stores(self) -> list[Store]: ...

    def get_setting(self, key: str) -> tuple[str, int] | None: ...


class VersionSource(Protocol):
    async def catalog_version(self) -> int: ...


def load_catalog(
    source: CatalogSource,
    parse_offer: ParseOffer,
    version: int,
    parse_tiers: Callable[[str], tuple[TierRule, ...]] = lambda value: (),
) -> Catalog:
    offers: list[Offer] = []
    after = ""
    while True:
        page = source.list_offers(include_archived=False, after_offer_id=after, limit=500)
        offers.extend(parse_offer(row) for row in page)
        if len(page) < 500:
            break
        after = offers[-1].offer_id
    stores = {s.store_id: s for s in source.list_stores()}
    setting = source.get_setting("tier_policy")
    tiers = parse_tiers(setting[0]) if setting else ()
    return Catalog(version=version, offers=tuple(offers), stores=stores, tiers=tiers)


class CatalogCache:
    def __init__(
        self,
        source: CatalogSource,
        versions: VersionSource,
        parse_offer: ParseOffer,
        parse_tiers: Callable[[str], tuple[TierRule, ...]] = lambda value: (),
    ) -> None:
        self._source = source
        self._versions = versions
        self._parse = parse_offer
        self._parse_tiers = parse_tiers
        self._lock = asyncio.Lock()
        self.current = Catalog(version=-1, offers=(), stores={})
        self.on_swap: Callable[[Catalog], None] | None = None

    @property
    def ready(self) -> bool:
        return self.current.version >= 0

    async def refresh(self, *, force: bool = False) -> Catalog:
        async with self._lock:
            version = await self._versions.catalog_version()
            if force or version != self.current.version:
                with sql_call("load_catalog"):
                    catalog = await asyncio.to_thread(
                        load_catalog, self._source, self._parse, version, self._parse_tiers
                    )
                self.current = catalog
                log.info("catalog loaded", extra={"version": version, "offers": len(catalog.offers)})
                if self.on_swap:
                    self.on_swap(catalog)
            return self.current

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:
                # Keep serving the last snapshot; an outage of Redis or SQL must not empty the catalog.
                log.exception("catalog refresh failed; serving version %s", self.current.version)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
