"""Adjustments, export and erasure in the profile of record, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from store.records import AdjustmentRecord, ExpiryRecord
from store.sql_outbox import SqlOutboxSink
from store.sql_privacy import SqlPrivacy
from store.sql_profile import SqlProfiles

from .records_builders import DAY, T0, customer_record, line, purchase_record
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
    bought = purchase_record("c1", "t1", at=T0, lines=[line("1", "dresses", 1, 10_000)])
    expired = ExpiryRecord(event_id="expire:c1:1:2", customer_id="c1", points=30, expired_at=(T0 + DAY).isoformat())
    sink.apply_records([crm, bought, expired, adjustment("c1", "a1", 5, 0, 5)])
    privacy = SqlPrivacy(sql_engine)
    assert privacy.forget_customer("nobody", anonymous_id="forgotten-x", at=T0) is None
    erased = privacy.forget_customer("c1", anonymous_id="forgotten-1", at=T0 + 2 * DAY)
    assert erased is not None and erased.transaction_ids == ("t1",) and erased.adjustment_ids == ("a1",)
    assert privacy.export_customer("c1", now=T0) is None
    anonymous = snapshot(sql_engine, "forgotten-1")
    assert (anonymous.display_name, anonymous.home_latitude, anonymous.propensity) == ("", None, {})
    assert anonymous.points_balance == ledger_balance(sql_engine, "forgotten-1") == 100 + 100 - 30 + 5
    with sql_engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT event_id FROM applied_events")).scalars().all()
        entries = conn.execute(sa.text("SELECT entry_id FROM points_ledger")).scalars().all()
    assert not [i for i in [*ids, *entries] if ":c1:" in i]
    assert "expire:forgotten-1:1:2" in ids and "purchase:forgotten-1:t1" in ids
