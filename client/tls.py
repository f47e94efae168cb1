"""TLS for clients: the channel credentials a till needs to reach a server over TLS or mutual TLS.

The API key still travels as `authorization: Bearer` metadata on every call; the certificate proves the device,
the key the caller. The client's certificate and key have their own variables (POS_OFFERS_TLS_CLIENT_CERT/KEY),
so they never pick up the server's POS_OFFERS_TLS_CERT/KEY on a host that runs both.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Final

import grpc

TLS_ENV: Final = "POS_OFFERS_TLS"
TLS_CA_ENV: Final = "POS_OFFERS_TLS_CA"
TLS_CERT_ENV: Final = "POS_OFFERS_TLS_CLIENT_CERT"
TLS_KEY_ENV: Final = "POS_OFFERS_TLS_CLIENT_KEY"


def _read(what: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def _from_env(value: str | None, variable: str) -> str:
    return (os.environ.get(variable, "") if value is None else value).strip()


def channel_credentials(
    *, tls: bool | None = None, ca: str | None = None, cert: str | None = None, key: str | None = None
) -> grpc.ChannelCredentials | None:
    """Credentials for a TLS channel, or None for plaintext.

    `ca`: PEM file of the CA that signed the server's certificate (default: the system's roots). `cert`, `key`:
    the client's certificate and key, for servers that require mutual TLS. Each defaults to its variable
    (POS_OFFERS_TLS_CA, POS_OFFERS_TLS_CLIENT_CERT, POS_OFFERS_TLS_CLIENT_KEY); "" means none. TLS is on when any
    file is given, or `tls` (default: POS_OFFERS_TLS) says so.
    """
    ca, cert, key = _from_env(ca, TLS_CA_ENV), _from_env(cert, TLS_CERT_ENV), _from_env(key, TLS_KEY_ENV)
    if bool(cert) != bool(key):
        raise ValueError("a TLS client certificate needs its key, and a key its certificate")
    wanted = tls if tls is not None else _from_env(None, TLS_ENV).lower() in {"1", "true", "yes", "on"}
    if not (wanted or ca or cert):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read("CA", ca) if ca else None,
        private_key=_read("client key", key) if key else None,
        certificate_chain=_read("client certificate", cert) if cert else None,
    )


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, object]] | None = None
) -> grpc.Channel:
    """A blocking channel: TLS with `credentials`, plaintext without."""
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def is_loopback_target(target: str) -> bool:
    """Whether a gRPC target only reaches this machine (loopback address, localhost or a unix socket)."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    host = target.split("///", 1)[-1].removeprefix("ipv4:").removeprefix("ipv6:")
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
