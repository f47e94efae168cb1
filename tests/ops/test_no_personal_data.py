"""After real till traffic, nothing the service logs or exports as metrics names a member: not her id, not her
name, not where she lives (the access log carries a salted hash; metric labels are bounded and name no one); and
no API key's secret appears there either (the log names a key by its id)."""

from __future__ import annotations

import grpc
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from server.demo import CUSTOMER_ID, SAMANTHA_HOME, demo_customer
from tests.ops.conftest import RPC_TIMEOUT_S, Service, drive_traffic
from tests.support.keys import keyed_channel


def rate_limited_call(service: Service) -> None:
    """A key of 1 call/s asks about the member until its limit refuses it (the second call, on any machine that
    answers within a second), so the refusal's log line and metrics are in the run too."""
    with keyed_channel(service.target, service.key("admin")) as channel:
        request = admin_pb.CreateApiKeyRequest(
            key=admin_pb.ApiKey(name="slow app", role=admin_pb.API_KEY_ROLE_APP, rate_limit_per_second=1)
        )
        secret = admin_grpc.OfferAdminStub(channel).CreateApiKey(request, timeout=RPC_TIMEOUT_S).secret
    with keyed_channel(service.target, secret) as channel:
        app = svc_grpc.OfferServiceStub(channel)
        for _ in range(10):
            try:
                app.GetProfile(svc.GetProfileRequest(customer_id=CUSTOMER_ID), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as refused:
                assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                return
    raise AssertionError("ten calls at 1/s were never refused")


def test_logs_and_metrics_of_a_run_name_no_member(service: Service) -> None:
    drive_traffic(service, seconds=1.0)
    rate_limited_call(service)
    member = demo_customer()
    personal = {
        "customer id": CUSTOMER_ID,
        "name": member.display_name,
        "home latitude": f"{SAMANTHA_HOME.latitude}",
        "home longitude": f"{SAMANTHA_HOME.longitude}",
        # Every demo key's secret (the traffic used the pos one; the random part alone must not leak either).
        **{f"{role} key secret": service.key(role).rsplit("_", 1)[-1] for role in ("admin", "pos", "app")},
    }
    # The JSON log lines (stderr); the human start-up banner on stdout names the demo member on purpose.
    log_lines = [line for line in service.child.log.read_text().splitlines() if line.startswith("{")]
    assert len(log_lines) > 10, "the run logged too little to tell"
    assert any('"key_id"' in line for line in log_lines), "the access log should name the calling key by its id"
    metrics = service.scrape()
    for what, value in personal.items():
        assert not [line for line in log_lines if value in line], f"the log names the member's {what}"
        assert value not in metrics, f"the metrics name the member's {what}"
