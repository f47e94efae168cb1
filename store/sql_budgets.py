"""Offer budgets in SQL: how many times an offer was redeemed, to rebuild the budget counter Redis lost."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from domain.model import PurchaseKey
from store.records import PurchaseRecord, ReturnRecord, load_record
from store.sql_common import EngineViews
from store.sql_models import PurchaseOffer, RefusedRecord, ReturnOffer

_CHUNK = 500  # purchases per IN (...) list


class SqlBudgets:
    """The redemption count behind an offer's total budget: purchases that earned it, net of returns that took it
    back whole, plus what the outbox and the refused records hold of it. Read-only; a rare rebuild's query."""

    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

    def offer_redemptions(
        self,
        offer_id: str,
        *,
        pending_purchases: Sequence[PurchaseKey] = (),
        pending_returns: Sequence[PurchaseKey] = (),
    ) -> int:
        """Times an offer was earned across all customers and not taken back whole by a return: what its total
        budget has used, for rebuilding the counter Redis lost. Read in one snapshot.

        `pending_purchases` are the purchases of outbox records that applied the offer, `pending_returns` those of
        purchases an outbox return record took it back from; each counts once whether SQL already has it (the
        writer removes a record from the outbox only after its SQL commit) or not. A pending return counts only
        when its purchase counts, and only once per purchase (return_offers is keyed like purchase_offers).
        Counting scans purchase_offers by offer_id (no index on it alone): fine for a rare rebuild.
        """
        purchases, returns = set(pending_purchases), set(pending_returns)
        with Session(self._sql.snapshot) as session, session.begin():
            kept = _kept_redemptions(session, offer_id)
            purchased_in_sql = _with_offer(session, PurchaseOffer, offer_id, purchases | returns)
            returned_in_sql = _with_offer(session, ReturnOffer, offer_id, returns)
            refused = _refused_redemptions(session, offer_id)
        only_in_outbox = purchases - purchased_in_sql
        taken_back = {t for t in returns - returned_in_sql if t in purchased_in_sql or t in only_in_outbox}
        return max(0, kept + len(only_in_outbox) - len(taken_back) + refused)


def _kept_redemptions(session: Session, offer_id: str) -> int:
    """Purchases in SQL that earned the offer, less those a return took it back from (a return_offers row)."""
    kept = session.exec(
        select(func.count())
        .select_from(PurchaseOffer)
        .outerjoin(
            ReturnOffer,
            sa.and_(
                col(ReturnOffer.store_id) == col(PurchaseOffer.store_id),
                col(ReturnOffer.transaction_id) == col(PurchaseOffer.transaction_id),
                col(ReturnOffer.offer_id) == col(PurchaseOffer.offer_id),
            ),
        )
        .where(col(PurchaseOffer.offer_id) == offer_id, col(ReturnOffer.offer_id).is_(None))
    ).one()
    return int(kept)


def _with_offer(
    session: Session, model: type[PurchaseOffer] | type[ReturnOffer], offer_id: str, purchases: set[PurchaseKey]
) -> set[PurchaseKey]:
    """Which of `purchases` have a row of the offer in `model`'s table (purchase_offers or return_offers), asked
    in chunks."""
    found: set[PurchaseKey] = set()
    ordered = sorted((p.store_id, p.transaction_id) for p in purchases)
    key = sa.tuple_(col(model.store_id), col(model.transaction_id))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        rows = session.exec(
            select(model.store_id, model.transaction_id).where(col(model.offer_id) == offer_id, key.in_(chunk))
        ).all()
        found.update(PurchaseKey(store, txn) for store, txn in rows)
    return found


def _refused_redemptions(session: Session, offer_id: str) -> int:
    """Redemptions of the offer in purchases SQL refused (Redis applied them: the member got the offer), net of
    refused returns that took it back: a rebuilt budget counts them as Redis did."""
    rows = session.exec(
        select(RefusedRecord.record_json).where(
            col(RefusedRecord.kind).in_(["purchase", "return"]),
            col(RefusedRecord.record_json).contains(json.dumps(offer_id), autoescape=True),
        )
    ).all()
    bought: set[PurchaseKey] = set()
    taken_back: set[PurchaseKey] = set()
    for raw in rows:
        record = load_record(raw)
        if isinstance(record, PurchaseRecord) and any(a.offer_id == offer_id for a in record.applied_offers):
            bought.add(PurchaseKey(record.store_id, record.transaction_id))
        elif isinstance(record, ReturnRecord) and offer_id in record.offers_lost:
            taken_back.add(PurchaseKey(record.store_id, record.transaction_id))
    return len(bought) - len(bought & taken_back)
