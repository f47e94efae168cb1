"""The points ledger, in Redis as in SQL: every balance is the sum of its entries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from tests.e2e.conftest import clone_samantha
from tests.integration.sql_queries import ledger_balance
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread


def redis_ledger(server: ServerThread, customer_id: str) -> tuple[int, list[dict[str, Any]]]:
    return server.run(server.service.components.customers_store.ledger(customer_id))


def assert_ledger_adds_up(server: ServerThread, till: svc_grpc.OfferServiceStub, customer_id: str) -> None:
    profile = till.GetProfile(svc.GetProfileRequest(customer_id=customer_id))
    base, entries = redis_ledger(server, customer_id)
    assert base + sum(int(e["p"]) for e in entries) == profile.points_balance - profile.points_debt


def test_every_change_is_an_entry_in_redis_and_sql_and_survives_a_rebuild(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True)
    with server.channel() as channel:
        admin = admin_grpc.OfferAdminStub(channel)
        till = svc_grpc.OfferServiceStub(channel)
        member = clone_samantha(admin)  # +500: an "adjust" entry from the CRM import
        first = commit_request(basket(member, DRESS, SHOES))
        till.CommitPurchase(first)  # earn + bonus
        balance = till.GetProfile(svc.GetProfileRequest(customer_id=member)).points_balance
        gift = ("gift-1", "SKU-GIFT", "gifts", 1, balance)
        till.CommitPurchase(commit_request(basket(member, gift, points_to_redeem=balance)))  # redeem
        till.ReturnPurchase(  # reverse, into debt
            svc.ReturnPurchaseRequest(
                return_id=f"r-{uuid.uuid4().hex[:8]}",
                transaction_id=first.transaction_id,
                store_id=first.basket.store_id,
                customer_id=member,
                lines=[svc.ReturnLine(line_id="dress-1", quantity=1)],
            )
        )
        # An operator's correction: repays the debt first, the rest reaches the balance.
        admin.AdjustPoints(
            admin_pb.AdjustPointsRequest(
                adjustment_id=f"adj-{uuid.uuid4().hex[:8]}", customer_id=member, points=1_000, reason="goodwill"
            )
        )
        assert_ledger_adds_up(server, till, member)

        _, entries = redis_ledger(server, member)
        assert [e["k"] for e in entries] == ["adjust", "earn", "bonus", "redeem", "reverse", "adjustment"]
        server.drain()
        repo = server.service.components.sql_profiles
        now = till.GetProfile(svc.GetProfileRequest(customer_id=member))
        assert ledger_balance(server.service.components.sql_engine, member) == now.points_balance - now.points_debt
        snapshot = repo.load_customer(member, receipts_since=now.last_purchase_at.ToDatetime().astimezone())
        assert snapshot is not None
        # The same entries, by the same ids (SQL orders entries of one instant by id, Redis by when appended).
        assert sorted(e.entry_id for e in snapshot.ledger) == sorted(str(e["id"]) for e in entries)

        server.run(server.service.components.customers_store.forget_customer(member))
        assert till.GetProfile(svc.GetProfileRequest(customer_id=member)).points_balance == now.points_balance
        assert_ledger_adds_up(server, till, member)
        assert sorted(str(e["id"]) for e in redis_ledger(server, member)[1]) == sorted(str(e["id"]) for e in entries)


def test_redis_keeps_the_newest_entries_and_still_adds_up(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True)
    with server.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        member = clone_samantha(admin_grpc.OfferAdminStub(channel))
        sock = ("sock-1", "SKU-SOCK", "socks", 1, 1_000)
        for _ in range(205):
            till.CommitPurchase(commit_request(basket(member, sock)))
        base, entries = redis_ledger(server, member)
        assert len(entries) == 200 and base > 0
        assert_ledger_adds_up(server, till, member)
