"""API keys on the wire: every call carries `authorization: Bearer <secret>`.

`PosOffersClient` does this itself (from `api_key=` or POS_OFFERS_API_KEY); these helpers are for callers that
build their own stubs on a channel.
"""

from __future__ import annotations

import os
from typing import Any

import grpc

API_KEY_ENV = "POS_OFFERS_API_KEY"


def api_key_from_env() -> str:
    return os.environ.get(API_KEY_ENV, "").strip()


def bearer_metadata(secret: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {secret}")


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def _with_key(metadata: Any, header: tuple[str, str]) -> tuple[tuple[str, str | bytes], ...]:
    kept = tuple((k, v) for k, v in (metadata or ()) if k != "authorization")
    return (*kept, header)


class BearerKey(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]  # generic only in the stubs
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the key to every call of a channel: grpc.intercept_channel(channel, BearerKey(secret))."""

    def __init__(self, secret: str) -> None:
        self._header = bearer_metadata(secret)

    def _keyed(self, details: Any) -> _Details:
        return _Details(details, _with_key(details.metadata, self._header))

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._keyed(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._keyed(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return continuation(self._keyed(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return continuation(self._keyed(client_call_details), request_iterator)


class _AioBearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    def __init__(self, secret: str) -> None:
        self._header = bearer_metadata(secret)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*_with_key(client_call_details.metadata, self._header)),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def aio_bearer_interceptors(secret: str) -> Any:
    """For grpc.aio.insecure_channel(target, interceptors=...) or secure_channel: a list of one interceptor."""
    return [_AioBearer(secret)]
