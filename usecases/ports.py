"""The ports the use cases work through, and the values that cross them.

Adapters implement them (store/: Redis hot state, SQL profile and catalog; server/rpc: the protobuf codecs);
tests implement them with in-memory fakes (tests/support/fakes.py). A use case never sees a concrete adapter,
a Redis key, a SQL row or a protobuf message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from domain.access import ApiKey
from domain.limits import Bucket, Refusal
from domain.model import CustomerState, Offer, PurchaseFacts, PurchaseKey, Receipt, ReturnOutcome, Store, TierRule
from usecases.snapshot import CustomerSnapshot, StoredReceipt

TIER_POLICY = "tier_policy"  # the setting that holds the tier policy

Clock = Callable[[], datetime]
"""Now, timezone-aware (UTC). Injected so tests choose the time."""


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    digest: str
    receipt: bytes


@dataclass(frozen=True, slots=True)
class CustomerRead:
    state: CustomerState | None  # None: Redis does not hold this customer (never seen, or lost)
    stored: StoredTransaction | None = None  # the receipt of the asked-for purchase, if committed
    claim_owner: str | None = None  # customer who holds the asked-for purchase (store, transaction id)
    redemptions_used: Mapping[str, int] = field(default_factory=dict)  # offer id -> redemptions, all customers
    lost_budgets: tuple[str, ...] = ()  # offers whose budget counter Redis no longer holds (to be rebuilt)
    # A receipt of hers stored under the transaction id alone (servers before store-scoped ids): a replay only
    # when the request's digest matches (it then named the same store); gone after one retention window.
    legacy: StoredTransaction | None = None


HydrateResult = Literal["rebuilt", "present", "pending"]
UpsertStatus = Literal["ok", "missing", "balance"]


@dataclass(frozen=True, slots=True)
class ReturnRead:
    state: CustomerState | None
    purchase: StoredTransaction | None  # the purchase's stored receipt, while Redis keeps it
    returned: dict[str, int]  # line_id -> quantity returned so far
    stored: StoredTransaction | None  # this return's receipt, if it was already applied
    owner: str | None = None  # customer who committed the purchase (while its claim lives)
    return_owner: str | None = None  # customer who claimed the purchase's return id (this one, unless another did)
    legacy: StoredTransaction | None = None  # a return of hers stored under the return id alone (see CustomerRead)


BudgetReservation = Literal["reserved", "sold_out", "lost"]


@dataclass(frozen=True, slots=True)
class OfferOutbox:
    """Records of an offer still in the outbox streams, found when its budget counter has to be rebuilt."""

    purchases: tuple[PurchaseKey, ...]  # purchases that applied the offer
    returns: tuple[PurchaseKey, ...]  # purchases a return took it back from whole


CommitStatus = Literal["ok", "replay", "digest_mismatch", "missing", "stale", "insufficient"]


@dataclass(frozen=True, slots=True)
class CommitResult:
    status: CommitStatus
    receipt: bytes = b""  # the stored receipt, on replay
    available: int = 0  # the spendable points that refused a redemption, on insufficient
    written_at_ms: int = 0  # a return's outbox entry time (Redis clock), on ok
    alerts: tuple[str, ...] = ()  # velocity thresholds this write reached first in their window ("commits" ...)


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A manual points adjustment as asked (AdjustPoints): signed non-zero points, a reason, the request's digest."""

    adjustment_id: str
    customer_id: str
    points: int
    reason: str
    digest: str


AdjustStatus = Literal["ok", "replay", "digest_mismatch", "missing", "insufficient"]


@dataclass(frozen=True, slots=True)
class AdjustmentOutcome:
    """What an adjustment did (a replay answers with the first one's)."""

    adjustment_id: str
    customer_id: str
    points: int
    balance_before: int
    balance_after: int
    debt_before: int
    debt_after: int
    adjusted_at: datetime


@dataclass(frozen=True, slots=True)
class AdjustResult:
    status: AdjustStatus
    outcome: AdjustmentOutcome | None = None  # on ok and replay
    available: int = 0  # the spendable points that refused a negative adjustment, on insufficient


@dataclass(frozen=True, slots=True)
class StoredAdjustment:
    """An adjustment the profile of record holds: its request's digest and outcome."""

    digest: str
    outcome: AdjustmentOutcome


@dataclass(frozen=True, slots=True)
class ErasedIds:
    """The ids of a forgotten member's purchases, returns and adjustments: their hot-state keys go too."""

    purchases: tuple[PurchaseKey, ...] = ()
    returns: tuple[tuple[PurchaseKey, str], ...] = ()  # (the purchase returned, the return id)
    adjustment_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredOffer:
    """An offer of record as the catalog store keeps it: its definition (the codec's format) and what the store
    owns (version, archived, when it last changed)."""

    definition: str
    version: int
    archived: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CatalogRecords:
    """Everything a catalog snapshot is built from, read at once."""

    offers: list[StoredOffer]  # not archived
    stores: list[Store]
    tier_policy: str | None  # the tier policy setting's value, if set


