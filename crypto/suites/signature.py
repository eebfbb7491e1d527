"""One signing API over Ed25519, ECDSA P-256/SHA-256 and SM2/SM3, with fixed raw encodings."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from crypto.errors import InvalidKey, UnsupportedAlgorithm
from crypto.suites import sm2

# Encodings, one per algorithm and never negotiated (all raw, none PKCS#8/SPKI):
#
#   algorithm          private_bytes()              public_bytes()            signature
#   ed25519            32-byte seed (RFC 8032 5.1.5) 32 bytes (RFC 8032 5.1.2) 64 bytes R ‖ S
#   ecdsa-p256-sha256  32-byte big-endian scalar d   65 bytes 0x04 ‖ x ‖ y     64 bytes r ‖ s
#   sm2-sm3            32-byte big-endian scalar d   65 bytes 0x04 ‖ x ‖ y     64 bytes r ‖ s
#   ecdsa-secp256k1-   32-byte big-endian scalar d   65 bytes 0x04 ‖ x ‖ y     64 bytes r ‖ s
#     sha256           (SEC 2 2.4.1; the curve of EVM accounts, see crypto.chainkey)
#
# Points are SEC 1 2.3.3 / GB/T 32918.1-2016 4.2.9 uncompressed; r ‖ s is the IEEE P1363
# form JWS uses for ES256 (RFC 7518 3.4): fixed length, one spelling per signature, unlike
# DER. SM2 signs with the default user ID "1234567812345678" (GM/T 0009-2012 10);
# `crypto.suites.sm2` takes any other ID. ECDSA signatures are deterministic (RFC 6979),
# so no signature depends on the quality of a per-signature random k.

SIGNATURE_SIZE: Final = 64

_P256_ORDER: Final = 0xFFFFFFFF_00000000_FFFFFFFF_FFFFFFFF_BCE6FAAD_A7179E84_F3B9CAC2_FC632551
_SECP256K1_ORDER: Final = 0xFFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFE_BAAEDCE6_AF48A03B_BFD25E8C_D0364141
_P256_PUBLIC_SIZE: Final = 65
_SCALAR_SIZE: Final = 32


class SignatureAlgorithm(StrEnum):
    """Signature algorithms by their stable names (stored with keys and signatures)."""

    ED25519 = "ed25519"
    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
    SM2_SM3 = "sm2-sm3"
    ECDSA_SECP256K1_SHA256 = "ecdsa-secp256k1-sha256"


def _algorithm(algorithm: SignatureAlgorithm | str) -> SignatureAlgorithm:
    try:
        return SignatureAlgorithm(algorithm)
    except ValueError:
        raise UnsupportedAlgorithm(
            "unknown signature algorithm", algorithm=str(algorithm)
        ) from None


def _require_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, bytes):
        raise InvalidKey(f"{what} must be bytes")
    return data


class VerifyingKey(ABC):
    """A public key that checks signatures; `verify` never raises on a bad signature."""

    algorithm: SignatureAlgorithm

    @abstractmethod
    def public_bytes(self) -> bytes:
        """The raw public encoding of `algorithm` (table at the top of this module)."""

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool:
        """True only if `signature` is a valid signature of `message` under this key."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, VerifyingKey)
            and other.algorithm == self.algorithm
            and other.public_bytes() == self.public_bytes()
        )

    def __hash__(self) -> int:
        return hash((self.algorithm, self.public_bytes()))

    def __repr__(self) -> str:
        fingerprint = hashlib.sha256(self.public_bytes()).hexdigest()[:16]
        return f"VerifyingKey(algorithm={self.algorithm.value!r}, fingerprint={fingerprint!r})"


class SigningKeyPair(ABC):
    """A private signing key with its public half; `repr` never shows private material."""

    algorithm: SignatureAlgorithm

    @abstractmethod
    def public_key(self) -> VerifyingKey:
        """The verifying half."""

    @abstractmethod
    def private_bytes(self) -> bytes:
        """The raw private encoding of `algorithm`: keep it wrapped, never log it."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature of `message`."""

    def public_bytes(self) -> bytes:
        """Same as `public_key().public_bytes()`."""
        return self.public_key().public_bytes()

    def __repr__(self) -> str:
        fingerprint = hashlib.sha256(self.public_bytes()).hexdigest()[:16]
        return (
            f"SigningKeyPair(algorithm={self.algorithm.value!r}, "
            f"public_fingerprint={fingerprint!r}, private=<hidden>)"
        )


# -- Ed25519 (RFC 8032) -------------------------------------------------------------------


