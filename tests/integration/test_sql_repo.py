"""The SQL repositories on SQLite and PostgreSQL: migrations, idempotent write-behind, snapshots, catalog of record."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from domain.model import GeoPoint, PurchaseKey, Store
from store.records import CustomerRecord, OutboxRecord
from store.sql_catalog import SqlCatalog
from store.sql_db import make_engine, migrate
from store.sql_outbox import SqlOutboxSink
from store.sql_profile import SqlProfiles
from usecases.snapshot import CustomerSnapshot

from .records_builders import DAY, T0, customer_record, line, purchase_receipt, purchase_record
from .sql_queries import count_rows, customer_exists, get_store, ledger_balance, list_categories, snapshot
from .sql_schema import HEAD_REVISION, PROFILE_TABLES, profile_metadata

# -- records ---------------------------------------------------------------------------------------------------


def scenario(customer_id: str) -> list[OutboxRecord]:
    """A CRM import (500 points, 100.00 LTV, books) then three purchases, one of them new to shoes."""
    c = customer_id
    return [
        customer_record(
            c,
            "1",
            at=T0,
            balance_delta=500,
            ltv_delta=10_000,
            categories=["books"],
            home=(51.5, -0.12),
            propensity={"shoes": 0.7, "books": 0.25},
        ),
        # 90 base + 50 bonus; 90.00
        purchase_record(c, f"{c}-t1", at=T0 + DAY, lines=[line("1", "shoes", 2, 4500, offer="o-shoes")]),
        # 20 base - 100 redeemed; 20.00 - 1.00
        purchase_record(c, f"{c}-t2", at=T0 + 2 * DAY, lines=[line("1", "books", 1, 2000)], redeem=100),
        # 35 base + 50 bonus; 35.00
        purchase_record(
            c,
            f"{c}-t3",
            at=T0 + 3 * DAY,
            lines=[line("1", "shoes", 1, 3000, offer="o-shoes"), line("2", "socks", 1, 500)],
        ),
    ]


EXPECTED_BALANCE = 500 + 140 - 80 + 85
EXPECTED_LTV = 10_000 + 9_000 + 1_900 + 3_500


def comparable(snap: CustomerSnapshot) -> CustomerSnapshot:
    """The snapshot without what names the customer (ids of receipts included), to compare two customers."""
    receipts = [replace(r, transaction_id="", request_digest="", receipt=b"") for r in snap.receipts]
    ledger = [replace(e, entry_id="") for e in snap.ledger]
    return replace(snap, customer_id="", display_name="", receipts=receipts, ledger=ledger)


def assert_utc(value: datetime | None) -> None:
    assert value is not None and value.utcoffset() == timedelta(0)


# -- schema ----------------------------------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op_and_matches_models(sql_engine: sa.Engine, sql_target: tuple[str, str | None]) -> None:
    _, schema = sql_target
    SqlCatalog(sql_engine).upsert_store(Store(store_id="s", name="kept"))
    migrate(sql_engine, schema=schema)
    migrate(sql_engine, schema=schema)
    assert get_store(sql_engine, "s") == Store(store_id="s", name="kept")
    with sql_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD_REVISION]
        # The hand-written migration and the models describe the same tables, columns, types and indexes.
        assert compare_metadata(MigrationContext.configure(conn), profile_metadata()) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert tables == {*PROFILE_TABLES, "alembic_version"}


def test_sqlite_engine_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "profile.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
        assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}
        assert path.parent.is_dir()
    finally:
        engine.dispose()


# -- write-behind ----------------------------------------------------------------------------------------------


def test_customer_then_purchases_build_the_profile(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    records = scenario("c1")
    assert sink.apply_records(records[:1]) == 1
    assert list_categories(sql_engine, "c1") == ["books"]
    assert sink.apply_records(records[1:2]) == 1
    assert list_categories(sql_engine, "c1") == ["books", "shoes"]  # shoes is new with the first purchase
    assert sink.apply_records(records[2:]) == 2

    snap = snapshot(sql_engine, "c1")
    assert (snap.display_name, snap.tier, snap.currency) == ("Member c1", "gold", "USD")
    assert snap.points_balance == EXPECTED_BALANCE
    assert snap.lifetime_value_minor == EXPECTED_LTV
    assert snap.purchase_count == 3
    assert snap.last_purchase_at == T0 + timedelta(days=3)
    assert_utc(snap.last_purchase_at)
    assert snap.categories == ["books", "shoes", "socks"]
    assert (snap.home_latitude, snap.home_longitude) == (51.5, -0.12)
    assert snap.propensity == {"shoes": 0.7, "books": 0.25}
    assert ledger_balance(sql_engine, "c1") == snap.points_balance
    with sql_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT category, source FROM customer_categories")).all()
    sources = {category: source for category, source in rows}
    assert sources == {"books": "crm", "shoes": "purchase", "socks": "purchase"}
    assert count_rows(sql_engine, "points_ledger") == 1 + 2 + 2 + 2
    assert count_rows(sql_engine, "purchase_lines") == 4


def test_reapplying_records_changes_nothing(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    records = scenario("c1")
    assert sink.apply_records(records) == len(records)
    before = snapshot(sql_engine, "c1")
    rows = {
        t: count_rows(sql_engine, t) for t in ("purchases", "points_ledger", "customer_categories", "applied_events")
    }

    assert sink.apply_records(records) == 0
    assert sink.apply_records(records + records) == 0
    assert snapshot(sql_engine, "c1") == before
    assert {t: count_rows(sql_engine, t) for t in rows} == rows


def test_out_of_order_records_give_the_same_profile(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    in_order = scenario("c-in")
    out_of_order = scenario("c-out")
    out_of_order = [out_of_order[3], out_of_order[1], out_of_order[0], out_of_order[2]]
    assert sink.apply_records(in_order) == 4
    for record in out_of_order:  # one record per batch, as claimed entries from a dead writer arrive
        assert sink.apply_records([record]) == 1
    a, b = snapshot(sql_engine, "c-in"), snapshot(sql_engine, "c-out")
    assert comparable(a) == comparable(b)
    assert b.points_balance == EXPECTED_BALANCE == ledger_balance(sql_engine, "c-out")


def test_purchase_of_an_unknown_customer_creates_the_profile(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    record = purchase_record("walk-in", "w-1", at=T0, lines=[line("1", "toys", 3, 1000)])
    assert not customer_exists(sql_engine, "walk-in")
    assert sink.apply_records([record]) == 1
    snap = snapshot(sql_engine, "walk-in")
    assert (snap.display_name, snap.tier, snap.currency) == ("", "", "USD")
    assert (snap.points_balance, snap.lifetime_value_minor, snap.purchase_count) == (30, 3000, 1)
    assert snap.categories == ["toys"] and snap.propensity == {} and snap.home_latitude is None


def test_concurrent_writers_apply_a_batch_once(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    batch = scenario("c-race") + [
        purchase_record(
            "c-race", f"c-race-x{i}", at=T0 + timedelta(days=4, minutes=i), lines=[line("1", "food", 1, 100 * i)]
        )
        for i in range(1, 21)
    ]
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(sink.apply_records(batch))
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sum(results) == len(batch)
    snap = snapshot(sql_engine, "c-race")
    assert snap.purchase_count == 3 + 20
    assert snap.points_balance == EXPECTED_BALANCE + sum(range(1, 21)) == ledger_balance(sql_engine, "c-race")
    assert count_rows(sql_engine, "applied_events") == len(batch)


def test_conflicting_record_is_skipped_without_failing_the_batch(
    sink: SqlOutboxSink, caplog: pytest.LogCaptureFixture, sql_engine: sa.Engine
) -> None:
    first = purchase_record("c1", "t-dup", at=T0, lines=[line("1", "food", 1, 1000)])
    # Another event id for a transaction already stored: the unique key refuses it, the batch goes on.
    clash = replace(first, event_id="purchase:t-dup:again")
    after = purchase_record("c1", "t-next", at=T0 + timedelta(hours=1), lines=[line("1", "food", 1, 2000)])
    assert sink.apply_records([first, clash, after]) == 2
    assert "purchase:t-dup:again" in caplog.text
    snap = snapshot(sql_engine, "c1")
    assert (snap.purchase_count, snap.points_balance) == (2, 30)


# -- reads -----------------------------------------------------------------------------------------------------


def test_load_customer_returns_offer_uses_and_receipts_in_the_window(
    sink: SqlOutboxSink, sql_engine: sa.Engine, profiles: SqlProfiles
) -> None:
    sink.apply_records(scenario("c1"))
    snap = snapshot(sql_engine, "c1", since=T0 + timedelta(days=2))
    assert snap.offer_uses == {"o-shoes": 2}
    assert [r.transaction_id for r in snap.receipts] == ["c1-t2", "c1-t3"]
    assert snap.receipts[0].receipt == purchase_receipt("c1-t2")
    assert snap.receipts[0].request_digest == hashlib.sha256(b"c1-t2").hexdigest()
    assert snap.receipts[0].committed_at == T0 + timedelta(days=2, seconds=1)
    assert_utc(snap.receipts[0].committed_at)
    # The window bound is inclusive and any time zone works.
    at_t3 = (T0 + timedelta(days=3, seconds=1)).astimezone(datetime.now().astimezone().tzinfo)
    assert [r.transaction_id for r in snapshot(sql_engine, "c1", since=at_t3).receipts] == ["c1-t3"]

    assert profiles.load_customer("nobody", receipts_since=T0) is None
    assert customer_exists(sql_engine, "c1") and not customer_exists(sql_engine, "nobody")
    stored = profiles.get_purchase_receipt(PurchaseKey("store-1", "c1-t1"))
    assert stored is not None and stored.receipt == purchase_receipt("c1-t1")
    assert_utc(stored.committed_at)
    assert profiles.get_purchase_receipt(PurchaseKey("store-1", "missing")) is None
    assert ledger_balance(sql_engine, "nobody") == 0 and list_categories(sql_engine, "nobody") == []
    with pytest.raises(ValueError, match="naive"):
        profiles.load_customer("c1", receipts_since=datetime(2025, 1, 1))


def test_ping(profiles: SqlProfiles) -> None:
    profiles.ping()


# -- catalog of record -----------------------------------------------------------------------------------------


def offer_json(offer_id: str, **extra: object) -> str:
    return json.dumps({"offer_id": offer_id, **extra}, sort_keys=True)


def test_offer_upsert_bumps_version(sql_catalog: SqlCatalog) -> None:
    assert sql_catalog.get_offer("o-1") is None
    v1, t1 = sql_catalog.upsert_offer("o-1", "Double points", offer_json("o-1", rev=1), False)
    v2, t2 = sql_catalog.upsert_offer("o-1", "Triple points", offer_json("o-1", rev=2), True)
    assert (v1, v2) == (1, 2)
    assert_utc(t1)
    assert t2 >= t1
    assert sql_catalog.get_offer("o-1") == (offer_json("o-1", rev=2), 2, True, t2)


def test_list_offers_paginates_and_filters_archived(sql_catalog: SqlCatalog) -> None:
    for n in range(1, 6):
        sql_catalog.upsert_offer(f"o-{n}", f"Offer {n}", offer_json(f"o-{n}"), n == 3)

    def ids(page: list[tuple[str, int, bool, datetime]]) -> list[str]:
        return [json.loads(definition)["offer_id"] for definition, _, _, _ in page]

    pages: list[list[str]] = []
    after = ""
    while page := ids(sql_catalog.list_offers(include_archived=False, after_offer_id=after, limit=2)):
        pages.append(page)
        after = page[-1]
    assert pages == [["o-1", "o-2"], ["o-4", "o-5"]]
    everything = sql_catalog.list_offers(include_archived=True, after_offer_id="", limit=100)
    assert ids(everything) == ["o-1", "o-2", "o-3", "o-4", "o-5"]
    assert [archived for _, _, archived, _ in everything] == [False, False, True, False, False]
    assert ids(sql_catalog.list_offers(include_archived=True, after_offer_id="o-2", limit=1)) == ["o-3"]


def test_stores_round_trip(sql_catalog: SqlCatalog, sql_engine: sa.Engine) -> None:
    downtown = Store(store_id="s-2", name="Downtown", location=GeoPoint(40.7128, -74.006), timezone="America/New_York")
    airport = Store(store_id="s-1", name="Airport")
    sql_catalog.upsert_store(downtown)
    sql_catalog.upsert_store(airport)
    assert sql_catalog.list_stores() == [airport, downtown]
    moved = replace(downtown, name="Downtown (new)", location=None)
    sql_catalog.upsert_store(moved)
    assert get_store(sql_engine, "s-2") == moved
    assert get_store(sql_engine, "nope") is None


def test_records_claimed_late_never_undo_a_newer_tier_or_crm_change(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    """A dead writer's records are claimed by another after newer ones were written: the newest change wins."""
    crm = customer_record("c1", "first", at=T0, balance_delta=0, ltv_delta=0, categories=[])
    to_gold = replace(purchase_record("c1", "t1", at=T0 + DAY, lines=[line("1", "food", 1, 1000)]), tier_after="gold")
    to_platinum = replace(
        purchase_record("c1", "t2", at=T0 + 2 * DAY, lines=[line("1", "food", 1, 1000)]), tier_after="platinum"
    )
    assert sink.apply_records([crm, to_platinum]) == 2
    assert sink.apply_records([to_gold]) == 1  # the older upgrade, claimed late
    assert snapshot(sql_engine, "c1").tier == "platinum"

    # The CRM lowers her tier afterwards; an even older upgrade arriving now does not raise it back.
    lowered = replace(
        customer_record("c1", "review", at=T0 + 3 * DAY, balance_delta=0, ltv_delta=0, categories=[]), tier="silver"
    )
    stale_crm = replace(
        customer_record("c1", "stale", at=T0 + DAY, balance_delta=0, ltv_delta=0, categories=[]),
        display_name="Old Name",
        tier="bronze",
    )
    assert sink.apply_records([lowered]) == 1
    to_gold_again = replace(to_gold, event_id="purchase:c1:t0", transaction_id="t0", ledger=[])
    assert sink.apply_records([to_gold_again, stale_crm]) == 2
    snap = snapshot(sql_engine, "c1")
    assert (snap.tier, snap.display_name) == ("silver", "Member c1")
    # Deltas still count whatever the order: the two purchases and the late one add up.
    assert snap.purchase_count == 3


