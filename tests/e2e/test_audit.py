"""The audit log, end to end through gRPC with real Redis and SQL: admin changes written before they are answered
(who, what, from where, which request), refused calls aggregated per key and minute through Redis and the writer
(never an SQL write on the till path), ListAuditEvents paging and filters, and `pos-offers admin audit-log`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from client.cli import main
from domain.access import Role
from tests.conftest import postgres_url
from tests.support.server_thread import ServerThread

ServerFactory = Callable[..., ServerThread]


def all_events(admin: admin_grpc.OfferAdminStub, **filters: Any) -> list[admin_pb.AuditEvent]:
    events: list[admin_pb.AuditEvent] = []
    token = ""
    while True:
        page = admin.ListAuditEvents(admin_pb.ListAuditEventsRequest(page_token=token, **filters))
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events


def store(store_id: str) -> pb.Store:
    return pb.Store(store_id=store_id, name="Audit test", location=pb.GeoPoint(latitude=40.7, longitude=-74.0))


@contextmanager
def sql_statements(server: ServerThread) -> Iterator[list[str]]:
    """Every SQL statement the server's engine runs meanwhile (any thread)."""
    seen: list[str] = []
    engine = server.service.components.sql_engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_an_admin_change_is_audited_with_who_what_where_and_the_request(make_server: ServerFactory) -> None:
    server = make_server()
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        admin.UpsertStore(admin_pb.UpsertStoreRequest(store=store("audit-1")), metadata=(("x-request-id", "req-42"),))
        with pytest.raises(grpc.RpcError) as refused:
            admin.ArchiveOffer(admin_pb.ArchiveOfferRequest(offer_id="no-such-offer"))
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        admin.ListOffers(admin_pb.ListOffersRequest())  # a read of nothing personal: not audited
        events = all_events(admin)
    admin_key = next(k for k in server.run(server.service.components.api_keys.list()) if k.role is Role.ADMIN)
    assert [(e.action, e.target, e.outcome) for e in events] == [
        ("OfferAdmin/UpsertStore", "audit-1", "OK"),
        ("OfferAdmin/ArchiveOffer", "no-such-offer", "NOT_FOUND"),
    ]
    upsert = events[0]
    assert (upsert.key_id, upsert.key_name) == (admin_key.key_id, admin_key.name)
    assert upsert.request_id == "req-42"
    assert upsert.peer.startswith("ipv4:127.0.0.1:") or upsert.peer.startswith("ipv6:")
    assert upsert.count == 1
    detail = json.loads(upsert.detail)
    assert "Audit test" not in upsert.detail and "40.7" not in upsert.detail  # no names, no locations
    assert isinstance(detail, dict)


def test_creating_and_revoking_a_key_is_audited_without_the_secret(make_server: ServerFactory) -> None:
    server = make_server()
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        created = admin.CreateApiKey(
            admin_pb.CreateApiKeyRequest(key=admin_pb.ApiKey(name="till 7", role=admin_pb.API_KEY_ROLE_APP))
        )
        admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(key_id=created.key.key_id))
        events = all_events(admin)
    assert [(e.action, e.target) for e in events] == [
        ("OfferAdmin/CreateApiKey", created.key.key_id),
        ("OfferAdmin/RevokeApiKey", created.key.key_id),
    ]
    assert all(created.secret not in str(e) for e in events)


def test_when_the_audit_log_cannot_be_written_the_caller_is_told_to_retry_and_no_unseen_key_works(
    make_server: ServerFactory,
) -> None:
    """The change itself stands (an idempotent upsert: the retry writes the row); a key whose creation could not be
    audited is revoked at once (its secret was never shown, and a retry makes another)."""
    server = make_server()
    with server.service.components.sql_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            admin.UpsertStore(admin_pb.UpsertStoreRequest(store=store("audit-2")))
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "audit-2" in server.run(server.service.components.catalog.refresh(force=True)).stores
        before = {k.key_id for k in admin.ListApiKeys(admin_pb.ListApiKeysRequest()).keys}
        with pytest.raises(grpc.RpcError) as unaudited:
            admin.CreateApiKey(admin_pb.CreateApiKeyRequest(key=admin_pb.ApiKey(role=admin_pb.API_KEY_ROLE_APP)))
        assert unaudited.value.code() is grpc.StatusCode.UNAVAILABLE
        every = admin.ListApiKeys(admin_pb.ListApiKeysRequest(include_revoked=True)).keys
        (made,) = [k for k in every if k.key_id not in before and k.role == admin_pb.API_KEY_ROLE_APP]
        assert made.HasField("revoked_at")


def test_refused_calls_reach_the_audit_log_aggregated_through_redis_never_sql_on_the_till_path(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    basket = pb.Basket(customer_id="someone", store_id="soho", currency="USD")
    secret = "pok_" + "0" * 16 + "_" + "x" * 43  # shaped like a key, naming no key
    with sql_statements(server) as statements:
        with grpc.insecure_channel(server.target) as bare:
            till = svc_grpc.OfferServiceStub(bare)
            bearer: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {secret}"),)
            for metadata in ((), (), bearer):
                with pytest.raises(grpc.RpcError) as no_key:
                    till.CommitPurchase(svc.CommitPurchaseRequest(transaction_id="t", basket=basket), metadata=metadata)
                assert no_key.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with server.channel(Role.APP) as app_channel:
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as wrong_role:
                    svc_grpc.OfferServiceStub(app_channel).CommitPurchase(
                        svc.CommitPurchaseRequest(transaction_id="t", basket=basket)
                    )
                assert wrong_role.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # Refusing, and counting the refusals, wrote nothing to SQL (health probes and key reloads may read meanwhile).
    assert [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "PRAGMA"))] == []
    server.drain()
    with server.channel() as channel:
        events = all_events(admin_grpc.OfferAdminStub(channel))
    refused = {(e.action, e.key_id, json.loads(e.detail)["reason"]): e for e in events}
    app_key = next(k for k in server.run(server.service.components.api_keys.list()) if k.role is Role.APP)
    missing = refused[("refused.unauthenticated", "", "missing")]
    assert (missing.count, missing.target, missing.outcome) == (2, "OfferService/CommitPurchase", "UNAUTHENTICATED")
    assert missing.peer.startswith("ipv4:127.0.0.1") or missing.peer.startswith("ipv6:")
    assert refused[("refused.unauthenticated", "", "invalid")].count == 1  # the id named no key: not recorded
    denied = refused[("refused.permission_denied", app_key.key_id, "role or store")]
    assert (denied.count, denied.key_name, denied.outcome) == (3, app_key.name, "PERMISSION_DENIED")
    assert all(secret not in str(e) for e in events)


