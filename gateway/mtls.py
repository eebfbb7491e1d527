"""Mutual TLS at the gateway: uvicorn TLS settings, and each request's client certificate.

uvicorn 0.34 terminates TLS but does not hand the peer certificate to the application:
its HTTP protocols build the ASGI scope without the `tls` extension, and no middleware
can reach the transport. So the glue sits one level down, in uvicorn's documented
extension point `Config(http=<protocol class>)`: `MtlsH11Protocol` and
`MtlsHttpToolsProtocol` subclass uvicorn's own protocols and, once per connection
(after the handshake, in `connection_made`), read the verified peer certificate from
the transport's `ssl_object` and wrap the app so that every request on that connection
carries the standard ASGI TLS extension (ASGI spec, "TLS extension"):

    scope["extensions"]["tls"] = {"client_cert_chain": [PEM], "client_cert_name": ...,
                                  "client_cert_error": None, "tls_version": 0x0304, ...}

The application only reads that scope key (`peer_certificate_der`, `peer_thumbprint`),
so it works unchanged under any ASGI server that implements the extension (Hypercorn,
a future uvicorn) and can be tested without TLS by putting the key into a scope.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

from crypto.ca import (
    CA_CERT_FILE,
    CertificateAuthority,
    ClientIdentity,
    client_identity,
    ensure_server_certificate,
    subject_name,
    thumbprint_s256,
)

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = [
    "MtlsH11Protocol",
    "MtlsHttpProtocol",
    "TlsFiles",
    "TlsSettings",
    "bound_thumbprint_matches",
    "peer_certificate_der",
    "peer_identity",
    "peer_thumbprint",
    "prepare_tls",
    "tls_extension",
    "uvicorn_ssl_kwargs",
]

TLS_EXTENSION = "tls"
# TLS 1.2 suites: forward secret AEAD only (TLS 1.3 suites are all AEAD and not affected
# by this string). uvicorn's default "TLSv1" would also allow CBC and SHA-1 MACs.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TlsSettings(Protocol):
    """What `prepare_tls` and `uvicorn_ssl_kwargs` need from `gateway.settings.Settings`."""

    @property
    def mtls(self) -> bool: ...

    @property
    def tls_dir(self) -> Path: ...

    @property
    def host(self) -> str: ...


@dataclass(frozen=True)
class TlsFiles:
    """The files uvicorn loads: the client trust anchor and the server's certificate and key."""

    ca_certs: Path
    certfile: Path
    keyfile: Path


# -- reading the client certificate of the current request ------------------------------------


def peer_certificate_der(scope: Mapping[str, Any]) -> bytes | None:
    """DER bytes of the client certificate presented on this request's connection, or None.

    None for plain HTTP, for TLS without a client certificate, and under servers that do
    not provide the ASGI TLS extension.
    """
    tls = (scope.get("extensions") or {}).get(TLS_EXTENSION)
    if not isinstance(tls, Mapping):
        return None
    chain = tls.get("client_cert_chain")
    if not chain or not isinstance(chain[0], str):
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(chain[0])
    except ValueError:
        return None


def peer_thumbprint(scope: Mapping[str, Any]) -> str | None:
    """RFC 8705 `x5t#S256` of the presented client certificate, or None without one."""
    der = peer_certificate_der(scope)
    return None if der is None else thumbprint_s256(der)


def peer_identity(scope: Mapping[str, Any]) -> ClientIdentity | None:
    """`(client_id, org_id)` named by the presented client certificate, or None without one.

    `crypto.errors.CertificateInvalid` if a certificate was presented but names no pdx
    client (e.g. a server certificate of the same CA).
    """
    der = peer_certificate_der(scope)
    return None if der is None else client_identity(der)


def bound_thumbprint_matches(expected: str, scope: Mapping[str, Any]) -> bool:
    """True iff this request came over a connection whose client cert has `expected`.

    RFC 8705 §3: a certificate-bound token (`cnf.x5t#S256`) is only good over a TLS
    connection authenticated with that certificate. Constant-time comparison.
    """
    presented = peer_thumbprint(scope)
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("ascii"), expected.encode("ascii", "replace"))


