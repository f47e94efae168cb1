"""Returns in the SQL profile, on SQLite and PostgreSQL: migration 0002, write-behind of return records (points
debt, lost offer uses, idempotency, a return that arrives before its purchase) and the reads a rebuild needs."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from alembic import command

from domain.ids import purchase_entry_id
from domain.model import PurchaseKey
from store.keys import Keys
from store.records import LedgerEntry, OutboxRecord, PurchaseRecord, dump_record
from store.sql_db import alembic_config, make_engine, migrate, write_engine
from store.sql_outbox import PurchaseNotApplied, SqlOutboxSink
from store.sql_profile import SqlProfiles
from store.writer import GROUP, OutboxWriter
from tests.support.redis_env import delete_prefix, new_prefix
from usecases.snapshot import CustomerSnapshot, StoredReceipt

from .records_builders import DAY, T0, Member, committed, line
from .sql_queries import count_rows, get_return_receipt, ledger_balance, list_categories, refused_records, snapshot


def s1(transaction_id: str) -> PurchaseKey:
    """A purchase at "store-1", where the records' builders sell."""
    return PurchaseKey("store-1", transaction_id)


# -- records, as the Redis scripts would write them ------------------------------------------------------------


def story(customer_id: str) -> tuple[list[OutboxRecord], list[Member]]:
    """Purchases, partial returns, debt and its repayment, a void, a refund of redeemed points.

    Returns the records in commit order and the member's state after each of them.
    """
    m = Member(customer_id)
    c = customer_id
    states: list[Member] = []
    records: list[OutboxRecord] = []

    def add(record: OutboxRecord) -> None:
        records.append(record)
        states.append(replace(m, uses=dict(m.uses)))

    add(m.crm(at=T0, balance=50, ltv=10_000))
    # 90 base + 50 bonus on the shoes, 15 on the socks: balance 205
    t1 = m.purchase(
        f"{c}-t1", at=T0 + DAY, lines=[line("1", "shoes", 2, 4500, offer="o-shoes"), line("2", "socks", 3, 500)]
    )
    add(t1)
    t2 = m.purchase(f"{c}-t2", at=T0 + 2 * DAY, lines=[line("1", "books", 1, 2000)], redeem=200)  # balance 25
    add(t2)
    # One pair of shoes back and the offer with it: 95 reversed on a balance of 25, debt 70
    add(m.return_(f"{c}-r1", t1, at=T0 + 3 * DAY, quantities={"1": 1}, offers_lost=("o-shoes",)))
    # 30 + 50 earned: 70 repay the debt, 10 reach the balance
    add(m.purchase(f"{c}-t3", at=T0 + 4 * DAY, lines=[line("1", "food", 1, 3000, offer="o-food")]))
    # The rest of t1: 45 + 15 reversed on a balance of 10, debt 50
    add(m.return_(f"{c}-r2", t1, at=T0 + 5 * DAY, quantities={"1": 1, "2": 3}))
    # 200 + 50 earned: 50 repay the debt, balance 200
    t4 = m.purchase(f"{c}-t4", at=T0 + 6 * DAY, lines=[line("1", "hats", 1, 20_000, offer="o-hats")])
    add(t4)
    # Voided: 250 reversed on 200, debt 50 again, one purchase less
    add(m.return_(f"{c}-r3", t4, at=T0 + 7 * DAY, quantities={"1": 1}, offers_lost=("o-hats",), voided=True))
    # The books back, the 200 points they were paid with refunded
    add(m.return_(f"{c}-r4", t2, at=T0 + 8 * DAY, quantities={"1": 1}, refund=200))
    return records, states


def assert_matches(sql_engine: sa.Engine, m: Member) -> None:
    snap = snapshot(sql_engine, m.customer_id)
    got = (snap.points_balance, snap.points_debt, snap.lifetime_value_minor, snap.purchase_count)
    assert got == (m.balance, m.debt, m.ltv, m.purchases)
    assert snap.offer_uses == {offer_id: n for offer_id, n in m.uses.items() if n}
    # The ledger explains the balance net of debt.
    assert ledger_balance(sql_engine, m.customer_id) == snap.points_balance - snap.points_debt


