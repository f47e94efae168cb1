"""How many outbox records per second the write-behind path applies to SQL (`python -m bench.writer_throughput`).

Applies realistic purchase records (two lines, one offer, two ledger entries, 50 members) through
SqlOutboxSink.apply_records in writer-sized batches, on a fresh SQLite file or, with --url, a PostgreSQL
database in a throwaway schema.
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from store.records import (
    AppliedOfferRecord,
    CustomerRecord,
    LedgerEntry,
    OutboxRecord,
    PurchaseLineRecord,
    PurchaseRecord,
)
from store.sql_db import make_engine, migrate
from store.sql_outbox import SqlOutboxSink


def member(customer_id: str, at: str) -> CustomerRecord:
    return CustomerRecord(
        event_id=f"customer:{customer_id}",
        customer_id=customer_id,
        display_name="Bench",
        tier="gold",
        currency="USD",
        categories=["dresses"],
        home_latitude=40.74,
        home_longitude=-73.99,
        propensity={"dresses": 0.9},
        lifetime_value_delta=2_500_000,
        balance_delta=500,
        updated_at=at,
    )


def purchase(customer_id: str, at: str) -> PurchaseRecord:
    txn = f"txn-{uuid.uuid4().hex}"
    return PurchaseRecord(
        event_id=f"purchase:{customer_id}:{txn}",
        transaction_id=txn,
        customer_id=customer_id,
        store_id="soho",
        terminal_id="till-1",
        currency="USD",
        occurred_at=at,
        committed_at=at,
        subtotal_minor=20_900,
        total_discount_minor=0,
        total_due_minor=20_900,
        points_earned=329,
        points_redeemed=0,
        redeemed_value_minor=0,
        lifetime_value_delta=20_900,
        request_digest=uuid.uuid4().hex,
        receipt_b64=base64.b64encode(b"x" * 300).decode(),
        lines=[
            PurchaseLineRecord("1", "DRESS-RED", "dresses", 1, 12_000, 120, 120, 0, ["dress-shoes-2x"]),
            PurchaseLineRecord("2", "SHOE-BLK", "shoes", 1, 8_900, 89, 0, 0, []),
        ],
        applied_offers=[AppliedOfferRecord("dress-shoes-2x", 1, 120, 0)],
        new_categories=["shoes"],
        ledger=[LedgerEntry(f"{txn}:earn", "earn", 209), LedgerEntry(f"{txn}:bonus", "bonus", 120)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="", help="postgresql://… (default: a fresh SQLite file)")
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=200, help="records per apply_records call (the writer's)")
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:12]}" if args.url else None
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='po-wbench-')}/profile.db"
    engine = make_engine(url, schema=schema)
    try:
        migrate(engine, schema=schema)
        sink = SqlOutboxSink(engine)
        at = datetime.now(UTC).isoformat()
        members = [f"m{i}" for i in range(50)]
        sink.apply_records([member(m, at) for m in members])
        records: list[OutboxRecord] = [purchase(members[i % 50], at) for i in range(args.records)]
        started = time.perf_counter()
        for i in range(0, len(records), args.batch):
            sink.apply_records(records[i : i + args.batch])
        elapsed = time.perf_counter() - started
        backend = engine.dialect.name
        print(
            f"{backend}: {len(records)} purchase records in batches of {args.batch}: "
            f"{len(records) / elapsed:,.0f} records/s ({elapsed / len(records) * 1e6:.0f} µs per record)"
        )
    finally:
        if schema:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


if __name__ == "__main__":
    main()
