"""Store-scoped purchases in SQL, on SQLite and PostgreSQL: migration 0007 carries a populated 0005 database over
to (store_id, transaction_id) keys and back, and the same transaction id at two stores is two purchases."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command

from domain.model import PurchaseKey
from store.sql_db import alembic_config, make_engine, migrate, write_engine
from store.sql_outbox import SqlOutboxSink
from store.sql_profile import SqlProfiles

from .records_builders import DAY, T0, Member, line
from .sql_queries import returns_of, snapshot

_CUSTOMER = (
    "INSERT INTO customers (customer_id, display_name, tier, currency, lifetime_value_minor, points_balance,"
    " points_debt, purchase_count, propensity_json, created_at, updated_at)"
    " VALUES ('old', 'Old', '', 'USD', 3000, 30, 0, 1, '{}', :at, :at)"
)
_PURCHASE = (
    "INSERT INTO purchases (transaction_id, customer_id, store_id, terminal_id, currency, occurred_at, committed_at,"
    " subtotal_minor, total_discount_minor, total_due_minor, points_earned, points_redeemed, redeemed_value_minor,"
    " request_digest, receipt) VALUES ('t1', 'old', 'soho', 'till-1', 'USD', :at, :at, 4000, 0, 4000, 90, 0, 0,"
    " 'd-t1', :receipt)"
)
_LINES = (
    "INSERT INTO purchase_lines (transaction_id, line_id, sku, category, quantity, unit_price_minor, base_points,"
    " bonus_points, discount_minor, offer_ids) VALUES"
    " ('t1', '1', 'SKU-1', 'shoes', 1, 2000, 20, 50, 0, 'o-shoes'),"
    " ('t1', '2', 'SKU-2', 'socks', 2, 1000, 20, 0, 0, '')"
)
_OFFER = (
    "INSERT INTO purchase_offers (transaction_id, offer_id, customer_id, offer_version, bonus_points, discount_minor)"
    " VALUES ('t1', 'o-shoes', 'old', 1, 50, 0)"
)
_RETURN = (
    "INSERT INTO returns (return_id, transaction_id, customer_id, occurred_at, committed_at, voided, points_reversed,"
    " points_refunded, value_minor, lifetime_value_delta, request_digest, receipt)"
    " VALUES ('r1', 't1', 'old', :at, :at, :no, 60, 0, 1000, -1000, 'd-r1', :receipt)"
)
_RETURN_LINE = (
    "INSERT INTO return_lines (return_id, line_id, quantity, points_reversed, value_minor)"
    " VALUES ('r1', '1', 1, 70, 2000)"
)
_LOST = "INSERT INTO return_offers (transaction_id, offer_id, return_id) VALUES ('t1', 'o-shoes', 'r1')"
_LEDGER = (
    "INSERT INTO points_ledger (entry_id, customer_id, transaction_id, kind, points, created_at) VALUES"
    " ('t1:earn', 'old', 't1', 'earn', 40, :at), ('t1:bonus', 'old', 't1', 'bonus', 50, :at),"
    " ('r1:reverse', 'old', 't1', 'reverse', -60, :at), ('customer:x:adjust', 'old', NULL, 'adjust', 0, :at)"
)
_REFUSED = (
    "INSERT INTO refused_records (event_id, kind, customer_id, transaction_id, reason, refused_at, record_json)"
    " VALUES ('purchase:old:t9', 'purchase', 'old', 't9', 'clash', :at, :purchase),"
    " ('return:old:r9', 'return', 'old', 't1', 'clash', :at, '{}')"
)


@pytest.fixture(name="engine_at_0005")
def fixture_engine_at_0005(sql_target: tuple[str, str | None]) -> Iterator[tuple[sa.Engine, str | None]]:
    """A database at migration 0005 holding one purchase of 'old' (t1 at soho), its return r1 (an offer lost), its
    ledger and two refused records: what the service kept before store-scoped ids."""
    url, schema = sql_target
    engine = make_engine(url, schema=schema)
    try:
        with write_engine(engine).begin() as conn:
            if schema is not None:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            command.upgrade(alembic_config(conn, schema=schema), "0005")
            at = {"at": T0}
            for statement, values in (
                (_CUSTOMER, at),
                (_PURCHASE, {**at, "receipt": b"\x08\x01purchase:t1"}),
                (_LINES, {}),
                (_OFFER, {}),
                (_RETURN, {**at, "no": False, "receipt": b"\x08\x01return:r1"}),
                (_RETURN_LINE, {}),
                (_LOST, {}),
                (_LEDGER, at),
                (_REFUSED, {**at, "purchase": json.dumps({"kind": "purchase", "store_id": "tribeca"})}),
            ):
                conn.execute(sa.text(statement), values)
        yield engine, schema
    finally:
        engine.dispose()


def _purchase_columns(conn: sa.Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def test_0007_carries_purchases_returns_and_the_ledger_over_to_store_scoped_keys(
    engine_at_0005: tuple[sa.Engine, str | None],
) -> None:
    engine, schema = engine_at_0005
    migrate(engine, schema=schema)
    profiles = SqlProfiles(engine)
    soho = PurchaseKey("soho", "t1")
    stored = profiles.get_purchase_receipt(soho)
    assert stored is not None and (stored.store_id, stored.receipt) == ("soho", b"\x08\x01purchase:t1")
    assert profiles.get_purchase_receipt(PurchaseKey("tribeca", "t1")) is None
    assert profiles.returned_quantities(soho) == {"1": 1}
    snap = snapshot(engine, "old", since=T0 - DAY)  # raw SQL wrote T0 in its own text form on SQLite
    assert snap.offer_uses == {}  # the offer r1 took back stays taken back
    assert snap.returned == {soho: {"1": 1}}
    assert [(r.store_id, r.transaction_id, r.return_id) for r in snap.return_receipts] == [("soho", "t1", "r1")]
    assert returns_of(engine, "soho", "t1") == [("r1", None)]  # the returning store was not recorded then
    with engine.connect() as conn:
        ledger = conn.execute(sa.text("SELECT entry_id, store_id, transaction_id FROM points_ledger")).all()
        refused = conn.execute(sa.text("SELECT event_id, store_id FROM refused_records")).all()
        lines = conn.execute(sa.text("SELECT store_id, transaction_id, line_id FROM purchase_lines")).all()
    assert sorted(ledger) == [
        ("customer:x:adjust", None, None),
        ("r1:reverse", "soho", "t1"),
        ("t1:bonus", "soho", "t1"),
        ("t1:earn", "soho", "t1"),
    ]
    assert sorted(refused) == [("purchase:old:t9", "tribeca"), ("return:old:r9", "soho")]
    assert sorted(lines) == [("soho", "t1", "1"), ("soho", "t1", "2")]

    # Another store's till numbers its sales the same way: its t1 is another purchase, with a return r1 of its own.
    m = Member("old", balance=30)
    there = m.purchase("t1", at=T0 + DAY, lines=[line("1", "hats", 1, 3000)], store="tribeca")
    back = m.return_("r1", there, at=T0 + 2 * DAY, quantities={"1": 1}, returning_store="soho")
    assert SqlOutboxSink(engine).apply_records([there, back]) == 2
    assert profiles.returned_quantities(PurchaseKey("tribeca", "t1")) == {"1": 1}
    assert profiles.returned_quantities(soho) == {"1": 1}
    assert returns_of(engine, "tribeca", "t1") == [("r1", "soho")]
    assert snapshot(engine, "old").purchase_count == 2


def test_0007_downgrades_back_to_transaction_keys_while_they_are_unique(
    engine_at_0005: tuple[sa.Engine, str | None],
) -> None:
    engine, schema = engine_at_0005
    migrate(engine, schema=schema)
    with write_engine(engine).begin() as conn:
        command.downgrade(alembic_config(conn, schema=schema), "0005")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["0005"]
        assert "returning_store_id" not in _purchase_columns(conn, "returns")
        assert "store_id" not in _purchase_columns(conn, "points_ledger") | _purchase_columns(conn, "purchase_lines")
        returned = conn.execute(sa.text("SELECT return_id, line_id, quantity FROM return_lines")).all()
        lost = conn.execute(sa.text("SELECT transaction_id, offer_id, return_id FROM return_offers")).all()
        purchases = conn.execute(sa.text("SELECT transaction_id, store_id FROM purchases")).all()
    assert (returned, lost, purchases) == ([("r1", "1", 1)], [("t1", "o-shoes", "r1")], [("t1", "soho")])
    migrate(engine, schema=schema)  # and up again
    assert SqlProfiles(engine).returned_quantities(PurchaseKey("soho", "t1")) == {"1": 1}
