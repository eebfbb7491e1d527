"""Mutual TLS under a real uvicorn: refusals at the TLS layer, and the app sees the client cert.

A tiny ASGI app (not the platform) answers with what `gateway.mtls` reads from the scope.
The server runs on a free loopback port in a thread with its own event loop (so the
test process's loop policy is left alone), once per HTTP protocol implementation.

What a refused client sees: asyncio's and uvloop's TLS transports close the connection
when the handshake fails without flushing OpenSSL's alert, so the client reads EOF
(TLS 1.3, where the client finishes first) or fails its own handshake (TLS 1.2), and
never one byte of HTTP. The reason is on the server side: with the loop in debug mode
both log "SSL handshake failed" with the `ssl.SSLError`, which the fixture collects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from crypto.ca import CertificateAuthority, IssuedCertificate, client_identity, thumbprint_s256
from gateway import mtls
from tests.helpers.net import free_port as _free_port

NOW = datetime.now(UTC)
ORG = "6f1c2b1e-8a55-4c3e-9d3e-0b3a2f1d9c77"
CLIENT = "pdx-0123456789abcdef"


@dataclass(frozen=True)
class TlsConf:
    mtls: bool
    tls_dir: Path
    host: str = "127.0.0.1"


class HandshakeErrors(logging.Handler):
    """Collects the SSL errors the event loop logs for failed handshakes (debug mode)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[ssl.SSLError] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ssl.SSLError) and "handshake failed" in record.getMessage():
            self.errors.append(exc)


class Recorder:
    """The test app: records each request it is called for and echoes the TLS facts."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.calls.append(scope["path"])
        tls = scope.get("extensions", {}).get("tls", {})
        der = mtls.peer_certificate_der(scope)
        body = json.dumps(
            {
                "thumbprint": mtls.peer_thumbprint(scope),
                "identity": list(client_identity(der)) if der else None,
                "name": tls.get("client_cert_name"),
                "tls_version": tls.get("tls_version"),
                "scheme": scope["scheme"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass
class Server:
    url: str
    port: int
    app: Recorder
    ca_pem: Path
    client: IssuedCertificate
    client_files: tuple[Path, Path]
    tls_dir: Path
    handshake_errors: list[ssl.SSLError]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IssuedCertificate, Path, Path]:
    tls_dir = tmp_path_factory.mktemp("tls")
    # The CA is created by the same call the gateway makes; a client cert from it.
    mtls.prepare_tls(TlsConf(True, tls_dir), now=NOW - timedelta(days=60))
    ca = CertificateAuthority.load(tls_dir / "ca")
    issued = ca.issue_client(ORG, CLIENT, days=30, now=NOW)
    key_file, cert_file = issued.write(tls_dir / "client", "client")
    return tls_dir, issued, cert_file, key_file


PROTOCOLS = [
    pytest.param(("httptools", "uvloop"), id="httptools-uvloop"),
    pytest.param(("h11", "asyncio"), id="h11-asyncio"),
]


@pytest.fixture(scope="module", params=PROTOCOLS)
def server(
    request: pytest.FixtureRequest, pki: tuple[Path, IssuedCertificate, Path, Path]
) -> Iterator[Server]:
    http, loop_name = request.param
    tls_dir, issued, cert_file, key_file = pki
    kwargs = mtls.uvicorn_ssl_kwargs(TlsConf(True, tls_dir))
    kwargs["http"] = {"httptools": mtls.MtlsHttpToolsProtocol, "h11": mtls.MtlsH11Protocol}[http]
    app = Recorder()
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="critical", **kwargs
    )
    srv = uvicorn.Server(config)
    handshakes = HandshakeErrors()
    aio_log = logging.getLogger("asyncio")  # uvloop logs through it as well
    old_level = aio_log.level
    aio_log.addHandler(handshakes)
    aio_log.setLevel(logging.DEBUG)

    def serve() -> None:
        if loop_name == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        loop.set_debug(True)  # so that failed handshakes are logged with their reason
        try:
            loop.run_until_complete(srv.serve())
        finally:
            loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield Server(
        f"https://127.0.0.1:{port}",
        port,
        app,
        tls_dir / "ca" / "ca.pem",
        issued,
        (cert_file, key_file),
        tls_dir,
        handshakes.errors,
    )
    srv.should_exit = True
    thread.join(10)
    aio_log.removeHandler(handshakes)
    aio_log.setLevel(old_level)


def _context(server: Server, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.ca_pem))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def _raw_exchange(server: Server, ctx: ssl.SSLContext) -> bytes:
    """Handshake, send one request, read the answer: what a client sees at the TLS layer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data


