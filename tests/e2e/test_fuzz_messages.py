"""Arbitrary messages for every RPC of the contract, as a fuzzer (or a broken client) sends them: every call ends
in a status the service means (never UNKNOWN, never INTERNAL), quotes no internals, and the server stays healthy.

Messages are drawn from the contract's descriptors, so an RPC or field added later is fuzzed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from posoffers.v1 import admin_service_pb2, offer_service_pb2

from tests.conftest import build_settings
from tests.support.redis_env import delete_prefix
from tests.support.server_thread import ServerThread

METHODS: list[MethodDescriptor] = [
    method
    for module, name in ((offer_service_pb2, "OfferService"), (admin_service_pb2, "OfferAdmin"))
    for method in module.DESCRIPTOR.services_by_name[name].methods
]
# What the service's own statuses never are: gRPC's fallbacks, and the interceptor's answer to a bug.
UNMEANT = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
INTERNALS = ("Traceback", "Error:", "Exception", 'File "', "redis", "sqlalchemy")

# Values a hostile caller tries: empty, huge, odd unicode, extremes; ids that exist in the demo data too.
TEXT = st.one_of(
    st.sampled_from(["", "samantha", "soho", "dress-shoes-2x", "USD", "dresses", " ", "\x00", "é" * 300]),
    st.text(max_size=40),
    st.text(min_size=129, max_size=3000),
)
INT64 = st.one_of(st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1))
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: TEXT,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return st.builds(
                lambda s, n: {"seconds": s, "nanos": n},
                st.integers(-62135596800, 253402300799),
                st.integers(0, 999_999_999),
            )
        return _fields(field.message_type, depth + 1)
    if field.enum_type is not None:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 50))
    return SCALARS.get(field.type, INT64)


def _fields(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the message's fields, each with a value of its type (lists of a few; nesting kept shallow)."""
    if depth > 3:
        return st.just({})
    entries: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            entries[field.name] = st.dictionaries(TEXT, _value(value_field, depth), max_size=3)
        elif field.is_repeated:
            entries[field.name] = st.lists(_value(field, depth), max_size=4)
        else:
            entries[field.name] = _value(field, depth)
    return st.fixed_dictionaries({}, optional=entries)


def _message(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = GetMessageClass(descriptor)()
    _fill(message, values)
    return message


def _fill(message: Message, values: dict[str, Any]) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        field = fields[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, name)
            for key, item in value.items():
                if isinstance(item, dict):
                    _fill(target[key], item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target = getattr(message, name)
            for item in value:
                if isinstance(item, dict):
                    _fill(target.add(), item)
                else:
                    target.append(item)
        elif isinstance(value, dict):
            _fill(getattr(message, name), value)
        else:
            setattr(message, name, value)


CALLS = st.sampled_from(METHODS).flatmap(lambda m: st.tuples(st.just(m), _fields(m.input_type)))


@pytest.fixture(scope="module")
def fuzzed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    """A server of this module's own: the fuzzer may change its catalog and members."""
    server = ServerThread(build_settings(redis_url, tmp_path_factory.mktemp("fuzzed"), demo_data=True))
    try:
        with server.channel() as channel:
            yield channel
    finally:
        server.stop()
        delete_prefix(redis_url, server.settings.redis_prefix)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=CALLS)
def test_every_rpc_answers_arbitrary_messages_with_a_meant_status(
    fuzzed: grpc.Channel, call: tuple[MethodDescriptor, dict[str, Any]]
) -> None:
    method, values = call
    request = _message(method.input_type, values)
    path = f"/{method.containing_service.full_name}/{method.name}"
    send = fuzzed.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        send(request.SerializeToString(), timeout=10)
    except grpc.RpcError as raised:
        error = cast(grpc.Call, raised)
        details = error.details() or ""
        assert error.code() not in UNMEANT, f"{method.name}: {error.code()} {details!r} for {request}"
        # A word the caller sent may come back quoted (e.g. a customer id "redis"); any other is a leak.
        leaked = [word for word in INTERNALS if word in details and word not in str(request)]
        assert not leaked, f"{method.name} quotes internals: {details!r}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=200))
def test_every_rpc_answers_random_bytes_with_a_meant_status(
    fuzzed: grpc.Channel, method: MethodDescriptor, payload: bytes
) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    send = fuzzed.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        send(payload, timeout=10)
    except grpc.RpcError as raised:
        error = cast(grpc.Call, raised)
        assert error.code() not in UNMEANT, f"{method.name}: {error.code()} {error.details()!r} for {payload!r}"


def test_the_server_is_healthy_after_the_fuzzing(fuzzed: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(fuzzed).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
