"""The platform's own certificate authority for mutual TLS: root, client and server certificates.

One self-signed root (ECDSA P-256 by default) issues short-lived leaf certificates:

- client certificates (EKU clientAuth) naming a pdx client: subject CN = client id,
  O = organisation id, SAN URI `urn:pdx:client:<client id>`;
- server certificates (EKU serverAuth) for the gateway's own TLS endpoint.

Why ECDSA P-256 and not Ed25519: OpenSSL 3 (and so Python's `ssl`) accepts Ed25519
certificates in TLS 1.2 and 1.3 (checked with OpenSSL 3.0), but many TLS stacks
(browsers, Go before 1.13, Java before 15, most HSMs and load balancers) do not; P-256
with SHA-256 is the one signature every TLS 1.2/1.3 peer supports (RFC 8446 §9.1 makes
ecdsa_secp256r1_sha256 mandatory). An Ed25519 *root* key is accepted (OpenSSL verifies
Ed25519-signed chains); leaves are always P-256.

Key seam: `CertificateAuthority` takes any private-key object that implements
cryptography's `EllipticCurvePrivateKey` (or `Ed25519PrivateKey`) interface, so a KMS- or
HSM-held key can sign by subclassing that interface; `create_or_load` is the
file-backed default (PEM files, private key mode 0600).

Time is a parameter (`now`) wherever validity is decided, so tests are deterministic.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto._pem_files import locked, read_pem_file, write_file
from crypto.certificates import (
    CA_CERT_FILE,
    CLIENT_ID,
    CLIENT_URN_PREFIX,
    ClientIdentity,
    IssuedCertificate,
    certificate_der,
    client_identity,
    load_certificate,
    subject_name,
    thumbprint_s256,
)
from crypto.errors import (
    CertificateAuthorityUnavailable,
    CertificateInvalid,
    CertificateRequestInvalid,
)

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CLIENT_URN_PREFIX",
    "MAX_LEAF_DAYS",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "CaKey",
    "CertificateAuthority",
    "ClientIdentity",
    "IssuedCertificate",
    "certificate_der",
    "client_identity",
    "ensure_server_certificate",
    "subject_name",
    "thumbprint_s256",
]


CA_KEY_FILE = "ca-key.pem"
# Leaves live at most a year (the brief); CA/B Forum's ceiling for public TLS is 398 days.
MAX_LEAF_DAYS = 365
DEFAULT_CLIENT_DAYS = 90
DEFAULT_CA_DAYS = 3650
# Tolerate a peer whose clock is a little behind ours.
_BACKDATE = timedelta(minutes=5)
# The nine bits of RFC 5280 4.2.1.3 under `x509.KeyUsage`'s argument names, and the ones each
# kind of certificate sets (`_key_usage`): every other bit is clear.
_KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
_CA_KEY_USAGE = frozenset({"key_cert_sign", "crl_sign"})
_LEAF_KEY_USAGE = frozenset({"digital_signature"})
# RFC 1123 host names, optionally with one leading wildcard label.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


CaKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class CertificateAuthority:
    """A root CA: a signing key object and its self-signed certificate.

    Build with `create` (in memory), `load` / `create_or_load` (a directory of PEM files),
    or directly from a key object and certificate (the KMS/HSM seam).
    """

    def __init__(self, key: CaKey, certificate: x509.Certificate) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise CertificateAuthorityUnavailable("the CA key must be an ECDSA or Ed25519 key")
        if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(
            key.curve, ec.SECP256R1 | ec.SECP384R1
        ):
            raise CertificateAuthorityUnavailable("the CA key must be on P-256 or P-384")
        if _public_raw(key.public_key()) != _public_raw(certificate.public_key()):
            raise CertificateAuthorityUnavailable("the CA key does not match the CA certificate")
        try:
            bc = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise CertificateAuthorityUnavailable("the CA certificate is not a CA certificate")
        self._key = key
        self._cert = certificate
        self._ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())

    def __repr__(self) -> str:
        return f"CertificateAuthority(subject={self.subject!r}, x5t#S256={self.thumbprint!r})"

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        common_name: str = "pdx platform CA",
        organisation: str = "pdx",
        days: int = DEFAULT_CA_DAYS,
        now: datetime | None = None,
        key: CaKey | None = None,
    ) -> CertificateAuthority:
        """A new self-signed root (a fresh P-256 key unless `key` is given), in memory."""
        now = _now(now)
        if not 1 <= days <= 30 * 365:
            raise CertificateRequestInvalid("a CA lifetime is between 1 day and 30 years")
        key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, _text(common_name, "common_name")),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _text(organisation, "org")),
            ]
        )
        public = key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + timedelta(days=days))
            # RFC 5280 §4.2.1.9: a root that only issues end-entity certificates.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signs_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        return cls(key, builder.sign(key, _hash_for(key)))

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None) -> CertificateAuthority:
        """Read `ca.pem` and `ca-key.pem` from `directory`; refuses a key others may read."""
        directory = Path(directory)
        cert_pem = read_pem_file(directory / CA_CERT_FILE, private=False)
        key_pem = read_pem_file(directory / CA_KEY_FILE, private=True)
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise CertificateAuthorityUnavailable("the CA certificate file is damaged") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=passphrase)
        except TypeError:
            raise CertificateAuthorityUnavailable(
                "the CA key file and the passphrase do not go together"
            ) from None
        except ValueError:
            raise CertificateAuthorityUnavailable(
                "the CA key file is damaged or the passphrase is wrong"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise CertificateAuthorityUnavailable("the CA key must be an ECDSA or Ed25519 key")
        return cls(key, cert)

    @classmethod
    def create_or_load(
        cls,
        directory: Path,
        *,
        now: datetime | None = None,
        passphrase: bytes | None = None,
        common_name: str = "pdx platform CA",
    ) -> CertificateAuthority:
        """Load the CA in `directory`, first creating it if there is none.

        Safe against concurrent callers (several uvicorn workers starting at once): an
        exclusive lock on `directory/.lock` serialises creation, so all end up with one CA.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(directory / ".lock"):
            has_key = (directory / CA_KEY_FILE).exists()
            has_cert = (directory / CA_CERT_FILE).exists()
            if has_key != has_cert:
                raise CertificateAuthorityUnavailable(
                    f"{directory} holds only one of {CA_CERT_FILE} and {CA_KEY_FILE}"
                )
            if not has_key:
                cls.create(common_name=common_name, now=now).save(directory, passphrase=passphrase)
            return cls.load(directory, passphrase=passphrase)

    def save(self, directory: Path, *, passphrase: bytes | None = None) -> None:
        """Write `ca-key.pem` (mode 0600, never overwritten) and `ca.pem` into `directory`.

        Only possible for a key whose private bytes are exportable (not an HSM key).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        write_file(directory / CA_KEY_FILE, key_pem, mode=0o600, exclusive=True)
        write_file(directory / CA_CERT_FILE, self.cert_pem, mode=0o644, exclusive=False)

    # -- what it is --------------------------------------------------------------------------

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def cert_pem(self) -> bytes:
        """The root certificate in PEM: the trust anchor clients and the server load."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def subject(self) -> str:
        return self._cert.subject.rfc4514_string()

    @property
    def thumbprint(self) -> str:
        return thumbprint_s256(self._cert.public_bytes(serialization.Encoding.DER))

    @property
    def not_after(self) -> datetime:
        return self._cert.not_valid_after_utc

    # -- issuing -----------------------------------------------------------------------------

    def issue_client(
        self,
        org_id: str,
        client_id: str,
        *,
        days: int = DEFAULT_CLIENT_DAYS,
        now: datetime | None = None,
        csr_pem: bytes | None = None,
    ) -> IssuedCertificate:
        """A client certificate for `client_id` of organisation `org_id` (EKU clientAuth).

        Subject CN = client id, O = organisation id; SAN URI `urn:pdx:client:<client id>`.
        With `csr_pem` (PKCS#10) the requester keeps its private key: only the CSR's
        public key and signature are used, never its requested names.
        """
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            raise CertificateRequestInvalid(
                "client_id must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)"
            )
        if not isinstance(org_id, str) or not CLIENT_ID.match(org_id):
            raise CertificateRequestInvalid(
                "org_id must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)"
            )
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_id),
                x509.NameAttribute(NameOID.COMMON_NAME, client_id),
            ]
        )
        san = x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(CLIENT_URN_PREFIX + client_id)]
        )
        return self._issue(
            subject, san, ExtendedKeyUsageOID.CLIENT_AUTH, days=days, now=now, csr_pem=csr_pem
        )

    def issue_server(
        self,
        hostnames: Sequence[str],
        ips: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        *,
        days: int = MAX_LEAF_DAYS,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """A TLS server certificate (EKU serverAuth) for DNS `hostnames` and `ips`.

        The CN is the first host name (or address) for old clients; the SAN is what
        RFC 6125 clients (Python's ssl among them) actually check.
        """
        if isinstance(hostnames, str) or isinstance(ips, str):
            raise CertificateRequestInvalid("hostnames and ips are sequences, not one string")
        names: list[x509.GeneralName] = []
        for host in hostnames:
            if not isinstance(host, str) or len(host) > 253 or not _HOSTNAME.match(host):
                raise CertificateRequestInvalid(f"not a DNS host name: {str(host)[:80]!r}")
            names.append(x509.DNSName(host.lower()))
        addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        for ip in ips:
            try:
                addresses.append(ipaddress.ip_address(ip))
            except ValueError:
                raise CertificateRequestInvalid(f"not an IP address: {str(ip)[:80]!r}") from None
        names.extend(x509.IPAddress(a) for a in addresses)
        if not names:
            raise CertificateRequestInvalid("a server certificate needs a host name or address")
        first = hostnames[0] if hostnames else str(addresses[0])
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first[:64])])
        return self._issue(
            subject,
            x509.SubjectAlternativeName(names),
            ExtendedKeyUsageOID.SERVER_AUTH,
            days=days,
            now=now,
            csr_pem=None,
        )

    def _issue(
        self,
        subject: x509.Name,
        san: x509.SubjectAlternativeName,
        eku: x509.ObjectIdentifier,
        *,
        days: int,
        now: datetime | None,
        csr_pem: bytes | None,
    ) -> IssuedCertificate:
        now = _now(now)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_LEAF_DAYS:
            raise CertificateRequestInvalid(f"a certificate lives 1 to {MAX_LEAF_DAYS} days")
        not_after = now + timedelta(days=days)
        if not_after > self.not_after:
            raise CertificateRequestInvalid("the certificate would outlive the CA")
        if now < self._cert.not_valid_before_utc:
            raise CertificateRequestInvalid("the CA is not yet valid")
        key_pem: bytes | None = None
        public: ec.EllipticCurvePublicKey
        if csr_pem is None:
            # A fresh P-256 key per leaf: the one TLS key type every peer accepts.
            private = ec.generate_private_key(ec.SECP256R1())
            public = private.public_key()
            key_pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        else:
            public = _csr_public_key(csr_pem)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public)
            # RFC 5280 §4.1.2.2 allows 20 octets; 159 random bits stay positive (CA/B 7.1).
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(san, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
            .sign(self._key, _hash_for(self._key))
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key_pem,
            fingerprint_s256=thumbprint_s256(der),
            serial_number=cert.serial_number,
            not_after=cert.not_valid_after_utc,
        )

    # -- checking ----------------------------------------------------------------------------

    def verify_client(
        self, cert: bytes | x509.Certificate, *, now: datetime | None = None
    ) -> ClientIdentity:
        """Check a client certificate against this CA (defence in depth beside TLS).

        Steps: (1) issued and signed by this CA; (2) `now` inside its validity;
        (3) EKU clientAuth; (4) a pdx client name (`client_identity`). Any failure is
        the one opaque `CertificateInvalid`.
        """
        now = _now(now)
        c = load_certificate(cert)
        # (1) issuer and signature
        try:
            c.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateInvalid() from None
        # (2) validity period
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise CertificateInvalid()
        # (3) extended key usage
        try:
            eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (x509.ExtensionNotFound, ValueError):
            raise CertificateInvalid() from None
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise CertificateInvalid()
        # (4) the pdx client name
        return client_identity(c)


SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"


def ensure_server_certificate(
    ca: CertificateAuthority,
    directory: Path,
    hostnames: Sequence[str],
    ips: Sequence[str] = (),
    *,
    now: datetime | None = None,
    renew_before: timedelta = timedelta(days=30),
) -> tuple[Path, Path]:
    """Paths of `server.pem` and `server-key.pem` in `directory`, (re)issued when needed.

    Reissued when missing, not issued by `ca`, expiring within `renew_before`, or not
    naming every host name and address asked for; otherwise left alone (a restart does
    not churn certificates). The key file is mode 0600.
    """
    now = _now(now)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE
    with locked(directory / ".server.lock"):
        if _server_certificate_current(ca, cert_path, key_path, hostnames, ips, now, renew_before):
            return cert_path, key_path
        issued = ca.issue_server(
            hostnames, ips, now=now, days=min(MAX_LEAF_DAYS, (ca.not_after - now).days - 1)
        )
        for stale in (key_path, cert_path):
            if os.path.lexists(stale):
                os.unlink(stale)
        assert issued.key_pem is not None
        write_file(key_path, issued.key_pem, mode=0o600, exclusive=True)
        write_file(cert_path, issued.cert_pem, mode=0o644, exclusive=False)
    return cert_path, key_path


def _server_certificate_current(
    ca: CertificateAuthority,
    cert_path: Path,
    key_path: Path,
    hostnames: Sequence[str],
    ips: Sequence[str],
    now: datetime,
    renew_before: timedelta,
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = load_certificate(read_pem_file(cert_path, private=False))
        cert.verify_directly_issued_by(ca.certificate)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (CertificateInvalid, CertificateAuthorityUnavailable, ValueError, TypeError):
        return False
    except (InvalidSignature, x509.ExtensionNotFound):
        return False
    dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    addresses = set(san.get_values_for_type(x509.IPAddress))
    try:
        wanted_ips = {ipaddress.ip_address(ip) for ip in ips}
    except ValueError:
        return False
    return (
        {h.lower() for h in hostnames} <= dns
        and wanted_ips <= addresses
        and cert.not_valid_before_utc <= now
        and now + renew_before < cert.not_valid_after_utc
    )


# -- helpers -----------------------------------------------------------------------------------


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """RFC 5280 4.2.1.3: a CA key signs certificates and CRLs only; a leaf key signs only."""
    granted = _CA_KEY_USAGE if signs_certificates else _LEAF_KEY_USAGE
    return x509.KeyUsage(**{usage: usage in granted for usage in _KEY_USAGE_BITS})


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise CertificateRequestInvalid("now must be timezone-aware")
    return now.astimezone(UTC)


def _text(value: str, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise CertificateRequestInvalid(f"{field} must be 1-64 printable characters")
    return value


def _hash_for(key: CaKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # RFC 8410: Ed25519 signs the message itself, no separate digest
    return hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()


def _public_raw(public: object) -> bytes:
    if isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    raise CertificateAuthorityUnavailable("the CA certificate has an unsupported key type")


def _csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except (ValueError, TypeError):
        raise CertificateRequestInvalid("not a PEM certificate signing request") from None
    # Proof of possession: the requester signed the CSR with the key it asks us to certify.
    if not csr.is_signature_valid:
        raise CertificateRequestInvalid("the CSR's signature does not verify")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        raise CertificateRequestInvalid("a client key must be ECDSA P-256")
    return public
