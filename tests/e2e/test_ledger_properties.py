"""Stateful properties of points, returns and voids, end to end: random sequences of purchases (with and without
redeemed points, sometimes earning the demo's double points, sometimes an offline till's sale of days ago),
partial and full returns, voids, retries, manual adjustments (AdjustPoints) and Redis losing the member, run
against a real server (gRPC, Redis, the write-behind writer, SQLite or PostgreSQL), with and without a pending
period.

A small model of the loyalty rules (docs/decisions.md: "Points and the ledger", "Returns and voids", "Pending
points") predicts every receipt and the profile after each step; invariants that need no model are checked too:

- the Redis ledger adds up (`lbase + sum(entries) == balance - debt`), and SQL's after the writer drains;
- balance and debt are never negative and never both positive; available + pending == balance;
  the pending schedule adds up to the pending points; SQL's pending entries cover the pending part;
  with a returns window never a debt (every sale's points wait out the window from when it was accepted);
- a redemption above what is available, or above the bill, is refused and changes nothing;
- replayed commits, returns and voids pay once; a transaction or return id reused for something else is refused;
- returning, line by line, everything that is left of every purchase restores balance, debt, lifetime value and
  12-month spend exactly: the ledger's sum is balance - debt, and a purchase's returns reverse in total exactly
  what it earned and refund exactly what it redeemed (the cumulative arithmetic of domain/returns.py).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Concatenate, ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from domain.ids import void_return_id
from domain.model import PurchaseKey
from server.demo import OFFER_ID
from tests.conftest import postgres_url
from tests.e2e.conftest import clone_samantha
from tests.integration.sql_queries import ledger_balance, pending_points
from tests.support.server_thread import ServerThread

CATEGORIES = ("dresses", "shoes", "bags", "others")
LINE_IDS = ("a", "b", "c", "d", "e")
STORE_ZONE = ZoneInfo("America/New_York")  # the demo store's: voids are same-business-day there
MINOR_PER_POINT = 1  # USD: 100 points pay 1.00, so one point is one cent (any whole number of points is valid)


class _Steps(Protocol):
    ok: bool


M = TypeVar("M", bound=_Steps)
P = ParamSpec("P")

MACHINE_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    database=None,  # nothing written into the shared work tree; a failure prints its steps
    suppress_health_check=[HealthCheck.too_slow],  # every step is a few gRPC calls and a SQL check
)


# -- the model ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    line_id: str
    category: str
    quantity: int
    unit_price_minor: int

    @property
    def total(self) -> int:
        return self.quantity * self.unit_price_minor


def prorate(amount: int, weights: Sequence[int]) -> list[int]:
    """Largest remainder, ties to the earlier weight; all-zero weights split evenly (docs: exact remainders)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    total = sum(weights)
    shares = [amount * w // total for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for i in order[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def expected_points(lines: Sequence[Line], redeem: int, offer: bool) -> tuple[dict[str, int], dict[str, int]]:
    """Base and bonus points per line: base on what the line costs less its share of the redeemed value (shares
    split over lines by line_id), whole dollars; with the demo offer every dress line earns its base again."""
    ordered = sorted(lines, key=lambda line: line.line_id)
    shares = prorate(redeem * MINOR_PER_POINT, [line.total for line in ordered])
    base = {line.line_id: max(line.total - share, 0) // 100 for line, share in zip(ordered, shares, strict=True)}
    bonus = {line.line_id: base[line.line_id] if offer and line.category == "dresses" else 0 for line in lines}
    return base, bonus


@dataclass(slots=True)
class Bought:
    request: svc.CommitPurchaseRequest
    receipt: svc.PurchaseReceipt
    lines: tuple[Line, ...]
    base: dict[str, int]
    bonus: dict[str, int]
    redeemed: int
    offer: bool
    sold_on: date
    pending: bool  # its points were not spendable yet when it was bought
    returned: dict[str, int] = field(default_factory=dict)
    voided: bool = False
    returns: list[tuple[svc.ReturnPurchaseRequest, svc.ReturnReceipt]] = field(default_factory=list)

    @property
    def transaction_id(self) -> str:
        return self.request.transaction_id

    @property
    def store_id(self) -> str:
        return self.request.basket.store_id

    @property
    def key(self) -> PurchaseKey:
        return PurchaseKey(self.store_id, self.transaction_id)

    def left(self, line: Line) -> int:
        return line.quantity - self.returned.get(line.line_id, 0)

    def kept(self, returning: dict[str, int] | None = None) -> dict[str, int]:
        returning = returning or {}
        return {line.line_id: self.left(line) - returning.get(line.line_id, 0) for line in self.lines}

    def holds(self, kept: dict[str, int]) -> bool:
        """The offer holds while a pair of shoes and a dress are kept."""
        shoes = sum(kept[line.line_id] for line in self.lines if line.category == "shoes")
        dresses = any(kept[line.line_id] > 0 for line in self.lines if line.category == "dresses")
        return self.offer and shoes >= 1 and dresses

    def line_earned(self, line: Line, kept: dict[str, int], holding: bool) -> int:
        k = kept[line.line_id]
        bonus = self.bonus[line.line_id] * k // line.quantity if holding else 0
        return self.base[line.line_id] * k // line.quantity + bonus

    def earned(self, kept: dict[str, int]) -> int:
        holding = self.holds(kept)
        return sum(self.line_earned(line, kept, holding) for line in self.lines)

    def value(self, kept: dict[str, int]) -> int:
        return sum(line.unit_price_minor * kept[line.line_id] for line in self.lines)

    def refunded(self, kept: dict[str, int]) -> int:
        everything = sum(line.total for line in self.lines)
        if everything <= 0:
            return self.redeemed if not any(kept.values()) else 0
        return self.redeemed - self.redeemed * self.value(kept) // everything

    @property
    def fully_returned(self) -> bool:
        return all(self.left(line) == 0 for line in self.lines)


@dataclass(frozen=True, slots=True)
class ReturnExpectation:
    reversed: int
    refunded: int
    value: int
    per_line: dict[str, int]
    offers_lost: list[str]


def expect_return(purchase: Bought, returning: dict[str, int]) -> ReturnExpectation:
    """Cumulative arithmetic: what the purchase earns (refunds, is worth) with what is kept before, minus after."""
    before, after = purchase.kept(), purchase.kept(returning)
    held_before, held_after = purchase.holds(before), purchase.holds(after)
    per_line = {
        line.line_id: purchase.line_earned(line, before, held_before) - purchase.line_earned(line, after, held_after)
        for line in purchase.lines
        if line.line_id in returning
    }
    return ReturnExpectation(
        reversed=purchase.earned(before) - purchase.earned(after),
        refunded=purchase.refunded(after) - purchase.refunded(before),
        value=purchase.value(before) - purchase.value(after),
        per_line=per_line,
        offers_lost=[OFFER_ID] if held_before and not held_after else [],
    )


@dataclass(slots=True)
class Account:
    """What the member's profile must say."""

    balance: int
    debt: int
    lifetime_value: int
    purchase_count: int
    spend_12m: int
    categories: set[str]
    pending_entries: int = 0  # what the not-yet-spendable ledger entries add up to

    @property
    def available(self) -> int:
        return max(0, self.balance - max(0, self.pending_entries))

    def move(self, net: int) -> tuple[int, int]:
        """A return's points coming back (net > 0: repaying debt first) or taken back (floored at 0, into debt)."""
        repaid = min(self.debt, net) if net > 0 else 0
        if self.balance + net >= 0:
            self.balance, self.debt = self.balance + net - repaid, self.debt - repaid
        else:
            self.balance, self.debt = 0, self.debt - (self.balance + net)
        return self.balance, self.debt


def checked(method: Callable[Concatenate[M, P], None]) -> Callable[Concatenate[M, P], None]:
    """Marks the machine broken while a step runs: a failed step leaves it so, and teardown then stays quiet."""

    @functools.wraps(method)
    def run(self: M, /, *args: P.args, **kwargs: P.kwargs) -> None:
        self.ok = False
        method(self, *args, **kwargs)
        self.ok = True

    return run


def business_day(moment: datetime) -> date:
    return moment.astimezone(STORE_ZONE).date()


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code()


# -- strategies ---------------------------------------------------------------------------------------------------


@st.composite
def baskets(draw: st.DrawFn) -> tuple[Line, ...]:
    ids = draw(st.lists(st.sampled_from(LINE_IDS), min_size=1, max_size=4, unique=True))
    # Shoes and dresses often, so the demo's double points apply now and then.
    category = st.sampled_from(("dresses", "shoes", *CATEGORIES))
    price = st.one_of(st.integers(0, 300_00), st.sampled_from([0, 1, 99, 100, 8_900, 12_000]))
    return tuple(Line(i, draw(category), draw(st.integers(1, 3)), draw(price)) for i in ids)


def redeem_choices(available: int, bill: int) -> st.SearchStrategy[int]:
    """Points to redeem: nothing, some or all of what she may use, or more than she has or the bill."""
    most = min(available, bill)
    options: list[st.SearchStrategy[int]] = [st.just(0), st.just(most), st.integers(0, most)]
    options.append(st.integers(available + 1, available + 1_000))  # refused: more than is available
    if bill < available:
        options.append(st.integers(bill + 1, available))  # refused: worth more than the bill
    return st.one_of(options)


# -- the machine --------------------------------------------------------------------------------------------------


class LoyaltyMachine(RuleBasedStateMachine):
    server: ServerThread
    till: svc_grpc.OfferServiceStub
    admin: admin_grpc.OfferAdminStub
    pending_days: int

    def __init__(self) -> None:
        super().__init__()
        self.member = clone_samantha(self.admin)
        start = self.profile()
        assert (start.points_balance, start.points_debt, start.points_available) == (500, 0, 500)
        self.start = start
        self.account = Account(
            balance=start.points_balance,
            debt=start.points_debt,
            lifetime_value=start.lifetime_value_minor,
            purchase_count=start.purchase_count,
            spend_12m=start.spend_12m_minor,
            categories=set(start.categories_purchased),
        )
        self.purchases: list[Bought] = []
        self.adjusted = 0  # what AdjustPoints moved her ledger by
        self.ok = True  # every step so far passed: only then does teardown return everything and check

    # -- helpers --

    def profile(self) -> pb.CustomerProfile:
        return self.till.GetProfile(svc.GetProfileRequest(customer_id=self.member))

    def basket(self, lines: Sequence[Line], redeem: int) -> pb.Basket:
        return pb.Basket(
            customer_id=self.member,
            store_id="soho",
            terminal_id="till-prop",
            currency="USD",
            points_to_redeem=redeem,
            lines=[
                pb.LineItem(
                    line_id=x.line_id,
                    sku=f"SKU-{x.category}-{x.line_id}",
                    category=x.category,
                    quantity=x.quantity,
                    unit_price_minor=x.unit_price_minor,
                )
                for x in lines
            ],
        )

    def returnable(self) -> list[Bought]:
        return [p for p in self.purchases if not p.fully_returned]

    # -- purchases --

    def _purchase(self, lines: tuple[Line, ...], redeem: int, days_ago: int = 0) -> None:
        a = self.account
        request = svc.CommitPurchaseRequest(transaction_id=f"txn-{uuid.uuid4().hex}", basket=self.basket(lines, redeem))
        if days_ago:  # an offline till's sale: within the 72 h grace it is evaluated then, else now
            request.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=days_ago))
        bill = sum(x.total for x in lines)
        if redeem > a.available or redeem * MINOR_PER_POINT > bill:
            # Refused, whichever call the till makes; the invariants then see nothing changed.
            evaluate = svc.EvaluateBasketRequest(basket=request.basket)
            assert code_of(lambda: self.till.EvaluateBasket(evaluate)) is grpc.StatusCode.FAILED_PRECONDITION
            assert code_of(lambda: self.till.CommitPurchase(request)) is grpc.StatusCode.FAILED_PRECONDITION
            return

        has_dress = any(x.category == "dresses" for x in lines)
        offer = "shoes" not in a.categories and has_dress and any(x.category == "shoes" for x in lines)
        base, bonus = expected_points(lines, redeem, offer)
        earned = sum(base.values()) + sum(bonus.values())
        repaid = min(a.debt, earned)

        preview = self.till.EvaluateBasket(svc.EvaluateBasketRequest(basket=request.basket))
        receipt = self.till.CommitPurchase(request)
        ev = receipt.evaluation
        assert not receipt.replayed
        assert preview.points_earned == ev.points_earned and preview.balance_after == ev.balance_after
        assert [o.offer_id for o in ev.applied_offers] == ([OFFER_ID] if offer else [])
        assert {x.line_id: (x.base_points, x.bonus_points) for x in ev.lines} == {i: (base[i], bonus[i]) for i in base}
        assert (ev.subtotal_minor, ev.total_discount_minor, ev.redeemed_value_minor) == (bill, 0, redeem)
        assert ev.total_due_minor == bill - redeem
        assert (ev.points_earned, ev.points_redeemed) == (earned, redeem)
        assert (ev.balance_before, ev.points_debt_before, ev.points_available_before) == (
            a.balance,
            a.debt,
            a.available,
        )
        assert ev.points_debt_repaid == repaid
        assert ev.balance_after == a.balance - redeem + earned - repaid
        pending = earned > 0 and self.pending_days > 0  # the window runs from acceptance, whatever the sale's date
        assert ev.HasField("points_available_at") == pending
        assert sorted(receipt.new_categories) == sorted({x.category for x in lines} - a.categories)

        a.balance, a.debt = ev.balance_after, a.debt - repaid
        a.lifetime_value += bill
        a.spend_12m += bill
        a.purchase_count += 1
        a.categories |= {x.category for x in lines}
        if pending:
            a.pending_entries += earned
        sold = receipt.occurred_at if receipt.HasField("occurred_at") else receipt.committed_at
        sold_on = business_day(sold.ToDatetime(tzinfo=UTC))
        self.purchases.append(Bought(request, receipt, lines, base, bonus, redeem, offer, sold_on, pending))

    @rule(lines=baskets(), days_ago=st.one_of(st.just(0), st.sampled_from([1, 20])))
    @checked
    def purchase(self, lines: tuple[Line, ...], days_ago: int) -> None:
        self._purchase(lines, 0, days_ago)

    @rule(lines=baskets(), data=st.data())
    @checked
    def purchase_with_points(self, lines: tuple[Line, ...], data: st.DataObject) -> None:
        redeem = data.draw(redeem_choices(self.account.available, sum(x.total for x in lines)), label="redeem")
        self._purchase(lines, redeem)

    @rule(data=st.data())
    @checked
    def adjust_points(self, data: st.DataObject) -> None:
        """An operator's correction: positive repays debt first, negative takes from what is available (more is
        refused, changing nothing); a retry of the same adjustment replays it."""
        a = self.account
        points = data.draw(
            st.one_of(st.integers(1, 5_000), st.integers(-a.available - 100, -1)).filter(bool), label="points"
        )
        request = admin_pb.AdjustPointsRequest(
            adjustment_id=f"adj-{uuid.uuid4().hex[:12]}", customer_id=self.member, points=points, reason="property"
        )
        if -points > a.available:
            assert code_of(lambda: self.admin.AdjustPoints(request)) is grpc.StatusCode.FAILED_PRECONDITION
            return
        adjusted = self.admin.AdjustPoints(request)
        repaid = min(a.debt, points) if points > 0 else 0
        assert (adjusted.balance_before, adjusted.points_debt_before) == (a.balance, a.debt)
        a.balance, a.debt = a.balance + points - repaid, a.debt - repaid
        assert (adjusted.balance_after, adjusted.points_debt_after) == (a.balance, a.debt)
        self.adjusted += points
        if data.draw(st.booleans(), label="retried"):
            again = self.admin.AdjustPoints(request)
            assert again.replayed and again.balance_after == adjusted.balance_after

    @precondition(lambda self: self.account.available > 0)
    @rule(extra=st.integers(0, 50_00))
    @checked
    def spend_everything(self, extra: int) -> None:
        """A gift paid (mostly) with every point she can spend: a later return of what earned them leaves a debt."""
        self._spend_everything(extra)

    def _spend_everything(self, extra: int) -> None:
        available = self.account.available
        self._purchase((Line("gift", "others", 1, available * MINOR_PER_POINT + extra),), available)

    @rule(lines=baskets(), days_ago=st.sampled_from([0, 20]), data=st.data())
    @checked
    def buy_spend_and_return(self, lines: tuple[Line, ...], days_ago: int, data: st.DataObject) -> None:
        """Points earned (some redeemed too), spent, then part of the purchase that earned them comes back: into
        debt unless they were pending; its redeemed points come back pro rata."""
        most = min(self.account.available, sum(x.total for x in lines))
        self._purchase(lines, data.draw(st.integers(0, most), label="redeem"), days_ago)
        bought = self.purchases[-1]
        if self.account.available:
            self._spend_everything(0)
        self._return_some(bought, data)

    def _replay_purchase(self, data: st.DataObject) -> None:
        """The till retries: the stored receipt, marked replayed, nothing paid twice; another basket is refused."""
        bought = data.draw(st.sampled_from(self.purchases), label="purchase")
        again = self.till.CommitPurchase(bought.request)
        assert again.replayed
        assert again.evaluation == bought.receipt.evaluation
        assert again.transaction_id == bought.transaction_id
        if data.draw(st.booleans(), label="and with another basket"):
            other = svc.CommitPurchaseRequest()
            other.CopyFrom(bought.request)
            other.basket.lines[0].quantity += 1
            assert code_of(lambda: self.till.CommitPurchase(other)) is grpc.StatusCode.ALREADY_EXISTS

    # -- returns and voids --

    def _check_return(self, bought: Bought, receipt: svc.ReturnReceipt, returning: dict[str, int]) -> None:
        a = self.account
        want = expect_return(bought, returning)
        assert not receipt.replayed
        assert {x.line_id: x.quantity for x in receipt.lines} == returning
        assert {x.line_id: x.points_reversed for x in receipt.lines} == want.per_line
        assert (receipt.points_reversed, receipt.points_refunded, receipt.value_minor) == (
            want.reversed,
            want.refunded,
            want.value,
        )
        assert list(receipt.offers_lost) == want.offers_lost
        assert (receipt.balance_before, receipt.points_debt_before) == (a.balance, a.debt)
        balance, debt = a.move(want.refunded - want.reversed)
        assert (receipt.balance_after, receipt.points_debt_after) == (balance, debt)
        a.lifetime_value -= want.value
        a.spend_12m -= want.value
        if bought.pending:  # the reversal leaves the purchase's own pending points
            a.pending_entries -= want.reversed
        for line_id, quantity in returning.items():
            bought.returned[line_id] = bought.returned.get(line_id, 0) + quantity

    @precondition(lambda self: bool(self.returnable()))
    @rule(data=st.data())
    @checked
    def return_lines(self, data: st.DataObject) -> None:
        self._return_some(data.draw(st.sampled_from(self.returnable()), label="purchase"), data)

    def _return_some(self, bought: Bought, data: st.DataObject) -> None:
        open_lines = [x for x in bought.lines if bought.left(x) > 0]
        chosen = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True), label="lines")
        returning = {x.line_id: data.draw(st.integers(1, bought.left(x)), label=x.line_id) for x in chosen}
        request = svc.ReturnPurchaseRequest(
            return_id=f"ret-{uuid.uuid4().hex[:12]}",
            transaction_id=bought.transaction_id,
            store_id=bought.store_id,
            customer_id=self.member,
            lines=[svc.ReturnLine(line_id=i, quantity=q) for i, q in returning.items()],
        )
        receipt = self.till.ReturnPurchase(request)
        self._check_return(bought, receipt, returning)
        bought.returns.append((request, receipt))

    def _return_too_much(self, data: st.DataObject) -> None:
        """More than is left of a line (or anything of a purchase returned in full) is refused, changing nothing."""
        bought = data.draw(st.sampled_from(self.purchases), label="purchase")
        line = data.draw(st.sampled_from(bought.lines), label="line")
        request = svc.ReturnPurchaseRequest(
            return_id=f"ret-{uuid.uuid4().hex[:12]}",
            transaction_id=bought.transaction_id,
            store_id=bought.store_id,
            customer_id=self.member,
            lines=[svc.ReturnLine(line_id=line.line_id, quantity=bought.left(line) + 1)],
        )
        code = code_of(lambda: self.till.ReturnPurchase(request))
        expected = grpc.StatusCode.FAILED_PRECONDITION if bought.fully_returned else grpc.StatusCode.INVALID_ARGUMENT
        assert code is expected

    def _replay_return(self, data: st.DataObject) -> None:
        """A retried return is its stored receipt, marked replayed; the same id for other lines is refused."""
        bought = data.draw(st.sampled_from([p for p in self.purchases if p.returns]), label="purchase")
        request, first = data.draw(st.sampled_from(bought.returns), label="return")
        again = self.till.ReturnPurchase(request)
        assert again.replayed
        assert (again.points_reversed, again.points_refunded, again.value_minor) == (
            first.points_reversed,
            first.points_refunded,
            first.value_minor,
        )
        assert (again.balance_after, again.points_debt_after) == (first.balance_after, first.points_debt_after)
        other = svc.ReturnPurchaseRequest()
        other.CopyFrom(request)
        other.lines.add(line_id="not-a-line", quantity=1)
        assert code_of(lambda: self.till.ReturnPurchase(other)) is grpc.StatusCode.ALREADY_EXISTS

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data())
    @checked
    def void(self, data: st.DataObject) -> None:
        """The whole of what is left, and the purchase count, on the sale's business day; once."""
        bought = data.draw(st.sampled_from(self.purchases), label="purchase")
        request = svc.VoidPurchaseRequest(
            transaction_id=bought.transaction_id, customer_id=self.member, store_id=bought.store_id
        )
        if bought.voided:
            again = self.till.VoidPurchase(request)
            assert again.replayed and again.voided
        elif bought.fully_returned or business_day(datetime.now(UTC)) != bought.sold_on:
            assert code_of(lambda: self.till.VoidPurchase(request)) is grpc.StatusCode.FAILED_PRECONDITION
        else:
            returning = {x.line_id: bought.left(x) for x in bought.lines if bought.left(x) > 0}
            receipt = self.till.VoidPurchase(request)
            assert receipt.voided
            self._check_return(bought, receipt, returning)
            self.account.purchase_count -= 1
            bought.voided = True
            # The sale never happened: a category it added no longer counts as bought, unless another purchase
            # (not voided) bought it too.
            still_bought = {x.category for p in self.purchases if not p.voided for x in p.lines}
            self.account.categories -= set(bought.receipt.new_categories) - still_bought

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data())
    @checked
    def retry_or_refuse(self, data: st.DataObject) -> None:
        """A till's retry (paid once) or a request that must be refused (changing nothing)."""
        choices = [self._replay_purchase, self._return_too_much]
        if any(p.returns for p in self.purchases):
            choices.append(self._replay_return)
        data.draw(st.sampled_from(choices), label="what")(data)

    @precondition(lambda self: bool(self.purchases))
    @rule()
    @checked
    def redis_loses_her(self) -> None:
        """Redis loses the member (profile, ledger, pending points, receipts, returns): the next call rebuilds her
        from SQL, and everything after goes on as if nothing happened (replays still replay)."""
        self.server.drain()
        customers, member = self.server.service.components.customers_store, self.member
        k = customers.keys.customer(member)
        purchases = [p.key for p in self.purchases]
        returns = [(p.key, r.return_id) for p in self.purchases for r, _ in p.returns]
        returns += [(p.key, void_return_id(p.transaction_id)) for p in self.purchases if p.voided]
        names = [k.returned(p) for p in purchases] + [k.return_record(p, r) for p, r in returns]

        async def lose_her() -> None:
            await customers.forget_customer(member, purchases)
            await customers.redis.delete(*names)

        self.server.run(lose_her())

    # -- invariants --

    @invariant()
    @checked
    def profile_and_ledgers_agree(self) -> None:
        self.check(sql=True)

    def check(self, *, sql: bool) -> None:
        profile, a = self.profile(), self.account
        # Needs no model: what any member's profile and ledger must satisfy.
        base, entries = self.server.run(self.server.service.components.customers_store.ledger(self.member))
        assert base + sum(int(e["p"]) for e in entries) == profile.points_balance - profile.points_debt
        assert profile.points_balance >= 0 and profile.points_debt >= 0
        assert profile.points_balance == 0 or profile.points_debt == 0, "a balance and a debt at once"
        assert 0 <= profile.points_available <= profile.points_balance
        assert profile.points_available + profile.points_pending == profile.points_balance
        assert sum(p.points for p in profile.pending_points) == profile.points_pending
        assert all(p.points > 0 for p in profile.pending_points)
        if self.pending_days:
            if all(p.pending for p in self.purchases if sum(p.base.values())):
                # Every sale within the window: a return only takes back points she could not spend yet.
                assert profile.points_debt == 0
            releases = [r.available_at.ToDatetime(tzinfo=UTC) for r in profile.pending_points]
            assert releases == sorted(set(releases))
            ends = [
                p.receipt.evaluation.points_available_at.ToDatetime(tzinfo=UTC) for p in self.purchases if p.pending
            ]
            for at in releases:  # when the window of a sale with pending points ends
                assert any(abs(at - end) < timedelta(seconds=1) for end in ends), (at, ends)
        else:
            assert profile.points_pending == 0 and not profile.pending_points
        # The model: every receipt so far, added up.
        assert (profile.points_balance, profile.points_debt, profile.points_available) == (
            a.balance,
            a.debt,
            a.available,
        )
        assert (profile.lifetime_value_minor, profile.purchase_count, profile.spend_12m_minor) == (
            a.lifetime_value,
            a.purchase_count,
            a.spend_12m,
        )
        assert set(profile.categories_purchased) == a.categories
        if sql:
            self.server.drain()
            engine = self.server.service.components.sql_engine
            assert ledger_balance(engine, self.member) == profile.points_balance - profile.points_debt
            pending_sql = sum(points for _, points in pending_points(engine, self.member, datetime.now(UTC)))
            assert pending_sql == a.pending_entries
            assert pending_sql >= profile.points_pending

    def teardown(self) -> None:
        """Return what is left of every purchase: the member is back where she started."""
        if not self.ok:
            return  # a step failed: that failure is the report
        for bought in self.returnable():
            for line in [x for x in bought.lines if bought.left(x) > 0]:  # line by line: partial returns add up
                returning = {line.line_id: bought.left(line)}
                request = svc.ReturnPurchaseRequest(
                    return_id=f"ret-{uuid.uuid4().hex[:12]}",
                    transaction_id=bought.transaction_id,
                    store_id=bought.store_id,
                    customer_id=self.member,
                    lines=[svc.ReturnLine(line_id=line.line_id, quantity=returning[line.line_id])],
                )
                self._check_return(bought, self.till.ReturnPurchase(request), returning)
                self.check(sql=False)
        self.check(sql=True)
        end, start = self.profile(), self.start
        # Every purchase returned: her ledger is what she started with plus the adjustments (a debt if they took
        # points she then had to give back).
        kept = start.points_balance - start.points_debt + self.adjusted
        expected_balance, expected_debt = max(0, kept), max(0, -kept)
        assert (end.points_balance, end.points_debt, end.points_available, end.points_pending) == (
            expected_balance,
            expected_debt,
            expected_balance,
            0,
        )
        assert (end.lifetime_value_minor, end.spend_12m_minor) == (start.lifetime_value_minor, start.spend_12m_minor)
        assert end.purchase_count == start.purchase_count + sum(not p.voided for p in self.purchases)
        assert pending_points(self.server.service.components.sql_engine, self.member, datetime.now(UTC)) == []
        snapshot = self.server.service.components.sql_profiles.load_customer(
            self.member, receipts_since=datetime.now(UTC) - timedelta(1)
        )
        assert snapshot is not None
        assert (snapshot.points_balance, snapshot.points_debt, snapshot.lifetime_value_minor) == (
            expected_balance,
            expected_debt,
            start.lifetime_value_minor,
        )


