"""Adjustments, export and erasure in the profile of record, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from domain.ids import purchase_event_id, return_event_id
from domain.model import PurchaseKey
from store.records import AdjustmentRecord, ExpiryRecord
from store.sql_outbox import SqlOutboxSink
from store.sql_privacy import SqlPrivacy
from store.sql_profile import SqlProfiles

from .records_builders import DAY, T0, Member, customer_record, line
from .sql_queries import ledger_balance, snapshot


def adjustment(customer_id: str, adjustment_id: str, points: int, before: int, after: int) -> AdjustmentRecord:
    return AdjustmentRecord(
        event_id=f"adjustment:{adjustment_id}",
        adjustment_id=adjustment_id,
        customer_id=customer_id,
        points=points,
        reason="goodwill",
        request_digest="d",
        adjusted_at=(T0 + DAY).isoformat(),
        balance_before=before,
        balance_after=after,
    )


def test_an_adjustment_is_a_ledger_entry_with_its_reason_kept_once(sink: SqlOutboxSink, sql_engine: sa.Engine) -> None:
    crm = customer_record("c1", "e1", at=T0, balance_delta=100, ltv_delta=0, categories=[])
    assert sink.apply_records([crm, adjustment("c1", "a1", 50, 100, 150)]) == 2
    assert sink.apply_records([adjustment("c1", "a1", 50, 100, 150)]) == 0  # the same event: once
    assert snapshot(sql_engine, "c1").points_balance == 150 == ledger_balance(sql_engine, "c1")
    stored = SqlProfiles(sql_engine).get_adjustment("a1")
    assert stored is not None and (stored.outcome.balance_before, stored.outcome.balance_after) == (100, 150)
    document = SqlPrivacy(sql_engine).export_customer("c1", now=T0 + 2 * DAY)
    assert document is not None
    assert [(e["kind"], e["points"], e["reason"]) for e in document["ledger"]] == [
        ("adjust", 100, None),
        ("adjustment", 50, "goodwill"),
    ]


def test_erasure_re_keys_her_rows_and_rewrites_ids_that_spell_her_id(
    sink: SqlOutboxSink, sql_engine: sa.Engine
) -> None:
    crm = customer_record("c1", "e1", at=T0, balance_delta=100, ltv_delta=0, categories=["x"], home=(1.0, 2.0))
    her = Member("c1", balance=100)
    bought = her.purchase("t1", at=T0, lines=[line("1", "dresses", 1, 10_000), line("2", "shoes", 1, 5_000)])
    returned = her.return_("r1", bought, at=T0 + DAY, quantities={"2": 1})
    # An id too long to spell out is hashed from parts that include her id: rewritten all the same.
    far = her.purchase("t" * 100, at=T0, lines=[line("1", "dresses", 1, 1_000)], store="s" * 120)
    # Someone else's purchase and return with the same transaction and return ids at another store: untouched.
    other = Member("c2")
    theirs = other.purchase("t1", at=T0, lines=[line("1", "books", 3, 2_000)], store="store-2")
    their_return = other.return_("r1", theirs, at=T0 + DAY, quantities={"1": 1})
    expired = ExpiryRecord(event_id="expire:c1:1:2", customer_id="c1", points=30, expired_at=(T0 + DAY).isoformat())
    sink.apply_records([crm, bought, far, returned, theirs, their_return, expired, adjustment("c1", "a1", 5, 0, 5)])
    privacy = SqlPrivacy(sql_engine)
    document = privacy.export_customer("c1", now=T0 + DAY)
    assert document is not None
    assert [(p["store_id"], p["transaction_id"], len(p["lines"])) for p in document["purchases"]] == [
        ("s" * 120, "t" * 100, 1),
        ("store-1", "t1", 2),
    ]
    assert [(r["store_id"], r["return_id"], [ln["line_id"] for ln in r["lines"]]) for r in document["returns"]] == [
        ("store-1", "r1", ["2"])
    ]
    assert privacy.forget_customer("nobody", anonymous_id="forgotten-x", at=T0) is None
    erased = privacy.forget_customer("c1", anonymous_id="forgotten-1", at=T0 + 2 * DAY)
    assert erased is not None and erased.adjustment_ids == ("a1",)
    assert erased.purchases == (PurchaseKey("s" * 120, "t" * 100), PurchaseKey("store-1", "t1"))
    assert erased.returns == ((PurchaseKey("store-1", "t1"), "r1"),)
    assert privacy.export_customer("c1", now=T0) is None
    anonymous = snapshot(sql_engine, "forgotten-1")
    assert (anonymous.display_name, anonymous.home_latitude, anonymous.propensity) == ("", None, {})
    assert anonymous.points_balance == ledger_balance(sql_engine, "forgotten-1") == her.balance - 30 + 5
    with sql_engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT event_id FROM applied_events")).scalars().all()
        entries = conn.execute(sa.text("SELECT entry_id FROM points_ledger")).scalars().all()
    assert not [i for i in [*ids, *entries] if ":c1:" in i]
    assert {"expire:forgotten-1:1:2", purchase_event_id("forgotten-1", "store-1", "t1")} <= set(ids)
    assert purchase_event_id("c1", "s" * 120, "t" * 100) not in ids
    assert purchase_event_id("forgotten-1", "s" * 120, "t" * 100) in ids
    assert return_event_id("forgotten-1", "store-1", "t1", "r1") in ids
    assert {theirs.event_id, their_return.event_id} <= set(ids)  # someone else's ids stay as they were
    kept = privacy.export_customer("c2", now=T0 + 2 * DAY)
    assert kept is not None and [(p["store_id"], len(p["lines"])) for p in kept["purchases"]] == [("store-2", 1)]
    assert [r["return_id"] for r in kept["returns"]] == ["r1"]
