"""Which stores a client certificate names, and which transport settings start a server: no network."""

from __future__ import annotations

from typing import Any

import pytest

from server.config import Settings
from server.rpc.transport import certificate_stores


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def stores(**auth: list[bytes]) -> frozenset[str] | None:
    context: Any = _Context(auth)
    return certificate_stores(context)


def test_a_certificate_names_stores_by_its_san_uris_only() -> None:
    uris = [b"urn:pos-offers:store:soho", b"spiffe://pos-offers/till-7", b"URN:pos-offers:store:midtown"]
    assert stores(peer_uri=uris) == frozenset({"soho", "midtown"})
    # A DNS name or a subject that looks like a store URI names nothing: only URI SANs count.
    assert stores(x509_subject_alternative_name=[b"urn:pos-offers:store:soho"], x509_common_name=[b"x"]) is None


def test_no_certificate_or_no_store_uri_does_not_narrow_and_an_empty_id_narrows_to_nothing() -> None:
    assert stores() is None  # plaintext, or TLS without a client certificate
    assert stores(peer_uri=[b"spiffe://pos-offers/app-backend"]) is None
    assert stores(peer_uri=[b"urn:pos-offers:store:"]) == frozenset({""})


@pytest.mark.parametrize(
    ("environ", "refusal"),
    [
        ({"POS_OFFERS_LISTEN": "0.0.0.0:50051"}, "plaintext gRPC is refused on non-loopback"),
        ({"POS_OFFERS_LISTEN": ":50051"}, "plaintext gRPC is refused on non-loopback"),
        ({"POS_OFFERS_LISTEN": "till-server.example:50051"}, "plaintext gRPC is refused on non-loopback"),
        ({"POS_OFFERS_TLS_KEY": "/k.pem"}, "go together"),
        ({"POS_OFFERS_TLS_CLIENT_CA": "/ca.pem"}, "needs POS_OFFERS_TLS_CERT"),
        ({"POS_OFFERS_TLS_CERT": "/nope.crt", "POS_OFFERS_TLS_KEY": "/nope.key"}, "no such file: /nope.crt"),
    ],
)
def test_transport_settings_that_refuse_to_start(environ: dict[str, str], refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"POS_OFFERS_LISTEN": "[::1]:50051"},
        {"POS_OFFERS_LISTEN": "localhost:50051"},
        {"POS_OFFERS_LISTEN": "0.0.0.0:50051", "POS_OFFERS_ALLOW_PLAINTEXT": "1"},
    ],
)
def test_plaintext_starts_on_loopback_or_when_allowed(environ: dict[str, str]) -> None:
    assert not Settings.from_env(environ).tls_cert