def _refused(server: Server, ctx: ssl.SSLContext) -> ssl.SSLError:
    """Assert the connection dies in the TLS layer; return the server's handshake error."""
    before = list(server.app.calls)
    server.handshake_errors.clear()
    try:
        answer = _raw_exchange(server, ctx)
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b"", "not one byte of HTTP may come back"
    with httpx.Client(verify=ctx, timeout=5) as client, pytest.raises(httpx.TransportError):
        client.get(server.url + "/httpx")
    assert server.app.calls == before, "the app must never be reached"
    deadline = time.monotonic() + 5
    while len(server.handshake_errors) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.handshake_errors) == 2, "both attempts fail in the server's handshake"
    return server.handshake_errors[0]


def _verify_failure(err: ssl.SSLError) -> str:
    assert isinstance(err, ssl.SSLCertVerificationError)
    assert err.reason == "CERTIFICATE_VERIFY_FAILED"
    return str(err.verify_message)


# -- refusals at the TLS layer --------------------------------------------------------------------


def test_no_client_certificate_is_refused_in_the_handshake(server: Server) -> None:
    err = _refused(server, _context(server, None))
    assert err.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


def test_no_client_certificate_over_tls12_fails_the_clients_handshake(server: Server) -> None:
    ctx = _context(server, None)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server.handshake_errors.clear()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    deadline = time.monotonic() + 5
    while not server.handshake_errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.handshake_errors[0].reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


def test_a_certificate_from_another_ca_is_refused(server: Server, tmp_path: Path) -> None:
    # Same names, same shape, but another root: the server does not trust it.
    other = CertificateAuthority.create(now=NOW).issue_client(ORG, CLIENT, now=NOW)
    files = other.write(tmp_path, "other")
    err = _refused(server, _context(server, (files[1], files[0])))
    assert _verify_failure(err) == "unable to get local issuer certificate"


def test_an_expired_client_certificate_is_refused(server: Server, tmp_path: Path) -> None:
    ca = CertificateAuthority.load(server.tls_dir / "ca")
    old = ca.issue_client(ORG, CLIENT, days=1, now=NOW - timedelta(days=10))
    files = old.write(tmp_path, "old")
    err = _refused(server, _context(server, (files[1], files[0])))
    assert _verify_failure(err) == "certificate has expired"


def test_a_server_certificate_is_not_accepted_as_a_client_certificate(
    server: Server, tmp_path: Path
) -> None:
    # Right CA, but EKU serverAuth only: OpenSSL checks the sslclient purpose.
    ca = CertificateAuthority.load(server.tls_dir / "ca")
    files = ca.issue_server(["localhost"], now=NOW).write(tmp_path, "srv")
    err = _refused(server, _context(server, (files[1], files[0])))
    assert _verify_failure(err) == "unsuitable certificate purpose"


# -- the app sees the client certificate --------------------------------------------------------


def test_the_app_sees_the_presented_certificate_and_its_thumbprint(server: Server) -> None:
    ctx = _context(server, server.client_files)
    with httpx.Client(verify=ctx, timeout=5) as client:
        first = client.get(server.url + "/one").json()
        second = client.get(server.url + "/two").json()  # same kept-alive connection
    expected = thumbprint_s256(server.client.cert_der)
    assert first["thumbprint"] == second["thumbprint"] == expected
    assert expected == server.client.fingerprint_s256
    assert first["identity"] == [CLIENT, ORG]
    assert first["name"] == f"CN={CLIENT},O={ORG}"
    assert first["tls_version"] == 0x0304
    assert first["scheme"] == "https"


