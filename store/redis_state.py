"""Customer hot state in Redis: one pipelined read per request, one Lua script per write."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from domain.model import CustomerState, PurchaseKey
from domain.spend import last_12_months, month_key
from store.keys import CustomerKeys, Keys
from store.records import (
    AdjustmentRecord,
    CustomerRecord,
    ExpiryRecord,
    LedgerEntry,
    PurchaseRecord,
    ReturnRecord,
    dump_record,
    load_record,
)
from store.redis_guards import GuardParams, day_key
from store.redis_limits import RedisLimits
from store.redis_profile import ProfileField, display_fields, epoch_ms, parse_profile, snapshot_fields
from store.scripts import lua
from usecases.ports import (
    BudgetReservation,
    CommitResult,
    CommitStatus,
    CustomerRead,
    HydrateResult,
    OfferOutbox,
    ReturnRead,
    StoredTransaction,
)
from usecases.rules import FraudGuards
from usecases.snapshot import CustomerSnapshot

ERASURE_MARK_S = 300
"""How long an erasure holds off rebuilds of the member at most: a failed one then lets her be rebuilt again."""


def _without_receipt(record: PurchaseRecord | ReturnRecord) -> str:
    """The outbox record as a script appends it: the receipt goes once, as bytes beside it (see parse_entry)."""
    return dump_record(dataclasses.replace(record, receipt_b64="") if record.receipt_b64 else record)


def _params(**values: Any) -> str:
    """A customer script's named parameters (ARGV[1]); text only: bytes go as ARGV of their own."""
    return json.dumps(values, separators=(",", ":"))


def ledger_entry(entry_id: str, kind: str, points: int, at: datetime, available_at: datetime | None = None) -> str:
    """One ledger entry as Redis keeps it; "a" (epoch ms) when its points are pending until then."""
    entry: dict[str, str | int] = {"id": entry_id, "k": kind, "p": points, "t": epoch_ms(at)}
    if available_at is not None:
        entry["a"] = epoch_ms(available_at)
    return json.dumps(entry, separators=(",", ":"))


def _entry(entry: LedgerEntry, at: datetime) -> str:
    available_at = datetime.fromisoformat(entry.available_at) if entry.available_at else None
    return ledger_entry(entry.entry_id, entry.kind, entry.points, at, available_at)


# Script replies that carry nothing but their status.
_PLAIN_STATUSES: dict[str, CommitStatus] = {s: s for s in ("ok", "digest_mismatch", "missing", "stale")}
_HYDRATE_RESULTS: dict[int, HydrateResult] = {1: "rebuilt", 0: "present", -1: "pending"}


def _text(raw: bytes | None) -> str:
    return raw.decode() if raw is not None else ""


def _stored(pair: Sequence[bytes | None]) -> StoredTransaction | None:
    """A {digest, receipt} hash read with HMGET: None when it is not there."""
    digest, receipt = pair
    return StoredTransaction(digest.decode(), receipt or b"") if digest is not None else None


def _read_state(pipe: Any, ck: CustomerKeys, now: datetime) -> None:
    """Queues the reads of her state that parse_profile takes, in its order (_STATE_READS replies)."""
    pipe.hgetall(ck.profile)
    pipe.smembers(ck.categories)
    pipe.hgetall(ck.offer_uses)
    pipe.hmget(ck.spend, last_12_months(now))
    pipe.hgetall(ck.pending)
    pipe.hgetall(ck.offer_uses_by_day())


_STATE_READS = 6


def _parse_state(customer_id: str, replies: Sequence[Any], now: datetime) -> CustomerState | None:
    profile, categories, uses, spend, pending, by_day = replies[:_STATE_READS]
    state = parse_profile(customer_id, profile, categories, uses, spend, pending, now)
    suffix = "@" + day_key(now)
    today = {k.decode().removesuffix(suffix): int(v) for k, v in by_day.items() if k.decode().endswith(suffix)}
    return dataclasses.replace(state, offer_uses_today=today) if state is not None and today else state


