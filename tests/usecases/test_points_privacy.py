"""Points move only by purchases, returns, expiry and AdjustPoints; export and erasure. On the fakes of the ports
(tests/e2e/test_points_privacy.py proves the same through gRPC on Redis and SQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from domain.model import PurchaseKey
from server.bootstrap import Components, bootstrap
from server.config import Settings
from server.demo import demo_customer
from tests.support.fakes import FakeCatalog, FakeHotState, FakeProfiles
from usecases.ports import Adjustment, ErasedIds, StoredAdjustment

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


SALE = PurchaseKey("soho", "t-1")  # her purchase, which FakePrivacy's erasure names


class FakePrivacy:
    """PrivacyStore in memory: SQL's members, re-keyed on erasure."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    async def export_customer(self, customer_id: str, *, now: datetime) -> Mapping[str, Any] | None:
        return self.members.get(customer_id)

    async def forget_customer(self, customer_id: str, *, anonymous_id: str, at: datetime) -> ErasedIds | None:
        self.calls.append("forget_customer")
        held = self.members.pop(customer_id, None)
        if held is None:
            return None
        self.members[anonymous_id] = {**held, "profile": {"display_name": ""}}
        return ErasedIds(purchases=(SALE,), returns=((SALE, "r-1"),))


@dataclass
class World:
    app: Components
    hot: FakeHotState
    profiles: FakeProfiles
    privacy: FakePrivacy

    def member(self, **changes: Any) -> str:
        customer_id = f"cust-{uuid.uuid4().hex[:8]}"
        self.hot.put(dataclasses.replace(demo_customer(customer_id), **changes))
        return customer_id


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    hot, catalog, profiles, privacy = FakeHotState(), FakeCatalog(), FakeProfiles(), FakePrivacy()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path)
    app = bootstrap(
        settings,
        clock=lambda: NOW,
        hot=hot,
        budgets=hot,
        versions=catalog,
        profiles=profiles,
        catalog_store=catalog,
        privacy_store=privacy,
    )
    yield World(app, hot, profiles, privacy)
    await app.close()


def adjustment(customer_id: str, points: int, adjustment_id: str = "adj-1", reason: str = "goodwill") -> Adjustment:
    return Adjustment(adjustment_id, customer_id, points, reason, f"digest:{customer_id}:{points}:{reason}")


async def test_an_import_never_sets_an_existing_members_balance(world: World) -> None:
    cid = world.member()
    state = world.hot.state(cid)
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.customers.upsert_customer(dataclasses.replace(state, points_balance=9_000_000))
    assert "AdjustPoints" in refused.value.message
    assert world.hot.state(cid).points_balance == state.points_balance and world.hot.outbox == []
    renamed = await world.app.customers.upsert_customer(dataclasses.replace(state, display_name="Sam"))
    assert (renamed.display_name, renamed.points_balance) == ("Sam", state.points_balance)


async def test_a_purchase_between_the_imports_read_and_its_write_refuses_the_import(world: World) -> None:
    cid = world.member()
    state = world.hot.state(cid)
    gate = world.hot.gates.arm("upsert_customer")
    task = asyncio.create_task(world.app.customers.upsert_customer(dataclasses.replace(state, display_name="Sam")))
    await gate.arrived.wait()
    held = world.hot.customers[cid]
    held.state = dataclasses.replace(held.state, points_balance=held.state.points_balance + 120)  # a sale meanwhile
    gate.open()
    with pytest.raises(FailedPrecondition):
        await task  # the script refused it; the retry read her new balance, which the import does not name
    assert world.hot.state(cid).display_name != "Sam"


async def test_a_new_members_opening_balance_is_imported(world: World) -> None:
    created = await world.app.customers.upsert_customer(
        dataclasses.replace(demo_customer("newcomer"), points_balance=700)
    )
    assert created.points_balance == 700


