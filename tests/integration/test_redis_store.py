"""The Redis side on a real Redis: atomic scripts, script reload, hydration, and the writer's recovery."""

from __future__ import annotations

import base64
import json
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from domain.ids import purchase_entry_id, purchase_event_id
from domain.model import CustomerState, GeoPoint, PurchaseKey
from store.embedded_redis import EmbeddedRedis
from store.keys import Keys
from store.records import (
    AppliedOfferRecord,
    CustomerRecord,
    LedgerEntry,
    OutboxRecord,
    PurchaseLineRecord,
    PurchaseRecord,
    dump_record,
)
from store.redis_limits import RedisLimits
from store.redis_state import CustomerStore
from store.writer import GROUP, OutboxWriter, parse_entry
from tests.support.snapshots import customer_snapshot
from usecases.ports import StoredTransaction
from usecases.snapshot import LedgerRow

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def member(customer_id: str = "m1", balance: int = 500) -> CustomerState:
    return CustomerState(
        customer_id=customer_id,
        display_name="M",
        tier="gold",
        lifetime_value_minor=1000,
        points_balance=balance,
        categories=frozenset({"dresses"}),
        home=GeoPoint(40.74, -73.99),
    )


def crm_record(customer_id: str) -> CustomerRecord:
    return CustomerRecord(
        event_id=f"customer:{customer_id}",
        customer_id=customer_id,
        display_name="M",
        tier="gold",
        currency="USD",
        categories=["dresses"],
        home_latitude=40.74,
        home_longitude=-73.99,
        propensity={},
        lifetime_value_delta=0,
        balance_delta=0,
        updated_at=NOW.isoformat(),
    )


def soho(transaction_id: str) -> PurchaseKey:
    return PurchaseKey("soho", transaction_id)


def purchase(
    customer_id: str,
    txn: str,
    *,
    earned: int = 100,
    redeemed: int = 0,
    pending_until: datetime | None = None,
    store: str = "soho",
) -> PurchaseRecord:
    return PurchaseRecord(
        event_id=purchase_event_id(customer_id, store, txn),
        transaction_id=txn,
        customer_id=customer_id,
        store_id=store,
        terminal_id="t1",
        currency="USD",
        occurred_at=NOW.isoformat(),
        committed_at=NOW.isoformat(),
        subtotal_minor=10_000,
        total_discount_minor=0,
        total_due_minor=10_000 - redeemed,
        points_earned=earned,
        points_redeemed=redeemed,
        redeemed_value_minor=redeemed,
        lifetime_value_delta=10_000,
        request_digest="d-" + txn,
        receipt_b64=base64.b64encode(b"receipt-" + txn.encode()).decode(),
        lines=[],
        applied_offers=[AppliedOfferRecord("o1", 1, 0, 0)],
        new_categories=["shoes"],
        ledger=[
            LedgerEntry(
                purchase_entry_id(store, txn, "earn"),
                "earn",
                earned,
                pending_until.isoformat() if pending_until else "",
            ),
            *([LedgerEntry(purchase_entry_id(store, txn, "redeem"), "redeem", -redeemed)] if redeemed else []),
        ],
    )


async def commit(store: CustomerStore, record: PurchaseRecord, *, now: datetime = NOW) -> str:
    state = (await store.read(record.customer_id)).state
    assert state is not None
    result = await store.commit(
        record,
        expected_version=state.version,
        receipt=b"receipt-" + record.transaction_id.encode(),
        occurred_at=NOW,
        now=now,
    )
    return result.status


async def test_commit_applies_everything_once_and_replays(store: CustomerStore) -> None:
    await store.upsert_customer(member(), crm_record("m1"))
    assert await commit(store, purchase("m1", "t1")) == "ok"
    assert await commit(store, purchase("m1", "t1")) == "replay"
    read = await store.read("m1", purchase=soho("t1"))
    assert read.state is not None
    assert read.state.points_balance == 600 and read.state.lifetime_value_minor == 11_000
    assert read.state.categories == {"dresses", "shoes"} and read.state.offer_uses == {"o1": 1}
    assert read.stored is not None and read.stored.receipt == b"receipt-t1"


