"""The profile in SQL follows the order Redis applied changes in, whatever the servers' clocks said: a member
rebuilt from SQL looks as she did in Redis."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from server.demo import demo_customer
from server.rpc.convert import customer_to_pb
from tests.support.server_thread import ServerThread


def test_concurrent_crm_updates_leave_redis_and_sql_agreeing(
    make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server(demo_data=True)
    channel = server.channel()
    admin, till = admin_grpc.OfferAdminStub(channel), svc_grpc.OfferServiceStub(channel)
    member = f"cust-{uuid.uuid4().hex[:8]}"
    profile = customer_to_pb(demo_customer(member))
    admin.UpsertCustomer(admin_pb.UpsertCustomerRequest(customer=profile))

    customers = server.service.components.customers_store
    upsert = customers.upsert_customer
    one_stamped = threading.Event()  # "one" has its timestamp and is on its way to Redis
    two_applied = asyncio.Event()  # on the server's loop

    async def one_lands_after_two(state: Any, record: Any, **kw: Any) -> Any:
        if state.display_name == "one":
            one_stamped.set()
            async with asyncio.timeout(10):  # a slow Redis round trip, a GC pause, another server's call...
                await two_applied.wait()
            return await upsert(state, record, **kw)
        applied = await upsert(state, record, **kw)
        if state.display_name == "two":
            two_applied.set()
        return applied

    monkeypatch.setattr(customers, "upsert_customer", one_lands_after_two)

    def rename(name: str) -> None:
        changed = admin_pb.UpsertCustomerRequest(customer=profile)
        changed.customer.display_name = name
        admin.UpsertCustomer(changed)

    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(rename, "one")  # stamped first, runs last
        assert one_stamped.wait(10), "the first rename never reached Redis"
        two = pool.submit(rename, "two")
        one.result(10), two.result(10)
    in_redis = till.GetProfile(svc.GetProfileRequest(customer_id=member)).display_name
    server.drain()
    server.run(customers.forget_customer(member))  # Redis loses her (or an expiry-job TTL ran out)
    from_sql = till.GetProfile(svc.GetProfileRequest(customer_id=member)).display_name
    channel.close()
    assert in_redis == from_sql, f"Redis showed {in_redis!r}; rebuilt from SQL she is {from_sql!r}"
