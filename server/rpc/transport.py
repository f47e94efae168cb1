"""Transport security: the server's TLS credentials (reloadable), and the stores a client certificate names.

With POS_OFFERS_TLS_CERT/KEY the server listens with TLS only; with POS_OFFERS_TLS_CLIENT_CA every connection
must present a certificate that CA signed (mutual TLS). The credentials are gRPC's dynamic ones: gRPC asks
`ServerCertificates` before each new handshake whether the certificate changed, so `reload()` (SIGHUP) rotates
the server certificate and the client CA without a restart; connections already open keep theirs until they
close (at most POS_OFFERS_MAX_CONNECTION_AGE_MS).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import grpc

from server.config import Settings, check_tls_files

log = logging.getLogger(__name__)

STORE_URI_PREFIX = "urn:pos-offers:store:"
"""A client certificate's SAN URI `urn:pos-offers:store:<id>` names a store its terminal acts for."""

_PEER_URI = "peer_uri"  # gRPC's auth-context property: the URI SANs of the verified peer certificate


class ServerCertificates:
    """The server's certificate (and client CA) as gRPC credentials that a reload can swap."""

    def __init__(self, settings: Settings) -> None:
        self._cert, self._key, self._client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._initial = self._load()

    @property
    def mutual(self) -> bool:
        return bool(self._client_ca)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        check_tls_files(self._cert, self._key, self._client_ca)
        pair = (Path(self._key).read_bytes(), Path(self._cert).read_bytes())
        roots = Path(self._client_ca).read_bytes() if self._client_ca else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)

    def credentials(self) -> grpc.ServerCredentials:
        fetch: Any = self._fetch  # the stubs miss that the fetcher may return None ("no change")
        return grpc.dynamic_ssl_server_credentials(self._initial, fetch, require_client_authentication=self.mutual)

    def reload(self) -> bool:
        """Reads the files again; new connections get them. Files that do not load leave the current ones."""
        try:
            configuration = self._load()
        except ValueError as exc:
            log.error("TLS certificates not reloaded, keeping the current ones: %s", exc)
            return False
        with self._lock:
            self._pending = configuration
        log.warning("TLS certificates reloaded: new connections use them", extra={"cert": self._cert})
        return True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC (on its own thread) before each handshake: the reloaded configuration, once."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def certificate_stores(context: Any) -> frozenset[str] | None:
    """The stores the caller's client certificate names (its `urn:pos-offers:store:<id>` SAN URIs), which narrow a
    pos key's stores further; None when the call has no verified client certificate or it names no store (an
    admin's or the app backend's certificate: the key alone decides). Only URI SANs count, never DNS names or the
    subject, and an empty id narrows to nothing rather than to everything."""
    uris = context.auth_context().get(_PEER_URI, ())
    stores = frozenset(
        uri[len(STORE_URI_PREFIX) :]
        for uri in (raw.decode("utf-8", "replace") for raw in uris)
        if uri[: len(STORE_URI_PREFIX)].lower() == STORE_URI_PREFIX
    )
    return stores or None