async def test_the_same_transaction_id_at_two_stores_is_two_purchases(store: CustomerStore) -> None:
    await store.upsert_customer(member(), crm_record("m1"))
    assert await commit(store, purchase("m1", "till-0001")) == "ok"
    assert await commit(store, purchase("m1", "till-0001", store="tribeca")) == "ok"  # not a replay of soho's
    assert await commit(store, purchase("m1", "till-0001", store="tribeca")) == "replay"
    read = await store.read("m1", purchase=PurchaseKey("tribeca", "till-0001"))
    assert read.state is not None and read.state.points_balance == 700 and read.state.purchase_count == 2
    assert read.stored is not None and read.stored.digest == "d-till-0001"


async def test_a_receipt_stored_before_store_scoped_ids_is_read_beside_the_purchase(store: CustomerStore) -> None:
    """A sale committed by the previous version and retried after the upgrade: the use case replays it when the
    request's digest matches (see CommitPurchase)."""
    await store.upsert_customer(member(), crm_record("m1"))
    ck = store.keys.customer("m1")
    await store.redis.hset(ck.legacy_transaction("t1"), mapping={"digest": "d-old", "receipt": b"old-receipt"})
    await store.redis.hset(ck.legacy_return_record("r1"), mapping={"digest": "d-ret", "receipt": b"old-return"})
    read = await store.read("m1", purchase=soho("t1"))
    assert read.stored is None and read.legacy == StoredTransaction("d-old", b"old-receipt")
    for_return = await store.read_for_return("m1", soho("t1"), "r1")
    assert for_return.stored is None and for_return.legacy == StoredTransaction("d-ret", b"old-return")


async def test_a_refused_commit_writes_nothing(store: CustomerStore) -> None:
    await store.upsert_customer(member(balance=50), crm_record("m1"))
    outbox = store.keys.outbox(store.keys.partition("m1"))
    before_len = await store.redis.xlen(outbox)
    before = (await store.read("m1")).state
    assert await commit(store, purchase("m1", "t1", redeemed=100)) == "insufficient"
    after = await store.read("m1", purchase=soho("t1"))
    assert after.state == before and after.stored is None
    assert await store.redis.xlen(outbox) == before_len


async def test_the_commit_script_never_spends_pending_points(store: CustomerStore) -> None:
    """The script checks what is spendable itself (by the server's clock), not only the caller's evaluation."""
    await store.upsert_customer(member(balance=500), crm_record("m1"))
    window_ends = NOW + timedelta(days=14)
    assert await commit(store, purchase("m1", "t1", earned=100, pending_until=window_ends)) == "ok"
    read = await store.read("m1", now=NOW)
    assert read.state is not None
    assert (read.state.points_balance, read.state.points_available) == (600, 500)

    refused = await store.commit(
        purchase("m1", "t2", earned=0, redeemed=550),
        expected_version=read.state.version,
        receipt=b"r",
        occurred_at=NOW,
        now=NOW,
    )
    assert (refused.status, refused.available) == ("insufficient", 500)
    later = window_ends + timedelta(seconds=1)
    assert await commit(store, purchase("m1", "t3", earned=0, redeemed=550), now=later) == "ok"
    after = (await store.read("m1", now=later)).state
    assert after is not None and (after.points_balance, after.points_available, after.pending_points) == (50, 50, ())


async def test_a_commit_on_a_stale_version_is_refused(store: CustomerStore) -> None:
    await store.upsert_customer(member(), crm_record("m1"))
    state = (await store.read("m1")).state
    assert state is not None
    await commit(store, purchase("m1", "t1"))
    stale = await store.commit(purchase("m1", "t2"), expected_version=state.version, receipt=b"r", occurred_at=NOW)
    assert stale.status == "stale"


async def test_hydration_never_overwrites_live_state(store: CustomerStore) -> None:
    await store.upsert_customer(member(balance=900), crm_record("m1"))
    snapshot = customer_snapshot("m1", display_name="Old", points_balance=1)
    assert await store.hydrate(snapshot, now=NOW) == "present"
    state = (await store.read("m1")).state
    assert state is not None and state.points_balance == 900


async def test_scripts_survive_a_script_flush() -> None:
    # SCRIPT FLUSH empties the cache for every user of a Redis, so this runs on a private embedded one.
    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="po-flush-")), persistent=False) as embedded:
        client = aioredis.Redis.from_url(embedded.url)
        try:
            store = CustomerStore(client, Keys("flush", 2), receipt_retention_s=60)
            await store.upsert_customer(member(), crm_record("m1"))
            writer = OutboxWriter(client, store.keys, ListSink(), consumer="w")
            await writer.drain(timeout_s=5)
            await client.script_flush()
            assert await commit(store, purchase("m1", "t1")) == "ok"  # EVALSHA -> NOSCRIPT -> reloaded
            await writer.drain(timeout_s=5)  # the writer's script too
            assert writer.stats.applied == 2 and not await store.has_pending_changes("m1")
        finally:
            await client.aclose()


