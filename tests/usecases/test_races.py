"""The use cases' races, on in-memory fakes of their ports: each interleaving is chosen with a gate (a call held
until the test opens it), not a sleep, so every test runs the same way every time, in milliseconds.

The same use cases are wired by the same bootstrap() the server uses; only the ports are fakes. The real
adapters keep the fakes' contract: tests/integration proves it on Redis and SQL, tests/e2e end to end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from domain.errors import AlreadyExists, Conflict, NotFound, Unavailable
from domain.model import Basket, CustomerState, LineItem, PurchaseKey, ReturnRequestLine, Reward, RewardType
from server.bootstrap import Components, bootstrap
from server.config import Settings
from server.demo import demo_customer, demo_offer, demo_store
from tests.support.fakes import FakeCatalog, FakeHotState, FakeProfiles
from tests.support.snapshots import customer_snapshot
from usecases.commit import CommitOutcome
from usecases.ports import StoredTransaction
from usecases.snapshot import CustomerSnapshot

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@dataclass
class World:
    """The use cases wired by bootstrap() on fakes, with the demo store and offer."""

    app: Components
    hot: FakeHotState
    profiles: FakeProfiles
    catalog: FakeCatalog

    def member(self) -> str:
        """A new member like the demo one (only dresses so far, high lifetime value, near SoHo)."""
        customer_id = f"cust-{uuid.uuid4().hex[:8]}"
        self.hot.put(demo_customer(customer_id))
        return customer_id


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    hot, catalog, profiles = FakeHotState(), FakeCatalog(), FakeProfiles()
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path, commit_max_attempts=3)
    app = bootstrap(
        settings,
        clock=lambda: NOW,
        hot=hot,
        budgets=hot,
        versions=catalog,
        profiles=profiles,
        catalog_store=catalog,
    )
    app.budgets.settle_s = 0  # no reservation is in flight in these tests: nothing to let settle
    await app.admin.upsert_store(demo_store())
    await app.admin.upsert_offer(demo_offer(NOW))
    yield World(app, hot, profiles, catalog)
    await app.close()


def shoes_and_dress(customer_id: str, points_to_redeem: int = 0, store_id: str = "soho") -> Basket:
    return Basket(
        customer_id=customer_id,
        store_id=store_id,
        terminal_id="till-1",
        currency="USD",
        lines=(
            LineItem("dress-1", "SKU-DRESS", "dresses", 1, 12_000),
            LineItem("shoes-1", "SKU-SHOES", "shoes", 1, 8_900),
        ),
        points_to_redeem=points_to_redeem,
    )


def soho(transaction_id: str) -> PurchaseKey:
    """A purchase at the demo store, where shoes_and_dress is sold."""
    return PurchaseKey("soho", transaction_id)


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def commit(world: World, txn: str, basket: Basket, digest: str = "digest-1") -> CommitOutcome:
    return await world.app.commits.commit(txn, basket, None, digest)


async def test_two_tills_sending_the_same_sale_at_once_pay_it_once(world: World) -> None:
    cid = world.member()
    before = world.hot.state(cid).points_balance
    gate = world.hot.gates.arm("commit_purchase", count=2)  # both have read and evaluated before either writes
    first = asyncio.create_task(commit(world, "t-1", shoes_and_dress(cid)))
    second = asyncio.create_task(commit(world, "t-1", shoes_and_dress(cid)))
    await gate.all_arrived.wait()
    gate.open()
    outcomes = await asyncio.gather(first, second)

    assert sorted(o.replayed for o in outcomes) == [False, True]
    assert outcomes[0].receipt == outcomes[1].receipt
    earned = world.hot.state(cid).points_balance - before
    assert earned > 0 and len(world.hot.outbox) == 1  # applied once, one record for the profile


async def test_one_transaction_id_for_two_customers_at_once_is_one_sale(world: World) -> None:
    alice, bob = world.member(), world.member()
    gate = world.hot.gates.arm("claim_transaction", count=2)  # both have read: nobody holds the id yet
    alices = asyncio.create_task(commit(world, "t-shared", shoes_and_dress(alice)))
    bobs = asyncio.create_task(commit(world, "t-shared", shoes_and_dress(bob)))
    await gate.all_arrived.wait()
    gate.open()
    results = await asyncio.gather(alices, bobs, return_exceptions=True)

    assert isinstance(results[0], CommitOutcome) and not results[0].replayed  # alice claimed it first
    assert isinstance(results[1], AlreadyExists) and "another customer" in str(results[1])
    assert world.hot.state(bob).purchase_count == 0


async def test_a_transaction_id_held_by_another_customer_is_refused_before_anything_is_evaluated(
    world: World,
) -> None:
    alice, bob = world.member(), world.member()
    await commit(world, "t-alices", shoes_and_dress(alice))
    with pytest.raises(AlreadyExists, match="another customer"):
        await commit(world, "t-alices", shoes_and_dress(bob))
    assert world.hot.calls.count("commit_purchase") == 1 and world.hot.state(bob).purchase_count == 0


async def test_an_unknown_customer_leaves_the_transaction_id_free(world: World) -> None:
    with pytest.raises(NotFound):
        await commit(world, "t-typo", shoes_and_dress("nobody-by-that-id"))
    assert soho("t-typo") not in world.hot.claims  # read, looked for her in SQL, claimed nothing
    member = world.member()
    assert not (await commit(world, "t-typo", shoes_and_dress(member))).replayed


async def test_a_write_between_read_and_commit_is_retried_on_the_new_state(world: World) -> None:
    cid = world.member()
    conflicts = counter("pos_offers_commit_conflicts_total")
    gate = world.hot.gates.arm("commit_purchase")
    sale = asyncio.create_task(commit(world, "t-raced", shoes_and_dress(cid)))
    await gate.arrived.wait()
    world.hot.touch(cid)  # another till's write lands after this commit read her
    gate.open()

    assert not (await sale).replayed
    assert world.hot.calls.count("commit_purchase") == 2  # stale once, then evaluated again and written
    assert counter("pos_offers_commit_conflicts_total") == conflicts + 1
    assert world.hot.state(cid).purchase_count == 1


async def test_a_customer_changing_under_every_attempt_gives_up_and_holds_no_budget(world: World) -> None:
    budgeted = dataclasses.replace(demo_offer(NOW), offer_id="budgeted", total_redemption_limit=5)
    await world.app.admin.upsert_offer(budgeted)
    cid = world.member()
    used = world.hot.counters["budgeted"][0]

    gate = world.hot.gates.arm("commit_purchase")
    sale = asyncio.create_task(commit(world, "t-never", shoes_and_dress(cid)))
    for _ in range(3):  # commit_max_attempts: another write lands before each of them
        await gate.arrived.wait()
        world.hot.touch(cid)
        held, gate = gate, world.hot.gates.arm("commit_purchase")
        held.open()
    with pytest.raises(Conflict, match="kept changing"):
        await sale
    assert world.hot.counters["budgeted"][0] == used  # every reservation was given back
    assert world.hot.state(cid).purchase_count == 0 and soho("t-never") not in world.hot.customers[cid].receipts


async def test_a_lost_budget_counter_is_recounted_once_from_sql_and_the_outbox_for_commits_arriving_together(
    world: World,
) -> None:
    budgeted = dataclasses.replace(demo_offer(NOW), offer_id="budgeted", total_redemption_limit=10)
    await world.app.admin.upsert_offer(budgeted)
    del world.hot.counters["budgeted"]  # Redis lost the counter
    world.profiles.redemptions["budgeted"] = 4  # what SQL has
    world.hot.outbox_offers.append((soho("t-on-its-way"), "budgeted"))  # and one redemption still in the outbox
    gate = world.profiles.gates.arm("offer_redemptions")
    first = asyncio.create_task(commit(world, "t-a", shoes_and_dress(world.member())))
    await gate.arrived.wait()  # the first commit is recounting from SQL
    lost = world.hot.gates.arm("reserve_budget:lost")
    second = asyncio.create_task(commit(world, "t-b", shoes_and_dress(world.member())))
    await lost.arrived.wait()  # the second found the counter lost too, while the rebuild is under way
    lost.open()
    gate.open()
    await asyncio.gather(first, second)

    assert world.profiles.calls.count("offer_redemptions") == 1  # one recount from SQL for both
    assert world.hot.counters["budgeted"][0] == 4 + 1 + 2  # SQL + outbox + these two, never from zero


async def test_a_commit_landing_while_a_lost_counter_is_rebuilt_is_counted(world: World) -> None:
    """Alice reserved the last redemption before Redis lost the counter; her commit lands while Bob's till rebuilds
    it (the rebuild lets in-flight commits settle, then reads the outbox): the rebuild counts her, Bob is told the
    offer is sold out, and his sale goes through without it."""
    budgeted = dataclasses.replace(demo_offer(NOW), offer_id="budgeted", total_redemption_limit=2, priority=20)
    await world.app.admin.upsert_offer(budgeted)
    world.profiles.redemptions["budgeted"] = 1
    world.hot.counters["budgeted"] = (1, world.hot.counters["budgeted"][1])  # one sold before, in SQL
    alice, bob = world.member(), world.member()
    alices_write = world.hot.gates.arm("commit_purchase")
    alices = asyncio.create_task(commit(world, "t-alice", shoes_and_dress(alice)))
    await alices_write.arrived.wait()  # she holds the 2nd of 2
    del world.hot.counters["budgeted"]  # Redis loses the counter
    outbox_read = world.hot.gates.arm("offer_in_outbox")
    bobs = asyncio.create_task(commit(world, "t-bob", shoes_and_dress(bob)))
    await outbox_read.arrived.wait()  # Bob's till found it lost and is about to read the outbox
    alices_write.open()
    await alices  # her sale reached the outbox meanwhile
    outbox_read.open()
    await bobs

    assert "budgeted" in world.hot.state(alice).offer_uses
    assert "budgeted" not in world.hot.state(bob).offer_uses and world.hot.state(bob).purchase_count == 1
    assert world.hot.counters["budgeted"][0] == 2  # never more than the budget


async def test_a_commit_holds_no_reservation_while_another_offers_counter_is_rebuilt(world: World) -> None:
    """A basket earning two budgeted offers; the second's counter is lost. Holding the first through the second's
    rebuild would let a rebuild of the first miss it (it cannot see reservations in flight): nothing is held."""
    for offer_id, category in (("first", "shoes"), ("second", "dresses")):
        reward = Reward(RewardType.BONUS_POINTS, target_category=category, bonus_points=100)
        offer = dataclasses.replace(demo_offer(NOW), offer_id=offer_id, reward=reward, total_redemption_limit=5)
        await world.app.admin.upsert_offer(offer)
    cid = world.member()
    applied = [a.offer_id for a in (await world.app.offers.evaluate(shoes_and_dress(cid), None)).applied_offers]
    held_first, lost = [o for o in applied if o in ("first", "second")]  # reserved in the order they apply
    before = world.hot.counters[held_first][0]
    del world.hot.counters[lost]
    recount = world.profiles.gates.arm("offer_redemptions")
    sale = asyncio.create_task(commit(world, "t-two-budgets", shoes_and_dress(cid)))
    await recount.arrived.wait()  # the lost counter is being rebuilt from SQL

    assert world.hot.counters[held_first][0] == before  # the first offer's reservation was given back meanwhile
    recount.open()
    assert not (await sale).replayed
    assert world.hot.counters[held_first][0] == before + 1 and world.hot.counters[lost][0] == 1


async def test_a_commit_landing_after_a_rebuild_that_missed_it_is_counted_again(world: World) -> None:
    """The rare case the settle time is there for, forced: Alice's write lands after Bob's rebuild read the outbox.
    Her commit confirms its reservation against the counter's epoch, finds it rebuilt and counts itself again
    (an offer may then undersell by one, never oversell)."""
    budgeted = dataclasses.replace(demo_offer(NOW), offer_id="budgeted", total_redemption_limit=10, priority=20)
    await world.app.admin.upsert_offer(budgeted)
    alice, bob = world.member(), world.member()
    alices_write = world.hot.gates.arm("commit_purchase")
    alices = asyncio.create_task(commit(world, "t-alice", shoes_and_dress(alice)))
    await alices_write.arrived.wait()  # reserved (1 of 10), not yet written
    del world.hot.counters["budgeted"]
    await commit(world, "t-bob", shoes_and_dress(bob))  # rebuilds from SQL and the outbox: Alice is in neither
    assert world.hot.counters["budgeted"][0] == 1
    alices_write.open()
    await alices

    assert "budgeted" in world.hot.state(alice).offer_uses
    assert world.hot.counters["budgeted"][0] == 2


async def test_a_return_released_after_a_rebuild_that_left_it_out_gives_nothing_back(world: World) -> None:
    """Alice returns the shoes, so the offer no longer holds and its redemption goes back to the budget; the
    release comes late, after Redis lost the counter and a rebuild already left her redemption out."""
    budgeted = dataclasses.replace(demo_offer(NOW), offer_id="budgeted", total_redemption_limit=10, priority=20)
    await world.app.admin.upsert_offer(budgeted)
    alice, bob = world.member(), world.member()
    await commit(world, "t-alice", shoes_and_dress(alice))
    release = world.hot.gates.arm("release_budget")
    shoes_back = [ReturnRequestLine("shoes-1", 1)]
    back = asyncio.create_task(world.app.returns.return_lines("r-alice", soho("t-alice"), alice, shoes_back, "rd"))
    await release.arrived.wait()  # the return is written; its release is slow
    del world.hot.counters["budgeted"]
    world.hot.write_outbox()  # SQL has her sale and her return: nothing used
    await commit(world, "t-bob", shoes_and_dress(bob))  # rebuilds at 0, then takes 1
    release.open()
    assert not (await back).replayed

    assert world.hot.counters["budgeted"][0] == 1  # Bob's: Alice's late release gave nothing back


async def test_a_sold_out_offer_is_not_applied_and_the_sale_goes_through(world: World) -> None:
    budgeted = dataclasses.replace(demo_offer(NOW), offer_id="budgeted", total_redemption_limit=1, priority=20)
    await world.app.admin.upsert_offer(budgeted)
    first, second = world.member(), world.member()
    gate = world.hot.gates.arm("commit_purchase")  # the first holds the last redemption, not yet written
    sale = asyncio.create_task(commit(world, "t-first", shoes_and_dress(first)))
    await gate.arrived.wait()
    await commit(world, "t-second", shoes_and_dress(second))  # the counter shows it sold out: evaluated without it
    gate.open()
    await sale

    assert "budgeted" in world.hot.state(first).offer_uses
    assert "budgeted" not in world.hot.state(second).offer_uses
    assert world.hot.counters["budgeted"][0] == 1


async def test_a_member_redis_lost_waits_for_her_changes_to_reach_sql(world: World) -> None:
    cid = world.member()
    await commit(world, "t-before-loss", shoes_and_dress(cid))
    state = world.hot.state(cid)
    world.hot.forget(cid)  # Redis lost her while her purchase is still in the outbox
    world.profiles.snapshots[cid] = _snapshot(state)

    with pytest.raises(Unavailable, match="being rebuilt"):
        await world.app.offers.evaluate(shoes_and_dress(cid), None)
    assert "load_customer" not in world.profiles.calls  # refused before reading a profile that lacks it

    world.hot.write_outbox()  # the writer caught up
    evaluation = await world.app.offers.evaluate(shoes_and_dress(cid), None)
    assert evaluation.balance_before == state.points_balance


async def test_a_change_arriving_during_the_rebuild_is_not_overwritten(world: World) -> None:
    cid = world.member()
    state = world.hot.state(cid)
    world.hot.forget(cid)
    world.profiles.snapshots[cid] = _snapshot(state)
    gate = world.profiles.gates.arm("load_customer")
    evaluation = asyncio.create_task(world.app.offers.evaluate(shoes_and_dress(cid), None))
    await gate.arrived.wait()  # the rebuild has checked the outbox and is reading SQL
    world.hot.outbox.append((cid, "a CRM change on another server"))
    gate.open()
    with pytest.raises(Unavailable):  # the hot state refuses the rebuild: SQL's snapshot lacks that change
        await evaluation
    assert cid not in world.hot.customers


async def test_two_tills_sending_the_same_return_at_once_take_the_points_back_once(world: World) -> None:
    cid = world.member()
    await commit(world, "t-sold", shoes_and_dress(cid))
    after_sale = world.hot.state(cid).points_balance
    gate = world.hot.gates.arm("apply_return", count=2)
    dress_back = [ReturnRequestLine("dress-1", 1)]
    first = asyncio.create_task(world.app.returns.return_lines("r-1", soho("t-sold"), cid, dress_back, "rd-1"))
    second = asyncio.create_task(world.app.returns.return_lines("r-1", soho("t-sold"), cid, dress_back, "rd-1"))
    await gate.all_arrived.wait()
    gate.open()
    results = await asyncio.gather(first, second)

    assert sorted(r.replayed for r in results) == [False, True]
    taken = after_sale - world.hot.state(cid).points_balance
    assert taken > 0 and world.hot.customers[cid].returned[soho("t-sold")] == {"dress-1": 1}
    other = world.member()  # the same return of her purchase named with another card: not his purchase
    with pytest.raises(NotFound):
        await world.app.returns.return_lines("r-1", soho("t-sold"), other, dress_back, "rd-1")


def _snapshot(state: CustomerState) -> CustomerSnapshot:
    """Her profile of record, as the writer left it in SQL."""
    return customer_snapshot(
        state.customer_id,
        display_name=state.display_name,
        tier=state.tier,
        lifetime_value_minor=state.lifetime_value_minor,
        points_balance=state.points_balance,
        purchase_count=state.purchase_count,
        categories=sorted(state.categories),
        offer_uses=dict(state.offer_uses),
    )


async def test_a_void_naming_the_wrong_customer_leaves_the_real_void_free(world: World) -> None:
    alice, bob = world.member(), world.member()
    await commit(world, "t-alice", shoes_and_dress(alice))
    with pytest.raises(NotFound):
        await world.app.returns.void(soho("t-alice"), bob, "vd-bob")  # a till keyed the wrong card
    result = await world.app.returns.void(soho("t-alice"), alice, "vd-alice")
    assert not result.replayed and (soho("t-alice"), "void:t-alice") in world.hot.customers[alice].returns


async def test_one_transaction_id_at_two_stores_at_once_is_two_sales(world: World) -> None:
    """Tills number their own sales: the same id at another store is another purchase, claimed apart."""
    await world.app.admin.upsert_store(dataclasses.replace(demo_store(), store_id="tribeca", name="TriBeCa"))
    alice, bob = world.member(), world.member()
    gate = world.hot.gates.arm("claim_transaction", count=2)  # both have read: nobody holds either purchase yet
    alices = asyncio.create_task(commit(world, "till1-0001", shoes_and_dress(alice)))
    bobs = asyncio.create_task(commit(world, "till1-0001", shoes_and_dress(bob, store_id="tribeca")))
    await gate.all_arrived.wait()
    gate.open()
    outcomes = await asyncio.gather(alices, bobs)

    assert [o.replayed for o in outcomes] == [False, False]
    assert world.hot.state(alice).purchase_count == world.hot.state(bob).purchase_count == 1
    assert world.hot.claims == {soho("till1-0001"): alice, PurchaseKey("tribeca", "till1-0001"): bob}


async def test_a_return_naming_another_store_is_not_found_and_claims_nothing(world: World) -> None:
    alice = world.member()
    await commit(world, "t-alice", shoes_and_dress(alice))
    elsewhere = PurchaseKey("tribeca", "t-alice")
    with pytest.raises(NotFound):
        await world.app.returns.return_lines("r-1", elsewhere, alice, [ReturnRequestLine("shoes-1", 1)], "rd")
    with pytest.raises(NotFound):
        await world.app.returns.void(elsewhere, alice, "vd")
    assert world.hot.return_claims == {} and "apply_return" not in world.hot.calls
    assert not (await world.app.returns.void(soho("t-alice"), alice, "vd")).replayed


async def test_a_sale_and_a_return_retried_across_the_upgrade_to_store_scoped_ids_replay(world: World) -> None:
    """The previous version stored receipts by transaction (and return) id alone: a retry of the same request
    replays it. Another request under that id is not refused as a changed basket: the old receipt may be another
    store's sale, so only a matching digest (the same basket, store included) counts."""
    cid = world.member()
    held = world.hot.customers[cid]
    held.legacy_receipts["t-old"] = StoredTransaction("digest-1", b"old sale")
    held.legacy_returns["r-old"] = StoredTransaction("rd", b"old return")

    assert await commit(world, "t-old", shoes_and_dress(cid)) == CommitOutcome(b"old sale", replayed=True)
    back = await world.app.returns.return_lines("r-old", soho("t-old"), cid, [ReturnRequestLine("shoes-1", 1)], "rd")
    assert (back.receipt, back.replayed) == (b"old return", True)
    assert "commit_purchase" not in world.hot.calls and "apply_return" not in world.hot.calls

    elsewhere = await commit(world, "t-old", shoes_and_dress(cid), digest="digest-of-another-store")
    assert not elsewhere.replayed and world.hot.state(cid).purchase_count == 1