def normalized(snap: CustomerSnapshot) -> CustomerSnapshot:
    """The snapshot with the customer's id taken out of every id, to compare two customers' histories."""
    cid = snap.customer_id

    def receipt(r: StoredReceipt) -> StoredReceipt:
        return replace(
            r,
            transaction_id=r.transaction_id.replace(cid, "*"),
            return_id=r.return_id.replace(cid, "*"),
            request_digest="",
            receipt=b"",
        )

    return replace(
        snap,
        customer_id="*",
        display_name="",
        receipts=[receipt(r) for r in snap.receipts],
        return_receipts=[receipt(r) for r in snap.return_receipts],
        returned={
            replace(p, transaction_id=p.transaction_id.replace(cid, "*")): lines for p, lines in snap.returned.items()
        },
        ledger=sorted((replace(e, entry_id="") for e in snap.ledger), key=lambda e: (e.created_at, e.kind, e.points)),
    )


# -- schema ----------------------------------------------------------------------------------------------------

# Migrating to head twice, and head matching the models, are tested in test_sql_repo.py.


@pytest.fixture(name="engine_at_0001")
def fixture_engine_at_0001(sql_target: tuple[str, str | None]) -> Iterator[tuple[sa.Engine, str | None]]:
    url, schema = sql_target
    engine = make_engine(url, schema=schema)
    try:
        with write_engine(engine).begin() as conn:
            if schema is not None:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            command.upgrade(alembic_config(conn, schema=schema), "0001")
        yield engine, schema
    finally:
        engine.dispose()


def test_0002_upgrades_a_populated_0001_database_and_downgrades_back(
    engine_at_0001: tuple[sa.Engine, str | None],
) -> None:
    engine, schema = engine_at_0001
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (customer_id, display_name, tier, currency, lifetime_value_minor,"
                " points_balance, purchase_count, propensity_json, created_at, updated_at)"
                " VALUES ('old', 'Old', 'gold', 'USD', 100, 7, 1, '{}', :at, :at)"
            ),
            {"at": T0},
        )
    migrate(engine, schema=schema)
    sink = SqlOutboxSink(engine)
    snap = snapshot(engine, "old")
    assert (snap.points_balance, snap.points_debt, snap.returned, snap.return_receipts) == (7, 0, {}, [])
    m = Member("new")
    bought = m.purchase("t1", at=T0, lines=[line("1", "food", 2, 1000, offer="o")])
    assert sink.apply_records([bought, m.return_("r1", bought, at=T0 + DAY, quantities={"1": 1})]) == 2

    with write_engine(engine).begin() as conn:
        command.downgrade(alembic_config(conn, schema=schema), "0001")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["0001"]
        inspector = sa.inspect(conn)
        assert {"returns", "return_lines", "return_offers"}.isdisjoint(inspector.get_table_names())
        assert "points_debt" not in {c["name"] for c in inspector.get_columns("customers")}
        balances = conn.execute(sa.text("SELECT customer_id, points_balance FROM customers")).all()
        assert sorted(balances) == [("new", 60), ("old", 7)]
    migrate(engine, schema=schema)
    assert snapshot(engine, "old").points_balance == 7
    assert snapshot(engine, "new").offer_uses == {"o": 1}  # the return went with the downgrade


# -- write-behind ----------------------------------------------------------------------------------------------