def test_a_wrong_secret_for_an_existing_key_records_that_key(make_server: ServerFactory) -> None:
    server = make_server()
    admin_key = next(k for k in server.run(server.service.components.api_keys.list()) if k.role is Role.ADMIN)
    forged = f"pok_{admin_key.key_id}_" + "y" * 43
    with grpc.insecure_channel(server.target) as bare, pytest.raises(grpc.RpcError):
        admin_grpc.OfferAdminStub(bare).UpsertStore(
            admin_pb.UpsertStoreRequest(store=store("x")), metadata=(("authorization", f"Bearer {forged}"),)
        )
    server.drain()
    with server.channel() as channel:
        events = all_events(admin_grpc.OfferAdminStub(channel), key_id=admin_key.key_id)
    assert [(e.action, e.target, e.count) for e in events] == [("refused.unauthenticated", "OfferAdmin/UpsertStore", 1)]
    assert forged not in str(events)


def test_list_audit_events_pages_oldest_first_and_filters_by_key_and_time(make_server: ServerFactory) -> None:
    server = make_server()
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        for n in range(5):
            admin.UpsertStore(admin_pb.UpsertStoreRequest(store=store(f"page-{n}")))
        first = admin.ListAuditEvents(admin_pb.ListAuditEventsRequest(page_size=2))
        assert [e.target for e in first.events] == ["page-0", "page-1"] and first.next_page_token
        walked = all_events(admin, page_size=2)
        assert [e.target for e in walked] == [f"page-{n}" for n in range(5)]
        times = [e.occurred_at.ToDatetime() for e in walked]
        assert times == sorted(times)
        since = walked[3].occurred_at
        assert [e.target for e in all_events(admin, since=since)] == ["page-3", "page-4"]
        assert all_events(admin, key_id="not-a-key") == []
        later = admin.ListAuditEvents(admin_pb.ListAuditEventsRequest(page_size=1000))
        assert len(later.events) == 5 and not later.next_page_token
        with pytest.raises(grpc.RpcError) as bad:
            admin.ListAuditEvents(admin_pb.ListAuditEventsRequest(page_token="not a token"))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with server.channel(Role.POS) as till_channel:
        with pytest.raises(grpc.RpcError) as denied:
            admin_grpc.OfferAdminStub(till_channel).ListAuditEvents(admin_pb.ListAuditEventsRequest())
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_cli_audit_log(make_server: ServerFactory, capsys: pytest.CaptureFixture[str]) -> None:
    server = make_server()
    store_id = f"cli-{uuid.uuid4().hex[:6]}"
    with server.channel() as channel:
        admin_grpc.OfferAdminStub(channel).UpsertStore(admin_pb.UpsertStoreRequest(store=store(store_id)))
    admin_key = next(k for k in server.run(server.service.components.api_keys.list()) if k.role is Role.ADMIN)
    common = ["--target", server.target, "--api-key", server.keys.admin]
    assert main(["admin", "audit-log", "--since", "1h", *common]) == 0
    out = capsys.readouterr().out
    assert "OfferAdmin/UpsertStore" in out and store_id in out and admin_key.key_id in out and "OK" in out
    assert main(["admin", "audit-log", "--key", admin_key.key_id, "--json", *common]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["target"] for e in listed["events"]] == [store_id]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["admin", "audit-log", "--since", tomorrow, *common]) == 0
    assert capsys.readouterr().out.strip() == "no audit events"
    assert main(["admin", "audit-log", "--since", "yesterday", *common]) == 2


@pytest.mark.postgres
def test_the_audit_log_on_postgres(postgres_schema: str, make_server: ServerFactory) -> None:
    """Admin rows written synchronously and refusal rows written by the writer, paged back, on PostgreSQL."""
    server = make_server(database_url=postgres_url(), database_schema=postgres_schema)
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        for n in range(3):
            admin.UpsertStore(admin_pb.UpsertStoreRequest(store=store(f"pg-{n}")))
    with grpc.insecure_channel(server.target) as bare, pytest.raises(grpc.RpcError):
        admin_grpc.OfferAdminStub(bare).ListOffers(admin_pb.ListOffersRequest())
    server.drain()
    with server.channel() as channel:
        events = all_events(admin_grpc.OfferAdminStub(channel), page_size=2)
    # The refusals' row is dated at the start of their minute: oldest first puts it before the changes of that minute.
    assert [e.target for e in events if e.action == "OfferAdmin/UpsertStore"] == ["pg-0", "pg-1", "pg-2"]
    refused = [e for e in events if e.action == "refused.unauthenticated"]
    assert [(e.target, e.count) for e in refused] == [("OfferAdmin/ListOffers", 1)]
    times = [(e.occurred_at.ToDatetime(), e.event_id) for e in events]
    assert times == sorted(times) and len(events) == 4
