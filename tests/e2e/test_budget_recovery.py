"""An offer's total budget survives Redis losing its counter: rebuilt from SQL (and the outbox), never from zero.

Real gRPC servers on the real Redis, on SQLite and PostgreSQL. Losing the counter is simulated by deleting its key.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterator

import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from store.sql_budgets import SqlBudgets
from tests.conftest import postgres_url
from tests.e2e.conftest import clone_samantha
from tests.support.builders import basket, bonus_offer, commit_request
from tests.support.server_thread import ServerThread, aio_channel_to
from tests.support.waiting import wait_until

SCARF = ("scarf-1", "SKU-SCARF", "scarves", 1, 4_000)  # 40 base points
BONUS = 500


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def start_server(
    request: pytest.FixtureRequest, make_server: Callable[..., ServerThread]
) -> Iterator[Callable[..., ServerThread]]:
    """Starts demo-data servers on SQLite, or on PostgreSQL in a fresh schema (dropped after them)."""
    if request.param == "sqlite":
        yield lambda **overrides: make_server(**{"demo_data": True, **overrides})
        return
    # Set up while this fixture is, so dropped after it stopped its servers (skips when PostgreSQL is not there).
    schema = str(request.getfixturevalue("postgres_schema"))
    started: list[ServerThread] = []

    def start(**overrides: object) -> ServerThread:
        server = make_server(
            **{"demo_data": True, "database_url": postgres_url(), "database_schema": schema, **overrides}
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def scarf_offer(tier: str, limit: int) -> pb.Offer:
    return bonus_offer(tier, "scarves", BONUS, limit=limit)


class Shop:
    """One server (or several sharing Redis and SQL), an offer with a budget for the members of one tier."""

    def __init__(self, servers: list[ServerThread], limit: int, *, budget_on_create: bool = True) -> None:
        self.servers = servers
        self.server = servers[0]
        self.tier = "gold"  # the demo member's: every test has servers of its own, so its offers reach only its members
        self.offer = scarf_offer(self.tier, limit if budget_on_create else 0)
        self.channel = self.server.channel()
        self.admin = admin_grpc.OfferAdminStub(self.channel)
        self.till = svc_grpc.OfferServiceStub(self.channel)
        self.admin.UpsertOffer(admin_pb.UpsertOfferRequest(offer=self.offer))
        self.wait_for_catalog()

    @property
    def offer_id(self) -> str:
        return self.offer.offer_id

    def set_limit(self, limit: int) -> None:
        self.offer.total_redemption_limit = limit
        self.admin.UpsertOffer(admin_pb.UpsertOfferRequest(offer=self.offer))
        self.wait_for_catalog()

    def wait_for_catalog(self) -> None:
        """Every server applies the offer as now defined (the others follow the catalog version within ~0.1 s)."""

        async def current(server: ServerThread) -> bool:
            live = server.service.components.catalog.current.offer(self.offer_id)
            return live is not None and live.total_redemption_limit == self.offer.total_redemption_limit

        def applied(server: ServerThread) -> bool:
            return server.run(current(server))

        for server in self.servers:
            wait_until(functools.partial(applied, server), message="catalog change not picked up")

    def member(self) -> str:
        return clone_samantha(self.admin, tier=self.tier)

    def buy(self, member: str | None = None) -> svc.PurchaseReceipt:
        receipt: svc.PurchaseReceipt = self.till.CommitPurchase(commit_request(basket(member or self.member(), SCARF)))
        return receipt

    def buy_at_once(self, count: int) -> list[svc.PurchaseReceipt]:
        """`count` members at once, spread over the servers."""
        requests = [
            (self.servers[i % len(self.servers)].target, commit_request(basket(self.member(), SCARF)))
            for i in range(count)
        ]

        async def commit_all() -> list[svc.PurchaseReceipt]:
            channels = {target: aio_channel_to(target) for target, _ in requests}
            try:
                stubs = {target: svc_grpc.OfferServiceStub(channel) for target, channel in channels.items()}
                calls = (stubs[target].CommitPurchase(request, timeout=30) for target, request in requests)
                return list(await asyncio.gather(*calls))
            finally:
                for channel in channels.values():
                    await channel.close(None)

        return asyncio.run(commit_all())

    def got_it(self, receipt: svc.PurchaseReceipt) -> bool:
        return any(a.offer_id == self.offer_id for a in receipt.evaluation.applied_offers)

    def sold_out(self, evaluation: pb.BasketEvaluation) -> bool:
        return not any(a.offer_id == self.offer_id for a in evaluation.applied_offers) and any(
            n.offer_id == self.offer_id and n.reason == "sold out" for n in evaluation.not_applied
        )

    def counter(self) -> bytes | None:
        key = self.server.service.components.customers_store.keys.offer_redemptions(self.offer_id)

        async def get() -> bytes | None:
            raw = await self.server.service.components.redis.get(key)
            assert raw is None or isinstance(raw, bytes)
            return raw

        return self.server.run(get())

    def lose_counter(self) -> None:
        """What a Redis restart without persistence or a flush does to it."""
        key = self.server.service.components.customers_store.keys.offer_redemptions(self.offer_id)

        async def delete() -> int:
            return int(await self.server.service.components.redis.delete(key))

        assert self.server.run(delete()) == 1

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def shop_factory() -> Iterator[Callable[..., Shop]]:
    shops: list[Shop] = []

    def make(servers: list[ServerThread], limit: int, **kwargs: bool) -> Shop:
        shop = Shop(servers, limit, **kwargs)
        shops.append(shop)
        return shop

    yield make
    for shop in shops:
        shop.close()


def test_a_lost_counter_is_rebuilt_from_sql_and_the_offer_sells_exactly_its_budget(
    start_server: Callable[..., ServerThread], shop_factory: Callable[..., Shop]
) -> None:
    shop = shop_factory([start_server()], limit=4)
    assert shop.counter() == b"0"  # a new offer's counter exists from the start: a missing one was lost
    assert all(shop.got_it(shop.buy()) for _ in range(3))
    shop.server.drain()
    shop.lose_counter()

    receipts = shop.buy_at_once(6)
    assert sum(shop.got_it(r) for r in receipts) == 1  # the 4th redemption, not 4 more
    assert all(shop.sold_out(r.evaluation) for r in receipts if not shop.got_it(r))
    assert all(r.evaluation.points_earned == 40 for r in receipts if not shop.got_it(r))
    assert shop.counter() == b"4"

    late = shop.till.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(shop.member(), SCARF)))
    assert shop.sold_out(late)
    listed = shop.till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=shop.member()))
    assert shop.offer_id not in {o.offer_id for o in listed.offers}


def test_servers_rebuilding_the_same_counter_at_once_agree(
    start_server: Callable[..., ServerThread], shop_factory: Callable[..., Shop]
) -> None:
    first = start_server()
    second = start_server(
        redis_prefix=first.settings.redis_prefix, database_url=first.settings.database_url, writer_enabled=False
    )
    shop = shop_factory([first, second], limit=3)
    assert shop.got_it(shop.buy())
    first.drain()
    shop.lose_counter()

    receipts = shop.buy_at_once(8)
    assert sum(shop.got_it(r) for r in receipts) == 2
    assert shop.counter() == b"3"


def test_redemptions_still_in_the_outbox_count_too(
    start_server: Callable[..., ServerThread], shop_factory: Callable[..., Shop]
) -> None:
    server = start_server(writer_enabled=False)  # SQL gets only what the test drains
    shop = shop_factory([server], limit=4)
    assert shop.got_it(shop.buy()) and shop.got_it(shop.buy())
    server.drain()
    assert shop.got_it(shop.buy())  # the 3rd: only in the outbox
    shop.lose_counter()

    receipts = shop.buy_at_once(5)
    assert sum(shop.got_it(r) for r in receipts) == 1
    assert shop.counter() == b"4"
    server.drain()  # and SQL agrees once written
    assert SqlBudgets(server.service.components.sql_engine).offer_redemptions(shop.offer_id) == 4


def test_a_return_after_the_loss_gives_its_redemption_back_once(
    start_server: Callable[..., ServerThread], shop_factory: Callable[..., Shop]
) -> None:
    server = start_server()
    shop = shop_factory([server], limit=2)
    alice = shop.member()
    bought = commit_request(basket(alice, SCARF))
    assert shop.got_it(shop.till.CommitPurchase(bought)) and shop.got_it(shop.buy())
    assert shop.sold_out(shop.buy().evaluation)
    server.drain()
    shop.lose_counter()

    back = shop.till.ReturnPurchase(
        svc.ReturnPurchaseRequest(
            return_id=f"ret-{uuid.uuid4().hex[:12]}",
            transaction_id=bought.transaction_id,
            store_id=bought.basket.store_id,
            customer_id=alice,
            lines=[svc.ReturnLine(line_id=SCARF[0], quantity=1)],
        )
    )
    assert list(back.offers_lost) == [shop.offer_id]
    assert shop.counter() is None  # its release neither restarted the counter nor drove it negative

    assert shop.got_it(shop.buy())  # the redemption the return gave back: 2 sold, 1 taken back
    assert shop.sold_out(shop.buy().evaluation)
    assert shop.counter() == b"2"


def test_a_budget_added_to_an_offer_counts_what_it_was_earned_before(
    start_server: Callable[..., ServerThread], shop_factory: Callable[..., Shop]
) -> None:
    server = start_server()
    shop = shop_factory([server], limit=3, budget_on_create=False)
    assert shop.got_it(shop.buy()) and shop.got_it(shop.buy())
    assert shop.counter() is None
    shop.set_limit(3)  # "times it may be earned across all customers": two already were

    assert shop.got_it(shop.buy())
    assert shop.sold_out(shop.buy().evaluation)
    assert shop.counter() == b"3"


def test_listing_after_a_loss_rebuilds_the_counter_so_a_sold_out_offer_stops_showing(
    start_server: Callable[..., ServerThread], shop_factory: Callable[..., Shop]
) -> None:
    shop = shop_factory([start_server()], limit=2)
    assert all(shop.got_it(shop.buy()) for _ in range(2))
    shop.server.drain()
    shop.lose_counter()
    member = shop.member()
    # Nobody commits: the app only lists. The first listing cannot know yet; it starts the rebuild.
    shop.till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=member))
    wait_until(lambda: shop.counter() is not None, message="the listing did not start a rebuild of the lost counter")
    assert shop.counter() == b"2"
    listed = shop.till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=member))
    assert shop.offer_id not in {o.offer_id for o in listed.offers}


# The races with reservations and returns in flight (a review's reproductions) are chosen with gates on the use
# cases' fakes (tests/usecases/test_races.py) and on the counters' scripts (tests/integration/test_budget_counters.py).