async def test_an_adjustment_repays_debt_first_and_replays_once(world: World) -> None:
    cid = world.member(points_balance=0, points_debt=150)
    first = await world.app.adjustments.adjust(adjustment(cid, 200))
    o = first.outcome
    assert not first.replayed
    assert (o.balance_before, o.balance_after, o.debt_before, o.debt_after) == (0, 50, 150, 0)
    again = await world.app.adjustments.adjust(adjustment(cid, 200))
    assert again.replayed and again.outcome == o
    assert len(world.hot.outbox) == 1
    with pytest.raises(AlreadyExists):
        await world.app.adjustments.adjust(adjustment(cid, 201))
    with pytest.raises(AlreadyExists):  # another member, the same id
        await world.app.adjustments.adjust(adjustment(world.member(), 200))


async def test_a_negative_adjustment_never_goes_below_zero(world: World) -> None:
    cid = world.member(points_balance=100)
    with pytest.raises(FailedPrecondition):
        await world.app.adjustments.adjust(adjustment(cid, -101))
    assert world.hot.state(cid).points_balance == 100
    taken = await world.app.adjustments.adjust(adjustment(cid, -100, "adj-2"))
    assert (taken.outcome.balance_after, taken.outcome.debt_after) == (0, 0)


@pytest.mark.parametrize(
    ("points", "reason", "field"),
    [(0, "x", "points"), (10**9, "x", "points"), (5, "", "reason"), (5, "  ", "reason"), (5, "x" * 501, "reason")],
)
async def test_an_adjustment_needs_points_and_a_reason(world: World, points: int, reason: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await world.app.adjustments.adjust(adjustment(world.member(), points, reason=reason))
    assert refused.value.field == field


async def test_an_adjustment_of_an_unknown_member_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.app.adjustments.adjust(adjustment("nobody", 5))


async def test_erasure_waits_for_her_unwritten_records_then_forgets_her(world: World) -> None:
    cid = world.member()
    world.privacy.members[cid] = {"profile": {"display_name": "Samantha"}}
    await world.app.adjustments.adjust(adjustment(cid, 5))  # in the outbox, not in SQL yet
    with pytest.raises(FailedPrecondition) as refused:
        await world.app.privacy.forget(cid, "erasure request 42")
    assert refused.value.reason == "writes_pending" and cid in world.hot.customers
    assert world.privacy.calls == []
    world.hot.write_outbox()
    elsewhere = PurchaseKey("midtown", "t-1")  # the same transaction id at another store: someone else's
    world.hot.claims.update({SALE: cid, elsewhere: "someone-else"})
    world.hot.return_claims.update({(SALE, "r-1"): cid, (elsewhere, "r-1"): "someone-else"})
    assert await world.app.privacy.forget(cid, "erasure request 42") == NOW
    assert cid not in world.hot.customers and cid not in world.privacy.members
    anonymous = world.hot.claims[SALE]
    assert anonymous.startswith("forgotten-") and world.hot.return_claims[(SALE, "r-1")] == anonymous
    assert world.hot.claims[elsewhere] == world.hot.return_claims[(elsewhere, "r-1")] == "someone-else"
    assert not world.hot.erasing
    with pytest.raises(NotFound):
        await world.app.privacy.forget(cid, "erasure request 42")
    with pytest.raises(NotFound):
        await world.app.privacy.export(cid)


async def test_a_replayed_adjustment_of_a_forgotten_member_never_shows_her_anonymous_id(world: World) -> None:
    cid = world.member()
    done = await world.app.adjustments.adjust(adjustment(cid, 5))
    # Written to SQL, then she was forgotten: her adjustment's row now belongs to an anonymous id.
    anonymous = dataclasses.replace(done.outcome, customer_id="forgotten-abc")
    world.profiles.adjustments["adj-1"] = StoredAdjustment(adjustment(cid, 5).digest, anonymous)
    world.hot.forget(cid)
    with pytest.raises(NotFound):
        await world.app.adjustments.adjust(adjustment(cid, 5))