class _Ed25519VerifyingKey(VerifyingKey):
    algorithm = SignatureAlgorithm.ED25519

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    def public_bytes(self) -> bytes:
        return self._key.public_bytes_raw()

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class _RawKeyPair(SigningKeyPair):
    """A pair whose private key object signs and encodes in our raw formats (Ed25519, SM2)."""

    def __init__(
        self,
        sign: Callable[[bytes], bytes],
        private_bytes: Callable[[], bytes],
        public: VerifyingKey,
    ) -> None:
        self._sign = sign
        self._private_bytes = private_bytes
        self._public = public

    def public_key(self) -> VerifyingKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._private_bytes()

    def sign(self, message: bytes) -> bytes:
        return self._sign(message)


class _Ed25519KeyPair(_RawKeyPair):
    algorithm = SignatureAlgorithm.ED25519

    def __init__(self, key: Ed25519PrivateKey) -> None:
        super().__init__(key.sign, key.private_bytes_raw, _Ed25519VerifyingKey(key.public_key()))


# -- ECDSA P-256 with SHA-256 (FIPS 186-5, RFC 6979) -----------------------------------


def _p1363_to_der(signature: bytes, order: int = _P256_ORDER) -> bytes | None:
    if len(signature) != SIGNATURE_SIZE:
        return None
    r = int.from_bytes(signature[:_SCALAR_SIZE], "big")
    s = int.from_bytes(signature[_SCALAR_SIZE:], "big")
    if not (0 < r < order and 0 < s < order):
        return None
    return encode_dss_signature(r, s)


