"""Points move only by purchases, returns, expiry and AdjustPoints; a member's data is exported and erased. End to
end through gRPC, on Redis and SQL (the shared demo server: nothing here changes its catalog)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import offer_service_pb2 as svc

from domain.model import PurchaseKey
from server.demo import OFFER_ID, demo_customer
from server.rpc.convert import customer_to_pb
from tests.e2e.conftest import Visit, visit
from tests.integration.sql_queries import ledger_balance
from tests.integration.sql_schema import PROFILE_TABLES
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def adjust(v: Visit, points: int, adjustment_id: str = "", reason: str = "goodwill", customer_id: str = "") -> Any:
    request = admin_pb.AdjustPointsRequest(
        adjustment_id=adjustment_id or f"adj-{uuid.uuid4().hex[:10]}",
        customer_id=customer_id or v.member,
        points=points,
        reason=reason,
    )
    return v.admin.AdjustPoints(request)


def into_debt(v: Visit) -> int:
    """Buys (earning), spends every point, returns the dress: the points taken back leave her in debt."""
    first = commit_request(basket(v.member, DRESS, SHOES))
    v.till.CommitPurchase(first)
    balance = v.profile().points_balance
    gift = ("gift-1", "SKU-GIFT", "gifts", 1, balance)
    v.till.CommitPurchase(commit_request(basket(v.member, gift, points_to_redeem=balance)))
    back = v.till.ReturnPurchase(
        svc.ReturnPurchaseRequest(
            return_id=f"r-{uuid.uuid4().hex[:8]}",
            transaction_id=first.transaction_id,
            store_id=first.basket.store_id,
            customer_id=v.member,
            lines=[svc.ReturnLine(line_id="dress-1", quantity=1)],
        )
    )
    assert back.points_debt_after > 0
    return int(back.points_debt_after)


def books_balance(server: ServerThread, v: Visit, customer_id: str = "") -> None:
    server.drain()
    now = v.profile(customer_id)
    engine = server.service.components.sql_engine
    assert ledger_balance(engine, customer_id or v.member) == now.points_balance - now.points_debt


# -- UpsertCustomer sets a balance only when it creates the member ---------------------------------------------------


def test_an_import_of_a_billion_points_no_longer_changes_an_existing_members_balance(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        before = v.profile()
        newcomer = customer_to_pb(demo_customer(f"{v.member}-new"))
        newcomer.points_balance = 1_000_000_000  # not even as an opening balance
        error = refused(lambda: v.admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=newcomer)))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "customer.points_balance" in (error.details() or "")
        profile = customer_to_pb(demo_customer(v.member))
        profile.points_balance = 9_000_000  # an opening balance a new member could get; she is not new
        profile.display_name = "Mallory"
        error = refused(lambda: v.admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile)))
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "AdjustPoints" in (error.details() or "")
        after = v.profile()
        assert (after.points_balance, after.display_name) == (before.points_balance, before.display_name)
        books_balance(demo_server, v)

        # Redis lost her: the import rebuilds her first and is refused all the same.
        demo_server.run(demo_server.service.components.customers_store.forget_customer(v.member))
        error = refused(lambda: v.admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile)))
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert v.profile().points_balance == before.points_balance

        # Her balance unchanged: the profile fields import.
        profile.points_balance = before.points_balance
        assert v.admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile)).display_name == "Mallory"
        books_balance(demo_server, v)


# -- AdjustPoints -----------------------------------------------------------------------------------------------------


def test_an_adjustment_is_applied_once_with_its_reason_in_the_ledger(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        before = v.profile().points_balance
        first = adjust(v, 250, "adj-once-" + v.member, reason="missed receipt 4711")
        assert (first.balance_before, first.balance_after, first.points, first.replayed) == (
            before,
            before + 250,
            250,
            False,
        )
        assert first.adjusted_at.seconds > 0
        again = adjust(v, 250, "adj-once-" + v.member, reason="missed receipt 4711")
        assert again.replayed and (again.balance_after, again.adjusted_at) == (first.balance_after, first.adjusted_at)
        assert v.profile().points_balance == before + 250
        other = refused(lambda: adjust(v, 251, "adj-once-" + v.member, reason="missed receipt 4711"))
        assert other.code() is grpc.StatusCode.ALREADY_EXISTS
        someone_else = v.another_member()
        reused = refused(lambda: adjust(v, 250, "adj-once-" + v.member, "x", customer_id=someone_else))
        assert reused.code() is grpc.StatusCode.ALREADY_EXISTS
        books_balance(demo_server, v)
        with demo_server.service.components.sql_engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT kind, points, reason FROM points_ledger WHERE customer_id = :c AND kind = 'adjustment'"
                ),
                {"c": v.member},
            ).all()
        assert [tuple(r) for r in rows] == [("adjustment", 250, "missed receipt 4711")]

        # Redis forgets her (and the adjustment): the retry is answered from SQL, still once.
        store = demo_server.service.components.customers_store
        key = store.keys.customer(v.member).adjustment("adj-once-" + v.member)

        async def lose_her() -> None:
            await store.forget_customer(v.member)
            await store.redis.delete(key)

        demo_server.run(lose_her())
        late = adjust(v, 250, "adj-once-" + v.member, reason="missed receipt 4711")
        assert late.replayed and (late.balance_after, late.adjusted_at) == (first.balance_after, first.adjusted_at)
        assert v.profile().points_balance == before + 250


def test_a_positive_adjustment_repays_debt_first(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        debt = into_debt(v)
        repaid = adjust(v, debt + 40)
        assert (repaid.balance_before, repaid.points_debt_before) == (0, debt)
        assert (repaid.balance_after, repaid.points_debt_after) == (40, 0)
        assert (v.profile().points_balance, v.profile().points_debt) == (40, 0)
        books_balance(demo_server, v)


def test_a_negative_adjustment_takes_what_is_available_and_never_makes_debt(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        balance = v.profile().points_balance
        too_much = refused(lambda: adjust(v, -(balance + 1)))
        assert too_much.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert v.profile().points_balance == balance
        taken = adjust(v, -balance, reason="fraud: duplicate account")
        assert (taken.balance_after, taken.points_debt_after) == (0, 0)
        assert refused(lambda: adjust(v, -1)).code() is grpc.StatusCode.FAILED_PRECONDITION
        books_balance(demo_server, v)


@pytest.mark.parametrize(
    ("points", "reason", "field"),
    [
        (10, "", "reason"),
        (10, " ", "reason"),
        (10, "r" * 501, "reason"),
        (0, "why", "points"),
        (10**8, "why", "points"),
    ],
)
def test_an_adjustment_names_what_is_wrong(demo_server: ServerThread, points: int, reason: str, field: str) -> None:
    with visit(demo_server) as v:
        error = refused(lambda: adjust(v, points, reason=reason))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith(f"{field}:")


def test_an_adjustment_of_an_unknown_member_is_not_found(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        error = refused(lambda: adjust(v, 10, customer_id=f"nobody-{uuid.uuid4().hex[:6]}"))
        assert error.code() is grpc.StatusCode.NOT_FOUND


# -- ExportCustomer ---------------------------------------------------------------------------------------------------


def test_an_export_holds_everything_about_her(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        debt = into_debt(v)
        adjust(v, debt + 5, "adj-export-" + v.member, reason="sorry")
        demo_server.drain()
        response = v.admin.ExportCustomer(admin_pb.ExportCustomerRequest(customer_id=v.member))
        doc = json.loads(response.json)
        assert response.customer_id == v.member
        assert doc["format"] == "pos-offers.customer-export.v1" and doc["writes_pending"] is False
        assert doc["profile"]["display_name"] == "Samantha" and doc["profile"]["home_location"] is not None
        assert doc["live_profile"]["points_balance"] == doc["profile"]["points_balance"] == 5
        assert len(doc["purchases"]) == 2 and len(doc["returns"]) == 1
        first = doc["purchases"][0]
        assert [line["line_id"] for line in first["lines"]] == ["dress-1", "shoes-1"]
        assert [o["offer_id"] for o in first["offers"]] == [OFFER_ID]
        assert isinstance(first["subtotal_minor"], int) and first["committed_at"].endswith("Z")
        assert doc["returns"][0]["offers_lost"] == [OFFER_ID]
        assert (
            sum(e["points"] for e in doc["ledger"]) == doc["profile"]["points_balance"] - doc["profile"]["points_debt"]
        )
        assert [a["adjustment_id"] for a in doc["adjustments"]] == ["adj-export-" + v.member]
        assert doc["adjustments"][0]["reason"] == "sorry"


def test_an_export_of_an_unknown_member_is_not_found(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        error = refused(lambda: v.admin.ExportCustomer(admin_pb.ExportCustomerRequest(customer_id="nobody-at-all")))
        assert error.code() is grpc.StatusCode.NOT_FOUND


# -- ForgetCustomer ---------------------------------------------------------------------------------------------------


def rows_naming(server: ServerThread, customer_id: str) -> dict[str, int]:
    """Rows of any profile table whose customer_id (or an id spelling it) is hers."""
    found: dict[str, int] = {}
    with server.service.components.sql_engine.connect() as conn:
        for table in PROFILE_TABLES:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(table)}
            for column in sorted(columns & {"customer_id", "event_id", "entry_id"}):
                like = sa.text(f"SELECT count(*) FROM {table} WHERE instr({column}, :c) > 0")
                count = int(conn.execute(like, {"c": customer_id}).scalar_one())
                if count:
                    found[f"{table}.{column}"] = count
    return found


def test_forgetting_a_member_keeps_the_books_without_her(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        member = v.member
        sale = commit_request(basket(member, DRESS, SHOES))
        v.till.CommitPurchase(sale)
        adjustment_id = f"adj-{uuid.uuid4().hex[:10]}"  # ids chosen by callers that spell her id are kept as sent
        adjust(v, 7, adjustment_id)
        demo_server.drain()
        assert rows_naming(demo_server, member)

        forgotten = v.admin.ForgetCustomer(admin_pb.ForgetCustomerRequest(customer_id=member, reason="GDPR 17 #9"))
        assert forgotten.customer_id == member and forgotten.forgotten_at.seconds > 0
        assert rows_naming(demo_server, member) == {}
        for call in (
            lambda: v.profile(member),
            lambda: v.admin.ExportCustomer(admin_pb.ExportCustomerRequest(customer_id=member)),
            lambda: v.admin.ForgetCustomer(admin_pb.ForgetCustomerRequest(customer_id=member, reason="again")),
            lambda: adjust(v, 7, adjustment_id),  # her adjustment's replay: never the anonymous id
        ):
            assert refused(call).code() is grpc.StatusCode.NOT_FOUND
        # Her sale and points stay, under an anonymous id: the ledger adds up to that row's balance.
        with demo_server.service.components.sql_engine.connect() as conn:
            owner = conn.execute(
                sa.text("SELECT customer_id FROM purchases WHERE store_id = :s AND transaction_id = :t"),
                {"s": sale.basket.store_id, "t": sale.transaction_id},
            ).scalar_one()
            row = conn.execute(
                sa.text(
                    "SELECT display_name, home_latitude, propensity_json, points_balance, points_debt "
                    "FROM customers WHERE customer_id = :c"
                ),
                {"c": owner},
            ).one()
        assert owner.startswith("forgotten-")
        assert (row[0], row[1], row[2]) == ("", None, "{}")
        assert ledger_balance(demo_server.service.components.sql_engine, owner) == row[3] - row[4] > 0
        # In Redis her sale's receipt is gone; its claim (the store's transaction id) names the anonymous member.
        store = demo_server.service.components.customers_store
        purchase = PurchaseKey(sale.basket.store_id, sale.transaction_id)

        async def redis_of_her_sale() -> tuple[int, object]:
            kept = await store.redis.exists(store.keys.customer(member).transaction(purchase))
            return int(kept), await store.redis.get(store.keys.transaction_claim(purchase))

        assert demo_server.run(redis_of_her_sale()) == (0, owner.encode())
        # Her sale's transaction id stays taken (by the anonymous member): a replay under her old id pays nothing.
        assert refused(lambda: v.till.CommitPurchase(sale)).code() is grpc.StatusCode.ALREADY_EXISTS
        # Her id is free again: an import creates a new member under it, with nothing of hers.
        fresh = customer_to_pb(demo_customer(member))
        fresh.points_balance = 0
        v.admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=fresh))
        assert (v.profile(member).points_balance, v.profile(member).purchase_count) == (0, 0)


def test_forgetting_waits_for_her_unwritten_records(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(writer_enabled=False, demo_data=True)  # SQL gets only what the test drains
    with visit(server) as v:
        v.till.CommitPurchase(commit_request(basket(v.member, DRESS)))  # her sale and import: in the outbox
        request = admin_pb.ForgetCustomerRequest(customer_id=v.member, reason="erasure request")
        error = refused(lambda: v.admin.ForgetCustomer(request))
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert v.profile().display_name == "Samantha" and v.profile().purchase_count == 1  # nothing changed
        server.drain()
        v.admin.ForgetCustomer(request)
        assert refused(lambda: v.profile()).code() is grpc.StatusCode.NOT_FOUND


def test_forgetting_needs_a_reason_and_a_known_member(demo_server: ServerThread) -> None:
    with visit(demo_server) as v:
        error = refused(lambda: v.admin.ForgetCustomer(admin_pb.ForgetCustomerRequest(customer_id=v.member)))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("reason:")
        unknown = admin_pb.ForgetCustomerRequest(customer_id=f"nobody-{uuid.uuid4().hex[:6]}", reason="x")
        assert refused(lambda: v.admin.ForgetCustomer(unknown)).code() is grpc.StatusCode.NOT_FOUND