class CustomerHotState(Protocol):
    """What the till needs of a customer now (Redis): one round trip to read, one atomic call per write. Every
    write also appends its write-behind record for the profile of record, atomically with the change."""

    async def read(
        self,
        customer_id: str,
        *,
        purchase: PurchaseKey | None = None,
        budget_offer_ids: Sequence[str] = (),
        now: datetime,
    ) -> CustomerRead:
        """Her state, the budget counters asked for and, with a purchase, its stored receipt and the customer
        holding its claim. Writes nothing."""
        ...

    async def claim_transaction(self, purchase: PurchaseKey, customer_id: str) -> str:
        """Claims a purchase (a store's transaction id) for a customer unless another holds it; returns the holder."""
        ...

    async def read_for_return(
        self, customer_id: str, purchase: PurchaseKey, return_id: str, *, now: datetime
    ) -> ReturnRead: ...

    async def claim_return(self, purchase: PurchaseKey, return_id: str, customer_id: str) -> str:
        """Claims a return id of a purchase for a customer unless another holds it; returns the holder."""
        ...

    async def commit_purchase(
        self, receipt: Receipt, *, digest: str, receipt_bytes: bytes, expected_version: int, now: datetime
    ) -> CommitResult:
        """Applies a purchase evaluated on state `expected_version`, exactly once per (store, transaction id)."""
        ...

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
        """Applies a return of the purchase `facts` tell, exactly once per (store, transaction id, return id)."""
        ...

    async def expire_points(
        self, customer_id: str, *, cutoff: datetime, last_purchase_at: datetime, expected_version: int, now: datetime
    ) -> int:
        """Takes her balance if she still has not bought since `last_purchase_at`; the points taken (0: nothing
        to do, -1: not held)."""
        ...

    async def upsert_customer(self, state: CustomerState, *, exists: bool, now: datetime) -> UpsertStatus:
        """Sets her profile from a CRM import: "missing" when `exists` but she is no longer held (rebuild, retry),
        "balance" when she exists and the import names another balance than hers (nothing changed)."""
        ...

    async def claim_adjustment(self, adjustment_id: str, customer_id: str) -> str:
        """Claims an adjustment id for a customer unless another holds it; returns the holder."""
        ...

    async def adjust_points(self, adjustment: Adjustment, *, now: datetime) -> AdjustResult:
        """Applies a manual adjustment exactly once per adjustment id: debt repaid first, never below zero."""
        ...

    async def has_pending_changes(self, customer_id: str) -> bool:
        """True while changes of hers have not reached the profile of record yet."""
        ...

    async def begin_erasure(self, customer_id: str, *, now: datetime) -> bool:
        """Drops her hot state and holds off any rebuild of her until `finish_erasure`; False (nothing changed)
        while changes of hers are still on their way to the profile of record."""
        ...

    async def finish_erasure(self, customer_id: str, *, anonymous_id: str, erased: ErasedIds) -> None:
        """Drops what is kept per purchase, return and adjustment of hers, gives their claims to `anonymous_id`,
        and lets her id be used again."""
        ...

    async def hydrate(self, snapshot: CustomerSnapshot, *, now: datetime, keep_s: int = 0) -> HydrateResult:
        """Rebuilds her from the profile of record unless she is held or changes of hers are still on their way."""
        ...


class OfferBudgets(Protocol):
    """Counters of offers' total redemption budgets, shared by all servers (Redis)."""

    async def reserve_budget(self, offer_id: str, limit: int) -> tuple[BudgetReservation, str]: ...

    async def release_budget(self, offer_id: str, *, epoch: str = "", returned_at_ms: int = 0) -> bool: ...

    async def confirm_budget(self, offer_id: str, epoch: str) -> bool: ...

    async def seed_budget(self, offer_id: str, used: int) -> bool: ...

    async def budget_counters(self, offer_ids: Sequence[str]) -> dict[str, int]: ...

    async def offer_in_outbox(self, offer_id: str) -> OfferOutbox | None: ...


class CatalogVersions(Protocol):
    """The catalog's version, shared by all servers: bumped by every admin change, polled by every server."""

    async def catalog_version(self) -> int: ...

    async def bump_catalog_version(self) -> int: ...


class ApiKeyVersions(Protocol):
    """A shared counter every server polls: it moves when a key is created or revoked anywhere."""

    async def api_keys_version(self) -> int: ...

    async def bump_api_keys_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StoredApiKey:
    key: ApiKey
    secret_hash: str  # hash_secret(secret): the secret itself is never stored


class ApiKeyStore(Protocol):
    """API keys of record (SQL): read whole by every server's key ring, written by the admin API and the CLI."""

    async def add_api_key(self, stored: StoredApiKey) -> None: ...

    async def all_api_keys(self) -> list[StoredApiKey]: ...

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey | None: ...


