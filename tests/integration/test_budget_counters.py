"""Offer budget counters on a real Redis and their rebuild from SQL (SQLite and PostgreSQL): a lost counter is
never taken for "nothing used", and what SQL and the outbox hold of an offer is counted once."""

from __future__ import annotations

from dataclasses import replace

from domain.ids import purchase_entry_id
from domain.model import PurchaseKey
from store.records import LedgerEntry, OutboxRecord, dump_record
from store.redis_limits import RedisLimits
from store.redis_state import CustomerStore
from store.sql_budgets import SqlBudgets
from store.sql_outbox import SqlOutboxSink

from .records_builders import DAY, T0, Member, line

OFFER = "scarf-500"


async def counter(store: CustomerStore, offer_id: str = OFFER) -> bytes | None:
    raw = await store.redis.get(store.keys.offer_redemptions(offer_id))
    assert raw is None or isinstance(raw, bytes)
    return raw


# -- the counter in Redis ----------------------------------------------------------------------------------------


async def test_a_missing_counter_is_lost_not_zero_and_nothing_creates_it_by_accident(store: CustomerStore) -> None:
    assert (await store.reserve_budget(OFFER, 3))[0] == "lost"
    assert await store.release_budget(OFFER) is False  # a return after the loss: left for the rebuild to count
    assert await counter(store) is None
    assert await store.budget_counters([OFFER]) == {}  # the gauge keeps its last value, not 0 used

    assert await store.seed_budget(OFFER, 2) is True
    assert await store.seed_budget(OFFER, 0) is False  # a second server rebuilding at once keeps the first count
    assert await counter(store) == b"2"
    status, epoch = await store.reserve_budget(OFFER, 3)
    assert status == "reserved" and epoch
    assert (await store.reserve_budget(OFFER, 3))[0] == "sold_out"
    assert await store.budget_counters([OFFER, "other"]) == {OFFER: 3}
    for _ in range(4):
        await store.release_budget(OFFER, epoch=epoch)
    assert await counter(store) == b"0"  # never below zero
    assert await store.release_budget(OFFER, epoch=epoch) is False


async def test_a_counter_rebuilt_meanwhile_never_takes_back_what_it_did_not_count(store: CustomerStore) -> None:
    """Reservations and returns from before a rebuild: the rebuild's count already decided about them."""
    assert await store.seed_budget(OFFER, 0)
    _, before = await store.reserve_budget(OFFER, 10)  # a commit under way...
    await store.redis.delete(store.keys.offer_redemptions(OFFER))  # ...when Redis loses the counter
    written_before_rebuild = int((await store.redis.time())[0]) * 1000 - 1  # a return's record, just before
    assert await store.seed_budget(OFFER, 5)  # the rebuild: 5 committed, not counting that commit
    assert await store.release_budget(OFFER, epoch=before) is False  # the commit failed: nothing to give back
    assert await store.release_budget(OFFER, returned_at_ms=written_before_rebuild) is False  # already left out
    assert await counter(store) == b"5"
    assert await store.confirm_budget(OFFER, before) is True  # the commit succeeded after all: counted now
    assert await counter(store) == b"6"

    _, current = await store.reserve_budget(OFFER, 10)
    assert await store.confirm_budget(OFFER, current) is False  # same counter: already counted
    assert await store.release_budget(OFFER, epoch=current) is True
    later = int((await store.redis.time())[0]) * 1000 + 1000
    assert await store.release_budget(OFFER, returned_at_ms=later) is True  # a return after the rebuild
    assert await counter(store) == b"5"


def keys(*transaction_ids: str, store: str = "store-1") -> list[PurchaseKey]:
    """Purchases of one store (the records' builders sell at "store-1")."""
    return [PurchaseKey(store, txn) for txn in transaction_ids]


