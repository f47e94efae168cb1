"""An offer's total redemption budget holds across customers racing at the tills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from tests.e2e.conftest import clone_samantha
from tests.support.builders import basket, bonus_offer, commit_request
from tests.support.server_thread import ServerThread, aio_channel_to

SCARF = ("scarf-1", "SKU-SCARF", "scarves", 1, 4_000)


async def _commit_all(target: str, requests: list[svc.CommitPurchaseRequest]) -> list[svc.PurchaseReceipt]:
    async with aio_channel_to(target) as channel:
        stub = svc_grpc.OfferServiceStub(channel)
        return list(await asyncio.gather(*(stub.CommitPurchase(r, timeout=30) for r in requests)))


def test_total_budget_is_never_exceeded_and_a_sold_out_offer_disappears(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(demo_data=True)  # its own: a new offer changes what every member earns
    with server.channel() as channel:
        admin, till = admin_grpc.OfferAdminStub(channel), svc_grpc.OfferServiceStub(channel)
        offer = bonus_offer("gold", "scarves", 500, limit=3)  # for the first three members only
        admin.UpsertOffer(admin_pb.UpsertOfferRequest(offer=offer))
        members = [clone_samantha(admin) for _ in range(8)]  # gold, like the demo member

        receipts = asyncio.run(_commit_all(server.target, [commit_request(basket(m, SCARF)) for m in members]))
        winners = [r for r in receipts if any(a.offer_id == offer.offer_id for a in r.evaluation.applied_offers)]
        assert len(winners) == 3
        assert all(r.evaluation.points_earned == 40 + 500 for r in winners)
        assert all(r.evaluation.points_earned == 40 for r in receipts if r not in winners)
        counter = server.service.components.customers_store.keys.offer_redemptions(offer.offer_id)
        redis = server.service.components.redis

        async def used() -> int:
            return int(await redis.get(counter) or 0)

        assert server.run(used()) == 3  # nothing leaked or lost

        latecomer = clone_samantha(admin)
        listed = till.ListActiveOffers(svc.ListActiveOffersRequest(customer_id=latecomer))
        assert offer.offer_id not in {o.offer_id for o in listed.offers}
        late = till.EvaluateBasket(svc.EvaluateBasketRequest(basket=basket(latecomer, SCARF)))
        assert not late.applied_offers