class ListSink:
    def __init__(self) -> None:
        self.records: list[OutboxRecord] = []

    def apply_records(self, records: list[OutboxRecord]) -> int:
        fresh = [r for r in records if r.event_id not in {x.event_id for x in self.records}]
        self.records.extend(fresh)
        return len(fresh)


async def test_writer_claims_what_a_dead_writer_left_pending(store: CustomerStore) -> None:
    await store.upsert_customer(member(), crm_record("m1"))
    await commit(store, purchase("m1", "t1"))
    sink = ListSink()
    dead = OutboxWriter(store.redis, store.keys, sink, consumer="dead", claim_idle_ms=0)
    await dead.ensure_groups()
    # The dead writer read everything and died before writing or acknowledging.
    for stream in store.keys.outboxes():
        await store.redis.xreadgroup(GROUP, "dead", {stream: ">"})
    survivor = OutboxWriter(store.redis, store.keys, sink, consumer="survivor", claim_idle_ms=0)
    await survivor.drain(timeout_s=5)
    kinds = sorted(type(r).__name__ for r in sink.records)
    assert kinds == ["CustomerRecord", "PurchaseRecord"]
    customer = next(r for r in sink.records if isinstance(r, CustomerRecord))
    assert customer.balance_delta == 500 and customer.lifetime_value_delta == 1000  # deltas from the script
    assert await survivor.backlog() == 0


async def test_unreadable_outbox_entries_are_parked_not_retried_forever(store: CustomerStore) -> None:
    stream = store.keys.outbox(0)
    await store.redis.xadd(stream, {"r": "{not json"})
    writer = OutboxWriter(store.redis, store.keys, ListSink(), consumer="w")
    await writer.drain(timeout_s=5)
    assert await store.redis.xlen(stream + ":dead") == 1
    assert writer.stats.dead_letters == 1


async def test_an_import_for_a_member_redis_dropped_meanwhile_is_refused_not_created_from_scratch(
    store: CustomerStore,
) -> None:
    """Her values would otherwise reach SQL as deltas on top of what SQL already holds (doubling them there)."""
    outbox = store.keys.outbox(store.keys.partition("m1"))
    before = await store.redis.xlen(outbox)
    assert await store.upsert_customer(member(), crm_record("m1"), exists=True) == "missing"
    assert (await store.read("m1")).state is None and await store.redis.xlen(outbox) == before
    assert await store.upsert_customer(member(), crm_record("m1")) == (1000, 500)  # a new member: created


async def test_a_read_with_a_transaction_or_return_id_writes_nothing(store: CustomerStore) -> None:
    await store.upsert_customer(member(), crm_record("m1"))
    claim, return_claim = store.keys.transaction_claim(soho("t1")), store.keys.return_claim(soho("t1"), "r1")
    read = await store.read("m1", purchase=soho("t1"))
    assert read.state is not None and read.stored is None and read.claim_owner is None
    for_return = await store.read_for_return("m1", soho("t1"), "r1")
    assert for_return.owner is None and for_return.return_owner is None
    assert await store.read("nobody", purchase=soho("t1")) == (await store.read("nobody"))  # no state, no claim
    assert await store.redis.exists(claim, return_claim) == 0


async def test_a_transaction_or_return_id_is_claimed_once_for_the_retention_window(store: CustomerStore) -> None:
    assert await store.claim_transaction(soho("t1"), "m1") == "m1"
    assert await store.claim_transaction(soho("t1"), "m1") == "m1"  # her retry
    assert await store.claim_transaction(soho("t1"), "m2") == "m1"  # another customer: the first keeps it
    assert await store.claim_transaction(PurchaseKey("tribeca", "t1"), "m2") == "m2"  # another store's sale
    assert 0 < await store.redis.ttl(store.keys.transaction_claim(soho("t1"))) <= 3600
    assert (await store.read("m2", purchase=soho("t1"))).claim_owner == "m1"

    assert await store.claim_return(soho("t1"), "r1", "m2") == "m2"
    assert await store.claim_return(soho("t1"), "r1", "m1") == "m2"
    assert await store.claim_return(soho("t2"), "r1", "m1") == "m1"  # the same return id of another purchase
    assert 0 < await store.redis.ttl(store.keys.return_claim(soho("t1"), "r1")) <= 3600
    for_return = await store.read_for_return("m1", soho("t1"), "r1")
    assert (for_return.owner, for_return.return_owner) == ("m1", "m2")


