"""The SQL ports (usecases.ports) for the event loop: each call runs the synchronous repository in a worker
thread, timed and counted like every other SQL call, so the use cases await SQL without blocking the till."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from domain.access import ApiKey
from domain.model import PurchaseKey, Store
from store.sql_api_keys import SqlApiKeys
from store.sql_audit import SqlAuditLog
from store.sql_budgets import SqlBudgets
from store.sql_catalog import OfferTuple, SqlCatalog
from store.sql_privacy import SqlPrivacy
from store.sql_profile import SqlProfiles
from telemetry.observe import sql_call
from usecases.ports import (
    TIER_POLICY,
    AuditEvent,
    AuditPosition,
    CatalogRecords,
    ErasedIds,
    StoredAdjustment,
    StoredApiKey,
    StoredOffer,
)
from usecases.snapshot import CustomerSnapshot, StoredReceipt

T = TypeVar("T")

ALL_ROWS = 2**31 - 1  # a LIMIT every SQL dialect takes, for "no limit"


async def _in_thread(operation: str, call: Callable[[], T]) -> T:
    with sql_call(operation):
        return await asyncio.to_thread(call)


class SqlProfileStore:
    """ProfileStore: the profile of record, read off the till path."""

    def __init__(self, profiles: SqlProfiles, budgets: SqlBudgets) -> None:
        self._sql = profiles
        self._budgets = budgets

    async def load_customer(
        self, customer_id: str, *, receipts_since: datetime, spend_since: datetime, now: datetime
    ) -> CustomerSnapshot | None:
        return await _in_thread(
            "load_customer",
            lambda: self._sql.load_customer(
                customer_id, receipts_since=receipts_since, spend_since=spend_since, now=now
            ),
        )

    async def offer_redemptions(
        self,
        offer_id: str,
        *,
        pending_purchases: Sequence[PurchaseKey] = (),
        pending_returns: Sequence[PurchaseKey] = (),
    ) -> int:
        return await _in_thread(
            "offer_redemptions",
            lambda: self._budgets.offer_redemptions(
                offer_id, pending_purchases=pending_purchases, pending_returns=pending_returns
            ),
        )

    async def get_purchase_receipt(self, purchase: PurchaseKey) -> StoredReceipt | None:
        return await _in_thread("load_purchase", lambda: self._sql.get_purchase_receipt(purchase))

    async def returned_quantities(self, purchase: PurchaseKey) -> dict[str, int]:
        return await _in_thread("load_purchase", lambda: self._sql.returned_quantities(purchase))

    async def inactive_customers(self, *, cutoff: datetime, after_customer_id: str, limit: int) -> list[str]:
        return await _in_thread(
            "inactive_customers",
            lambda: self._sql.inactive_customers(cutoff=cutoff, after_customer_id=after_customer_id, limit=limit),
        )

    async def get_adjustment(self, adjustment_id: str) -> StoredAdjustment | None:
        return await _in_thread("get_adjustment", lambda: self._sql.get_adjustment(adjustment_id))


def _stored(row: OfferTuple) -> StoredOffer:
    return StoredOffer(*row)


class SqlCatalogStore:
    """CatalogStore: offers, stores and settings of record."""

    def __init__(self, catalog: SqlCatalog) -> None:
        self._sql = catalog

    async def load_catalog(self) -> CatalogRecords:
        return await _in_thread("load_catalog", self._read_catalog)

    def _read_catalog(self) -> CatalogRecords:
        # The whole live catalog is held in memory anyway: one query, not pages.
        rows = self._sql.list_offers(include_archived=False, after_offer_id="", limit=ALL_ROWS)
        setting = self._sql.get_setting(TIER_POLICY)
        return CatalogRecords([_stored(row) for row in rows], self._sql.list_stores(), setting[0] if setting else None)

    async def upsert_offer(self, offer_id: str, title: str, definition: str, archived: bool) -> None:
        await _in_thread("upsert_offer", lambda: self._sql.upsert_offer(offer_id, title, definition, archived))

    async def get_offer(self, offer_id: str) -> StoredOffer | None:
        row = await _in_thread("get_offer", lambda: self._sql.get_offer(offer_id))
        return _stored(row) if row is not None else None

    async def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[StoredOffer]:
        rows = await _in_thread(
            "list_offers",
            lambda: self._sql.list_offers(
                include_archived=include_archived, after_offer_id=after_offer_id, limit=limit
            ),
        )
        return [_stored(row) for row in rows]

    async def upsert_store(self, store: Store) -> None:
        await _in_thread("upsert_store", lambda: self._sql.upsert_store(store))

    async def get_setting(self, key: str) -> tuple[str, int] | None:
        return await _in_thread("get_setting", lambda: self._sql.get_setting(key))

    async def put_setting(self, key: str, value: str) -> None:
        await _in_thread("put_setting", lambda: self._sql.put_setting(key, value))


class SqlPrivacyStore:
    """PrivacyStore: export and erasure of one member in the profile of record."""

    def __init__(self, privacy: SqlPrivacy) -> None:
        self._sql = privacy

    async def export_customer(self, customer_id: str, *, now: datetime) -> Mapping[str, Any] | None:
        return await _in_thread("export_customer", lambda: self._sql.export_customer(customer_id, now=now))

    async def forget_customer(self, customer_id: str, *, anonymous_id: str, at: datetime) -> ErasedIds | None:
        return await _in_thread(
            "forget_customer", lambda: self._sql.forget_customer(customer_id, anonymous_id=anonymous_id, at=at)
        )


class SqlApiKeyStore:
    """ApiKeyStore: keys of record, read whole by each server's key ring (off the call path)."""

    def __init__(self, keys: SqlApiKeys) -> None:
        self._sql = keys

    async def add_api_key(self, stored: StoredApiKey) -> None:
        await _in_thread("add_api_key", lambda: self._sql.add(stored))

    async def all_api_keys(self) -> list[StoredApiKey]:
        return await _in_thread("load_api_keys", self._sql.all)

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey | None:
        return await _in_thread("revoke_api_key", lambda: self._sql.revoke(key_id, at))


class SqlAuditStore:
    """AuditLog: the audit table, appended to by admin calls (synchronously, off the till path) and read by
    ListAuditEvents."""

    def __init__(self, log: SqlAuditLog) -> None:
        self._sql = log

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        await _in_thread("append_audit", lambda: self._sql.append(events))

    async def audit_events(
        self, *, since: datetime | None, key_id: str, after: AuditPosition | None, limit: int
    ) -> list[AuditEvent]:
        return await _in_thread(
            "read_audit", lambda: self._sql.page(since=since, key_id=key_id, after=after, limit=limit)
        )
