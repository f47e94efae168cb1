"""Who is calling, and may they: the API key from the call's metadata, checked against the key ring, then the
role × RPC policy (domain/access.py) and, for store-bound keys, the store the request acts for.

Runs in the interceptor before anything else looks at the request (authentication, then permission, then rate
limits, then the handler's validation), so a caller without the right key learns nothing about the request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from domain.access import ApiKey, Role, StoreScope, acts_for_store, grant_for, may_call
from domain.errors import PermissionDenied, Unauthenticated
from usecases.api_keys import KeyRing

CALLER: ContextVar[ApiKey | None] = ContextVar("pos_offers_caller", default=None)
"""The key of the call being served (None when authentication is off): for handlers that record who acted."""

# RFC 6750 b64token; our secrets are shorter, but any well-formed token gets the same "invalid" answer.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]{1,512}=*)", re.IGNORECASE)

Narrowing = Callable[[Any], frozenset[str] | None]
"""The stores a call's transport allows (mutual TLS: the client certificate's store URIs); None = no narrowing."""


def bearer_secret(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        raise Unauthenticated("missing API key: send `authorization: Bearer <secret>` metadata", "missing")
    match = _BEARER.fullmatch(values[0]) if len(values) == 1 and isinstance(values[0], str) else None
    if match is None:
        raise Unauthenticated("malformed authorization metadata: expected `Bearer <secret>`", "malformed")
    return match.group(1)


def only_store(key: ApiKey | None) -> str:
    """The store a key bound to exactly one store acts for ("" otherwise)."""
    return next(iter(key.store_ids)) if key is not None and len(key.store_ids) == 1 else ""


def _store_of(scope: StoreScope, request: Any, key: ApiKey) -> tuple[str, str]:
    """(field, store id) the request acts for under `scope`."""
    if scope is StoreScope.BASKET:
        return "basket.store_id", request.basket.store_id
    if scope is StoreScope.PURCHASE:
        return "store_id", request.store_id
    # A key of several stores must name the one taking the goods back: without it, it acts for no store (a
    # permission refusal, before the rate limits and validation, as every store check).
    return "returning_store_id (name it: this key acts for several stores)", request.returning_store_id or only_store(
        key
    )


class Guard:
    def __init__(self, ring: KeyRing, narrowing: Narrowing | None = None) -> None:
        self._ring = ring
        self._narrowing = narrowing

    def admit(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> ApiKey:
        """The caller's key, if it may call `method` ("Service/Method") at all; else the refusal."""
        key = self._ring.authenticate(bearer_secret(metadata))
        if not may_call(key, method):
            raise PermissionDenied(f"a {key.role.value} key may not call {method}")
        return key

    def admit_any(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> ApiKey:
        """The caller's key, whatever its role (server reflection: describing the contract moves nothing)."""
        return self._ring.authenticate(bearer_secret(metadata))

    def presented(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> ApiKey | None:
        """The existing key the call's secret names (right or wrong), for the audit log; None otherwise."""
        try:
            return self._ring.named_by(bearer_secret(metadata))
        except Unauthenticated:
            return None

    def check_store(self, key: ApiKey, method: str, request: Any, context: Any) -> None:
        """A store-bound key acts only for its stores (narrowed further by the client certificate)."""
        scope = grant_for(method).scope
        if scope is StoreScope.NONE or key.role is not Role.POS:
            return
        narrowed = self._narrowing(context) if self._narrowing else None
        field, store_id = _store_of(scope, request, key)
        if not acts_for_store(key, store_id, narrowed):
            raise PermissionDenied(f"this key may not act for store {store_id[:64]!r} ({field})")