def _crm(event: str, at: datetime, name: str, tier: str) -> CustomerRecord:
    return replace(
        customer_record("c1", event, at=at, balance_delta=0, ltv_delta=0, categories=[]), display_name=name, tier=tier
    )


def test_an_older_crm_rename_claimed_late_still_applies_behind_a_newer_tier_upgrade(
    sink: SqlOutboxSink,
    sql_engine: sa.Engine,
) -> None:
    # Redis order: CRM "A" (T0), CRM rename to "B" (T0+1d), purchase upgrading to platinum (T0+2d).
    # Redis ends with name "B", tier "platinum". The rename is left pending by a dead writer and claimed late.
    first = _crm("first", T0, "A", "gold")
    rename = _crm("rename", T0 + DAY, "B", "gold")
    upgrade = replace(
        purchase_record("c1", "t1", at=T0 + 2 * DAY, lines=[line("1", "food", 1, 1000)]), tier_after="platinum"
    )
    assert sink.apply_records([first]) == 1
    assert sink.apply_records([upgrade]) == 1
    assert sink.apply_records([rename]) == 1  # claimed late
    snap = snapshot(sql_engine, "c1")
    assert (snap.display_name, snap.tier) == ("B", "platinum"), (snap.display_name, snap.tier)


def test_crm_changes_apply_in_the_order_redis_ran_them_not_by_the_servers_clocks(
    sink: SqlOutboxSink,
    sql_engine: sa.Engine,
) -> None:
    # Two CRM updates of one member: stamped t1 < t2 by their servers before their scripts ran, but the scripts ran
    # t2's first (Redis keeps "one", the last to run). The records reach SQL in stream (= script) order.
    stamped_first_ran_last = _crm("one", T0 + DAY, "one", "gold")
    stamped_last_ran_first = _crm("two", T0 + DAY + DAY / 86_400_000, "two", "gold")  # 1 ms later
    # The writer stamps each record with its outbox entry's time, the order the scripts ran in.
    ran_first = replace(stamped_last_ran_first, outbox_at=(T0 + DAY + DAY).isoformat())
    ran_last = replace(stamped_first_ran_last, outbox_at=(T0 + DAY + DAY + DAY / 86_400_000).isoformat())
    assert sink.apply_records([_crm("base", T0, "base", "gold")]) == 1
    assert sink.apply_records([ran_first]) == 1
    assert sink.apply_records([ran_last]) == 1
    assert snapshot(sql_engine, "c1").display_name == "one"  # what Redis holds
