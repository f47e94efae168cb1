"""Streaming methods under the same keys as the unary ones: server reflection for any valid key, any other
streaming method by the role policy; and the refusal counter both paths share."""

from __future__ import annotations

from typing import Any

import grpc

from domain.errors import PermissionDenied, Unauthenticated
from server.rpc.authorization import Guard
from telemetry import metrics

REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"


def short_method(full_method: str) -> tuple[str, str]:
    """("posoffers.v1.OfferService", "OfferService/CommitPurchase") from "/posoffers.v1.OfferService/CommitPurchase"."""
    service, method = full_method.lstrip("/").split("/", 1)
    return service, f"{service.rsplit('.', 1)[-1]}/{method}"


def guarded_stream(
    handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails, guard: Guard
) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming method: server reflection for a valid key of any role (describing the contract moves nothing);
    any other (none is served today) only for the roles the policy names, so admin-only until its issue opens it."""
    service, method = short_method(details.method)

    async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            if service == REFLECTION_SERVICE:
                guard.admit_any(details.invocation_metadata)
            else:
                guard.admit(method, details.invocation_metadata)
        except (Unauthenticated, PermissionDenied) as exc:
            count_refusal(method, exc)
            code = STATUS_OF_REFUSAL[type(exc)]
            await context.abort(code, exc.message)

    codec = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.stream_unary is not None:
        stream_unary: Any = handler.stream_unary

        async def one_answer(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await admit(context)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(one_answer, **codec)
    inner: Any = handler.stream_stream or handler.unary_stream  # aio: async generators

    async def answers(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await admit(context)
        async for response in inner(request, context):
            yield response

    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(answers, **codec)
    return grpc.unary_stream_rpc_method_handler(answers, **codec)


STATUS_OF_REFUSAL = {
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def count_refusal(method: str, exc: Exception) -> None:
    service, name = method.split("/", 1)
    reason = exc.reason if isinstance(exc, Unauthenticated) else "permission"
    metrics.AUTH_REFUSED.labels(service, name, reason).inc()