class ProfileStore(Protocol):
    """The profile of record (SQL), read off the till path: rebuilds, older purchases, budgets, batch jobs."""

    async def load_customer(
        self, customer_id: str, *, receipts_since: datetime, spend_since: datetime, now: datetime
    ) -> CustomerSnapshot | None: ...

    async def offer_redemptions(
        self,
        offer_id: str,
        *,
        pending_purchases: Sequence[PurchaseKey] = (),
        pending_returns: Sequence[PurchaseKey] = (),
    ) -> int: ...

    async def get_purchase_receipt(self, purchase: PurchaseKey) -> StoredReceipt | None: ...

    async def returned_quantities(self, purchase: PurchaseKey) -> dict[str, int]: ...

    async def inactive_customers(self, *, cutoff: datetime, after_customer_id: str, limit: int) -> list[str]: ...

    async def get_adjustment(self, adjustment_id: str) -> StoredAdjustment | None: ...


class PrivacyStore(Protocol):
    """A member's data protection requests on the profile of record (SQL)."""

    async def export_customer(self, customer_id: str, *, now: datetime) -> Mapping[str, Any] | None:
        """Everything held about her, as JSON-ready values (keys: profile, categories, purchases, returns, ledger,
        adjustments, pending_points); None if unknown."""
        ...

    async def forget_customer(self, customer_id: str, *, anonymous_id: str, at: datetime) -> ErasedIds | None:
        """Re-keys her rows to `anonymous_id` without what names or locates her; None if unknown."""
        ...


class CatalogStore(Protocol):
    """Offers, stores and settings of record (SQL)."""

    async def load_catalog(self) -> CatalogRecords: ...

    async def upsert_offer(self, offer_id: str, title: str, definition: str, archived: bool) -> None: ...

    async def get_offer(self, offer_id: str) -> StoredOffer | None: ...

    async def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[StoredOffer]: ...

    async def upsert_store(self, store: Store) -> None: ...

    async def get_setting(self, key: str) -> tuple[str, int] | None: ...

    async def put_setting(self, key: str, value: str) -> None: ...


class ReceiptCodec(Protocol):
    """The wire format of stored receipts: what the till got back is what a replay or a return reads."""

    def purchase_receipt(self, receipt: Receipt) -> bytes: ...

    def facts(self, purchase_receipt: bytes) -> PurchaseFacts: ...

    def return_receipt(
        self,
        outcome: ReturnOutcome,
        *,
        return_id: str,
        returning_store_id: str,
        facts: PurchaseFacts,
        voided: bool,
        at: datetime,
    ) -> bytes: ...


class OfferCodec(Protocol):
    """The format offer definitions and the tier policy are kept in by the catalog store."""

    def definition(self, offer: Offer) -> str: ...

    def offer(self, stored: StoredOffer) -> Offer: ...

    def tier_policy(self, rules: Sequence[TierRule]) -> str: ...

    def tier_rules(self, value: str) -> tuple[TierRule, ...]: ...


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the append-only audit log (usecases/audit.py): who did what to what, when, from where."""

    event_id: str  # unique; a record delivered twice is written once
    occurred_at: datetime  # aggregated events: the start of their minute
    action: str  # "OfferAdmin/UpsertOffer", "refused.unauthenticated", "velocity.commits" ...
    key_id: str = ""  # "" when no valid key was presented
    key_name: str = ""
    target: str = ""  # the offer, store, customer (hashed for velocity) or key acted on
    peer: str = ""
    request_id: str = ""
    outcome: str = ""  # the gRPC status name ("OK", "PERMISSION_DENIED" ...)
    detail: str = "{}"  # JSON of safe facts: never a secret, a name or contact data
    count: int = 1  # how many calls an aggregated event stands for


@dataclass(frozen=True, slots=True)
class AuditPosition:
    """Where a page of the audit log ended (keyset paging: oldest first by time, then id)."""

    occurred_at: datetime
    event_id: str


class AuditLog(Protocol):
    """The audit log of record (SQL): appended to, never updated or deleted; read by the admin API."""

    async def append_audit(self, events: Sequence[AuditEvent]) -> None: ...

    async def audit_events(
        self, *, since: datetime | None, key_id: str, after: AuditPosition | None, limit: int
    ) -> list[AuditEvent]: ...


class AuditOutbox(Protocol):
    """Audit events on their way to SQL through Redis and the writer: refusals and alerts of the till path,
    which must never wait for SQL."""

    async def append_audit_outbox(self, events: Sequence[AuditEvent]) -> None: ...


class RateBuckets(Protocol):
    """Token buckets shared by every server (Redis). Raises domain.errors.Unavailable when they cannot be checked."""

    async def take(self, buckets: Sequence[Bucket]) -> Refusal | None:
        """One token from each of `buckets` if every one has a token (then None), else from none (the refusal)."""
        ...
