"""API keys of record in SQL (blocking; the async port wraps it in a worker thread)."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from domain.access import ApiKey, Role
from store.sql_common import EngineViews, aware
from store.sql_models import ApiKeyRow
from usecases.ports import StoredApiKey


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        name=row.name,
        role=Role(row.role),
        store_ids=frozenset(json.loads(row.store_ids_json)),
        expires_at=row.expires_at,
        rate_limit_per_second=row.rate_limit_per_second,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        created_by=row.created_by,
    )


class SqlApiKeys:
    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

    def add(self, stored: StoredApiKey) -> None:
        key = stored.key
        assert key.created_at is not None
        row = ApiKeyRow(
            key_id=key.key_id,
            name=key.name,
            role=key.role.value,
            store_ids_json=json.dumps(sorted(key.store_ids)),
            secret_hash=stored.secret_hash,
            expires_at=aware(key.expires_at) if key.expires_at else None,
            rate_limit_per_second=key.rate_limit_per_second,
            created_at=aware(key.created_at),
            revoked_at=None,
            created_by=key.created_by,
        )
        with Session(self._sql.writer) as session:
            session.add(row)
            session.commit()

    def all(self) -> list[StoredApiKey]:
        with Session(self._sql.reader) as session:
            rows = session.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at), col(ApiKeyRow.key_id))).all()
            return [StoredApiKey(_key(row), row.secret_hash) for row in rows]

    def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Marks the key revoked (the first revocation's time stays); None when there is no such key."""
        with Session(self._sql.writer) as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = aware(at)
                session.add(row)
                session.commit()
                session.refresh(row)
            return _key(row)
