"""The production shape: the unified profile in PostgreSQL (own schema), written behind the till path."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from domain.model import PurchaseKey
from tests.conftest import postgres_url
from tests.e2e.conftest import clone_samantha
from tests.e2e.test_pending_points import assert_pending_points_survive_a_rebuild
from tests.integration.sql_queries import ledger_balance, list_categories
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread

pytestmark = pytest.mark.postgres


def test_story_on_postgres_including_redis_loss(postgres_schema: str, make_server: Callable[..., ServerThread]) -> None:
    server = make_server(demo_data=True, database_url=postgres_url(), database_schema=postgres_schema)
    with server.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        member = clone_samantha(admin_grpc.OfferAdminStub(channel))
        request = commit_request(basket(member, DRESS, SHOES))
        receipt = till.CommitPurchase(request)
        assert [a.offer_id for a in receipt.evaluation.applied_offers] == ["dress-shoes-2x"]
        server.drain()
        engine = server.service.components.sql_engine
        assert ledger_balance(engine, member) == 500 + 329
        assert "shoes" in list_categories(engine, member)

        server.run(
            server.service.components.customers_store.forget_customer(
                member, [PurchaseKey(request.basket.store_id, request.transaction_id)]
            )
        )
        again = till.CommitPurchase(request)
        assert again.replayed
        profile = till.GetProfile(svc.GetProfileRequest(customer_id=member))
        assert profile.points_balance == 500 + 329 and "shoes" in profile.categories_purchased


def test_pending_points_on_postgres_survive_a_rebuild(
    postgres_schema: str, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server(
        demo_data=True, database_url=postgres_url(), database_schema=postgres_schema, points_pending_days=14
    )
    assert_pending_points_survive_a_rebuild(server)
