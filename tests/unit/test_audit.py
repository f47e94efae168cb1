"""The audit use case on its own: page tokens, the refusal tally's minutes, and what the interceptor's audit step
takes from a request (its target, safe facts only)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import types_pb2 as pb

from domain.errors import InvalidArgument
from server.rpc.audit import AdminAudit, audited, detail_of, peer_host, target_of
from usecases.audit import AuditTrail, RefusalTally, decode_token, encode_token
from usecases.ports import AuditEvent, AuditPosition

T0 = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[AuditEvent] = []
        self.down = False

    async def append_audit_outbox(self, events: Sequence[AuditEvent]) -> None:
        if self.down:
            raise ConnectionError("redis down")
        self.sent.extend(events)


def test_a_page_token_round_trips() -> None:
    position = AuditPosition(T0, "abc")
    assert decode_token(encode_token(position)) == position
    assert decode_token("") is None


@given(st.text(max_size=200))
def test_any_other_token_is_invalid_argument(token: str) -> None:
    try:
        decoded = decode_token(token)
    except InvalidArgument as exc:
        assert exc.field == "page_token"
    else:
        assert decoded is None or isinstance(decoded, AuditPosition)


def test_the_tally_sends_finished_minutes_once_with_their_counts_and_keeps_them_while_redis_is_down() -> None:
    now = [T0]
    outbox = Outbox()
    tally = RefusalTally(outbox, lambda: now[0])
    for _ in range(3):
        tally.count("refused.unauthenticated", target="OfferService/CommitPurchase", peer="ipv4:10.0.0.5")
    tally.count("refused.permission_denied", key_id="k1", target="OfferAdmin/UpsertOffer")
    assert asyncio.run(tally.flush()) == 0  # the minute is not over
    now[0] = T0 + timedelta(minutes=1)
    tally.count("refused.unauthenticated", target="OfferService/CommitPurchase", peer="ipv4:10.0.0.5")
    outbox.down = True
    with pytest.raises(ConnectionError):
        asyncio.run(tally.flush())
    outbox.down = False
    assert asyncio.run(tally.flush()) == 2
    sent = {(e.action, e.key_id): (e.count, e.occurred_at) for e in outbox.sent}
    minute = T0.replace(second=0)
    assert sent == {
        ("refused.unauthenticated", ""): (3, minute),
        ("refused.permission_denied", "k1"): (1, minute),
    }
    assert asyncio.run(tally.flush(everything=True)) == 1 and outbox.sent[-1].count == 1
    assert tally.pending == 0


def test_admin_changes_are_audited_by_default_and_reads_are_not() -> None:
    assert audited("OfferAdmin/UpsertOffer") and audited("OfferAdmin/ExportCustomer")
    assert audited("OfferAdmin/SomeRpcAddedLater")
    assert not audited("OfferAdmin/ListOffers") and not audited("OfferService/CommitPurchase")


def test_target_and_detail_keep_ids_and_numbers_never_names_or_places() -> None:
    request = admin_pb.UpsertCustomerRequest(
        customer=pb.CustomerProfile(
            customer_id="c-1",
            display_name="Samantha Jones",
            points_balance=700,
            home_location=pb.GeoPoint(latitude=40.7, longitude=-74.0),
        )
    )
    assert target_of(request, None) == "c-1"
    detail = detail_of(request, None, None)
    assert "Samantha" not in detail and "40.7" not in detail and '"request.customer.points_balance":700' in detail
    created = admin_pb.CreateApiKeyResponse(key=admin_pb.ApiKey(key_id="k9"), secret="pok_k9_secret")
    assert target_of(admin_pb.CreateApiKeyRequest(), created) == "k9"
    assert "secret" not in detail_of(admin_pb.CreateApiKeyRequest(), created, None)
    assert "invalid_field" in detail_of(request, None, InvalidArgument("customer.tier", "unknown"))


def test_refusals_aggregate_per_address_not_per_connection() -> None:
    assert peer_host("ipv4:10.0.0.5:53122") == "ipv4:10.0.0.5"
    assert peer_host("ipv6:[::1]:53122") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/sock") == "unix:/tmp/sock"


class AuditTable:
    def __init__(self) -> None:
        self.rows: list[AuditEvent] = []

    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        self.rows.extend(events)

    async def audit_events(
        self, *, since: datetime | None, key_id: str, after: AuditPosition | None, limit: int
    ) -> list[AuditEvent]:
        return self.rows[:limit]


class Peer:
    def peer(self) -> str:
        return "ipv4:10.0.0.7:51234"


async def test_an_admin_change_cut_short_is_audited_as_cancelled() -> None:
    """The caller left (or the server's call limit ended it) after the change may have been made: it is recorded."""
    table = AuditTable()
    audit = AdminAudit(AuditTrail(table), RefusalTally(Outbox(), lambda: T0), None, lambda: T0)
    started, never = asyncio.Event(), asyncio.Event()

    async def slow_erasure(request: Any, context: Any) -> object:
        started.set()
        await never.wait()
        return None

    wrapped = audit.wrap("OfferAdmin/ForgetCustomer", slow_erasure, lambda exc: (grpc.StatusCode.INTERNAL, ""))
    call = asyncio.ensure_future(
        wrapped(admin_pb.ForgetCustomerRequest(customer_id="c-1", reason="r"), cast(Any, Peer()))
    )
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    ((row,),) = [table.rows]
    assert (row.action, row.target, row.outcome, row.peer) == (
        "OfferAdmin/ForgetCustomer",
        "c-1",
        "CANCELLED",
        "ipv4:10.0.0.7:51234",
    )


def test_the_tally_holds_a_bounded_number_of_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("usecases.audit.MAX_TALLY_ENTRIES", 3)
    outbox = Outbox()
    tally = RefusalTally(outbox, lambda: T0)
    for n in range(10):  # ten peers probing in one minute
        tally.count("refused.unauthenticated", peer=f"10.0.0.{n}", outcome="UNAUTHENTICATED")
    asyncio.run(tally.flush(everything=True))
    assert [(e.peer, e.count) for e in outbox.sent][-1] == ("(more peers than the tally holds)", 7)
    assert len(outbox.sent) == 4 and sum(e.count for e in outbox.sent) == 10  # nothing lost, memory bounded