# -- uvicorn glue ------------------------------------------------------------------------------


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or None if it is not a TLS connection."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    return {
        # The server's own certificate is not exposed by ssl.SSLObject before 3.13.
        "server_cert": None,
        # Python 3.11 gives the leaf only (get_verified_chain arrives in 3.13).
        "client_cert_chain": chain,
        "client_cert_name": subject_name(der) if der else None,
        # With CERT_REQUIRED a certificate that failed verification never gets here.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


class _WithTlsExtension:
    """Per-connection ASGI wrapper: adds the connection's TLS extension to each scope."""

    __slots__ = ("app", "tls")

    def __init__(self, app: ASGI3Application, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions: dict[str, Any] = cast("dict[str, Any]", scope).setdefault("extensions", {})
            # A copy per request: one request's code cannot alter what the next one sees.
            extensions[TLS_EXTENSION] = dict(self.tls)
        await self.app(scope, receive, send)


def _wrap(app: ASGI3Application, transport: asyncio.BaseTransport) -> ASGI3Application:
    tls = tls_extension(transport)
    return app if tls is None else _WithTlsExtension(app, tls)


class MtlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the ASGI TLS extension in every scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _wrap(self.app, transport)


MtlsHttpProtocol: type[asyncio.Protocol] = MtlsH11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is in the lock; h11 is the fallback
    pass
else:

    class MtlsHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, plus the ASGI TLS extension in every scope."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app = _wrap(self.app, transport)

    __all__ += ["MtlsHttpToolsProtocol"]
    # The faster parser when present, as uvicorn's own "auto" chooses.
    MtlsHttpProtocol = MtlsHttpToolsProtocol


# -- settings → files → uvicorn keyword arguments ----------------------------------------------


def _split_hosts(host: str, extra: Sequence[str]) -> tuple[list[str], list[str]]:
    names: list[str] = ["localhost"]
    ips: list[str] = ["127.0.0.1", "::1"]
    for h in (host, *extra):
        if not h or h in ("0.0.0.0", "::"):
            continue  # a wildcard bind address is not a name a client connects to
        try:
            ips.append(str(ipaddress.ip_address(h)))
        except ValueError:
            names.append(h)
    return list(dict.fromkeys(names)), list(dict.fromkeys(ips))


def prepare_tls(
    settings: TlsSettings,
    *,
    hostnames: Sequence[str] = (),
    now: datetime | None = None,
) -> TlsFiles:
    """Create (first time) or load the platform CA and a current server certificate.

    Layout under `settings.tls_dir`: `ca/ca.pem` + `ca/ca-key.pem` (the CA; mode 0600
    key), `server.pem` + `server-key.pem` (reissued when missing, expiring within 30
    days or not naming `settings.host` and `hostnames`).
    """
    tls_dir = Path(settings.tls_dir)
    ca_dir = tls_dir / "ca"
    ca = CertificateAuthority.create_or_load(ca_dir, now=now)
    names, ips = _split_hosts(settings.host, hostnames)
    certfile, keyfile = ensure_server_certificate(ca, tls_dir, names, ips, now=now)
    return TlsFiles(ca_certs=ca_dir / CA_CERT_FILE, certfile=certfile, keyfile=keyfile)


def uvicorn_ssl_kwargs(
    settings: TlsSettings,
    *,
    hostnames: Sequence[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run`/`uvicorn.Config`: {} unless `settings.mtls`.

    With mTLS: the server certificate, the CA that client certificates must chain to,
    `CERT_REQUIRED` (a connection without a valid client certificate fails in the
    handshake, before any HTTP is read), AEAD-only TLS 1.2 suites, and the protocol
    class that exposes the client certificate to the app.
    """
    if not settings.mtls:
        return {}
    files = prepare_tls(settings, hostnames=hostnames, now=now)
    return {
        "ssl_certfile": str(files.certfile),
        "ssl_keyfile": str(files.keyfile),
        "ssl_ca_certs": str(files.ca_certs),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ciphers": TLS12_CIPHERS,
        "http": MtlsHttpProtocol,
    }