def _records() -> tuple[list[OutboxRecord], dict[str, list[str]]]:
    """Outbox records that mention OFFER or look alike, and which transactions should be found."""
    m = Member("m1")
    crm = m.crm(at=T0, balance=0, ltv=0)
    p1 = m.purchase("t1", at=T0 + DAY, lines=[line("1", "scarves", 1, 4000, offer=OFFER)])
    p2 = m.purchase("t2", at=T0 + DAY, lines=[line("1", "scarves", 1, 4000, offer=f"{OFFER}-vip")])
    p3 = m.purchase("t3", at=T0 + DAY, lines=[line("1", "scarves", 1, 4000, offer='odd"id-é')])
    p4 = m.purchase("t4", at=T0 + DAY, lines=[line("1", "socks", 1, 500)])
    r1 = m.return_("r1", p1, at=T0 + 2 * DAY, quantities={"1": 1}, offers_lost=(OFFER,))
    r2 = m.return_("r2", p2, at=T0 + 2 * DAY, quantities={"1": 1}, offers_lost=(f"{OFFER}-vip",))
    # An id that only appears elsewhere in the record (a customer id) is not the offer.
    p5 = replace(m.purchase("t5", at=T0 + DAY, lines=[line("1", "hats", 1, 500)]), customer_id=OFFER)
    return [crm, p1, p2, p3, p4, r1, r2, p5], {
        OFFER: ["t1"],
        f"{OFFER}-vip": ["t2"],
        'odd"id-é': ["t3"],
    }


async def test_the_outbox_scan_finds_exactly_the_records_of_the_offer(store: CustomerStore) -> None:
    records, purchases = _records()
    for i, record in enumerate(records):
        await store.redis.xadd(store.keys.outbox(i % 4), {"r": dump_record(record), "c": record.customer_id})
    found = await store.offer_in_outbox(OFFER)
    assert found is not None
    assert list(found.purchases) == keys(*purchases[OFFER])
    assert list(found.returns) == keys("t1")
    for offer_id in (f"{OFFER}-vip", 'odd"id-é'):
        other = await store.offer_in_outbox(offer_id)
        assert other is not None and list(other.purchases) == keys(*purchases[offer_id])
    nothing = await store.offer_in_outbox("never-sold")
    assert nothing is not None and nothing.purchases == () and nothing.returns == ()


async def test_an_outbox_too_long_to_look_through_is_refused(store: CustomerStore) -> None:
    small = CustomerStore(store.redis, store.keys, receipt_retention_s=3600, limits=RedisLimits(outbox_scan_limit=3))
    records, _ = _records()
    for record in records[:3]:
        await store.redis.xadd(store.keys.outbox(1), {"r": dump_record(record), "c": record.customer_id})
    assert await small.offer_in_outbox(OFFER) is not None  # up to the limit: looked through
    await store.redis.xadd(store.keys.outbox(1), {"r": dump_record(records[3]), "c": records[3].customer_id})
    assert await small.offer_in_outbox(OFFER) is None


# -- the count in SQL --------------------------------------------------------------------------------------------


