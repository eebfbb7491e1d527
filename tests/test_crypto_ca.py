"""The platform CA (crypto.ca): root, client and server certificates, thumbprints, files."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    MAX_LEAF_DAYS,
    CertificateAuthority,
    ClientIdentity,
    certificate_der,
    client_identity,
    ensure_server_certificate,
    subject_name,
    thumbprint_s256,
)
from crypto.errors import (
    CertificateAuthorityUnavailable,
    CertificateError,
    CertificateInvalid,
    CertificateRequestInvalid,
    CryptoError,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ORG = "6f1c2b1e-8a55-4c3e-9d3e-0b3a2f1d9c77"
CLIENT = "pdx-0123456789abcdef"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(now=NOW)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _ext(cert: x509.Certificate, cls: type[Any]) -> Any:
    return cert.extensions.get_extension_for_class(cls)


# -- thumbprint ---------------------------------------------------------------------------------


def test_thumbprint_is_unpadded_base64url_sha256_of_der() -> None:
    # SHA-256 of the empty string, base64url without '=' (RFC 8705 §3.1, RFC 7515 §2).
    assert thumbprint_s256(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    data = bytes(range(256)) * 3
    expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    assert thumbprint_s256(data) == expected
    assert len(thumbprint_s256(data)) == 43 and "=" not in thumbprint_s256(data)


# -- root -------------------------------------------------------------------------------------


def test_root_is_a_self_signed_p256_ca(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    assert ca.thumbprint == thumbprint_s256(certificate_der(ca.cert_pem))
    assert "pdx platform CA" in ca.subject and ca.thumbprint in repr(ca)


def test_key_usage_sets_exactly_the_bits_of_each_kind(ca: CertificateAuthority) -> None:
    """RFC 5280 4.2.1.3: the CA key signs certificates and CRLs only, a leaf key signs only."""
    leaf = _cert(ca.issue_client(ORG, CLIENT, days=30, now=NOW).cert_pem)
    ca_usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    leaf_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    for cert, expected in ((ca.certificate, ca_usage), (leaf, leaf_usage)):
        ext = _ext(cert, x509.KeyUsage)
        assert ext.critical
        assert ext.value == expected


def test_ca_refuses_a_key_that_does_not_match_its_certificate(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateAuthorityUnavailable):
        CertificateAuthority(ec.generate_private_key(ec.SECP256R1()), ca.certificate)


def test_ca_refuses_a_leaf_as_its_certificate(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    issued = ca.issue_client(ORG, CLIENT, now=NOW, csr_pem=csr.public_bytes(_PEM))
    with pytest.raises(CertificateAuthorityUnavailable, match="not a CA"):
        CertificateAuthority(key, _cert(issued.cert_pem))


def test_ca_refuses_rsa_and_unusual_curves() -> None:
    with pytest.raises(CertificateAuthorityUnavailable):
        CertificateAuthority.create(key=ec.generate_private_key(ec.SECP521R1()), now=NOW)
    rsa_key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CertificateAuthorityUnavailable):
        CertificateAuthority(rsa_key, CertificateAuthority.create(now=NOW).certificate)


_PEM = serialization.Encoding.PEM


# -- client certificates -------------------------------------------------------------------------


def test_client_certificate_names_the_client(ca: CertificateAuthority) -> None:
    issued = ca.issue_client(ORG, CLIENT, days=30, now=NOW)
    cert = _cert(issued.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CLIENT
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
    assert cert.issuer == ca.certificate.subject
    cert.verify_directly_issued_by(ca.certificate)
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:pdx:client:{CLIENT}"]
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    assert _ext(cert, x509.KeyUsage).value.digital_signature
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    ski = _ext(ca.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    # the key goes with the certificate and is P-256
    assert issued.key_pem is not None
    key = serialization.load_pem_private_key(issued.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == cert.public_key()
    # thumbprint over the DER
    assert issued.fingerprint_s256 == thumbprint_s256(cert.public_bytes(serialization.Encoding.DER))
    assert issued.cert_der == cert.public_bytes(serialization.Encoding.DER)
    assert issued.serial_number == cert.serial_number and issued.not_after == NOW + timedelta(30)
    assert subject_name(issued.cert_pem) == f"CN={CLIENT},O={ORG}"


def test_serials_are_random_positive_and_at_most_159_bits(ca: CertificateAuthority) -> None:
    serials = {ca.issue_client(ORG, CLIENT, now=NOW).serial_number for _ in range(20)}
    assert len(serials) == 20
    assert all(0 < s < 2**159 for s in serials)
    # 20 random 159-bit numbers: the chance that none exceeds 2**150 is 2**-180
    assert max(serials).bit_length() > 150


def test_client_identity_round_trips_from_pem_der_and_object(ca: CertificateAuthority) -> None:
    issued = ca.issue_client(ORG, CLIENT, now=NOW)
    for form in (issued.cert_pem, issued.cert_der, _cert(issued.cert_pem)):
        ident = client_identity(form)
        assert ident == ClientIdentity(CLIENT, ORG)
        client_id, org_id = ident
        assert (client_id, org_id) == (CLIENT, ORG)


def test_client_identity_refuses_what_is_not_a_pdx_client_certificate(
    ca: CertificateAuthority,
) -> None:
    server = ca.issue_server(["localhost"], now=NOW)
    for bad in (server.cert_pem, ca.cert_pem, b"", b"not a certificate", b"\x30\x03\x02\x01\x01"):
        with pytest.raises(CertificateInvalid):
            client_identity(bad)


def test_client_identity_refuses_cn_and_urn_that_disagree(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                    x509.NameAttribute(NameOID.COMMON_NAME, "pdx-someone-else"),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:pdx:client:{CLIENT}")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateInvalid):
        client_identity(cert)


@pytest.mark.parametrize(
    ("org_id", "client_id"),
    [
        (ORG, ""),
        (ORG, "a" * 65),
        (ORG, "pdx client"),
        (ORG, "pdx:client"),
        (ORG, "-leading-dash"),
        (ORG, "pdx-\u00e9"),
        ("", CLIENT),
        ("org/1", CLIENT),
        (ORG, None),
    ],
)
def test_bad_ids_are_refused(ca: CertificateAuthority, org_id: Any, client_id: Any) -> None:
    with pytest.raises(CertificateRequestInvalid):
        ca.issue_client(org_id, client_id, now=NOW)


@pytest.mark.parametrize("days", [0, -1, MAX_LEAF_DAYS + 1, 10_000, True])
def test_lifetimes_outside_one_year_are_refused(ca: CertificateAuthority, days: Any) -> None:
    with pytest.raises(CertificateRequestInvalid, match="days"):
        ca.issue_client(ORG, CLIENT, days=days, now=NOW)


def test_a_full_year_is_allowed(ca: CertificateAuthority) -> None:
    issued = ca.issue_client(ORG, CLIENT, days=MAX_LEAF_DAYS, now=NOW)
    assert issued.not_after - NOW == timedelta(days=365)


def test_a_leaf_may_not_outlive_its_ca() -> None:
    short = CertificateAuthority.create(days=10, now=NOW)
    with pytest.raises(CertificateRequestInvalid, match="outlive"):
        short.issue_client(ORG, CLIENT, days=30, now=NOW)
    with pytest.raises(CertificateRequestInvalid, match="not yet valid"):
        short.issue_client(ORG, CLIENT, days=1, now=NOW - timedelta(days=1))


def test_naive_time_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateRequestInvalid, match="timezone"):
        ca.issue_client(ORG, CLIENT, now=datetime(2026, 1, 1))


# -- CSRs: the requester keeps its key ---------------------------------------------------------


def _csr(key: Any, cn: str = "ignored") -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(_PEM)


def test_issue_from_a_csr_uses_its_key_but_our_names(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_client(ORG, CLIENT, now=NOW, csr_pem=_csr(key, cn="admin"))
    assert issued.key_pem is None
    cert = _cert(issued.cert_pem)
    assert cert.public_key() == key.public_key()
    assert client_identity(cert) == (CLIENT, ORG)


def test_bad_csrs_are_refused(ca: CertificateAuthority) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CertificateRequestInvalid, match="P-256"):
        ca.issue_client(ORG, CLIENT, now=NOW, csr_pem=_csr(rsa_key))
    with pytest.raises(CertificateRequestInvalid, match="PEM"):
        ca.issue_client(ORG, CLIENT, now=NOW, csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\n")
    # a CSR whose signature does not match its key (proof of possession fails)
    good = _csr(ec.generate_private_key(ec.SECP256R1()))
    der = bytearray(x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(_PEM)
    with pytest.raises(CertificateRequestInvalid, match="signature"):
        ca.issue_client(ORG, CLIENT, now=NOW, csr_pem=tampered)


# -- server certificates --------------------------------------------------------------------------


def test_server_certificate_has_server_auth_and_sans(ca: CertificateAuthority) -> None:
    issued = ca.issue_server(["Gateway.pdx.local", "localhost"], ["127.0.0.1", "::1"], now=NOW)
    cert = _cert(issued.cert_pem)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gateway.pdx.local", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Gateway.pdx.local"
    assert cert.not_valid_after_utc - NOW == timedelta(days=MAX_LEAF_DAYS)
    ip_only = _cert(ca.issue_server([], ["10.0.0.1"], now=NOW).cert_pem)
    assert ip_only.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "10.0.0.1"


@pytest.mark.parametrize(
    ("hostnames", "ips"),
    [
        ([], []),
        (["bad host"], []),
        (["-bad.example"], []),
        (["a" * 64 + ".example"], []),
        (["ok.example"], ["300.1.1.1"]),
        ("localhost", []),
        (["ok.example"], "127.0.0.1"),
    ],
)
def test_bad_server_names_are_refused(ca: CertificateAuthority, hostnames: Any, ips: Any) -> None:
    with pytest.raises(CertificateRequestInvalid):
        ca.issue_server(hostnames, ips, now=NOW)


# -- verify_client ------------------------------------------------------------------------------


def test_verify_client_accepts_its_own_and_refuses_the_rest(ca: CertificateAuthority) -> None:
    issued = ca.issue_client(ORG, CLIENT, days=10, now=NOW)
    assert ca.verify_client(issued.cert_pem, now=NOW + timedelta(days=1)) == (CLIENT, ORG)
    other = CertificateAuthority.create(now=NOW).issue_client(ORG, CLIENT, now=NOW)
    server = ca.issue_server(["localhost"], now=NOW)
    cases = [
        (other.cert_pem, NOW),  # another CA with the same names
        (issued.cert_pem, NOW + timedelta(days=11)),  # expired
        (issued.cert_pem, NOW - timedelta(hours=1)),  # not yet valid
        (server.cert_pem, NOW),  # serverAuth only
        (b"garbage", NOW),
    ]
    for pem, when in cases:
        with pytest.raises(CertificateInvalid) as info:
            ca.verify_client(pem, now=when)
        # one opaque answer whichever check failed (STYLE habit 5)
        assert info.value.code == "certificate-invalid"


# -- key seam: a KMS/HSM key object -----------------------------------------------------------


class _ExternalKey(ec.EllipticCurvePrivateKey):
    """Stands in for a KMS/HSM key: signs through the interface, never exports."""

    def __init__(self) -> None:
        self._inner = ec.generate_private_key(ec.SECP256R1())
        self.signatures = 0

    def sign(self, data: bytes, signature_algorithm: Any) -> bytes:
        self.signatures += 1
        return self._inner.sign(data, signature_algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._inner.curve

    @property
    def key_size(self) -> int:
        return self._inner.key_size

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError("non-exportable")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError("non-exportable")

    def __copy__(self) -> _ExternalKey:
        return self

    def __deepcopy__(self, memo: Any) -> _ExternalKey:
        return self


def test_the_ca_signs_with_any_key_object_implementing_the_interface() -> None:
    key = _ExternalKey()
    ca = CertificateAuthority.create(key=key, now=NOW)
    issued = ca.issue_client(ORG, CLIENT, now=NOW)
    assert key.signatures == 2  # the root and the leaf, both through the object
    _cert(issued.cert_pem).verify_directly_issued_by(ca.certificate)
    assert ca.verify_client(issued.cert_pem, now=NOW) == (CLIENT, ORG)


def test_an_ed25519_root_issues_p256_leaves() -> None:
    ca = CertificateAuthority.create(key=ed25519.Ed25519PrivateKey.generate(), now=NOW)
    issued = ca.issue_client(ORG, CLIENT, now=NOW)
    cert = _cert(issued.cert_pem)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert ca.verify_client(cert, now=NOW) == (CLIENT, ORG)


def test_a_p384_root_signs_with_sha384() -> None:
    ca = CertificateAuthority.create(key=ec.generate_private_key(ec.SECP384R1()), now=NOW)
    cert = _cert(ca.issue_client(ORG, CLIENT, now=NOW).cert_pem)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha384"


# -- files ----------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_or_load_writes_once_with_a_private_key_file(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    first = CertificateAuthority.create_or_load(d, now=NOW)
    assert _mode(d / CA_KEY_FILE) == 0o600
    assert _mode(d) == 0o700
    assert (d / CA_CERT_FILE).read_bytes() == first.cert_pem
    again = CertificateAuthority.create_or_load(d, now=NOW + timedelta(days=1))
    assert again.thumbprint == first.thumbprint
    issued = again.issue_client(ORG, CLIENT, now=NOW)
    assert first.verify_client(issued.cert_pem, now=NOW) == (CLIENT, ORG)
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_load_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    CertificateAuthority.create_or_load(tmp_path, now=NOW)
    os.chmod(tmp_path / CA_KEY_FILE, 0o640)
    with pytest.raises(CertificateAuthorityUnavailable, match="chmod 600"):
        CertificateAuthority.load(tmp_path)


def test_load_refuses_missing_half_or_mismatched_files(tmp_path: Path) -> None:
    with pytest.raises(CertificateAuthorityUnavailable, match="does not exist"):
        CertificateAuthority.load(tmp_path)
    CertificateAuthority.create_or_load(tmp_path / "a", now=NOW)
    (tmp_path / "a" / CA_CERT_FILE).unlink()
    with pytest.raises(CertificateAuthorityUnavailable, match="only one"):
        CertificateAuthority.create_or_load(tmp_path / "a", now=NOW)
    other = CertificateAuthority.create(now=NOW)
    (tmp_path / "a" / CA_CERT_FILE).write_bytes(other.cert_pem)
    with pytest.raises(CertificateAuthorityUnavailable, match="does not match"):
        CertificateAuthority.load(tmp_path / "a")
    (tmp_path / "a" / CA_CERT_FILE).write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    with pytest.raises(CertificateAuthorityUnavailable, match="damaged"):
        CertificateAuthority.load(tmp_path / "a")


def test_save_never_replaces_a_ca_key(tmp_path: Path) -> None:
    CertificateAuthority.create_or_load(tmp_path, now=NOW)
    with pytest.raises(CertificateAuthorityUnavailable, match="already exists"):
        CertificateAuthority.create(now=NOW).save(tmp_path)


def test_passphrase_protected_ca_key(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_or_load(tmp_path, now=NOW, passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / CA_KEY_FILE).read_bytes()
    assert CertificateAuthority.load(tmp_path, passphrase=b"correct horse").thumbprint == (
        ca.thumbprint
    )
    with pytest.raises(CertificateAuthorityUnavailable):
        CertificateAuthority.load(tmp_path, passphrase=b"wrong")
    with pytest.raises(CertificateAuthorityUnavailable):
        CertificateAuthority.load(tmp_path)


def test_issued_certificate_write(tmp_path: Path, ca: CertificateAuthority) -> None:
    issued = ca.issue_client(ORG, CLIENT, now=NOW)
    paths = issued.write(tmp_path / "out", "client", ca_pem=ca.cert_pem)
    assert [p.name for p in paths] == ["client-key.pem", "client.pem", "ca.pem"]
    assert _mode(tmp_path / "out" / "client-key.pem") == 0o600
    assert _mode(tmp_path / "out" / "client.pem") == 0o644
    assert (tmp_path / "out" / "client.pem").read_bytes() == issued.cert_pem
    with pytest.raises(CertificateAuthorityUnavailable, match="already exists"):
        ca.issue_client(ORG, CLIENT, now=NOW).write(tmp_path / "out", "client")


def test_ensure_server_certificate_reuses_then_renews(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    cert_path, key_path = ensure_server_certificate(
        ca, tmp_path, ["localhost"], ["127.0.0.1"], now=NOW
    )
    assert _mode(key_path) == 0o600
    first = cert_path.read_bytes()
    # same names, later, well before expiry: unchanged
    ensure_server_certificate(ca, tmp_path, ["localhost"], ["127.0.0.1"], now=NOW + timedelta(1))
    assert cert_path.read_bytes() == first
    # a new host name: reissued
    ensure_server_certificate(ca, tmp_path, ["localhost", "gw.example"], [], now=NOW)
    second = cert_path.read_bytes()
    assert second != first
    assert "gw.example" in _ext(
        _cert(second), x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    # within 30 days of expiry: reissued
    later = _cert(second).not_valid_after_utc - timedelta(days=10)
    ensure_server_certificate(ca, tmp_path, ["localhost"], [], now=later)
    assert cert_path.read_bytes() != second
    # issued by another CA: reissued
    other = CertificateAuthority.create(now=NOW)
    ensure_server_certificate(other, tmp_path, ["localhost"], [], now=later)
    _cert(cert_path.read_bytes()).verify_directly_issued_by(other.certificate)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key() == _cert(cert_path.read_bytes()).public_key()


# -- errors -------------------------------------------------------------------------------------


def test_error_codes_are_stable_and_rooted_in_crypto_error() -> None:
    for cls, code in [
        (CertificateError, "certificate-error"),
        (CertificateRequestInvalid, "certificate-request-invalid"),
        (CertificateInvalid, "certificate-invalid"),
        (CertificateAuthorityUnavailable, "ca-unavailable"),
    ]:
        assert issubclass(cls, CryptoError) and cls.code == code
    assert CertificateInvalid().detail == "certificate is not acceptable"
