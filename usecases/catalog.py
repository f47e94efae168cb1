"""The in-process catalog snapshot: offers and stores of record, swapped whole when the shared version moves.

Admin writes go to the catalog store and then bump the version; every server polls that version and reloads,
so the hot path never reads offers from SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from domain.catalog_index import build_index
from domain.model import Catalog
from usecases.ports import CatalogRecords, CatalogStore, CatalogVersions, OfferCodec

log = logging.getLogger(__name__)


def build_catalog(records: CatalogRecords, codec: OfferCodec, version: int) -> Catalog:
    offers = tuple(codec.offer(stored) for stored in records.offers)
    tiers = codec.tier_rules(records.tier_policy) if records.tier_policy else ()
    stores = {s.store_id: s for s in records.stores}
    # Indexed here, once per version and off the event loop: requests then touch only offers that could apply.
    return Catalog(version=version, offers=offers, stores=stores, tiers=tiers, index=build_index(offers, stores))


class CatalogCache:
    def __init__(self, store: CatalogStore, versions: CatalogVersions, codec: OfferCodec) -> None:
        self._store = store
        self._versions = versions
        self._codec = codec
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
                records = await self._store.load_catalog()
                # Parsing thousands of definitions takes a while: off the event loop the till path runs on.
                catalog = await asyncio.to_thread(build_catalog, records, self._codec, version)
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