class CustomerStore:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        receipt_retention_s: int,
        limits: RedisLimits | None = None,
        observe: Callable[[str], AbstractContextManager[None]] | None = None,
        guards: GuardParams | None = None,
    ) -> None:
        self._redis = client
        self._guards = guards or GuardParams(FraudGuards(), b"")
        # Wraps every Redis call with the caller's timing, error counting and tracing, by operation name.
        self._observe = observe or (lambda operation: nullcontext())
        self.keys = keys
        self._retention_s = receipt_retention_s
        self._limits = limits or RedisLimits()
        self._commit: AsyncScript = client.register_script(lua("commit_purchase.lua"))
        self._hydrate: AsyncScript = client.register_script(lua("hydrate_customer.lua"))
        self._upsert: AsyncScript = client.register_script(lua("upsert_customer.lua"))
        self._return: AsyncScript = client.register_script(lua("return_purchase.lua"))
        self._expire: AsyncScript = client.register_script(lua("expire_points.lua"))
        self._adjust: AsyncScript = client.register_script(lua("adjust_points.lua"))
        self._erase: AsyncScript = client.register_script(lua("erase_customer.lua"))
        self._reserve_budget: AsyncScript = client.register_script(lua("reserve_budget.lua"))
        self._release_budget: AsyncScript = client.register_script(lua("release_budget.lua"))
        self._offer_outbox: AsyncScript = client.register_script(lua("offer_outbox.lua"))
        self._seed_budget: AsyncScript = client.register_script(lua("seed_budget.lua"))
        self._confirm_budget: AsyncScript = client.register_script(lua("confirm_budget.lua"))

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def ping(self) -> None:
        await self._redis.ping()  # health probes: not timed as calls, not traced (a span a second is noise)

    async def read(
        self,
        customer_id: str,
        *,
        purchase: PurchaseKey | None = None,
        budget_offer_ids: Sequence[str] = (),
        now: datetime | None = None,
    ) -> CustomerRead:
        """One round trip, writing nothing: profile, categories, offer uses, spend, pending points, the budget counters
        asked for; with a purchase also its stored receipt (and one stored by transaction id alone before
        store-scoped ids) and who claimed it (see `claim_transaction`)."""
        k, ck = self.keys, self.keys.customer(customer_id)
        now = now or datetime.now(UTC)
        pipe = self._redis.pipeline(transaction=False)
        _read_state(pipe, ck, now)
        if purchase is not None:
            pipe.get(k.transaction_claim(purchase))
            pipe.hmget(ck.transaction(purchase), "digest", "receipt")
            pipe.hmget(ck.legacy_transaction(purchase.transaction_id), "digest", "receipt")
        for offer_id in budget_offer_ids:
            pipe.get(k.offer_redemptions(offer_id))
        with self._observe("read"):
            results: list[Any] = await pipe.execute()
        state = _parse_state(customer_id, results, now)
        counters = zip(budget_offer_ids, results[len(results) - len(budget_offer_ids) :], strict=True)
        used, lost = {}, []
        for offer_id, count in counters:
            if count is None:
                lost.append(offer_id)  # shown as nothing used until rebuilt (see OffersApp._read)
            used[offer_id] = int(count or 0)
        if purchase is None:
            return CustomerRead(state, redemptions_used=used, lost_budgets=tuple(lost))
        owner, stored, legacy = results[_STATE_READS : _STATE_READS + 3]
        return CustomerRead(
            state,
            _stored(stored),
            owner.decode() if owner is not None else None,
            used,
            tuple(lost),
            legacy=_stored(legacy),
        )

    async def read_for_return(
        self, customer_id: str, purchase: PurchaseKey, return_id: str, *, now: datetime | None = None
    ) -> ReturnRead:
        """One round trip, writing nothing: the customer, the purchase's receipt and returned quantities and who
        claimed it, this return's receipt (also as stored by return id alone before store-scoped ids) and who
        claimed the return id (see `claim_return`)."""
        k, ck = self.keys, self.keys.customer(customer_id)
        now = now or datetime.now(UTC)
        pipe = self._redis.pipeline(transaction=False)
        _read_state(pipe, ck, now)
        pipe.hmget(ck.transaction(purchase), "digest", "receipt")
        pipe.hgetall(ck.returned(purchase))
        pipe.hmget(ck.return_record(purchase, return_id), "digest", "receipt")
        pipe.get(k.transaction_claim(purchase))
        pipe.get(k.return_claim(purchase, return_id))
        pipe.hmget(ck.legacy_return_record(return_id), "digest", "receipt")
        with self._observe("read_for_return"):
            results = await pipe.execute()
        receipt, returned, stored, owner, return_owner, legacy = results[_STATE_READS:]
        return ReturnRead(
            state=_parse_state(customer_id, results, now),
            purchase=_stored(receipt),
            returned={line.decode(): int(qty) for line, qty in returned.items()},
            stored=_stored(stored),
            owner=owner.decode() if owner is not None else None,
            return_owner=return_owner.decode() if return_owner is not None else None,
            legacy=_stored(legacy),
        )

    async def apply_return(
        self,
        record: ReturnRecord,
        *,
        expected_version: int,
        receipt: bytes,
        returned_after: Mapping[str, int],
        purchased_at: datetime,
        now: datetime,
        void_categories: Sequence[str] = (),
        added_categories: Sequence[str] = (),
    ) -> CommitResult:
        """Applies a return; a void also names the purchase's categories and those it added to her profile, which
        it takes back unless another recent purchase bought them too."""
        ck = self.keys.customer(record.customer_id)
        committed = datetime.fromisoformat(record.committed_at)
        params = _params(
            customer_id=record.customer_id,
            digest=record.request_digest,
            expected_version=str(expected_version),
            balance_delta=record.balance_delta,
            debt_delta=record.debt_delta,
            lifetime_value_delta=record.lifetime_value_delta,
            purchase_count_delta=record.purchase_count_delta,
            month=month_key(purchased_at),
            returned_after=dict(sorted(returned_after.items())),
            ledger_entries=[_entry(e, committed) for e in record.ledger],
            offers_lost=record.offers_lost,
            guards=self._guards.params(record.customer_id, now),
            void_categories=sorted(set(void_categories)),
            added_categories=sorted(set(added_categories)),
            now_ms=epoch_ms(now),
            retention_s=self._retention_s,
            ledger_keep=self._limits.ledger_keep,
        )
        purchase = PurchaseKey(record.store_id, record.transaction_id)
        keys = ck.script_keys(
            ck.returned(purchase),
            ck.return_record(purchase, record.return_id),
            *self._guards.return_keys(ck, purchase, now),
        )
        args: list[str | bytes] = [params, _without_receipt(record), receipt]
        with self._observe("return"):
            reply: list[bytes] = await self._return(keys=keys, args=args)
        status = reply[0].decode()
        if status == "replay":
            return CommitResult("replay", receipt=reply[1])
        if status == "ok":
            alerts = tuple(kind.decode() for kind in reply[2:])
            return CommitResult("ok", written_at_ms=int(reply[1].split(b"-")[0]), alerts=alerts)
        if status in ("digest_mismatch", "missing", "stale"):
            return CommitResult(_PLAIN_STATUSES[status])
        raise RuntimeError(f"return script returned {status!r}")

    async def expire_points(
        self, record: ExpiryRecord, *, cutoff: datetime, last_purchase_at: datetime, expected_version: int
    ) -> int:
        """Takes her balance if she still has not bought since `last_purchase_at` (before `cutoff`); returns
        the points taken (0: nothing to do, -1: Redis does not hold her)."""
        params = _params(
            customer_id=record.customer_id,
            cutoff_ms=epoch_ms(cutoff),
            last_purchase_ms=epoch_ms(last_purchase_at),
            expected_version=str(expected_version),
            entry_id=f"{record.event_id}:expire",  # the same entry id as in the SQL ledger
            now_ms=epoch_ms(datetime.fromisoformat(record.expired_at)),
            ledger_keep=self._limits.ledger_keep,
        )
        keys = self.keys.customer(record.customer_id).script_keys()
        with self._observe("expire_points"):
            taken = await self._expire(keys=keys, args=[params, dump_record(record)])
        return int(taken)

    async def adjust_points(self, record: AdjustmentRecord) -> tuple[str, dict[str, int], int]:
        """Applies a manual adjustment once per adjustment id: (status, outcome, spendable). Status "ok" or
        "replay" with the outcome (balance/debt before/after, at_ms), "insufficient" with the spendable points,
        "digest_mismatch" (the id was used for another request), "missing" (Redis does not hold her)."""
        ck = self.keys.customer(record.customer_id)
        params = _params(
            customer_id=record.customer_id,
            digest=record.request_digest,
            points=record.points,
            entry_id=record.entry_id,  # the same entry id as in the SQL ledger
            now_ms=epoch_ms(datetime.fromisoformat(record.adjusted_at)),
            retention_s=self._retention_s,
            ledger_keep=self._limits.ledger_keep,
        )
        keys = ck.script_keys(ck.adjustment(record.adjustment_id))
        with self._observe("adjust_points"):
            reply: list[bytes] = await self._adjust(keys=keys, args=[params, dump_record(record)])
        status = reply[0].decode()
        if status in ("ok", "replay"):
            return status, {k: int(v) for k, v in json.loads(reply[1]).items()}, 0
        if status == "insufficient":
            return status, {}, int(reply[1])
        if status in ("digest_mismatch", "missing"):
            return status, {}, 0
        raise RuntimeError(f"adjust script returned {status!r}")

    async def claim_adjustment(self, adjustment_id: str, customer_id: str) -> str:
        """Claims an adjustment id for a customer, like `claim_transaction`; returns who holds it after the call."""
        with self._observe("claim_adjustment"):
            return await self._claim(self.keys.adjustment_claim(adjustment_id), customer_id)

    async def has_pending_changes(self, customer_id: str) -> bool:
        """True while the outbox still holds changes of hers that SQL lacks (her unwritten count)."""
        ck = self.keys.customer(customer_id)
        with self._observe("pending_changes"):
            return int(await self._redis.hget(ck.unwritten, customer_id) or 0) > 0

    def _budget_keys(self, offer_id: str) -> list[str]:
        return [self.keys.offer_redemptions(offer_id), self.keys.offer_budget_epoch(offer_id)]

    async def reserve_budget(self, offer_id: str, limit: int) -> tuple[BudgetReservation, str]:
        """Takes one redemption of the offer's total budget: "sold_out" when it is used up, "lost" when Redis no
        longer holds the counter (nothing taken: rebuild it with `offer_in_outbox`, SQL and `seed_budget`). Also
        returns the counter's epoch, for `release_budget` or `confirm_budget` later."""
        with self._observe("reserve_budget"):
            used, epoch = await self._reserve_budget(keys=self._budget_keys(offer_id), args=[limit])
        status: BudgetReservation = "reserved" if int(used) >= 0 else "sold_out" if int(used) == -1 else "lost"
        return status, _text(epoch)

    async def release_budget(self, offer_id: str, *, epoch: str = "", returned_at_ms: int = 0) -> bool:
        """Gives one redemption back: a reservation made under `epoch`, or an offer a return written at
        `returned_at_ms` (its outbox entry's time) took back. False when there is nothing to give back: the counter
        is lost (its rebuild counts only redemptions committed and not taken back), was rebuilt since (that rebuild
        never counted the reservation, or already left the return's redemption out), or is at zero."""
        with self._observe("release_budget"):
            used = await self._release_budget(keys=self._budget_keys(offer_id), args=[epoch, returned_at_ms])
        return int(used) >= 0

    async def confirm_budget(self, offer_id: str, epoch: str) -> bool:
        """After a commit that reserved under `epoch` succeeded: counts it again if the counter was rebuilt since
        (the rebuild may have missed it). True when it did."""
        with self._observe("confirm_budget"):
            return int(await self._confirm_budget(keys=self._budget_keys(offer_id), args=[epoch])) == 1

    async def seed_budget(self, offer_id: str, used: int) -> bool:
        """Creates the offer's budget counter at `used` (and its epoch) unless it exists: of servers rebuilding it
        at once, the first wins and the others' reservations count from its value. True when this call created it."""
        with self._observe("seed_budget"):
            return int(await self._seed_budget(keys=self._budget_keys(offer_id), args=[used])) == 1

    async def offer_in_outbox(self, offer_id: str) -> OfferOutbox | None:
        """The write-behind records still in the outbox that apply the offer or take it back (SQL may not have
        them yet); None when an outbox is too long to look through (the writer is far behind)."""
        needle = json.dumps(offer_id)  # as dump_record spells it inside a record
        pipe = self._redis.pipeline(transaction=False)
        for stream in self.keys.outboxes():
            await self._offer_outbox(keys=[stream], args=[needle, self._limits.outbox_scan_limit], client=pipe)
        with self._observe("offer_in_outbox"):
            replies: list[list[Any]] = await pipe.execute()
        purchases: list[PurchaseKey] = []
        returns: list[PurchaseKey] = []
        for reply in replies:
            if int(reply[0]) < 0:
                return None
            for raw in reply[1:]:
                try:
                    record = load_record(raw)
                except (KeyError, ValueError, TypeError):
                    continue  # the writer parks it with the dead letters: it never reaches SQL either
                if isinstance(record, PurchaseRecord) and any(a.offer_id == offer_id for a in record.applied_offers):
                    purchases.append(PurchaseKey(record.store_id, record.transaction_id))
                elif isinstance(record, ReturnRecord) and offer_id in record.offers_lost:
                    returns.append(PurchaseKey(record.store_id, record.transaction_id))
        return OfferOutbox(tuple(purchases), tuple(returns))

    async def claim_transaction(self, purchase: PurchaseKey, customer_id: str) -> str:
        """Claims a purchase (a store's transaction id) for a customer unless another holds it (for the retention
        window): one round trip. Returns the customer who holds it after the call (hers, unless another was first)."""
        with self._observe("claim_transaction"):
            return await self._claim(self.keys.transaction_claim(purchase), customer_id)

    async def claim_return(self, purchase: PurchaseKey, return_id: str, customer_id: str) -> str:
        """Claims a return id of a purchase for a customer, like `claim_transaction`; returns who holds it."""
        with self._observe("claim_return"):
            return await self._claim(self.keys.return_claim(purchase, return_id), customer_id)

    async def _claim(self, key: str, customer_id: str) -> str:
        pipe = self._redis.pipeline(transaction=True)  # MULTI: the GET sees this SET or the one that won
        pipe.set(key, customer_id, nx=True, ex=self._retention_s)
        pipe.get(key)
        _, owner = await pipe.execute()
        return _text(owner)

    async def commit(
        self,
        record: PurchaseRecord,
        *,
        expected_version: int,
        receipt: bytes,
        occurred_at: datetime,
        now: datetime | None = None,
        day_limited: Sequence[str] = (),
    ) -> CommitResult:
        """Applies a purchase evaluated on `expected_version` of her profile, with its write-behind record; the
        receipt is stored and goes beside the record (the record's own receipt_b64 is not sent)."""
        ck = self.keys.customer(record.customer_id)
        committed = datetime.fromisoformat(record.committed_at)
        now = now or datetime.now(UTC)
        params = _params(
            customer_id=record.customer_id,
            digest=record.request_digest,
            expected_version=str(expected_version),
            balance_delta=record.points_earned - record.points_redeemed - record.debt_repaid,
            points_redeemed=record.points_redeemed,
            debt_repaid=record.debt_repaid,
            lifetime_value_delta=record.lifetime_value_delta,
            purchased_at_ms=epoch_ms(occurred_at),
            month=month_key(occurred_at),
            tier_after=record.tier_after,
            new_categories=record.new_categories,
            basket_categories=sorted({line.category for line in record.lines}),
            ledger_entries=[_entry(e, committed) for e in record.ledger],
            offers_applied=[a.offer_id for a in record.applied_offers],
            day_limited=list(day_limited),
            guards=self._guards.params(record.customer_id, now, record.store_id),
            now_ms=epoch_ms(now),
            retention_s=self._retention_s,
            ledger_keep=self._limits.ledger_keep,
            spend_retention_s=self._limits.spend_retention_s,
            category_window_s=self._limits.recent_category_window_s,
        )
        keys = ck.script_keys(
            ck.transaction(PurchaseKey(record.store_id, record.transaction_id)), *self._guards.commit_keys(ck, now)
        )
        args: list[str | bytes] = [params, _without_receipt(record), receipt]
        with self._observe("commit"):
            reply: list[bytes] = await self._commit(keys=keys, args=args)
        status = reply[0].decode()
        if status == "ok":
            return CommitResult("ok", alerts=tuple(kind.decode() for kind in reply[1:]))
        if status == "replay":
            return CommitResult("replay", receipt=reply[1])
        if status == "insufficient":
            return CommitResult("insufficient", available=int(reply[1]))
        if status in _PLAIN_STATUSES:
            return CommitResult(_PLAIN_STATUSES[status])
        raise RuntimeError(f"commit script returned {status!r}")

    async def hydrate(self, snapshot: CustomerSnapshot, *, now: datetime, keep_s: int = 0) -> HydrateResult:
        """Rebuilds the customer from SQL unless Redis already has her; also restores the receipts, returned
        quantities and return receipts of the retention window. `keep_s` > 0: her profile leaves Redis again after
        that long unless she buys meanwhile (a member rebuilt only for a batch job)."""
        cid = snapshot.customer_id
        ck = self.keys.customer(cid)
        entries = [ledger_entry(e.entry_id, e.kind, e.points, e.created_at, e.available_at) for e in snapshot.ledger]
        keys = ck.script_keys(ck.erasing())
        restored: list[dict[str, int]] = []
        values: list[str | bytes | int] = []  # ARGV from 2 on: binary-safe (receipts)

        def restore(key: str, ttl: int, pairs: Sequence[tuple[str, str | bytes | int]]) -> None:
            if ttl > 0 and pairs:
                if key not in keys:
                    keys.append(key)
                restored.append({"key": keys.index(key) + 1, "ttl": ttl, "count": len(pairs)})
                values.extend(v for pair in pairs for v in pair)

        ttl_of: dict[PurchaseKey, int] = {}
        for receipt in snapshot.receipts:
            ttl = self._retention_s - int((now - receipt.committed_at).total_seconds())
            ttl_of[receipt.purchase] = ttl
            restore(
                ck.transaction(receipt.purchase),
                ttl,
                [("digest", receipt.request_digest), ("receipt", receipt.receipt)],
            )
        for purchase, lines in snapshot.returned.items():
            restore(ck.returned(purchase), ttl_of.get(purchase, 0), sorted(lines.items()))
        spend = sorted((month, str(v)) for month, v in snapshot.spend_by_month.items())
        restore(ck.spend, self._limits.spend_retention_s, spend)
        pending: dict[int, int] = {}
        for at, points in snapshot.pending_points:
            if at > now:  # summed per millisecond, as the scripts' HINCRBY does: SQL keeps microseconds
                pending[epoch_ms(at)] = pending.get(epoch_ms(at), 0) + points
        if any(pending.values()):
            lifetime = max(pending) - epoch_ms(now)
            sums: list[tuple[str, str | bytes | int]] = [(str(at), p) for at, p in sorted(pending.items()) if p]
            restore(ck.pending, lifetime // 1000 + 1, sums)
        recent = sorted(snapshot.recent_category_purchases.items())
        restore(ck.category_purchases, self._limits.recent_category_window_s, recent)
        for receipt in snapshot.return_receipts:
            ttl = self._retention_s - int((now - receipt.committed_at).total_seconds())
            restore(
                ck.return_record(receipt.purchase, receipt.return_id),
                ttl,
                [("digest", receipt.request_digest), ("receipt", receipt.receipt)],
            )
        params = _params(
            customer_id=cid,
            fields=snapshot_fields(snapshot, now=now),
            categories=sorted(snapshot.categories),
            offer_uses=snapshot.offer_uses,
            ledger_entries=entries,
            keep_s=keep_s,
            restore=restored,
        )
        with self._observe("hydrate"):
            code = int(await self._hydrate(keys=keys, args=[params, *values]))
        return _HYDRATE_RESULTS[code]

    async def upsert_customer(
        self, state: CustomerState, record: CustomerRecord, *, exists: bool = False
    ) -> tuple[int, int] | Literal["missing", "balance"]:
        """Sets a customer's profile from an import; returns (lifetime value delta, balance delta), "missing" when
        `exists` and Redis no longer holds her (rebuild her, then retry), or "balance" when she exists and the
        import names another balance than hers (refused, nothing changed: only a new member's balance is set)."""
        params = _params(
            customer_id=state.customer_id,
            display=display_fields(state),
            lifetime_value=state.lifetime_value_minor,
            points_balance=state.points_balance,
            categories=sorted(state.categories),
            adjust_entry_id=f"{record.event_id}:adjust",  # the same entry id as in the SQL ledger
            now_ms=epoch_ms(datetime.fromisoformat(record.updated_at)),
            exists=exists,
            ledger_keep=self._limits.ledger_keep,
        )
        keys = self.keys.customer(state.customer_id).script_keys()
        with self._observe("upsert_customer"):
            reply = await self._upsert(keys=keys, args=[params, dump_record(record)])
        if reply[0] in (b"missing", b"balance"):
            return "missing" if reply[0] == b"missing" else "balance"
        return int(reply[0]), int(reply[1])

    async def catalog_version(self) -> int:
        with self._observe("catalog_version"):
            raw = await self._redis.get(self.keys.catalog_version())
        return int(raw) if raw is not None else 0

    async def bump_catalog_version(self) -> int:
        with self._observe("bump_catalog_version"):
            return int(await self._redis.incr(self.keys.catalog_version()))

    async def api_keys_version(self) -> int:
        with self._observe("api_keys_version"):
            raw = await self._redis.get(self.keys.api_keys_version())
            return int(raw) if raw else 0

    async def bump_api_keys_version(self) -> int:
        with self._observe("bump_api_keys_version"):
            return int(await self._redis.incr(self.keys.api_keys_version()))

    async def budget_counters(self, offer_ids: Sequence[str]) -> dict[str, int]:
        """Redemptions taken from each offer's total budget, for the offers whose counter Redis holds (for the budget
        gauges and the rebuild; off the request path)."""
        if not offer_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for offer_id in offer_ids:
            pipe.get(self.keys.offer_redemptions(offer_id))
        with self._observe("budget_counters"):
            values = await pipe.execute()
        # A lost counter (not rebuilt yet) is left out rather than shown as nothing used.
        return {o: int(v) for o, v in zip(offer_ids, values, strict=True) if v is not None}

    async def ledger(self, customer_id: str) -> tuple[int, list[dict[str, Any]]]:
        """(sum of the entries no longer kept, the newest entries oldest first): base + sum(entries) = bal - debt."""
        ck = self.keys.customer(customer_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(ck.profile, ProfileField.LEDGER_BASE)
        pipe.lrange(ck.ledger, 0, -1)
        base, raw = await pipe.execute()
        return int(base or 0), [json.loads(item) for item in raw]

    async def begin_erasure(self, customer_id: str, *, now: datetime, mark_s: int = ERASURE_MARK_S) -> bool:
        """Drops her hot state (also the fraud guards' counters of hers) and marks her as being erased (no rebuild
        from SQL meanwhile); False, changing nothing, while records of hers wait in the outbox."""
        ck = self.keys.customer(customer_id)
        params = _params(customer_id=customer_id, mark_s=mark_s)
        keys = ck.script_keys(ck.erasing(), *self._guards.erasure_keys(ck, now))
        with self._observe("begin_erasure"):
            return int(await self._erase(keys=keys, args=[params])) == 1

    async def finish_erasure(
        self,
        customer_id: str,
        *,
        anonymous_id: str,
        purchases: Sequence[PurchaseKey] = (),
        returns: Sequence[tuple[PurchaseKey, str]] = (),
        adjustment_ids: Sequence[str] = (),
    ) -> None:
        """Drops her receipts, returned quantities, return receipts and adjustments (also as kept before
        store-scoped ids), hands the claims of their ids to `anonymous_id` (still unique: the ids are the anonymous
        member's now), deletes the unread claims of before store-scoped ids and her rate-limit bucket, and lifts
        her erasure mark."""
        k, ck = self.keys, self.keys.customer(customer_id)
        own = [key for p in purchases for key in (ck.transaction(p), ck.returned(p))]
        own += [ck.return_record(p, r) for p, r in returns] + [ck.adjustment(a) for a in adjustment_ids]
        own += [ck.legacy_transaction(p.transaction_id) for p in purchases]
        own += [ck.legacy_return_record(r) for _, r in returns]
        # Claims live in their own slot ({t}): one DEL for hers (below), one SET per claim handed on.
        unread = [k.legacy_transaction_claim(p.transaction_id) for p in purchases]
        unread += [k.legacy_return_claim(r) for _, r in returns]
        claims = [k.transaction_claim(p) for p in purchases] + [k.return_claim(p, r) for p, r in returns]
        claims += [k.adjustment_claim(a) for a in adjustment_ids]
        pipe = self._redis.pipeline(transaction=False)
        for batch in (own, unread):
            for start in range(0, len(batch), 500):
                pipe.delete(*batch[start : start + 500])
        pipe.delete(k.rate_bucket("customer", customer_id))  # names her until full again (this call took from it)
        for claim in claims:
            pipe.set(claim, anonymous_id, xx=True, keepttl=True)
        pipe.delete(ck.erasing())
        with self._observe("finish_erasure"):
            await pipe.execute()

    async def forget_customer(self, customer_id: str, purchases: Sequence[PurchaseKey] = ()) -> None:
        """Drops a customer's hot state (tests and operators simulating a lost Redis); SQL is untouched."""
        ck = self.keys.customer(customer_id)
        await self._redis.delete(*ck.state(), *(ck.transaction(p) for p in purchases))