async def test_the_scripts_keep_what_the_limits_say(store: CustomerStore) -> None:
    """No limit is spelled in Lua: the store passes its RedisLimits with each call."""
    limits = RedisLimits(ledger_keep=3, spend_retention_s=5000, recent_category_window_s=700)
    small = CustomerStore(store.redis, store.keys, receipt_retention_s=3600, limits=limits)
    await small.upsert_customer(member(balance=500), crm_record("m1"))  # one "adjust" entry
    shoes = [PurchaseLineRecord("1", "SHOE", "shoes", 1, 10_000, 100, 0, 0)]
    for i in range(3):
        assert await commit(small, replace(purchase("m1", f"t{i}", earned=10 + i), lines=shoes)) == "ok"
    base, entries = await small.ledger("m1")
    ids = ["sale:soho:t0:earn", "sale:soho:t1:earn", "sale:soho:t2:earn"]
    assert [e["id"] for e in entries] == ids and base == 500
    state = (await small.read("m1")).state
    assert state is not None and base + sum(e["p"] for e in entries) == state.points_balance - state.points_debt
    ck = store.keys.customer("m1")
    assert 4000 < await store.redis.ttl(ck.spend) <= 5000
    assert 0 < await store.redis.ttl(ck.category_purchases) <= 700


async def test_the_receipt_goes_to_redis_once_as_bytes_and_reaches_the_writer(store: CustomerStore) -> None:
    await store.upsert_customer(member(), crm_record("m1"))
    state = (await store.read("m1")).state
    assert state is not None
    receipt = b"\xff\x00\xfe-not-utf8"
    record = purchase("m1", "t1")  # carries receipt_b64 as the use case builds it: not sent inline
    result = await store.commit(record, expected_version=state.version, receipt=receipt, occurred_at=NOW)
    assert result.status == "ok"
    entries: Any = await store.redis.xrange(store.keys.customer("m1").outbox)
    entry_id, fields = entries[-1]
    assert "receipt_b64" not in json.loads(fields[b"r"]) and fields[b"receipt"] == receipt
    written = parse_entry(fields, entry_id)
    assert isinstance(written, PurchaseRecord) and written.receipt_b64 == base64.b64encode(receipt).decode()
    assert (await store.read("m1", purchase=soho("t1"))).stored == StoredTransaction("d-t1", receipt)


def test_a_record_of_an_older_server_keeps_its_inline_receipt() -> None:
    older = purchase("m1", "t1")
    assert "receipt_b64" in json.loads(dump_record(older))
    assert parse_entry({b"r": dump_record(older).encode(), b"c": b"m1"}) == older


async def test_a_member_rebuilt_from_sql_reads_back_as_sql_has_her(store: CustomerStore) -> None:
    snapshot = customer_snapshot(
        "m1",
        display_name="Sam",
        tier="gold",
        currency="EUR",
        lifetime_value_minor=2_500_000,
        points_balance=700,
        purchase_count=4,
        last_purchase_at=NOW - timedelta(days=3),
        home_latitude=40.74,
        home_longitude=-73.99,
        categories=["dresses"],
        propensity={"shoes": 0.25},
        offer_uses={"o1": 2},
        points_debt=0,
        ledger=[LedgerRow("t9:earn", "earn", 300, NOW - timedelta(days=3))],
    )
    assert await store.hydrate(snapshot, now=NOW) == "rebuilt"
    state = (await store.read("m1", now=NOW)).state
    assert state == CustomerState(
        customer_id="m1",
        display_name="Sam",
        tier="gold",
        currency="EUR",
        lifetime_value_minor=2_500_000,
        points_balance=700,
        purchase_count=4,
        last_purchase_at=NOW - timedelta(days=3),
        home=GeoPoint(40.74, -73.99),
        propensity={"shoes": 0.25},
        categories=frozenset({"dresses"}),
        offer_uses={"o1": 2},
        version=int(NOW.timestamp() * 1000),
    )
    base, entries = await store.ledger("m1")
    assert (base, [e["id"] for e in entries]) == (400, ["t9:earn"])