def profile_database(request: pytest.FixtureRequest, backend: str) -> dict[str, str]:
    """make_server's settings for SQLite (its default) or for a fresh PostgreSQL schema, dropped after the test;
    skips, saying why, when PostgreSQL is not there."""
    if backend == "sqlite":
        return {}
    return {"database_url": postgres_url(), "database_schema": str(request.getfixturevalue("postgres_schema"))}


@pytest.mark.timeout(600)  # passing takes seconds; a failure shrinks (Hypothesis stops after 5 min) to a short story
@pytest.mark.parametrize(
    ("backend", "pending_days"),
    [
        pytest.param("sqlite", 0, id="sqlite-credited-at-once"),
        pytest.param("sqlite", 14, id="sqlite-14-day-returns-window"),
        pytest.param("postgres", 14, id="postgres-14-day-returns-window", marks=pytest.mark.postgres),
    ],
)
def test_random_purchases_returns_and_voids_keep_the_books(
    request: pytest.FixtureRequest, make_server: Callable[..., ServerThread], backend: str, pending_days: int
) -> None:
    server = make_server(demo_data=True, points_pending_days=pending_days, **profile_database(request, backend))
    with server.channel() as channel:

        class Machine(LoyaltyMachine):
            pass

        Machine.server = server
        Machine.till = svc_grpc.OfferServiceStub(channel)
        Machine.admin = admin_grpc.OfferAdminStub(channel)
        Machine.pending_days = pending_days
        run_state_machine_as_test(Machine, settings=MACHINE_SETTINGS)
        server.stop()  # before its schema goes
