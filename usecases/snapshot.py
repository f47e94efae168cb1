"""What SQL returns to rebuild a customer's hot state in Redis after Redis lost it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.model import PurchaseKey


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    transaction_id: str
    request_digest: str
    receipt: bytes  # PurchaseReceipt protobuf (ReturnReceipt, of a return)
    committed_at: datetime
    store_id: str = ""  # the purchase's store: with transaction_id, the purchase
    return_id: str = ""  # a return's receipt: the return id ("" for a purchase)

    @property
    def purchase(self) -> PurchaseKey:
        return PurchaseKey(self.store_id, self.transaction_id)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    entry_id: str
    kind: str
    points: int
    created_at: datetime
    available_at: datetime | None = None  # pending until then (the returns window)


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    customer_id: str
    display_name: str
    tier: str
    currency: str
    lifetime_value_minor: int
    points_balance: int
    purchase_count: int
    last_purchase_at: datetime | None
    home_latitude: float | None
    home_longitude: float | None
    categories: list[str]
    propensity: dict[str, float]
    offer_uses: dict[str, int]  # offer_id -> times this customer earned it (net of offers lost to returns)
    receipts: list[StoredReceipt] = field(default_factory=list)  # within the retention window
    points_debt: int = 0
    # purchase -> line_id -> quantity returned so far, for purchases within the retention window
    returned: dict[PurchaseKey, dict[str, int]] = field(default_factory=dict)
    # receipts of returns within the retention window (with their purchase and return id)
    return_receipts: list[StoredReceipt] = field(default_factory=list)
    # "YYYYMM" (UTC month of the sale) -> net spend, purchases minus returns, since the asked-for month
    spend_by_month: dict[str, int] = field(default_factory=dict)
    # the newest ledger entries (oldest first) that Redis keeps beside the balance
    ledger: list[LedgerRow] = field(default_factory=list)
    # ledger points not yet spendable, summed by when they become spendable (only later than the snapshot)
    pending_points: list[tuple[datetime, int]] = field(default_factory=list)
    # category -> purchases of hers committed in the last two days that included it and were not voided
    recent_category_purchases: dict[str, int] = field(default_factory=dict)