async def test_the_commit_script_refuses_a_day_limited_offer_used_up_meanwhile(store: CustomerStore) -> None:
    """The per-day limit holds in the write itself: a commit evaluated before another of hers used the offer today
    is sent back to be evaluated again (stale), whatever its evaluation said."""
    await store.upsert_customer(member(), crm_record("m1"))

    async def commit_using(txn: str, version: int) -> str:
        result = await store.commit(
            purchase("m1", txn),
            expected_version=version,
            receipt=b"r",
            occurred_at=NOW,
            now=NOW,
            day_limited=["scarf-bonus"],
        )
        return result.status

    read = await store.read("m1", now=NOW)
    assert read.state is not None and read.state.offer_uses_today == {}
    assert await commit_using("t1", read.state.version) == "ok"
    after = await store.read("m1", now=NOW)
    assert after.state is not None and after.state.offer_uses_today == {"scarf-bonus": 1}
    assert await commit_using("t2", after.state.version) == "stale"  # its state is current: only the day refuses
    tomorrow = await store.read("m1", now=NOW + timedelta(days=1))
    assert tomorrow.state is not None and tomorrow.state.offer_uses_today == {}


async def test_an_erasure_drops_her_purchases_keys_and_hands_their_claims_on(store: CustomerStore) -> None:
    """Her purchase at soho and its return: receipts gone (also as stored before store-scoped ids), claims the
    anonymous id's; the same transaction and return ids at another store are someone else's and stay."""
    await store.upsert_customer(member(), crm_record("m1"))
    # NOW starts a velocity window (12:00): a second before is the last one, whose counters may still exist.
    assert await commit(store, purchase("m1", "t0", store="tribeca"), now=NOW - timedelta(seconds=1)) == "ok"
    assert await commit(store, purchase("m1", "t1")) == "ok"
    k, ck = store.keys, store.keys.customer("m1")
    velocity = [key async for key in store.redis.scan_iter(match=ck.profile + ":vel:*")]
    assert len(velocity) == 4  # commits and stores, of this window and the last
    tribeca = PurchaseKey("tribeca", "t1")
    assert await store.claim_transaction(soho("t1"), "m1") == "m1"
    assert await store.claim_return(soho("t1"), "r1", "m1") == "m1"
    assert await store.claim_transaction(tribeca, "m2") == "m2"
    assert await store.claim_return(tribeca, "r1", "m2") == "m2"
    old = [ck.legacy_transaction("t1"), ck.legacy_return_record("r1"), ck.return_record(soho("t1"), "r1")]
    for key in old:
        await store.redis.hset(key, mapping={"digest": "d", "receipt": b"r"})
    await store.redis.set(k.legacy_transaction_claim("t1"), "m1")
    await store.redis.set(k.legacy_return_claim("r1"), "m1")
    await store.redis.hset(k.rate_bucket("customer", "m1"), mapping={"m": 1, "t": 1})  # this call's, say
    await store.redis.hdel(ck.unwritten, "m1")  # as the writer does once her records are in SQL
    assert await store.begin_erasure("m1", now=NOW, mark_s=60)
    await store.finish_erasure("m1", anonymous_id="forgotten-1", purchases=[soho("t1")], returns=[(soho("t1"), "r1")])
    leftover = [ck.transaction(soho("t1")), *old, k.legacy_transaction_claim("t1"), k.legacy_return_claim("r1")]
    leftover.append(k.rate_bucket("customer", "m1"))
    assert await store.redis.exists(*leftover, ck.erasing()) == 0
    # Nothing under her id is left but the receipt of the tribeca sale the test did not name.
    left = [key async for key in store.redis.scan_iter(match=ck.profile + "*")]
    assert left == [ck.transaction(PurchaseKey("tribeca", "t0")).encode()]
    assert await store.redis.get(k.transaction_claim(soho("t1"))) == b"forgotten-1"
    assert await store.redis.get(k.return_claim(soho("t1"), "r1")) == b"forgotten-1"
    assert await store.redis.get(k.transaction_claim(tribeca)) == b"m2"
    assert await store.redis.get(k.return_claim(tribeca, "r1")) == b"m2"