def test_sql_counts_redemptions_not_taken_back_and_outbox_records_once(
    sink: SqlOutboxSink, budgets: SqlBudgets
) -> None:
    a, b = Member("a"), Member("b")
    records: list[OutboxRecord] = [a.crm(at=T0, balance=0, ltv=0), b.crm(at=T0, balance=0, ltv=0)]
    scarf = [line("1", "scarves", 1, 4000, offer=OFFER), line("2", "socks", 1, 500)]
    bought = [a.purchase(f"a{i}", at=T0 + DAY, lines=scarf) for i in range(3)]
    bought += [b.purchase(f"b{i}", at=T0 + DAY, lines=scarf) for i in range(2)]
    other = b.purchase("b-other", at=T0 + DAY, lines=[line("1", "scarves", 1, 4000, offer=f"{OFFER}-vip")])
    records += [*bought, other]
    # a0 taken back whole; a1 only partly (the socks): still a redemption
    records.append(a.return_("ra0", bought[0], at=T0 + 2 * DAY, quantities={"1": 1}, offers_lost=(OFFER,)))
    records.append(a.return_("ra1", bought[1], at=T0 + 2 * DAY, quantities={"2": 1}))
    assert sink.apply_records(records) == len(records)
    assert budgets.offer_redemptions(OFFER) == 4
    assert budgets.offer_redemptions(f"{OFFER}-vip") == 1
    assert budgets.offer_redemptions("never-sold") == 0

    # The outbox: b1 already in SQL (written, not yet removed from the stream), c0 and c1 only in the outbox; returns
    # of a0 (already counted), of a2 (in SQL), of c0 (outbox only) and of a purchase nobody knows.
    assert budgets.offer_redemptions(OFFER, pending_purchases=keys("b1", "c0", "c1")) == 6
    assert (
        budgets.offer_redemptions(
            OFFER, pending_purchases=keys("b1", "c0", "c1"), pending_returns=keys("a0", "a2", "c0", "unknown")
        )
        == 4
    )
    # Duplicates (a record claimed twice) count once; never below zero.
    assert budgets.offer_redemptions(OFFER, pending_purchases=keys("c0", "c0"), pending_returns=keys("a2", "a2")) == 4
    assert budgets.offer_redemptions(f"{OFFER}-vip", pending_returns=keys("b-other")) == 0


def test_purchases_sql_refused_still_count_against_the_budget(sink: SqlOutboxSink, budgets: SqlBudgets) -> None:
    """Redis applied them (the member got the offer); SQL refused them for good: a rebuild counts them as Redis did."""
    m = Member("m-refused")
    stored = m.purchase("r-1", at=T0, lines=[line("1", "scarves", 1, 4000, offer=OFFER)])
    assert sink.apply_records([stored]) == 1
    clashing = [
        replace(
            m.purchase(txn, at=T0 + DAY, lines=[line("1", "scarves", 1, 4000, offer=OFFER)]),
            ledger=[
                LedgerEntry(purchase_entry_id("store-1", "r-1", "earn"), "earn", 1)
            ],  # an entry id already stored: refused for good
        )
        for txn in ("r-2", "r-3")
    ]
    assert sink.apply_records(clashing) == 0
    assert budgets.offer_redemptions(OFFER) == 3
    taken_back = replace(
        m.return_("back-3", clashing[1], at=T0 + 2 * DAY, quantities={"1": 1}, offers_lost=(OFFER,)),
        ledger=[LedgerEntry(purchase_entry_id("store-1", "r-1", "earn"), "reverse", -1)],  # refused with it
    )
    assert sink.apply_records([taken_back]) == 0
    assert budgets.offer_redemptions(OFFER) == 2


def test_the_same_transaction_id_at_two_stores_is_two_redemptions(sink: SqlOutboxSink, budgets: SqlBudgets) -> None:
    m = Member("m-two-stores")
    here = m.purchase("till-1", at=T0, lines=[line("1", "scarves", 1, 4000, offer=OFFER)])
    there = m.purchase("till-1", at=T0, lines=[line("1", "scarves", 1, 4000, offer=OFFER)], store="store-2")
    assert sink.apply_records([here, there]) == 2
    assert budgets.offer_redemptions(OFFER) == 2
    # The outbox still holds the second store's (written, not yet removed) and a third store's sale of that id.
    assert (
        budgets.offer_redemptions(
            OFFER, pending_purchases=[*keys("till-1", store="store-2"), *keys("till-1", store="store-3")]
        )
        == 3
    )
    back = m.return_("r-1", there, at=T0 + DAY, quantities={"1": 1}, offers_lost=(OFFER,))
    assert sink.apply_records([back]) == 1
    assert budgets.offer_redemptions(OFFER) == 1  # store-2's taken back; store-1's kept