def test_purchase_partial_returns_then_the_rest(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    records, states = story("c1")
    for record, state in zip(records, states, strict=True):
        assert sink.apply_records([record]) == 1
        assert_matches(sql_engine, state)

    final = states[-1]
    # Ledger: 50 + 155 + (20 - 200) - 95 + 80 - 60 + 250 - 250 + (200 - 20) = 130 = 180 balance - 50 debt
    # (a refund reaches the balance, it does not repay debt).
    assert (final.balance, final.debt, final.purchases) == (180, 50, 3)
    assert final.uses == {"o-shoes": 0, "o-food": 1, "o-hats": 0}
    snap = snapshot(sql_engine, "c1")
    assert snap.offer_uses == {"o-food": 1}
    assert snap.returned == {s1("c1-t1"): {"1": 2, "2": 3}, s1("c1-t2"): {"1": 1}, s1("c1-t4"): {"1": 1}}
    assert [r.return_id for r in snap.return_receipts] == ["c1-r1", "c1-r2", "c1-r3", "c1-r4"]
    assert [r.transaction_id for r in snap.receipts] == ["c1-t1", "c1-t2", "c1-t3", "c1-t4"]
    with sql_engine.connect() as conn:
        kinds = conn.execute(
            sa.text("SELECT kind, store_id, transaction_id, points FROM points_ledger WHERE entry_id LIKE 'rtn:%'")
        ).all()
        voided = conn.execute(sa.text("SELECT return_id FROM returns WHERE voided")).scalars().all()
        lost = conn.execute(sa.text("SELECT transaction_id, offer_id, return_id FROM return_offers")).all()
    # A return's ledger entries belong to the purchase they correct.
    assert sorted(kinds) == [
        ("refund", "store-1", "c1-t2", 200),
        ("reverse", "store-1", "c1-t1", -95),
        ("reverse", "store-1", "c1-t1", -60),
        ("reverse", "store-1", "c1-t2", -20),
        ("reverse", "store-1", "c1-t4", -250),
    ]
    assert voided == ["c1-r3"]
    assert sorted(lost) == [("c1-t1", "o-shoes", "c1-r1"), ("c1-t4", "o-hats", "c1-r3")]
    assert count_rows(sql_engine, "return_lines") == 5


def test_reapplying_returns_changes_nothing(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    records, states = story("c1")
    assert sink.apply_records(records) == len(records)
    assert_matches(sql_engine, states[-1])
    before = snapshot(sql_engine, "c1")
    tables = ("customers", "returns", "return_lines", "return_offers", "points_ledger", "applied_events")
    rows = {t: count_rows(sql_engine, t) for t in tables}

    assert sink.apply_records(records) == 0
    assert sink.apply_records(records[::-1] + records) == 0
    for record in records:
        assert sink.apply_records([record]) == 0
    assert snapshot(sql_engine, "c1") == before
    assert {t: count_rows(sql_engine, t) for t in tables} == rows


def test_any_order_that_keeps_returns_after_their_purchases_gives_the_same_profile(
    sink: SqlOutboxSink,
    sql_engine: sa.Engine,
) -> None:
    in_order, states = story("a")
    crm, t1, t2, r1, t3, r2, t4, r3, r4 = story("b")[0]
    # One record per batch, in an order a late claimed entry could produce.
    for record in (t4, r3, t2, crm, t1, r2, r4, t3, r1):
        assert sink.apply_records([record]) == 1
    # One batch listing every return before its purchase: purchases are written first.
    shuffled = story("c")[0][::-1]
    assert sink.apply_records(shuffled) == len(shuffled)
    assert sink.apply_records(in_order) == len(in_order)

    expected = normalized(snapshot(sql_engine, "a"))
    assert normalized(snapshot(sql_engine, "b")) == expected
    assert normalized(snapshot(sql_engine, "c")) == expected
    for customer_id in ("a", "b", "c"):
        assert_matches(sql_engine, replace(states[-1], customer_id=customer_id))


def test_a_return_whose_purchase_is_not_in_sql_fails_the_batch_and_applies_on_retry(
    sink: SqlOutboxSink, sql_engine: sa.Engine
) -> None:
    crm, t1, t2, r1, *_ = story("c1")[0]
    _, states = story("c1")
    batch = [crm, t2, r1]  # t1 is still pending at a dead writer
    with pytest.raises(PurchaseNotApplied) as failure:
        sink.apply_records(batch)
    assert failure.value.missing == {r1.event_id: ("c1-r1", "store-1", "c1-t1")}
    assert str(failure.value).endswith("retry later: return c1-r1 of store-1/c1-t1")
    # Nothing of the batch was written, not even its guard rows: the writer will retry all of it.
    for table in ("applied_events", "customers", "purchases", "returns", "points_ledger"):
        assert count_rows(sql_engine, table) == 0

    assert sink.apply_records([t1]) == 1
    assert sink.apply_records(batch) == 3
    assert_matches(sql_engine, states[3])


def stored_and_clashing(sink: SqlOutboxSink, m: Member) -> PurchaseRecord:
    """Stores a purchase of hers and returns another whose ledger entry id is already taken: SQL refuses it for
    good (and so its returns)."""
    stored = m.purchase("t-stored", at=T0, lines=[line("1", "food", 1, 1000)])
    assert sink.apply_records([stored]) == 1
    return replace(
        m.purchase("t-clash", at=T0 + DAY, lines=[line("1", "food", 1, 2000)]),
        ledger=[LedgerEntry(entry_id=purchase_entry_id("store-1", "t-stored", "earn"), kind="earn", points=20)],
    )


def test_a_return_of_a_purchase_refused_in_the_same_batch_is_skipped_with_it(
    sink: SqlOutboxSink, caplog: pytest.LogCaptureFixture, sql_engine: sa.Engine
) -> None:
    m = Member("c1")
    clash = stored_and_clashing(sink, m)
    undo = m.return_("r-clash", clash, at=T0 + 2 * DAY, quantities={"1": 1})
    fine = Member("c2").purchase("t-fine", at=T0, lines=[line("1", "food", 1, 500)])
    assert sink.apply_records([undo, clash, fine]) == 1
    assert "sale:c1:store-1:t-clash" in caplog.text and "rtn:c1:store-1:t-clash:r-clash" in caplog.text
    snap = snapshot(sql_engine, "c1")
    assert (snap.points_balance, snap.points_debt, snap.purchase_count) == (10, 0, 1)
    assert get_return_receipt(sql_engine, "r-clash") is None
    assert snapshot(sql_engine, "c2").purchase_count == 1
    # Both are kept for an operator, with why.
    refused = {r.event_id: r for r in refused_records(sql_engine)}
    assert set(refused) == {"sale:c1:store-1:t-clash", "rtn:c1:store-1:t-clash:r-clash"}
    assert "entry_id" in refused["sale:c1:store-1:t-clash"].reason
    clash_return = refused["rtn:c1:store-1:t-clash:r-clash"]
    assert (clash_return.store_id, clash_return.transaction_id) == ("store-1", "t-clash")
    # Replayed later on its own (claimed from a dead writer), the return is refused again rather than waiting
    # forever for a purchase that will never come, which would block its partition's writer.
    assert sink.apply_records([undo]) == 0
    assert get_return_receipt(sql_engine, "r-clash") is None
    assert snapshot(sql_engine, "c1").points_balance == 10


def test_a_return_arriving_after_its_purchase_was_refused_does_not_block_the_writer(
    sink: SqlOutboxSink,
    sql_engine: sa.Engine,
) -> None:
    m = Member("c1")
    clash = stored_and_clashing(sink, m)
    assert sink.apply_records([clash]) == 0  # refused for good, in a batch of its own
    undo = m.return_("r-clash", clash, at=T0 + 2 * DAY, quantities={"1": 1})
    later = Member("c2").purchase("t-later", at=T0 + 2 * DAY, lines=[line("1", "food", 1, 500)])
    # The next batch holds the return and other work: the return is refused, the rest is written.
    assert sink.apply_records([undo, later]) == 1
    assert snapshot(sql_engine, "c2").purchase_count == 1
    assert "rtn:c1:store-1:t-clash:r-clash" in {r.event_id for r in refused_records(sql_engine)}


def test_a_return_naming_another_customers_purchase_is_refused(
    sink: SqlOutboxSink, caplog: pytest.LogCaptureFixture, sql_engine: sa.Engine, profiles: SqlProfiles
) -> None:
    owner = Member("owner")
    bought = owner.purchase("t1", at=T0, lines=[line("1", "food", 2, 1000)])
    assert sink.apply_records([bought]) == 1
    stranger = Member("stranger", balance=100)
    wrong = stranger.return_("r-wrong", bought, at=T0 + DAY, quantities={"1": 1})
    right = owner.return_("r-right", bought, at=T0 + DAY, quantities={"1": 1})
    assert sink.apply_records([wrong, right]) == 1
    assert "rtn:stranger:store-1:t1:r-wrong" in caplog.text
    assert profiles.returned_quantities(s1("t1")) == {"1": 1}
    assert_matches(sql_engine, owner)


def test_an_offer_lost_twice_is_given_back_once(
    sink: SqlOutboxSink, sql_engine: sa.Engine, profiles: SqlProfiles
) -> None:
    m = Member("c1", balance=1000)
    t1 = m.purchase("t1", at=T0, lines=[line("1", "shoes", 2, 4500, offer="o-shoes")])
    t2 = m.purchase("t2", at=T0 + DAY, lines=[line("1", "shoes", 1, 4500, offer="o-shoes")])
    r1 = m.return_("r1", t1, at=T0 + 2 * DAY, quantities={"1": 1}, offers_lost=("o-shoes",))
    # A second return of t1 naming the same offer again (the bonus is already gone) gives no second use back.
    r2 = replace(m.return_("r2", t1, at=T0 + 3 * DAY, quantities={"1": 1}), offers_lost=["o-shoes"])
    assert sink.apply_records([t1, t2, r1, r2]) == 4
    assert snapshot(sql_engine, "c1").offer_uses == {"o-shoes": 1}
    assert profiles.returned_quantities(s1("t1")) == {"1": 2}


def test_debt_repaid_by_a_purchase_moves_debt_not_balance(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    m = Member("c1")
    t1 = m.purchase("t1", at=T0, lines=[line("1", "tv", 1, 50_000)])  # 500 points
    t2 = m.purchase("t2", at=T0 + DAY, lines=[line("1", "food", 1, 1000)], redeem=450)  # 510 - 450 = 60
    r1 = m.return_("r1", t1, at=T0 + 2 * DAY, quantities={"1": 1})  # 500 reversed on 60: debt 440
    t3 = m.purchase("t3", at=T0 + 3 * DAY, lines=[line("1", "sofa", 1, 30_000)])  # 300 repay debt: 140 left
    t4 = m.purchase("t4", at=T0 + 4 * DAY, lines=[line("1", "bed", 1, 20_000)])  # 140 repaid, 60 to the balance
    assert (t3.debt_repaid, t4.debt_repaid) == (300, 140)
    for record, expected in ((t1, 500), (t2, 60), (r1, 0), (t3, 0), (t4, 60)):
        sink.apply_records([record])
        assert snapshot(sql_engine, "c1").points_balance == expected
    assert (m.balance, m.debt) == (60, 0)
    assert_matches(sql_engine, m)


# -- reads -----------------------------------------------------------------------------------------------------


def test_load_customer_windows_returns_by_their_own_times(
    sink: SqlOutboxSink, sql_engine: sa.Engine, profiles: SqlProfiles
) -> None:
    records, states = story("c1")
    sink.apply_records(records)
    # t4 (day 6) is the only purchase in the window; r3 and r4 (days 7, 8) the only returns.
    snap = snapshot(sql_engine, "c1", since=T0 + 6 * DAY)
    assert [r.transaction_id for r in snap.receipts] == ["c1-t4"]
    assert snap.returned == {s1("c1-t4"): {"1": 1}}
    assert [r.return_id for r in snap.return_receipts] == ["c1-r3", "c1-r4"]
    r3 = snap.return_receipts[0]
    assert r3 == StoredReceipt(
        transaction_id="c1-t4",
        store_id="store-1",
        return_id="c1-r3",
        request_digest=hashlib.sha256(b"c1-r3").hexdigest(),
        receipt=b"\x08\x01return:c1-r3",
        committed_at=committed(T0 + 7 * DAY),
    )
    assert r3.committed_at.utcoffset() == timedelta(0)
    # The profile itself does not depend on the window.
    assert (snap.points_debt, snap.offer_uses) == (states[-1].debt, {"o-food": 1})

    assert get_return_receipt(sql_engine, "c1-r3") == r3
    assert get_return_receipt(sql_engine, "c1-t1") is None
    assert profiles.returned_quantities(s1("c1-t1")) == {"1": 2, "2": 3}
    assert profiles.returned_quantities(PurchaseKey("store-2", "c1-t1")) == {}  # another store's c1-t1
    assert profiles.returned_quantities(s1("c1-t3")) == {}
    assert profiles.returned_quantities(s1("missing")) == {}
    assert profiles.get_purchase_receipt(PurchaseKey("store-2", "c1-t1")) is None
    stored = profiles.get_purchase_receipt(s1("c1-t1"))
    assert stored is not None and stored.receipt == b"\x08\x01purchase:c1-t1"


def test_a_customer_without_returns_has_no_debt_and_nothing_returned(
    sink: SqlOutboxSink, sql_engine: sa.Engine
) -> None:
    m = Member("c1")
    sink.apply_records([m.purchase("t1", at=T0, lines=[line("1", "food", 1, 1000, offer="o")])])
    snap = snapshot(sql_engine, "c1")
    assert (snap.points_debt, snap.returned, snap.return_receipts, snap.offer_uses) == (0, {}, [], {"o": 1})


# -- the writer retries a return whose purchase it does not hold -----------------------------------------------


@pytest.fixture(name="outbox")
async def fixture_outbox(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, Keys]]:
    client = aioredis.Redis.from_url(redis_url)
    prefix = new_prefix()
    yield client, Keys(prefix, 1)
    await client.aclose()
    delete_prefix(redis_url, prefix)


async def test_writer_retries_a_return_until_the_purchase_a_dead_writer_held_is_written(
    outbox: tuple[aioredis.Redis, Keys], sink: SqlOutboxSink, sql_engine: sa.Engine
) -> None:
    client, keys = outbox
    m = Member("c1")
    crm = m.crm(at=T0, balance=10, ltv=0)
    t1 = m.purchase("t1", at=T0 + DAY, lines=[line("1", "shoes", 1, 4500, offer="o-shoes")])
    r1 = m.return_("r1", t1, at=T0 + 2 * DAY, quantities={"1": 1}, offers_lost=("o-shoes",))
    dead = OutboxWriter(client, keys, sink, consumer="dead")
    await dead.ensure_groups()
    stream = keys.outbox(0)
    # The upsert script writes a customer record's deltas beside it.
    await client.xadd(stream, {"r": dump_record(crm), "balance_delta": "10", "ltv_delta": "0"})
    for record in (t1, r1):
        await client.xadd(stream, {"r": dump_record(record)})
    # The dead writer read the customer and the purchase, then died before writing them.
    await client.xreadgroup(GROUP, "dead", {stream: ">"}, count=2)

    survivor = OutboxWriter(client, keys, sink, consumer="survivor", claim_idle_ms=60_000)
    assert await survivor.run_once() == 0  # only the return is free: refused for now, left pending
    assert survivor.stats.failures == 1
    assert await survivor.backlog() == 3
    assert get_return_receipt(sql_engine, "r1") is None

    # Once the dead writer's entries are idle long enough, the survivor claims them beside its pending return.
    survivor = OutboxWriter(client, keys, sink, consumer="survivor", claim_idle_ms=0)
    await survivor.drain(timeout_s=5)
    assert await survivor.backlog() == 0
    assert survivor.stats.applied == 3
    assert get_return_receipt(sql_engine, "r1") is not None
    assert_matches(sql_engine, m)


def test_a_void_takes_back_the_categories_redis_took_back_unless_bought_again_later(
    sink: SqlOutboxSink,
    sql_engine: sa.Engine,
) -> None:
    m = Member("c1")
    first = m.purchase("t1", at=T0, lines=[line("1", "shoes", 1, 8900)])
    later = m.purchase("t2", at=T0 + DAY, lines=[line("1", "shoes", 1, 8900)])
    void = replace(
        m.return_("void:t1", first, at=T0 + DAY / 2, quantities={"1": 1}, voided=True), categories_removed=["shoes"]
    )
    # The later purchase arrives first (claimed from a dead writer late, in the other order): shoes stay.
    assert sink.apply_records([first, later]) == 2
    assert sink.apply_records([void]) == 1
    assert list_categories(sql_engine, "c1") == ["shoes"]

    n = Member("c2")
    only = n.purchase("t3", at=T0, lines=[line("1", "shoes", 1, 8900), line("2", "dresses", 1, 12000)])
    void_only = replace(
        n.return_("void:t3", only, at=T0 + DAY / 2, quantities={"1": 1, "2": 1}, voided=True),
        categories_removed=["shoes"],  # dresses she had bought before (Redis kept it): not taken back
    )
    assert sink.apply_records([only, void_only]) == 2  # one batch: the void still wins
    assert list_categories(sql_engine, "c2") == ["dresses"]
