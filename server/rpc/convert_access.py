"""Protobuf <-> domain for API keys (the admin API's key management)."""

from __future__ import annotations

from posoffers.v1 import admin_service_pb2 as admin_pb

from domain.access import ApiKey, Role
from domain.errors import InvalidArgument
from server.rpc.convert import set_timestamp

_ROLE_TO_PB = {
    Role.ADMIN: admin_pb.API_KEY_ROLE_ADMIN,
    Role.POS: admin_pb.API_KEY_ROLE_POS,
    Role.APP: admin_pb.API_KEY_ROLE_APP,
}
_ROLE_FROM_PB = {value: role for role, value in _ROLE_TO_PB.items()}


def role_from_pb(value: int) -> Role:
    role: Role | None = _ROLE_FROM_PB.get(admin_pb.ApiKeyRole.ValueType(value))
    if role is None:
        raise InvalidArgument("key.role", "must be API_KEY_ROLE_ADMIN, API_KEY_ROLE_POS or API_KEY_ROLE_APP")
    return role


def api_key_to_pb(key: ApiKey) -> admin_pb.ApiKey:
    message = admin_pb.ApiKey(
        key_id=key.key_id,
        name=key.name,
        role=_ROLE_TO_PB[key.role],
        store_ids=sorted(key.store_ids),
        rate_limit_per_second=key.rate_limit_per_second,
        created_by=key.created_by,
    )
    set_timestamp(message.expires_at, key.expires_at)
    set_timestamp(message.created_at, key.created_at)
    set_timestamp(message.revoked_at, key.revoked_at)
    return message