def test_the_certificate_is_seen_over_tls12_too(server: Server) -> None:
    ctx = _context(server, server.client_files)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=ctx, timeout=5) as client:
        body = client.get(server.url + "/tls12").json()
    assert body["thumbprint"] == server.client.fingerprint_s256
    assert body["tls_version"] == 0x0303


def test_each_connection_sees_its_own_certificate(server: Server, tmp_path: Path) -> None:
    ca = CertificateAuthority.load(server.tls_dir / "ca")
    second = ca.issue_client(ORG, "pdx-second", now=NOW)
    files = second.write(tmp_path, "second")
    a = httpx.Client(verify=_context(server, server.client_files), timeout=5)
    b = httpx.Client(verify=_context(server, (files[1], files[0])), timeout=5)
    with a, b:
        seen = [c.get(server.url + "/x").json()["thumbprint"] for c in (a, b, a, b)]
    assert seen == [server.client.fingerprint_s256, second.fingerprint_s256] * 2


# -- the pieces, without a server --------------------------------------------------------------


def test_scope_reading_without_tls_or_with_junk() -> None:
    assert mtls.peer_certificate_der({}) is None
    assert mtls.peer_certificate_der({"extensions": None}) is None
    assert mtls.peer_certificate_der({"extensions": {"tls": "x"}}) is None
    assert mtls.peer_certificate_der({"extensions": {"tls": {"client_cert_chain": []}}}) is None
    assert mtls.peer_thumbprint({"extensions": {"tls": {"client_cert_chain": ["junk"]}}}) is None
    assert not mtls.bound_thumbprint_matches("abc", {})


def test_binding_check(pki: tuple[Path, IssuedCertificate, Path, Path]) -> None:
    _, issued, _, _ = pki
    scope = {"extensions": {"tls": {"client_cert_chain": [issued.cert_pem.decode()]}}}
    assert mtls.peer_certificate_der(scope) == issued.cert_der
    assert mtls.peer_identity(scope) == (CLIENT, ORG)
    assert mtls.peer_identity({}) is None
    assert mtls.bound_thumbprint_matches(issued.fingerprint_s256, scope)
    fp = issued.fingerprint_s256
    other = fp[:-1] + ("B" if fp[-1] == "A" else "A")  # always a different thumbprint
    assert not mtls.bound_thumbprint_matches(other, scope)
    assert not mtls.bound_thumbprint_matches("é", scope)


def test_uvicorn_kwargs(tmp_path: Path) -> None:
    assert mtls.uvicorn_ssl_kwargs(TlsConf(False, tmp_path)) == {}
    assert not any(tmp_path.iterdir())  # nothing is created when mTLS is off
    kw = mtls.uvicorn_ssl_kwargs(TlsConf(True, tmp_path, host="gw.example"))
    assert kw["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert kw["http"] is mtls.MtlsHttpProtocol
    assert Path(kw["ssl_ca_certs"]) == tmp_path / "ca" / "ca.pem"
    assert stat.S_IMODE(Path(kw["ssl_keyfile"]).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca" / "ca-key.pem").stat().st_mode) == 0o600
    again = mtls.uvicorn_ssl_kwargs(TlsConf(True, tmp_path, host="gw.example"))
    assert Path(again["ssl_certfile"]).read_bytes() == Path(kw["ssl_certfile"]).read_bytes()
    # the server certificate names the bind host, localhost and the loopback addresses
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(kw["ssl_certfile"]).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "gw.example"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    # a wildcard bind address is not put into the certificate
    wild = mtls.uvicorn_ssl_kwargs(TlsConf(True, tmp_path / "w", host="0.0.0.0"))
    cert = x509.load_pem_x509_certificate(Path(wild["ssl_certfile"]).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "0.0.0.0" not in {str(a) for a in san.get_values_for_type(x509.IPAddress)}
