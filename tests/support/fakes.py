"""In-memory fakes of the use cases' ports, and gates to choose interleavings: the use cases' races (claims,
replays, retries, budget loss, rebuild while changes are pending) tested deterministically, in milliseconds.

The fakes keep the contract the Redis scripts keep (state version checked on every write, exactly once per
purchase (store, transaction id) and return id of a purchase, claims unique across customers, budget counters
with epochs) at the level the use
cases can observe; tests/integration proves the real adapters keep it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain.access import ApiKey
from domain.model import CustomerState, PurchaseFacts, PurchaseKey, Receipt, ReturnOutcome, Store
from usecases.ports import (
    TIER_POLICY,
    Adjustment,
    AdjustmentOutcome,
    AdjustResult,
    BudgetReservation,
    CatalogRecords,
    CommitResult,
    CustomerRead,
    ErasedIds,
    HydrateResult,
    OfferOutbox,
    ReturnRead,
    StoredAdjustment,
    StoredApiKey,
    StoredOffer,
    StoredTransaction,
    UpsertStatus,
)
from usecases.snapshot import CustomerSnapshot, StoredReceipt


@dataclass
class Gate:
    """Stops the next `count` calls that pass it until opened; `arrived` is set when the first one waits."""

    count: int = 1
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # the first held call is waiting
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)  # all `count` calls are waiting
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    def open(self) -> None:
        self.opened.set()


class Gates:
    """Named points in the fakes where a test can hold a call: `gates.arm("commit_purchase")`."""

    def __init__(self) -> None:
        self._armed: dict[str, Gate] = {}

    def arm(self, name: str, count: int = 1) -> Gate:
        gate = self._armed[name] = Gate(count)
        return gate

    async def passing(self, name: str) -> None:
        gate = self._armed.get(name)
        if gate is None or gate.count == 0:
            return
        gate.count -= 1
        gate.waiting += 1
        gate.arrived.set()
        if gate.count == 0:
            gate.all_arrived.set()
        await gate.opened.wait()


@dataclass
class _Customer:
    state: CustomerState
    receipts: dict[PurchaseKey, StoredTransaction] = field(default_factory=dict)  # purchase -> stored receipt
    # (purchase, return id) -> stored return receipt
    returns: dict[tuple[PurchaseKey, str], StoredTransaction] = field(default_factory=dict)
    returned: dict[PurchaseKey, dict[str, int]] = field(default_factory=dict)  # purchase -> line -> quantity
    # What servers before store-scoped ids stored: transaction id -> receipt, return id -> return receipt.
    legacy_receipts: dict[str, StoredTransaction] = field(default_factory=dict)
    legacy_returns: dict[str, StoredTransaction] = field(default_factory=dict)
    adjustments: dict[str, tuple[str, AdjustmentOutcome]] = field(default_factory=dict)  # id -> (digest, outcome)


class FakeHotState:
    """CustomerHotState and OfferBudgets in memory; `outbox` holds the changes not yet written to the profile."""

    def __init__(self) -> None:
        self.gates = Gates()
        self.customers: dict[str, _Customer] = {}
        self.claims: dict[PurchaseKey, str] = {}  # purchase -> customer
        self.return_claims: dict[tuple[PurchaseKey, str], str] = {}  # (purchase, return id) -> customer
        self.adjustment_claims: dict[str, str] = {}
        self.erasing: set[str] = set()  # customers being forgotten: not rebuilt meanwhile
        self.outbox: list[tuple[str, object]] = []  # (customer id, what changed): written when the test says so
        self.counters: dict[str, tuple[int, str]] = {}  # offer id -> (used, epoch)
        self.outbox_offers: list[tuple[PurchaseKey, str]] = []  # (purchase, offer id) of sales in the outbox
        self.calls: list[str] = []
        self._clock_ms = itertools.count(1)  # Redis time, ms: when counters were created and returns written
        self._versions = itertools.count(1_000)

    # -- set-up and inspection --------------------------------------------------------------------------------------

    def put(self, state: CustomerState) -> None:
        self.customers[state.customer_id] = _Customer(dataclasses.replace(state, version=next(self._versions)))

    def state(self, customer_id: str) -> CustomerState:
        return self.customers[customer_id].state

    def forget(self, customer_id: str) -> None:
        """Redis lost her (her claims live on, as claims live in their own slot)."""
        del self.customers[customer_id]

    def touch(self, customer_id: str) -> None:
        """Another write changed her state (a commit elsewhere): every write evaluated before it is now stale."""
        held = self.customers[customer_id]
        held.state = dataclasses.replace(held.state, version=next(self._versions))

    def write_outbox(self) -> None:
        """The writer caught up: every change is in the profile of record."""
        self.outbox.clear()
        self.outbox_offers.clear()

    # -- CustomerHotState ------------------------------------------------------------------------------------------

    async def read(
        self,
        customer_id: str,
        *,
        purchase: PurchaseKey | None = None,
        budget_offer_ids: Sequence[str] = (),
        now: datetime,
    ) -> CustomerRead:
        self.calls.append("read")
        await self.gates.passing("read")
        held = self.customers.get(customer_id)
        used = {o: self.counters[o][0] for o in budget_offer_ids if o in self.counters}
        lost = tuple(o for o in budget_offer_ids if o not in self.counters)
        stored = held.receipts.get(purchase) if held and purchase else None
        owner = self.claims.get(purchase) if purchase else None
        legacy = held.legacy_receipts.get(purchase.transaction_id) if held and purchase else None
        return CustomerRead(held.state if held else None, stored, owner, used, lost, legacy=legacy)

    async def claim_transaction(self, purchase: PurchaseKey, customer_id: str) -> str:
        self.calls.append("claim_transaction")
        await self.gates.passing("claim_transaction")
        return self.claims.setdefault(purchase, customer_id)

    async def read_for_return(
        self, customer_id: str, purchase: PurchaseKey, return_id: str, *, now: datetime
    ) -> ReturnRead:
        self.calls.append("read_for_return")
        await self.gates.passing("read_for_return")
        held = self.customers.get(customer_id)
        return ReturnRead(
            state=held.state if held else None,
            purchase=held.receipts.get(purchase) if held else None,
            returned=dict(held.returned.get(purchase, {})) if held else {},
            stored=held.returns.get((purchase, return_id)) if held else None,
            owner=self.claims.get(purchase),
            return_owner=self.return_claims.get((purchase, return_id)),
            legacy=held.legacy_returns.get(return_id) if held else None,
        )

    async def claim_return(self, purchase: PurchaseKey, return_id: str, customer_id: str) -> str:
        self.calls.append("claim_return")
        return self.return_claims.setdefault((purchase, return_id), customer_id)

    async def commit_purchase(
        self, receipt: Receipt, *, digest: str, receipt_bytes: bytes, expected_version: int, now: datetime
    ) -> CommitResult:
        self.calls.append("commit_purchase")
        await self.gates.passing("commit_purchase")
        if receipt.basket is None:
            raise ValueError("a commit's receipt carries its basket")
        held = self.customers.get(receipt.basket.customer_id)
        if held is None:
            return CommitResult("missing")
        purchase = PurchaseKey(receipt.basket.store_id, receipt.transaction_id)
        stored = held.receipts.get(purchase)
        if stored is not None:
            return (
                CommitResult("replay", receipt=stored.receipt)
                if stored.digest == digest
                else CommitResult("digest_mismatch")
            )
        if held.state.version != expected_version:
            return CommitResult("stale")
        ev = receipt.evaluation
        if ev.points_redeemed > held.state.points_balance:
            return CommitResult("insufficient", available=held.state.points_balance)
        uses = dict(held.state.offer_uses)
        for applied in ev.applied_offers:
            uses[applied.offer_id] = uses.get(applied.offer_id, 0) + 1
        held.state = dataclasses.replace(
            held.state,
            points_balance=held.state.points_balance + ev.points_earned - ev.points_redeemed - ev.points_debt_repaid,
            points_debt=held.state.points_debt - ev.points_debt_repaid,
            categories=held.state.categories | frozenset(receipt.new_categories),
            offer_uses=uses,
            purchase_count=held.state.purchase_count + 1,
            version=next(self._versions),
        )
        held.receipts[purchase] = StoredTransaction(digest, receipt_bytes)
        self.outbox.append((receipt.basket.customer_id, receipt))
        self.outbox_offers.extend((purchase, a.offer_id) for a in ev.applied_offers)
        return CommitResult("ok")

    async def apply_return(
        self,
        outcome: ReturnOutcome,
        facts: PurchaseFacts,
        *,
        return_id: str,
        returning_store_id: str,
        digest: str,
        receipt_bytes: bytes,
        voided: bool,
        expected_version: int,
        now: datetime,
    ) -> CommitResult:
        self.calls.append("apply_return")
        await self.gates.passing("apply_return")
        held = self.customers.get(facts.customer_id)
        if held is None:
            return CommitResult("missing")
        stored = held.returns.get((facts.key, return_id))
        if stored is not None:
            return (
                CommitResult("replay", receipt=stored.receipt)
                if stored.digest == digest
                else CommitResult("digest_mismatch")
            )
        if held.state.version != expected_version:
            return CommitResult("stale")
        held.state = dataclasses.replace(
            held.state,
            points_balance=outcome.balance_after,
            points_debt=outcome.debt_after,
            version=next(self._versions),
        )
        held.returned[facts.key] = dict(outcome.returned_after)
        held.returns[(facts.key, return_id)] = StoredTransaction(digest, receipt_bytes)
        self.outbox.append((facts.customer_id, outcome))
        return CommitResult("ok", written_at_ms=next(self._clock_ms))

    async def expire_points(
        self, customer_id: str, *, cutoff: datetime, last_purchase_at: datetime, expected_version: int, now: datetime
    ) -> int:
        held = self.customers.get(customer_id)
        if held is None:
            return -1
        if held.state.last_purchase_at != last_purchase_at or held.state.points_balance <= 0:
            return 0
        taken = held.state.points_balance
        held.state = dataclasses.replace(held.state, points_balance=0, version=next(self._versions))
        self.outbox.append((customer_id, "expiry"))
        return taken

    async def upsert_customer(self, state: CustomerState, *, exists: bool, now: datetime) -> UpsertStatus:
        await self.gates.passing("upsert_customer")
        held = self.customers.get(state.customer_id)
        if exists and held is None:
            return "missing"
        if held is not None and held.state.points_balance != state.points_balance:
            return "balance"  # only a new member's balance is set
        self.put(state)
        self.outbox.append((state.customer_id, "crm"))
        return "ok"

    async def claim_adjustment(self, adjustment_id: str, customer_id: str) -> str:
        self.calls.append("claim_adjustment")
        return self.adjustment_claims.setdefault(adjustment_id, customer_id)

    async def adjust_points(self, adjustment: Adjustment, *, now: datetime) -> AdjustResult:
        """As adjust_points.lua: once per id, debt repaid first, never below what is spendable."""
        self.calls.append("adjust_points")
        await self.gates.passing("adjust_points")
        held = self.customers.get(adjustment.customer_id)
        if held is None:
            return AdjustResult("missing")
        done = held.adjustments.get(adjustment.adjustment_id)
        if done is not None:
            return AdjustResult("replay", done[1]) if done[0] == adjustment.digest else AdjustResult("digest_mismatch")
        state, points = held.state, adjustment.points
        if points < 0 and state.points_available + points < 0:
            return AdjustResult("insufficient", available=state.points_available)
        repaid = min(state.points_debt, points) if points > 0 else 0
        held.state = dataclasses.replace(
            state,
            points_balance=state.points_balance + points - repaid,
            points_debt=state.points_debt - repaid,
            version=next(self._versions),
        )
        outcome = AdjustmentOutcome(
            adjustment.adjustment_id,
            adjustment.customer_id,
            points,
            state.points_balance,
            held.state.points_balance,
            state.points_debt,
            held.state.points_debt,
            now,
        )
        held.adjustments[adjustment.adjustment_id] = (adjustment.digest, outcome)
        self.outbox.append((adjustment.customer_id, adjustment))
        return AdjustResult("ok", outcome)

    async def begin_erasure(self, customer_id: str, *, now: datetime) -> bool:
        if await self.has_pending_changes(customer_id):
            return False
        self.customers.pop(customer_id, None)
        self.erasing.add(customer_id)
        return True

    async def finish_erasure(self, customer_id: str, *, anonymous_id: str, erased: ErasedIds) -> None:
        """Her keys went with begin_erasure (her _Customer); the claims of her ids pass to `anonymous_id`."""
        for purchase in erased.purchases:
            if purchase in self.claims:
                self.claims[purchase] = anonymous_id
        for returned in erased.returns:
            if returned in self.return_claims:
                self.return_claims[returned] = anonymous_id
        for adjustment_id in erased.adjustment_ids:
            if adjustment_id in self.adjustment_claims:
                self.adjustment_claims[adjustment_id] = anonymous_id
        self.erasing.discard(customer_id)

    async def has_pending_changes(self, customer_id: str) -> bool:
        self.calls.append("has_pending_changes")
        return any(cid == customer_id for cid, _ in self.outbox)

    async def hydrate(self, snapshot: CustomerSnapshot, *, now: datetime, keep_s: int = 0) -> HydrateResult:
        self.calls.append("hydrate")
        await self.gates.passing("hydrate")
        if snapshot.customer_id in self.customers:
            return "present"
        if await self.has_pending_changes(snapshot.customer_id) or snapshot.customer_id in self.erasing:
            return "pending"
        self.put(
            CustomerState(
                customer_id=snapshot.customer_id,
                display_name=snapshot.display_name,
                tier=snapshot.tier,
                currency=snapshot.currency,
                lifetime_value_minor=snapshot.lifetime_value_minor,
                points_balance=snapshot.points_balance,
                purchase_count=snapshot.purchase_count,
                categories=frozenset(snapshot.categories),
                offer_uses=dict(snapshot.offer_uses),
                points_debt=snapshot.points_debt,
            )
        )
        held = self.customers[snapshot.customer_id]
        for receipt in snapshot.receipts:
            held.receipts[receipt.purchase] = StoredTransaction(receipt.request_digest, receipt.receipt)
        return "rebuilt"

    # -- OfferBudgets ----------------------------------------------------------------------------------------------

    async def reserve_budget(self, offer_id: str, limit: int) -> tuple[BudgetReservation, str]:
        self.calls.append("reserve_budget")
        await self.gates.passing("reserve_budget")
        if offer_id not in self.counters:
            await self.gates.passing("reserve_budget:lost")
            return "lost", ""
        used, epoch = self.counters[offer_id]
        if used >= limit:
            return "sold_out", epoch
        self.counters[offer_id] = (used + 1, epoch)
        return "reserved", epoch

    async def release_budget(self, offer_id: str, *, epoch: str = "", returned_at_ms: int = 0) -> bool:
        self.calls.append("release_budget")
        await self.gates.passing("release_budget")
        counter = self.counters.get(offer_id)
        if counter is None or counter[0] == 0 or (epoch and counter[1] != epoch):
            return False
        if returned_at_ms and int(counter[1]) >= returned_at_ms * 1000:
            return False  # the counter was rebuilt after the return was written: the rebuild left it out
        self.counters[offer_id] = (counter[0] - 1, counter[1])
        return True

    async def confirm_budget(self, offer_id: str, epoch: str) -> bool:
        counter = self.counters.get(offer_id)
        if counter is None or counter[1] == epoch:
            return False
        self.counters[offer_id] = (counter[0] + 1, counter[1])  # rebuilt meanwhile: it may have missed this one
        return True

    async def seed_budget(self, offer_id: str, used: int) -> bool:
        self.calls.append("seed_budget")
        if offer_id in self.counters:
            return False
        self.counters[offer_id] = (used, str(next(self._clock_ms) * 1000))  # µs, as the script's epoch
        return True

    async def budget_counters(self, offer_ids: Sequence[str]) -> dict[str, int]:
        return {o: self.counters[o][0] for o in offer_ids if o in self.counters}

    async def offer_in_outbox(self, offer_id: str) -> OfferOutbox | None:
        await self.gates.passing("offer_in_outbox")
        return OfferOutbox(tuple(txn for txn, offer in self.outbox_offers if offer == offer_id), ())


class FakeCatalog:
    """CatalogStore and CatalogVersions in memory."""

    def __init__(self) -> None:
        self.offers: dict[str, StoredOffer] = {}
        self.stores: dict[str, Store] = {}
        self.settings: dict[str, tuple[str, int]] = {}
        self.version = 0

    async def load_catalog(self) -> CatalogRecords:
        live = [o for _, o in sorted(self.offers.items()) if not o.archived]
        policy = self.settings.get(TIER_POLICY)
        return CatalogRecords(live, list(self.stores.values()), policy[0] if policy else None)

    async def upsert_offer(self, offer_id: str, title: str, definition: str, archived: bool) -> None:
        current = self.offers.get(offer_id)
        version = current.version + 1 if current else 1
        self.offers[offer_id] = StoredOffer(definition, version, archived, datetime.fromtimestamp(version, UTC))

    async def get_offer(self, offer_id: str) -> StoredOffer | None:
        return self.offers.get(offer_id)

    async def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[StoredOffer]:
        rows = sorted((oid, o) for oid, o in self.offers.items() if oid > after_offer_id)
        return [o for _, o in rows if include_archived or not o.archived][:limit]

    async def upsert_store(self, store: Store) -> None:
        self.stores[store.store_id] = store

    async def get_setting(self, key: str) -> tuple[str, int] | None:
        return self.settings.get(key)

    async def put_setting(self, key: str, value: str) -> None:
        self.settings[key] = (value, self.settings.get(key, ("", 0))[1] + 1)

    async def catalog_version(self) -> int:
        return self.version

    async def bump_catalog_version(self) -> int:
        self.version += 1
        return self.version


class FakeProfiles:
    """ProfileStore in memory: what SQL holds (`snapshots`, `purchases`, redemptions per offer)."""

    def __init__(self) -> None:
        self.gates = Gates()
        self.snapshots: dict[str, CustomerSnapshot] = {}
        self.purchases: dict[PurchaseKey, StoredReceipt] = {}
        self.redemptions: dict[str, int] = {}
        self.adjustments: dict[str, StoredAdjustment] = {}
        self.calls: list[str] = []

    async def load_customer(
        self, customer_id: str, *, receipts_since: datetime, spend_since: datetime, now: datetime
    ) -> CustomerSnapshot | None:
        self.calls.append("load_customer")
        await self.gates.passing("load_customer")
        return self.snapshots.get(customer_id)

    async def offer_redemptions(
        self,
        offer_id: str,
        *,
        pending_purchases: Sequence[PurchaseKey] = (),
        pending_returns: Sequence[PurchaseKey] = (),
    ) -> int:
        self.calls.append("offer_redemptions")
        await self.gates.passing("offer_redemptions")
        return self.redemptions.get(offer_id, 0) + len(set(pending_purchases)) - len(set(pending_returns))

    async def get_purchase_receipt(self, purchase: PurchaseKey) -> StoredReceipt | None:
        return self.purchases.get(purchase)

    async def returned_quantities(self, purchase: PurchaseKey) -> dict[str, int]:
        return {}

    async def inactive_customers(self, *, cutoff: datetime, after_customer_id: str, limit: int) -> list[str]:
        return []

    async def get_adjustment(self, adjustment_id: str) -> StoredAdjustment | None:
        return self.adjustments.get(adjustment_id)


class FakeApiKeys:
    """ApiKeyStore and ApiKeyVersions in memory (the SQL table and the Redis counter)."""

    def __init__(self) -> None:
        self.keys: dict[str, StoredApiKey] = {}
        self.version = 0

    async def add_api_key(self, stored: StoredApiKey) -> None:
        self.keys[stored.key.key_id] = stored

    async def all_api_keys(self) -> list[StoredApiKey]:
        return list(self.keys.values())

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey | None:
        stored = self.keys.get(key_id)
        if stored is None:
            return None
        if stored.key.revoked_at is None:
            stored = StoredApiKey(dataclasses.replace(stored.key, revoked_at=at), stored.secret_hash)
            self.keys[key_id] = stored
        return stored.key

    async def api_keys_version(self) -> int:
        return self.version

    async def bump_api_keys_version(self) -> int:
        self.version += 1
        return self.version