class _EcdsaP256VerifyingKey(VerifyingKey):
    algorithm = SignatureAlgorithm.ECDSA_P256_SHA256
    _order: int = _P256_ORDER  # the group order r and s must lie below
    _curve: type[ec.EllipticCurve] = ec.SECP256R1
    _curve_name = "P-256"

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self._key = key

    @classmethod
    def from_point(cls, raw: bytes) -> _EcdsaP256VerifyingKey:
        """From the uncompressed point; `InvalidKey` unless it is a point on the curve."""
        if len(raw) != _P256_PUBLIC_SIZE or raw[0] != 0x04:
            raise InvalidKey(f"a {cls._curve_name} public key is 65 bytes (0x04 ‖ x ‖ y)")
        try:
            # Checks that the point is on the curve (SEC 1 3.2.2.1).
            key = ec.EllipticCurvePublicKey.from_encoded_point(cls._curve(), raw)
        except ValueError:
            raise InvalidKey(
                f"the {cls._curve_name} public key is not a point on the curve"
            ) from None
        return cls(key)

    def public_bytes(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def verify(self, message: bytes, signature: bytes) -> bool:
        der = _p1363_to_der(signature, self._order)
        if der is None:
            return False
        try:
            self._key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


class _EcdsaP256KeyPair(SigningKeyPair):
    algorithm = SignatureAlgorithm.ECDSA_P256_SHA256
    _verifying_key: type[_EcdsaP256VerifyingKey] = _EcdsaP256VerifyingKey

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._public = self._verifying_key(key.public_key())

    @classmethod
    def from_scalar(cls, raw: bytes) -> _EcdsaP256KeyPair:
        """From the 32-byte scalar d; `InvalidKey` unless 0 < d < n."""
        curve = cls._verifying_key
        if len(raw) != _SCALAR_SIZE:
            raise InvalidKey(f"a {curve._curve_name} private key is 32 bytes")
        d = int.from_bytes(raw, "big")
        if not 0 < d < curve._order:
            raise InvalidKey(f"the {curve._curve_name} private key is out of range [1, n-1]")
        return cls(ec.derive_private_key(d, curve._curve()))

    def public_key(self) -> VerifyingKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._key.private_numbers().private_value.to_bytes(_SCALAR_SIZE, "big")

    def sign(self, message: bytes) -> bytes:
        der = self._key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(_SCALAR_SIZE, "big") + s.to_bytes(_SCALAR_SIZE, "big")


# -- ECDSA secp256k1 with SHA-256 (SEC 2, RFC 6979) ---------------------------------


class _Secp256k1VerifyingKey(_EcdsaP256VerifyingKey):
    algorithm = SignatureAlgorithm.ECDSA_SECP256K1_SHA256
    _order = _SECP256K1_ORDER
    _curve = ec.SECP256K1
    _curve_name = "secp256k1"


class _Secp256k1KeyPair(_EcdsaP256KeyPair):
    algorithm = SignatureAlgorithm.ECDSA_SECP256K1_SHA256
    _verifying_key = _Secp256k1VerifyingKey


# -- SM2 with SM3 (GB/T 32918.2-2016) ------------------------------------------------------


class _Sm2VerifyingKey(VerifyingKey):
    algorithm = SignatureAlgorithm.SM2_SM3

    def __init__(self, key: sm2.Sm2PublicKey) -> None:
        self._key = key

    def public_bytes(self) -> bytes:
        return self._key.public_bytes()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return self._key.verify(message, signature)


class _Sm2KeyPair(_RawKeyPair):
    algorithm = SignatureAlgorithm.SM2_SM3

    def __init__(self, key: sm2.Sm2PrivateKey) -> None:
        super().__init__(key.sign, key.private_bytes, _Sm2VerifyingKey(key.public_key()))


# -- the uniform entry points ----------------------------------------------------------


def generate(algorithm: SignatureAlgorithm | str) -> SigningKeyPair:
    """A fresh key pair of `algorithm`; `UnsupportedAlgorithm` for an unknown name."""
    chosen = _algorithm(algorithm)
    if chosen is SignatureAlgorithm.ED25519:
        return _Ed25519KeyPair(Ed25519PrivateKey.generate())
    if chosen is SignatureAlgorithm.ECDSA_P256_SHA256:
        return _EcdsaP256KeyPair(ec.generate_private_key(ec.SECP256R1()))
    if chosen is SignatureAlgorithm.ECDSA_SECP256K1_SHA256:
        return _Secp256k1KeyPair(ec.generate_private_key(ec.SECP256K1()))
    return _Sm2KeyPair(sm2.Sm2PrivateKey.generate())


def _ed25519(raw: bytes, half: str) -> bytes:
    """`raw` when it is 32 bytes, the size of both halves of an Ed25519 key; else `InvalidKey`."""
    if len(raw) != _SCALAR_SIZE:
        raise InvalidKey(f"an Ed25519 {half} key is 32 bytes")
    return raw


def _ed25519_private(raw: bytes) -> SigningKeyPair:
    return _Ed25519KeyPair(Ed25519PrivateKey.from_private_bytes(_ed25519(raw, "private")))


def _ed25519_public(raw: bytes) -> VerifyingKey:
    return _Ed25519VerifyingKey(Ed25519PublicKey.from_public_bytes(_ed25519(raw, "public")))


# Per algorithm: how its raw private and public encodings load (each checks its input).
_LOAD_PRIVATE: dict[SignatureAlgorithm, Callable[[bytes], SigningKeyPair]] = {
    SignatureAlgorithm.ED25519: _ed25519_private,
    SignatureAlgorithm.ECDSA_P256_SHA256: _EcdsaP256KeyPair.from_scalar,
    SignatureAlgorithm.ECDSA_SECP256K1_SHA256: _Secp256k1KeyPair.from_scalar,
    SignatureAlgorithm.SM2_SM3: lambda raw: _Sm2KeyPair(sm2.Sm2PrivateKey(raw)),
}
_LOAD_PUBLIC: dict[SignatureAlgorithm, Callable[[bytes], VerifyingKey]] = {
    SignatureAlgorithm.ED25519: _ed25519_public,
    SignatureAlgorithm.ECDSA_P256_SHA256: _EcdsaP256VerifyingKey.from_point,
    SignatureAlgorithm.ECDSA_SECP256K1_SHA256: _Secp256k1VerifyingKey.from_point,
    SignatureAlgorithm.SM2_SM3: lambda raw: _Sm2VerifyingKey(sm2.Sm2PublicKey(raw)),
}


def load_private(algorithm: SignatureAlgorithm | str, data: bytes) -> SigningKeyPair:
    """Rebuild a key pair from `private_bytes()`; `InvalidKey` if `data` cannot be one."""
    return _LOAD_PRIVATE[_algorithm(algorithm)](_require_bytes(data, "private key"))


def load_private_pem(data: bytes, passphrase: bytes | None = None) -> SigningKeyPair:
    """An Ed25519 key pair from PKCS#8 PEM (what `pdx_client.partykeys.PartyKey.save` writes).

    `InvalidKey` if `data` is not such a key or the passphrase does not open it.
    """
    try:
        key = serialization.load_pem_private_key(_require_bytes(data, "PEM key"), passphrase)
    except (ValueError, TypeError):
        raise InvalidKey("not a PKCS#8 PEM private key (or the wrong passphrase)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey("a PEM party key must be Ed25519")
    return _Ed25519KeyPair(key)


def load_public(algorithm: SignatureAlgorithm | str, data: bytes) -> VerifyingKey:
    """A verifying key from `public_bytes()`; `InvalidKey` if `data` cannot be one."""
    return _LOAD_PUBLIC[_algorithm(algorithm)](_require_bytes(data, "public key"))
