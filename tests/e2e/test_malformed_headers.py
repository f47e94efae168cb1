"""Headers no gRPC library sends, written by hand in HTTP/2 to a real server.

What our code can answer, it answers INVALID_ARGUMENT with a request id (a request id gRPC cannot send back). What the
gRPC core refuses before our code can answer is pinned here with the status the core gives, so that a gRPC upgrade
that changes it is noticed (docs/decisions.md lists them); each such call still leaves one access log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from posoffers.v1 import offer_service_pb2 as svc

from domain.access import Role
from tests.support.raw_h2 import RawAnswer, grpc_frame, raw_call
from tests.support.server_thread import key_for
from tests.support.waiting import wait_until

PATH = "/posoffers.v1.OfferService/GetProfile"
OK, INVALID_ARGUMENT, INTERNAL, UNAUTHENTICATED = 0, 3, 13, 16


@dataclass(frozen=True)
class Probe:
    headers: list[tuple[str, str]]
    compressed: bool = False  # the message's compressed-flag byte set (its bytes are not compressed)


def send(target: str, customer_id: str, probe: Probe, *, key: str | None = None) -> RawAnswer:
    body = svc.GetProfileRequest(customer_id=customer_id).SerializeToString()
    auth = [] if key is None else [("authorization", f"Bearer {key}")]
    return raw_call(target, PATH, auth + probe.headers, frame=grpc_frame(body, compressed=probe.compressed))


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pos_offers.access" and r.getMessage() == "rpc"]


def one_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (line,) = wait_until(lambda: access_lines(caplog), message="no access log line")
    return line


@pytest.fixture
def till(server_target: str, fresh_customer_id: str) -> Callable[[Probe], RawAnswer]:
    key = key_for(server_target, Role.POS)
    return lambda probe: send(server_target, fresh_customer_id, probe, key=key)


# -- fixed: answered by our code ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    ["till-7\tsale-12", "caf\u00e9-1", "x" * 129],
    ids=["a tab", "not ASCII", "too long"],
)
def test_a_request_id_grpc_cannot_send_back_is_invalid_argument_under_a_fresh_id(
    till: Callable[[Probe], RawAnswer], request_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    answer = till(Probe([("x-request-id", request_id)]))
    assert (answer.status, answer.message) == (
        INVALID_ARGUMENT,
        "x-request-id: must be 1 to 128 printable ASCII characters",
    )
    fresh = answer.headers["x-request-id"]
    assert len(fresh) == 32 and fresh != request_id  # was: INTERNAL "Invalid metadata", and no request id
    line = one_line(caplog)
    assert (line.__dict__["status"], line.__dict__["request_id"]) == ("INVALID_ARGUMENT", fresh)


def test_a_well_formed_request_id_comes_back(till: Callable[[Probe], RawAnswer]) -> None:
    answer = till(Probe([("x-request-id", "till-7 sale-12:a/b")]))
    assert answer.status == OK and answer.headers["x-request-id"] == "till-7 sale-12:a/b"


def test_a_tab_in_the_authorization_header_is_a_malformed_key(server_target: str, fresh_customer_id: str) -> None:
    key = key_for(server_target, Role.POS)
    answer = send(server_target, fresh_customer_id, Probe([("authorization", f"Bearer\t{key}")]))
    assert answer.status == UNAUTHENTICATED and "malformed authorization" in answer.message


@pytest.mark.parametrize(
    "probe",
    [
        Probe([("grpc-encoding", "identity")]),
        Probe([("grpc-encoding", "gzip")]),  # gzip announced, message sent uncompressed: allowed
        Probe([("x-till-note", "a\tb")]),  # a tab in a header we never send back
        Probe([("x-till-note", "a\x7fb")]),
        Probe([("grpc-timeout", "99999999H")]),  # the longest timeout the format allows
        Probe([("grpc-accept-encoding", "snappy,\tzz")]),
    ],
    ids=["identity", "gzip, uncompressed", "tab elsewhere", "DEL elsewhere", "huge timeout", "odd accept-encoding"],
)
def test_headers_that_are_odd_but_harmless_are_served(till: Callable[[Probe], RawAnswer], probe: Probe) -> None:
    assert till(probe).status == OK


def test_a_call_that_ends_without_its_message_is_invalid_argument(server_target: str) -> None:
    key = key_for(server_target, Role.POS)
    answer = raw_call(server_target, PATH, [("authorization", f"Bearer {key}")], frame=b"")
    assert (answer.status, answer.message) == (INVALID_ARGUMENT, "request: no request message arrived")
    assert "x-request-id" in answer.headers


# -- documented: the gRPC core answers before our code can ---------------------------------------------------------

CORE_REFUSES = {
    "unknown grpc-encoding": (Probe([("grpc-encoding", "snappy")]), "Error parsing 'grpc-encoding' metadata"),
    "compressed, no grpc-encoding": (Probe([], compressed=True), "Compression bit set but no encoding configured"),
    "compressed, identity": (
        Probe([("grpc-encoding", "identity")], compressed=True),
        "Compression bit set but no encoding configured",
    ),
    "compressed, not gzip": (
        Probe([("grpc-encoding", "gzip")], compressed=True),
        "Decompression failed due to zlib error",
    ),
    "garbage grpc-timeout": (Probe([("grpc-timeout", "garbage")]), "Error parsing 'grpc-timeout' metadata"),
    "unit-less grpc-timeout": (Probe([("grpc-timeout", "100")]), "Error parsing 'grpc-timeout' metadata"),
    "upper-case header name": (Probe([("X-Till-Note", "a")]), "Illegal header key: X-Till-Note"),
    "-bin header not base64": (
        Probe([("x-till-note-bin", "!!!")]),
        "Error parsing 'x-till-note-bin' metadata: illegal base64 encoding",
    ),
}


@pytest.mark.parametrize(("probe", "message"), CORE_REFUSES.values(), ids=CORE_REFUSES.keys())
def test_what_the_grpc_core_refuses_itself(
    till: Callable[[Probe], RawAnswer], probe: Probe, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    """INTERNAL from grpcio 1.85: the core fails the call while parsing headers or reading the message, before our
    code can answer. If a gRPC upgrade changes a status here, update docs/decisions.md (and, if it became
    INVALID_ARGUMENT, rejoice)."""
    caplog.set_level(logging.INFO, logger="pos_offers.access")
    answer = till(probe)
    assert (answer.status, answer.message) == (INTERNAL, message)
    assert "x-request-id" not in answer.headers  # the core's status, not ours
    # Our code still saw the call begin: one access log line, the message never read.
    line = one_line(caplog)
    assert line.__dict__["status"] == "CANCELLED" and line.__dict__["request_received"] is False
