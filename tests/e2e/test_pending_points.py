"""Pending points: what a purchase earns counts in the balance at once but is spendable only after the returns
window, so a return within the window takes back points that were never spent."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc

from domain.model import PurchaseKey
from tests.e2e.conftest import clone_samantha, visit
from tests.integration.sql_queries import ledger_balance, pending_points
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread

GIFT_CARD = ("gift-1", "SKU-GIFT", "gifts", 1, 500)  # USD 5.00: 500 points pay for it whole


def near(moment: datetime, expected: datetime) -> bool:
    return abs(moment - expected) < timedelta(minutes=1)


def is_window_end(moment: datetime, days: int, sold_after: datetime) -> bool:
    """Points of a sale made since `sold_after` become spendable `days` on, rounded up to the whole hour."""
    earliest = sold_after + timedelta(days=days)
    return moment.minute == 0 and earliest <= moment <= datetime.now(UTC) + timedelta(days=days, hours=1)


def test_points_earned_wait_out_the_returns_window_before_they_can_be_spent(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, points_pending_days=14)
    with visit(server) as v:
        till, member = v.till, v.member

        sold_after = datetime.now(UTC)
        receipt = till.CommitPurchase(commit_request(basket(member, DRESS, SHOES)))
        earned = receipt.evaluation.points_earned
        assert earned == 120 + 120 + 89  # the dress, its double-points bonus with the shoes, the shoes
        available_at = receipt.evaluation.points_available_at.ToDatetime(tzinfo=UTC)
        assert is_window_end(available_at, 14, sold_after)

        after = v.profile()
        assert after.points_balance == 500 + earned
        assert (after.points_available, after.points_pending) == (500, earned)
        assert [
            (p.points, near(p.available_at.ToDatetime(tzinfo=UTC), available_at)) for p in after.pending_points
        ] == [(earned, True)]

        # The till may only take what is available; the refusal says why.
        with pytest.raises(grpc.RpcError) as refused:
            till.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(member, GIFT_CARD, points_to_redeem=600)))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "500 available" in (refused.value.details() or "")
        assert f"{earned} more pending" in (refused.value.details() or "")

        paid = till.CommitPurchase(commit_request(basket(member, GIFT_CARD, points_to_redeem=500)))
        assert paid.evaluation.points_available_before == 500
        assert paid.evaluation.balance_before == 500 + earned
        spent = v.profile()
        assert (spent.points_balance, spent.points_available, spent.points_pending) == (earned, 0, earned)


def test_a_return_within_the_window_takes_back_pending_points_and_leaves_no_debt(
    make_server: Callable[..., ServerThread],
) -> None:
    """Without a pending period, spending the points and then returning the purchase leaves a points debt;
    with one, the points could not be spent, so the return simply takes them back."""
    outcomes = {}
    for days in (0, 14):
        server = make_server(demo_data=True, points_pending_days=days)
        with visit(server) as v:
            till, member = v.till, v.member
            sale = commit_request(basket(member, DRESS, SHOES))
            till.CommitPurchase(sale)
            available = v.profile().points_available
            gift = ("gift-1", "SKU-GIFT", "gifts", 1, available)
            till.CommitPurchase(commit_request(basket(member, gift, points_to_redeem=available)))
            back = till.ReturnPurchase(
                svc.ReturnPurchaseRequest(
                    return_id=f"r-{uuid.uuid4().hex[:8]}",
                    transaction_id=sale.transaction_id,
                    store_id=sale.basket.store_id,
                    customer_id=member,
                    lines=[
                        svc.ReturnLine(line_id="dress-1", quantity=1),
                        svc.ReturnLine(line_id="shoes-1", quantity=1),
                    ],
                )
            )
            after = v.profile()
            outcomes[days] = (back.points_debt_after, after.points_balance, after.points_pending)
            server.drain()
            engine = server.service.components.sql_engine
            assert ledger_balance(engine, member) == after.points_balance - after.points_debt
            assert pending_points(engine, member, datetime.now(UTC)) == []
    assert outcomes[0] == (329, 0, 0)  # she spent points she then had to give back
    assert outcomes[14] == (0, 0, 0)  # she could only spend her 500: the 329 went back untouched


def test_a_partial_return_within_the_window_lowers_the_pending_points(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True, points_pending_days=14)
    with visit(server) as v:
        till, member = v.till, v.member
        sale = commit_request(basket(member, DRESS, SHOES))
        till.CommitPurchase(sale)
        back = till.ReturnPurchase(
            svc.ReturnPurchaseRequest(
                return_id=f"r-{uuid.uuid4().hex[:8]}",
                transaction_id=sale.transaction_id,
                store_id=sale.basket.store_id,
                customer_id=member,
                lines=[svc.ReturnLine(line_id="shoes-1", quantity=1)],
            )
        )
        after = v.profile()
        kept = 329 - back.points_reversed  # the dress alone: its base points, no double points without shoes
        assert kept == 120
        assert (after.points_balance, after.points_available, after.points_pending) == (500 + kept, 500, kept)


def test_pending_points_survive_a_rebuild_from_sql(make_server: Callable[..., ServerThread]) -> None:
    assert_pending_points_survive_a_rebuild(make_server(demo_data=True, points_pending_days=14))


def assert_pending_points_survive_a_rebuild(server: ServerThread) -> None:
    """Redis loses her: the pending points come back from the SQL ledger, as pending as they were."""
    with visit(server) as v:
        till, member = v.till, v.member
        sale = commit_request(basket(member, DRESS, SHOES))
        till.CommitPurchase(sale)
        till.CommitPurchase(commit_request(basket(member, DRESS)))  # the same hour: one pending amount of both
        before = v.profile()
        assert before.points_pending == 329 + 120
        server.drain()
        assert (
            sum(p for _, p in pending_points(server.service.components.sql_engine, member, datetime.now(UTC)))
            == 329 + 120
        )

        server.run(
            server.service.components.customers_store.forget_customer(
                member, [PurchaseKey(sale.basket.store_id, sale.transaction_id)]
            )
        )
        rebuilt = v.profile()
        assert (rebuilt.points_balance, rebuilt.points_available, rebuilt.points_pending) == (
            before.points_balance,
            before.points_available,
            before.points_pending,
        )
        assert list(rebuilt.pending_points) == list(before.pending_points)
        with pytest.raises(grpc.RpcError) as refused:  # still not spendable after the rebuild
            till.CommitPurchase(commit_request(basket(member, GIFT_CARD, points_to_redeem=600)))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_a_backdated_sale_earns_points_pending_for_the_window_from_when_it_was_accepted(
    make_server: Callable[..., ServerThread],
) -> None:
    """The returns window runs from when the service took the sale: a till dating it back past the window (40
    days against 30) must not earn points spendable at once, to be spent before the goods come back."""
    server = make_server(demo_data=True, points_pending_days=30)
    with visit(server) as v:
        till, member = v.till, v.member
        backdated = commit_request(basket(member, DRESS))
        backdated.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=40))
        accepted = datetime.now(UTC)
        receipt = till.CommitPurchase(backdated)
        assert is_window_end(receipt.evaluation.points_available_at.ToDatetime(UTC), 30, accepted)
        after = v.profile()
        assert (after.points_available, after.points_pending) == (500, 120)
        with pytest.raises(grpc.RpcError) as refused:  # so they cannot be spent, then the dress returned
            till.CommitPurchase(commit_request(basket(member, GIFT_CARD, points_to_redeem=600)))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("year", [1, 1970])
def test_a_sale_dated_far_in_the_past_is_invalid_argument(make_server: Callable[..., ServerThread], year: int) -> None:
    server = make_server(demo_data=True)
    with visit(server) as v:
        ancient = commit_request(basket(v.member, DRESS))
        ancient.occurred_at.FromDatetime(datetime(year, 1, 2, tzinfo=UTC))
        with pytest.raises(grpc.RpcError) as refused:
            v.till.CommitPurchase(ancient)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "occurred_at: is more than 730 days ago"


def test_a_pending_period_as_long_as_the_expiry_period_is_refused_at_start() -> None:
    from server.config import Settings

    with pytest.raises(ValueError, match="PENDING_DAYS"):
        Settings.from_env({"POS_OFFERS_POINTS_PENDING_DAYS": "30", "POS_OFFERS_POINTS_EXPIRE_AFTER_DAYS": "30"})


def test_the_cli_shows_when_pending_points_become_spendable(
    make_server: Callable[..., ServerThread], capsys: pytest.CaptureFixture[str]
) -> None:
    from client.cli import main

    server = make_server(demo_data=True, points_pending_days=14)
    with server.channel() as channel:
        member = clone_samantha(admin_grpc.OfferAdminStub(channel))
    target = ["--target", server.target, "--api-key", server.keys.admin]
    sold_after = datetime.now(UTC)
    assert main([*target, "commit", member, "--store", "soho", "--line", "dress-1:dresses:1:120.00"]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("the points earned are spendable")]
    when = line.removeprefix("the points earned are spendable from ")
    shown = datetime.strptime(when, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert is_window_end(shown, 14, sold_after - timedelta(minutes=1))  # the CLI shows whole minutes
    assert main([*target, "profile", member]) == 0
    out = capsys.readouterr().out
    assert "points balance: 620 (500 available, 120 pending)" in out
    assert f"pending: 120 points spendable from {when}" in out
