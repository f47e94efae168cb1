"""The catalog of record in SQL: offers (definitions, versioned), stores, and settings (versioned JSON)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from domain.model import GeoPoint, Store
from store.sql_common import EngineViews
from store.sql_models import OfferDefinition, SettingRow, StoreRow

OfferTuple = tuple[str, int, bool, datetime]  # (definition_json, version, archived, updated_at)


class SqlCatalog:
    """Offers, stores and settings of record: what the admin API writes and every server's catalog cache loads.

    Upserts are one statement each, so concurrent writers of one offer or setting each get their own version.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

    # -- offers ------------------------------------------------------------------------------------------------

    def upsert_offer(self, offer_id: str, title: str, definition_json: str, archived: bool) -> tuple[int, datetime]:
        """Create or replace an offer; returns its new version (1, then +1 per upsert) and updated_at."""
        now = datetime.now(UTC)
        stmt = self._sql.insert(OfferDefinition).values(
            offer_id=offer_id,
            version=1,
            archived=archived,
            title=title,
            definition_json=definition_json,
            updated_at=now,
        )
        excluded = stmt.excluded
        # One statement, so concurrent upserts of the same offer each get their own version.
        upsert = stmt.on_conflict_do_update(
            index_elements=["offer_id"],
            set_={
                "version": col(OfferDefinition.version) + 1,
                "archived": excluded.archived,
                "title": excluded.title,
                "definition_json": excluded.definition_json,
                "updated_at": excluded.updated_at,
            },
        ).returning(col(OfferDefinition.version), col(OfferDefinition.updated_at))
        with Session(self._sql.writer) as session, session.begin():
            version, updated_at = session.exec(upsert).one()
        return int(version), updated_at

    def get_offer(self, offer_id: str) -> OfferTuple | None:
        with Session(self._sql.reader) as session:
            row = session.get(OfferDefinition, offer_id)
            return None if row is None else (row.definition_json, row.version, row.archived, row.updated_at)

    def list_offers(self, *, include_archived: bool, after_offer_id: str, limit: int) -> list[OfferTuple]:
        """Offers ordered by offer_id, starting after `after_offer_id` ("" = from the start)."""
        query = select(OfferDefinition).where(col(OfferDefinition.offer_id) > after_offer_id)
        if not include_archived:
            query = query.where(col(OfferDefinition.archived).is_(False))
        query = query.order_by(col(OfferDefinition.offer_id)).limit(max(limit, 0))
        with Session(self._sql.reader) as session:
            return [(r.definition_json, r.version, r.archived, r.updated_at) for r in session.exec(query).all()]

    # -- stores ------------------------------------------------------------------------------------------------

    def upsert_store(self, store: Store) -> None:
        location = store.location
        stmt = self._sql.insert(StoreRow).values(
            store_id=store.store_id,
            name=store.name,
            latitude=None if location is None else location.latitude,
            longitude=None if location is None else location.longitude,
            timezone=store.timezone,
        )
        excluded = stmt.excluded
        upsert = stmt.on_conflict_do_update(
            index_elements=["store_id"],
            set_={
                "name": excluded.name,
                "latitude": excluded.latitude,
                "longitude": excluded.longitude,
                "timezone": excluded.timezone,
            },
        )
        with Session(self._sql.writer) as session, session.begin():
            session.exec(upsert)

    def list_stores(self) -> list[Store]:
        with Session(self._sql.reader) as session:
            return [
                store_from_row(row) for row in session.exec(select(StoreRow).order_by(col(StoreRow.store_id))).all()
            ]

    # -- settings ----------------------------------------------------------------------------------------------

    def get_setting(self, key: str) -> tuple[str, int] | None:
        """(JSON value, version) of a setting of record, or None."""
        with Session(self._sql.reader) as session:
            row = session.get(SettingRow, key)
            return None if row is None else (row.value_json, row.version)

    def put_setting(self, key: str, value_json: str) -> int:
        """Stores a setting's new value as its next version (one statement: concurrent writers never collide on
        the key nor reuse a version); returns the version."""
        stmt = self._sql.insert(SettingRow).values(
            key=key, value_json=value_json, version=1, updated_at=datetime.now(UTC)
        )
        upsert = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "value_json": stmt.excluded.value_json,
                "version": col(SettingRow.version) + 1,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(col(SettingRow.version))
        with Session(self._sql.writer) as session, session.begin():
            return int(session.connection().execute(upsert).scalar_one())


def store_from_row(row: StoreRow) -> Store:
    """The domain Store of a stores row (a location only when both coordinates are there)."""
    location = None
    if row.latitude is not None and row.longitude is not None:
        location = GeoPoint(latitude=row.latitude, longitude=row.longitude)
    return Store(store_id=row.store_id, name=row.name, location=location, timezone=row.timezone)
