"""Standard gRPC services beside ours: health that follows Redis, reflection for grpcurl, Prometheus text."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from tests.integration.sql_queries import ledger_balance
from tests.support.server_thread import ServerThread, channel_to
from tests.support.waiting import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)


def test_health_is_serving_for_the_server_and_each_service(server_target: str) -> None:
    for service in ("", "posoffers.v1.OfferService", "posoffers.v1.OfferAdmin"):
        assert _health(server_target, service) == SERVING


def test_reflection_lists_our_services(server_target: str) -> None:
    with channel_to(server_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"posoffers.v1.OfferService", "posoffers.v1.OfferAdmin", "grpc.health.v1.Health"} <= names


def test_reflection_can_be_switched_off(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(reflection=False)
    with server.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            list(stub.ServerReflectionInfo(iter([request]), timeout=5))
            raise AssertionError("reflection answered although switched off")
        except grpc.RpcError as err:
            assert err.code() is grpc.StatusCode.UNIMPLEMENTED


def test_health_follows_redis_and_requests_fail_unavailable(make_server: Callable[..., ServerThread]) -> None:
    # Its own embedded Redis, so stopping it disturbs nobody else.
    server = make_server(redis_url="", demo_data=True)
    assert _health(server.target) == SERVING
    assert server.service.embedded is not None
    server.service.embedded.stop()
    # The server probes Redis once a second.
    wait_until(lambda: _health(server.target) == NOT_SERVING, message="health still SERVING with Redis down")
    with server.channel() as channel:
        try:
            svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id="samantha"), timeout=10)
            raise AssertionError("served a profile with Redis down")
        except grpc.RpcError as err:
            assert err.code() is grpc.StatusCode.UNAVAILABLE
            assert "Traceback" not in (err.details() or "")


def test_metrics_are_exposed_in_prometheus_text(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(metrics_listen="127.0.0.1:0", demo_data=True)
    with server.channel() as channel:
        svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id="samantha"))
    port = server.service.metrics_port
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="GetProfile"' in body
    assert "grpc_server_handling_seconds_bucket" in body
    assert "samantha" not in body  # never a customer id in a label


def test_graceful_stop_reports_not_serving_first(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    server.run(server.service.health.enter_graceful_shutdown())
    assert _health(server.target) == NOT_SERVING


def test_writer_child_process_writes_and_is_restarted_when_it_dies(make_server: Callable[..., ServerThread]) -> None:
    import os
    import signal

    from tests.e2e.conftest import clone_samantha
    from tests.support.builders import DRESS, SHOES, basket, commit_request

    def wait_for_sql(member: str, points: int) -> None:
        wait_until(
            lambda: ledger_balance(server.service.components.sql_engine, member) == points,
            timeout=30,
            interval=0.05,
            message="purchase never reached SQL",
        )

    server = make_server(writer_process=True, demo_data=True)
    with server.channel() as channel:
        till = svc_grpc.OfferServiceStub(channel)
        from posoffers.v1 import admin_service_pb2_grpc as admin_grpc

        admin = admin_grpc.OfferAdminStub(channel)
        first = clone_samantha(admin)
        till.CommitPurchase(commit_request(basket(first, DRESS, SHOES)))
        wait_for_sql(first, 500 + 329)

        old_pid = server.service.writer_pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        second = clone_samantha(admin)
        till.CommitPurchase(commit_request(basket(second, DRESS, SHOES)))
        wait_for_sql(second, 500 + 329)
        assert server.service.writer_pid != old_pid


def test_sql_outage_takes_admin_out_of_service_but_not_the_tills(
    make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server(demo_data=True)
    repo = server.service.components.sql_profiles

    def sql_down() -> None:
        raise OSError("connection refused")  # what an unreachable database looks like to the probe

    monkeypatch.setattr(repo, "ping", sql_down)
    wait_until(
        lambda: _health(server.target, "posoffers.v1.OfferAdmin") == NOT_SERVING,
        message="admin still SERVING with SQL down",
    )
    assert _health(server.target, "posoffers.v1.OfferService") == SERVING
    assert _health(server.target) == SERVING
    with server.channel() as channel:
        profile = svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id="samantha"))
    assert profile.customer_id == "samantha"
