"""Each customer's count of outbox records not yet in SQL, on a real Redis: every script that appends a record of
hers counts it, the writer takes it off once per entry it removes, and a rebuild from SQL waits while it is above 0."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.model import CustomerState
from store.keys import OutboxKeys
from store.records import ExpiryRecord, OutboxRecord, dump_record
from store.redis_state import CustomerStore
from store.writer import GROUP, OutboxWriter
from tests.support.snapshots import customer_snapshot

from .records_builders import DAY, T0, Member, line, purchase_receipt, return_receipt


class ListSink:
    def __init__(self) -> None:
        self.records: list[OutboxRecord] = []

    def apply_records(self, records: list[OutboxRecord]) -> int:
        fresh = [r for r in records if r.event_id not in {x.event_id for x in self.records}]
        self.records.extend(fresh)
        return len(fresh)


def state(customer_id: str, balance: int = 500) -> CustomerState:
    return CustomerState(customer_id=customer_id, display_name="M", lifetime_value_minor=0, points_balance=balance)


async def unwritten(store: CustomerStore, customer_id: str) -> int:
    ck = store.keys.customer(customer_id)
    return int(await store.redis.hget(ck.unwritten, customer_id) or 0)


def outbox_of(store: CustomerStore, customer_id: str) -> OutboxKeys:
    return store.keys.outbox_keys()[store.keys.partition(customer_id)]


async def version(store: CustomerStore, customer_id: str) -> int:
    read = (await store.read(customer_id)).state
    assert read is not None
    return read.version


async def buy(store: CustomerStore, m: Member, txn: str) -> None:
    bought = m.purchase(txn, at=T0 + DAY, lines=[line("1", "shoes", 1, 4000)])
    result = await store.commit(
        bought,
        expected_version=await version(store, m.customer_id),
        receipt=purchase_receipt(txn),
        occurred_at=T0 + DAY,
        now=T0 + DAY,
    )
    assert result.status == "ok"


async def test_every_record_of_hers_counts_until_the_writer_has_written_it(store: CustomerStore) -> None:
    m = Member("m1")
    assert await store.upsert_customer(state("m1"), m.crm(at=T0, balance=500, ltv=0)) is not None
    assert await unwritten(store, "m1") == 1
    bought = m.purchase("t1", at=T0 + DAY, lines=[line("1", "shoes", 1, 4000)])
    v = await version(store, "m1")
    receipt = purchase_receipt("t1")
    assert (await store.commit(bought, expected_version=v, receipt=receipt, occurred_at=T0 + DAY)).status == "ok"
    assert await unwritten(store, "m1") == 2
    back = m.return_("r1", bought, at=T0 + DAY, quantities={"1": 1})
    applied = await store.apply_return(
        back,
        expected_version=await version(store, "m1"),
        receipt=return_receipt("r1"),
        returned_after={"1": 1},
        purchased_at=T0 + DAY,
        now=T0 + DAY,
    )
    assert applied.status == "ok"
    assert await unwritten(store, "m1") == 3
    expiry = ExpiryRecord(event_id="expire:m1", customer_id="m1", points=0, expired_at=(T0 + 400 * DAY).isoformat())
    v = await version(store, "m1")
    assert await store.expire_points(expiry, cutoff=T0 + 300 * DAY, last_purchase_at=T0 + DAY, expected_version=v) > 0
    assert await unwritten(store, "m1") == 4
    assert await store.has_pending_changes("m1") and not await store.has_pending_changes("m2")

    sink = ListSink()
    await OutboxWriter(store.redis, store.keys, sink, consumer="w").drain(timeout_s=5)
    assert len(sink.records) == 4
    assert await unwritten(store, "m1") == 0 and not await store.has_pending_changes("m1")
    assert await store.redis.exists(store.keys.customer("m1").unwritten) == 0  # a count reaching 0 is deleted


async def test_an_entry_two_writers_hold_is_taken_off_her_count_once(store: CustomerStore) -> None:
    m = Member("m1")
    await store.upsert_customer(state("m1"), m.crm(at=T0, balance=500, ltv=0))
    await buy(store, m, "t1")
    outbox = outbox_of(store, "m1")
    sink = ListSink()
    slow = OutboxWriter(store.redis, store.keys, sink, consumer="slow")
    await slow.ensure_groups()
    held: Any = await store.redis.xreadgroup(GROUP, "slow", {outbox.stream: ">"})  # ...and stalls, thought dead
    held_ids = [entry_id for entry_id, _ in held[0][1]]
    assert len(held_ids) == 2 and await unwritten(store, "m1") == 2

    survivor = OutboxWriter(store.redis, store.keys, sink, consumer="survivor", claim_idle_ms=0)
    await survivor.drain(timeout_s=5)  # claims both and writes them
    assert await unwritten(store, "m1") == 0
    await buy(store, m, "t2")  # a later change of hers, not written yet
    assert await unwritten(store, "m1") == 1

    # The slow writer wakes up, writes its batch again (SQL finds it there) and acknowledges it: nothing to remove.
    assert await slow.acknowledge(outbox, written=held_ids) == (0, 0)
    assert await slow.acknowledge(outbox, dead=held_ids) == (0, 0)
    assert await unwritten(store, "m1") == 1 and await store.has_pending_changes("m1")
    assert await store.redis.xlen(outbox.dead_letters) == 0


async def test_entries_the_count_never_saw_are_not_taken_off_it(store: CustomerStore) -> None:
    """An older server's entry (no "counted") or one an operator replayed by hand leaves her count alone."""
    m = Member("m1")
    await store.upsert_customer(state("m1"), m.crm(at=T0, balance=500, ltv=0))
    await buy(store, m, "t1")
    outbox = outbox_of(store, "m1")
    older = m.purchase("t0", at=T0, lines=[line("1", "socks", 1, 500)])
    await store.redis.xadd(outbox.stream, {"r": dump_record(older), "c": "m1"})
    writer = OutboxWriter(store.redis, store.keys, ListSink(), consumer="w")
    await writer.ensure_groups()
    entries: Any = await store.redis.xreadgroup(GROUP, "w", {outbox.stream: ">"})
    ids = [entry_id for entry_id, _ in entries[0][1]]
    assert len(ids) == 3 and await unwritten(store, "m1") == 2
    assert await writer.acknowledge(outbox, written=[ids[0], ids[2]]) == (2, 0)  # the CRM import, the older entry
    assert await unwritten(store, "m1") == 1  # the purchase: still on its way


