"""Certificates as identities: a pdx client's name in a certificate, thumbprints, DER/PEM parsing.

Parsing only; trust comes from the TLS handshake or `CertificateAuthority.verify_client`
(`crypto.ca`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from crypto._pem_files import MAX_PEM_BYTES, write_file
from crypto.errors import CertificateInvalid

__all__ = [
    "CA_CERT_FILE",
    "CLIENT_ID",
    "CLIENT_URN_PREFIX",
    "ClientIdentity",
    "IssuedCertificate",
    "certificate_der",
    "client_identity",
    "load_certificate",
    "subject_name",
    "thumbprint_s256",
]

CA_CERT_FILE = "ca.pem"
CLIENT_URN_PREFIX = "urn:pdx:client:"
# Client and organisation ids go into a URN (RFC 8141 NSS) and an X.520 CN (ub-common-name
# is 64 characters), so they are restricted to a safe, unambiguous alphabet.
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ClientIdentity(NamedTuple):
    """Who a client certificate names; unpacks as `(client_id, org_id)`."""

    client_id: str
    org_id: str


@dataclass(frozen=True)
class IssuedCertificate:
    """A newly issued leaf: the certificate, its private key and its RFC 8705 thumbprint.

    `key_pem` (PKCS#8, unencrypted) is None when the requester kept its own key (a CSR);
    otherwise it is secret: hand it over once and store it mode 0600 (`write`).
    """

    cert_pem: bytes
    key_pem: bytes | None
    fingerprint_s256: str
    serial_number: int
    not_after: datetime

    @property
    def cert_der(self) -> bytes:
        return certificate_der(self.cert_pem)

    def write(self, directory: Path, stem: str, *, ca_pem: bytes | None = None) -> list[Path]:
        """Write `<stem>.pem`, `<stem>-key.pem` (0600) and optionally `ca.pem` into `directory`.

        Refuses to overwrite an existing key file (a client's key is never replaced
        silently). Returns the paths written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        written: list[Path] = []
        if self.key_pem is not None:
            key_path = directory / f"{stem}-key.pem"
            write_file(key_path, self.key_pem, mode=0o600, exclusive=True)
            written.append(key_path)
        cert_path = directory / f"{stem}.pem"
        write_file(cert_path, self.cert_pem, mode=0o644, exclusive=False)
        written.append(cert_path)
        if ca_pem is not None:
            ca_path = directory / CA_CERT_FILE
            write_file(ca_path, ca_pem, mode=0o644, exclusive=False)
            written.append(ca_path)
        return written


def thumbprint_s256(cert_der: bytes) -> str:
    """RFC 8705 §3.1 `x5t#S256`: base64url(SHA-256(DER certificate)) without padding."""
    digest = hashlib.sha256(cert_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def certificate_der(data: bytes | x509.Certificate) -> bytes:
    """The DER encoding of a certificate given as PEM, DER or an object."""
    return load_certificate(data).public_bytes(serialization.Encoding.DER)


def subject_name(cert: bytes | x509.Certificate) -> str:
    """The certificate's subject as an RFC 4514 string (for logs and the ASGI TLS scope)."""
    return load_certificate(cert).subject.rfc4514_string()


def client_identity(cert: bytes | x509.Certificate) -> ClientIdentity:
    """Read `(client_id, org_id)` back from a pdx client certificate (PEM, DER or object).

    The SAN URI `urn:pdx:client:<id>` names the client and must agree with the subject
    CN; O names the organisation. This parses only: trust comes from the TLS handshake
    or `CertificateAuthority.verify_client`. `CertificateInvalid` if any part is missing.
    """
    c = load_certificate(cert)
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    except (x509.ExtensionNotFound, ValueError):
        raise CertificateInvalid("certificate has no pdx client name") from None
    ids = [u[len(CLIENT_URN_PREFIX) :] for u in uris if u.startswith(CLIENT_URN_PREFIX)]
    cns = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(ids) != 1 or len(cns) != 1 or len(orgs) != 1:
        raise CertificateInvalid("certificate has no pdx client name")
    client_id, cn, org_id = ids[0], cns[0].value, orgs[0].value
    if cn != client_id or not isinstance(org_id, str) or not CLIENT_ID.match(client_id):
        raise CertificateInvalid("certificate has no pdx client name")
    if not CLIENT_ID.match(org_id):
        raise CertificateInvalid("certificate has no pdx client name")
    return ClientIdentity(client_id, org_id)


def load_certificate(data: bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) > MAX_PEM_BYTES:
        raise CertificateInvalid("not a certificate")
    raw = bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        raise CertificateInvalid("not a certificate") from None
