"""Transport security against a real server over real TLS: certificates made here, one CA for the service and one
it does not know. A till on TLS or mutual TLS still sends its API key; its certificate can only narrow the key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from posoffers.v1 import admin_service_pb2 as admin_pb
from posoffers.v1 import admin_service_pb2_grpc as admin_grpc
from posoffers.v1 import offer_service_pb2 as svc_pb
from posoffers.v1 import offer_service_pb2_grpc as svc_grpc
from posoffers.v1 import types_pb2 as pb

from bench.processes import Child, free_port, wait_until
from client import PosOffersClient
from client.errors import PosOffersError, UnavailableError
from domain.access import Role
from server.config import Settings
from tests.e2e.conftest import clone_samantha
from tests.support.builders import DRESS, basket, commit_request
from tests.support.certs import CertificateAuthority, Pem
from tests.support.keys import keyed_channel
from tests.support.redis_env import delete_prefix, new_prefix
from tests.support.server_thread import ServerThread

StartServer = Callable[..., ServerThread]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("foreign-pki"), "someone else's CA")


@pytest.fixture(scope="module")
def server_pem(ca: CertificateAuthority) -> Pem:
    return ca.server()


def tls(ca: CertificateAuthority | Path, client: Pem | None = None) -> grpc.ChannelCredentials:
    """What a till passes to grpc: trust `ca`, present `client` (if any)."""
    root = (ca.cert if isinstance(ca, CertificateAuthority) else ca).read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(root)
    return grpc.ssl_channel_credentials(root, client.key_bytes, client.cert_bytes)


def health(channel: grpc.Channel) -> int:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    status: int = response.status
    return status


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def tls_server(
    make_server: StartServer, server_pem: Pem, client_ca: CertificateAuthority | None = None
) -> ServerThread:
    client_ca_file = str(client_ca.cert) if client_ca is not None else ""
    return make_server(
        demo_data=True, tls_cert=str(server_pem.cert), tls_key=str(server_pem.key), tls_client_ca=client_ca_file
    )


def test_a_tls_server_serves_tills_that_trust_its_ca_and_refuses_plaintext(
    make_server: StartServer, ca: CertificateAuthority, foreign_ca: CertificateAuthority, server_pem: Pem
) -> None:
    server = tls_server(make_server, server_pem)
    assert server.service.transport == "TLS"
    with server.channel(Role.POS, tls(ca)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        admin = admin_grpc.OfferAdminStub(server.channel(Role.ADMIN, tls(ca)))
        member = clone_samantha(admin)
        receipt = svc_grpc.OfferServiceStub(channel).CommitPurchase(commit_request(basket(member, DRESS)), timeout=5)
        assert receipt.evaluation.points_earned == 120
    with server.channel(Role.POS) as plaintext:
        assert status_of(lambda: health(plaintext)) == grpc.StatusCode.UNAVAILABLE
    with server.channel(Role.POS, tls(foreign_ca)) as trusting_someone_else:  # a server it cannot verify
        assert status_of(lambda: health(trusting_someone_else)) == grpc.StatusCode.UNAVAILABLE


def test_the_client_library_and_cli_speak_mutual_tls_and_still_send_the_key(
    make_server: StartServer,
    ca: CertificateAuthority,
    server_pem: Pem,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from client.cli import main as cli

    server = tls_server(make_server, server_pem, client_ca=ca)
    till = ca.client("till-cli", stores=("soho",))
    ca_file, cert_file, key_file = str(ca.cert), str(till.cert), str(till.key)
    till_client = partial(PosOffersClient, server.target, tls_ca=ca_file, tls_cert=cert_file, tls_key=key_file)
    with till_client(api_key=server.keys.pos) as client:
        assert client.list_active_offers("samantha").offers[0].offer_id == "dress-shoes-2x"
    with till_client(api_key="") as keyless:  # the certificate is not a key
        assert status_of_client(lambda: keyless.get_profile("samantha")) == "UNAUTHENTICATED"
    no_cert = PosOffersClient(server.target, api_key=server.keys.pos, tls_ca=ca_file, max_attempts=1)
    with no_cert, pytest.raises(UnavailableError):
        no_cert.get_profile("samantha")

    args = ["--target", server.target, "--api-key", server.keys.pos, "--tls-ca", ca_file]
    assert cli(["profile", "samantha", *args, "--tls-cert", cert_file, "--tls-key", key_file]) == 0
    assert "points balance" in capsys.readouterr().out
    assert cli(["profile", "samantha", *args, "--tls-cert", cert_file]) == 2
    assert "needs its key" in capsys.readouterr().err
    for variable, value in (("TLS_CA", ca_file), ("TLS_CLIENT_CERT", cert_file), ("TLS_CLIENT_KEY", key_file)):
        monkeypatch.setenv(f"POS_OFFERS_{variable}", value)
    monkeypatch.setenv("POS_OFFERS_API_KEY", server.keys.pos)
    assert cli(["profile", "samantha", "--target", server.target]) == 0
    assert "points balance" in capsys.readouterr().out


def status_of_client(call: Callable[[], object]) -> str:
    with pytest.raises(PosOffersError) as caught:
        call()
    return caught.value.code.name


def test_a_mutual_tls_server_refuses_tills_without_a_certificate_of_its_ca(
    make_server: StartServer, ca: CertificateAuthority, foreign_ca: CertificateAuthority, server_pem: Pem
) -> None:
    server = tls_server(make_server, server_pem, client_ca=ca)
    assert server.service.transport == "mutual TLS"
    refused = {
        "no certificate": tls(ca),
        "another CA's certificate": tls(ca, foreign_ca.client("intruder", stores=("soho",))),
        "an expired certificate": tls(ca, ca.client("old-till", stores=("soho",), valid_days=(-60, -1))),
        "a certificate not valid yet": tls(ca, ca.client("future-till", stores=("soho",), valid_days=(1, 30))),
    }
    for why, credentials in refused.items():
        with server.channel(Role.ADMIN, credentials) as channel:
            assert status_of(lambda: health(channel)) == grpc.StatusCode.UNAVAILABLE, why
    with server.channel(Role.POS, tls(ca, ca.client("till-1", stores=("soho",)))) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def mtls_server(make_server: StartServer, ca: CertificateAuthority, server_pem: Pem) -> Iterator[ServerThread]:
    server = tls_server(make_server, server_pem, client_ca=ca)
    with server.channel(Role.ADMIN, tls(ca, ca.client("head-office"))) as channel:
        midtown = pb.Store(store_id="midtown", name="Midtown", timezone="America/New_York")
        midtown.location.latitude, midtown.location.longitude = 40.754, -73.984
        admin_grpc.OfferAdminStub(channel).UpsertStore(admin_pb.UpsertStoreRequest(store=midtown), timeout=5)
    yield server


def commit_at(server: ServerThread, credentials: grpc.ChannelCredentials, store: str, role: Role = Role.POS) -> str:
    """Commits a dress at `store` for a new member: "OK" or the status's name."""
    with server.channel(Role.ADMIN, credentials) as admin_channel:
        member = clone_samantha(admin_grpc.OfferAdminStub(admin_channel))
    with keyed_channel(server.target, server.keys.of(role), credentials) as channel:
        try:
            svc_grpc.OfferServiceStub(channel).CommitPurchase(
                commit_request(basket(member, DRESS, store_id=store)), timeout=5
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return "OK"


def test_a_terminal_certificate_narrows_a_pos_key_to_the_stores_it_names(
    mtls_server: ServerThread, ca: CertificateAuthority
) -> None:
    # The test pos key acts for soho, midtown and others: the SoHo till's certificate names soho only.
    soho_till = tls(ca, ca.client("soho-till", stores=("soho",)))
    assert commit_at(mtls_server, soho_till, "soho") == "OK"
    assert commit_at(mtls_server, soho_till, "midtown") == "PERMISSION_DENIED"
    # A certificate naming no store does not narrow (the key alone decides): head-office tooling, the app backend.
    tooling = tls(ca, ca.client("tooling", uris=("spiffe://pos-offers/app-backend",)))
    assert commit_at(mtls_server, tooling, "midtown") == "OK"
    # A certificate naming only stores the key is not bound to leaves it nothing: stores must be in both.
    uptown_till = tls(ca, ca.client("uptown-till", stores=("uptown",)))
    assert commit_at(mtls_server, uptown_till, "soho") == "PERMISSION_DENIED"
    both = tls(ca, ca.client("two-store-till", stores=("soho", "midtown", "uptown")))
    assert commit_at(mtls_server, both, "midtown") == "OK"
    # Only store-bound keys are narrowed: an admin key behind the SoHo till's certificate is still an admin key.
    assert commit_at(mtls_server, soho_till, "midtown", role=Role.ADMIN) == "OK"


def test_the_client_library_reports_a_narrowed_store_as_permission_denied(
    mtls_server: ServerThread, ca: CertificateAuthority
) -> None:
    till = ca.client("soho-till-lib", stores=("soho",))
    with PosOffersClient(
        mtls_server.target, api_key=mtls_server.keys.pos, tls_ca=str(ca.cert), tls_cert=str(till.cert),
        tls_key=str(till.key),
    ) as client:  # fmt: skip
        with pytest.raises(PosOffersError) as denied:
            client.evaluate_basket(basket("samantha", DRESS, store_id="midtown"))
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "midtown" in denied.value.message
        assert client.evaluate_basket(basket("samantha", DRESS, store_id="soho")).points_earned > 0


def test_sighup_rotates_the_server_certificate_for_new_connections(
    make_server: StartServer, tmp_path: Path, ca: CertificateAuthority, foreign_ca: CertificateAuthority
) -> None:
    live = Pem(tmp_path / "live.crt", tmp_path / "live.key")
    first = ca.server("first")
    live.cert.write_bytes(first.cert_bytes)
    live.key.write_bytes(first.key_bytes)
    server = make_server(tls_cert=str(live.cert), tls_key=str(live.key))
    with server.channel(Role.ADMIN, tls(ca)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING

    # A half-written rotation (the new certificate beside the old key) is not taken: the old one keeps serving.
    renewed = foreign_ca.server("renewed")
    live.cert.write_bytes(renewed.cert_bytes)
    assert server.service.reload_certificates() is False
    with server.channel(Role.ADMIN, tls(ca)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING

    live.key.write_bytes(renewed.key_bytes)
    assert server.service.reload_certificates() is True
    with server.channel(Role.ADMIN, tls(foreign_ca)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    with server.channel(Role.ADMIN, tls(ca)) as channel:
        assert status_of(lambda: health(channel)) == grpc.StatusCode.UNAVAILABLE


def run_server_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POS_OFFERS_")}
    environ.update(POS_OFFERS_DATA_DIR=str(tmp_path), **{f"POS_OFFERS_{k.upper()}": v for k, v in env.items()})
    return subprocess.run(
        [sys.executable, "-m", "server"], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_server_refuses_to_start_plaintext_on_a_public_address_or_with_bad_certificate_files(
    tmp_path: Path, ca: CertificateAuthority, server_pem: Pem
) -> None:
    public = run_server_process(tmp_path, listen="0.0.0.0:0")
    assert public.returncode == 2
    assert public.stderr.count("\n") == 1
    assert "plaintext gRPC is refused on non-loopback POS_OFFERS_LISTEN=0.0.0.0:0" in public.stderr
    assert "POS_OFFERS_ALLOW_PLAINTEXT=1" in public.stderr

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = {
        "no such file": {"tls_cert": str(tmp_path / "missing.crt"), "tls_key": str(server_pem.key)},
        "not a PEM certificate chain": {"tls_cert": str(garbage), "tls_key": str(server_pem.key)},
        "its unencrypted private key": {"tls_cert": str(server_pem.cert), "tls_key": str(ca.client("x").key)},
        "holds no PEM CA certificate": {**_pair(server_pem), "tls_client_ca": str(garbage)},
        "go together": {"tls_cert": str(server_pem.cert)},
    }
    for message, settings in cases.items():
        result = run_server_process(tmp_path, listen="0.0.0.0:0", **settings)
        assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
        assert message in result.stderr, result.stderr


def _pair(pem: Pem) -> dict[str, str]:
    return {"tls_cert": str(pem.cert), "tls_key": str(pem.key)}


def test_plaintext_on_a_public_address_starts_only_when_allowed(make_server: StartServer) -> None:
    environ = {"POS_OFFERS_LISTEN": "0.0.0.0:0"}
    with pytest.raises(ValueError, match="plaintext gRPC is refused"):
        Settings.from_env(environ)
    allowed = Settings.from_env({**environ, "POS_OFFERS_ALLOW_PLAINTEXT": "1"})
    server = make_server(listen=allowed.listen, allow_plaintext=allowed.allow_plaintext)
    assert server.service.transport == "plaintext"
    with server.channel(Role.POS) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        profile = svc_pb.GetProfileRequest(customer_id="nobody")
        assert status_of(lambda: svc_grpc.OfferServiceStub(channel).GetProfile(profile, timeout=5)) == (
            grpc.StatusCode.NOT_FOUND  # served: the key was checked, the member looked up
        )


def test_a_running_server_takes_a_renewed_certificate_on_sighup(
    redis_url: str, tmp_path: Path, ca: CertificateAuthority, foreign_ca: CertificateAuthority
) -> None:
    """The way an operator rotates: replace the files, `kill -HUP` the server process (no restart)."""
    live = Pem(tmp_path / "live.crt", tmp_path / "live.key")
    first = ca.server("first")
    live.cert.write_bytes(first.cert_bytes)
    live.key.write_bytes(first.key_bytes)
    listen, prefix = f"127.0.0.1:{free_port()}", new_prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POS_OFFERS_")}
    env.update(
        POS_OFFERS_LISTEN=listen, POS_OFFERS_METRICS_LISTEN="", POS_OFFERS_REDIS_URL=redis_url,
        POS_OFFERS_REDIS_PREFIX=prefix, POS_OFFERS_DATA_DIR=str(tmp_path), POS_OFFERS_WRITER_PROCESS="0",
        POS_OFFERS_TLS_CERT=str(live.cert), POS_OFFERS_TLS_KEY=str(live.key),
    )  # fmt: skip
    child = Child.start(
        "service", [sys.executable, "-m", "server"], tmp_path / "service.log", env=env, fail=pytest.fail
    )

    def serves(trusting: CertificateAuthority) -> Callable[[], bool]:
        def probe() -> bool:
            with grpc.secure_channel(listen, tls(trusting)) as channel:
                return bool(health(channel) == health_pb2.HealthCheckResponse.SERVING)

        return probe

    try:
        wait_until(child, serves(ca), "TLS server (gRPC health)")
        assert "(gRPC, TLS; " in child.log_tail()
        renewed = foreign_ca.server("renewed")
        live.cert.write_bytes(renewed.cert_bytes)
        live.key.write_bytes(renewed.key_bytes)
        child.process.send_signal(signal.SIGHUP)
        wait_until(child, serves(foreign_ca), "the renewed certificate", timeout=10)
        assert status_of(serves(ca)) == grpc.StatusCode.UNAVAILABLE
        assert "TLS certificates reloaded" in child.log_tail()
    finally:
        child.stop()
        delete_prefix(redis_url, prefix)
