"""The gRPC server: servicers, the interceptor, health and reflection, on the components bootstrap wired."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from posoffers.v1 import admin_service_pb2, admin_service_pb2_grpc, offer_service_pb2, offer_service_pb2_grpc

from server.bootstrap import Components
from server.config import Settings
from server.rpc.audit import AdminAudit
from server.rpc.authorization import Guard
from server.rpc.call_facts import RequestFacts
from server.rpc.dropped_calls import CoreDrops
from server.rpc.interceptors import ServerInterceptor, initialize_rpc_metrics
from server.rpc.profile_fields import ProfileFields
from server.rpc.rate_limiting import RateGate
from server.rpc.servicers import AdminServicer, OfferServicer
from server.rpc.transport import ServerCertificates, certificate_stores

SERVICES = (
    offer_service_pb2.DESCRIPTOR.services_by_name["OfferService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["OfferAdmin"],
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)


def profile_fields(settings: Settings) -> ProfileFields:
    """What GetProfile shows pos and app keys; ValueError naming the setting when a field is unknown or forbidden."""
    return ProfileFields(pos=settings.pos_profile_fields, app=settings.app_profile_fields)


CREATE_KEY = "OfferAdmin/CreateApiKey"


def build_server(c: Components) -> tuple[grpc.aio.Server, HealthServicer, CoreDrops]:
    settings = c.settings
    narrowing = certificate_stores if settings.tls_client_ca else None  # mutual TLS: certificates name stores
    guard = Guard(c.key_ring, narrowing) if settings.auth else None
    interceptor = ServerInterceptor(
        guard=guard,
        access_log=settings.access_log,
        facts=RequestFacts(settings.log_customer_ids, settings.log_hash_salt),
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        max_call_s=settings.max_call_ms / 1000,
        audit=AdminAudit(
            c.audit, c.refusals, guard, c.clock, undo={CREATE_KEY: lambda r: c.api_keys.revoke(r.key.key_id)}
        ),
        limits=RateGate(c.rate_limiter),
    )
    drops = CoreDrops(lambda: interceptor.received)
    options = [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.max_connection_idle_ms", settings.max_connection_idle_ms),
        ("grpc.max_connection_age_ms", settings.max_connection_age_ms),
        ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_ms),
        ("grpc.enable_channelz", 1),  # the default; CoreDrops counts from it
    ]
    # The bound is the interceptor's (max_concurrent_rpcs), not grpc.aio's: grpc.aio refuses beyond its own after
    # the interceptor has looked the method up but before any of its code runs, so nothing would log or count it.
    server = drops.create(lambda: grpc.aio.server(interceptors=[interceptor], options=options))
    offer_service_pb2_grpc.add_OfferServiceServicer_to_server(
        OfferServicer(c.offers, c.commits, c.returns, c.customers, profile_fields(settings)), server
    )
    admin = AdminServicer(c.admin, c.customers, c.expiry, c.api_keys, c.audit, c.adjustments, c.privacy)
    admin_service_pb2_grpc.add_OfferAdminServicer_to_server(admin, server)
    initialize_rpc_metrics(SERVICES)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.reflection:
        names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    return server, health, drops


def listen(server: grpc.aio.Server, settings: Settings) -> tuple[int, ServerCertificates | None]:
    """Binds the listen address: TLS (mutual with a client CA) when certificates are set, else plaintext (which
    the settings allow only on loopback or with POS_OFFERS_ALLOW_PLAINTEXT). (port, the reloadable certificates)."""
    if not settings.tls_cert:
        return server.add_insecure_port(settings.listen), None
    certificates = ServerCertificates(settings)
    return server.add_secure_port(settings.listen, certificates.credentials()), certificates


async def set_health(health: HealthServicer, *, till: bool, admin: bool) -> None:
    """The till path (OfferService, and the server as a whole) and the admin API are reported separately."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    offer_service, admin_service = SERVICE_NAMES
    await health.set("", serving if till else not_serving)
    await health.set(offer_service, serving if till else not_serving)
    await health.set(admin_service, serving if admin else not_serving)
