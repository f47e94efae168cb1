"""Access log lines an SRE can search: request id, method, status, duration, store, terminal; never a customer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import grpc
import pytest
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc

from telemetry.logs import JsonFormatter
from tests.support.builders import DRESS, SHOES, basket, commit_request
from tests.support.server_thread import ServerThread
from tests.support.waiting import wait_until


def _rpc_records(caplog: pytest.LogCaptureFixture, expected: int) -> list[logging.LogRecord]:
    """The access lines, once `expected` of them are there: a line is written just after the status is sent."""

    def enough() -> list[logging.LogRecord]:
        records = [r for r in caplog.records if r.name == "pos_offers.access" and r.getMessage() == "rpc"]
        return records if len(records) >= expected else []

    return wait_until(enough, timeout=5, message=f"fewer than {expected} access log lines")


def test_each_rpc_logs_one_json_line_with_the_callers_request_id(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    server = make_server(demo_data=True, log_hash_salt="pepper")
    with server.channel() as channel:
        stub = svc_grpc.OfferServiceStub(channel)
        _, call = stub.CommitPurchase.with_call(
            commit_request(basket("samantha", DRESS, SHOES)), metadata=(("x-request-id", "till7-req-0001"),)
        )
        assert ("x-request-id", "till7-req-0001") in tuple(call.trailing_metadata() or ())
        with pytest.raises(grpc.RpcError):
            stub.GetProfile(svc.GetProfileRequest(customer_id="nobody-here"))

    records = _rpc_records(caplog, 2)
    commit = next(r for r in records if r.__dict__.get("method") == "CommitPurchase")
    line = json.loads(JsonFormatter().format(commit))
    assert line["request_id"] == "till7-req-0001"
    assert line["status"] == "OK" and line["duration_ms"] > 0
    assert line["store_id"] == "soho" and line["terminal_id"] == "till-7"
    assert len(line["customer_hash"]) == 16
    missing = next(r for r in records if r.__dict__.get("method") == "GetProfile")
    assert missing.__dict__["status"] == "NOT_FOUND"
    # No customer id in any line, only its salted hash.
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "samantha" not in text and "nobody-here" not in text


def test_customer_ids_can_be_left_out_entirely(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    server = make_server(demo_data=True, log_customer_ids="omit")
    with server.channel() as channel:
        svc_grpc.OfferServiceStub(channel).GetProfile(svc.GetProfileRequest(customer_id="samantha"))
    (record,) = [r for r in _rpc_records(caplog, 1) if r.__dict__.get("method") == "GetProfile"]
    assert "customer_hash" not in record.__dict__


def test_access_log_can_be_switched_off_but_errors_are_still_logged(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    server = make_server(demo_data=True, access_log=False)
    with server.channel() as channel:
        stub = svc_grpc.OfferServiceStub(channel)
        stub.GetProfile(svc.GetProfileRequest(customer_id="samantha"))
        with pytest.raises(grpc.RpcError):
            stub.GetProfile(svc.GetProfileRequest(customer_id="nobody-here"))
    assert [r.__dict__["status"] for r in _rpc_records(caplog, 1)] == ["NOT_FOUND"]