async def test_dead_letters_leave_her_count_too(store: CustomerStore) -> None:
    m = Member("m1")
    await store.upsert_customer(state("m1"), m.crm(at=T0, balance=500, ltv=0))
    outbox = outbox_of(store, "m1")
    # A record this writer cannot read (a newer server's kind, say), counted by the script that wrote it.
    await store.redis.hincrby(outbox.unwritten, "m1", 1)
    await store.redis.xadd(outbox.stream, {"r": '{"kind": "gift"}', "c": "m1", "counted": "1"})
    writer = OutboxWriter(store.redis, store.keys, ListSink(), consumer="w")
    await writer.drain(timeout_s=5)
    assert writer.stats.dead_letters == 1 and await store.redis.xlen(outbox.dead_letters) == 1
    parked: Any = await store.redis.xrange(outbox.dead_letters)
    assert parked[0][1][b"c"] == b"m1" and b"id" in parked[0][1]
    assert await unwritten(store, "m1") == 0


async def test_a_rebuild_waits_while_her_count_is_above_zero(store: CustomerStore) -> None:
    m = Member("m1")
    await store.upsert_customer(state("m1"), m.crm(at=T0, balance=500, ltv=0))
    await store.forget_customer("m1")  # Redis loses her profile, not the outbox
    from_sql = customer_snapshot("m1", display_name="From SQL", points_balance=7)
    assert await store.hydrate(from_sql, now=T0 + timedelta(hours=1)) == "pending"
    assert (await store.read("m1")).state is None
    await OutboxWriter(store.redis, store.keys, ListSink(), consumer="w").drain(timeout_s=5)
    assert await store.hydrate(from_sql, now=T0 + timedelta(hours=1)) == "rebuilt"
    rebuilt = (await store.read("m1")).state
    assert rebuilt is not None and rebuilt.points_balance == 7


async def test_a_count_left_behind_goes_once_the_outbox_is_empty(store: CustomerStore) -> None:
    """A count no entry stands for (a rollback to a version that did not count, an outbox deleted by hand) would
    keep her from being rebuilt: it goes when the writer next empties the partition's outbox."""
    m = Member("m1")
    outbox = outbox_of(store, "m1")
    await store.redis.hset(outbox.unwritten, "m1", 3)
    await store.upsert_customer(state("m1"), m.crm(at=T0, balance=500, ltv=0))
    assert await unwritten(store, "m1") == 4
    await OutboxWriter(store.redis, store.keys, ListSink(), consumer="w").drain(timeout_s=5)
    assert await store.redis.exists(outbox.unwritten) == 0 and not await store.has_pending_changes("m1")
