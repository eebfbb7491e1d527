"""Key material and its types: algorithms, data and signing keys, wrapping, AAD, validity."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import inspect as sa_inspect

from crypto.errors import (
    InvalidCiphertext,
    KeyAlgorithmMismatch,
    KeyDestroyed,
    KeyNotActive,
    KeyPurposeMismatch,
    KeySuspended,
    UnsupportedAlgorithm,
)
from crypto.events import KeyEvent, KeyOperation
from crypto.lifecycle import (
    PROCESS_STATES,
    KeyPurpose,
    KeyState,
)
from crypto.models import CryptoBase, KeyRecord
from crypto.suites import keywrap
from crypto.suites import signature as signatures
from crypto.suites.aead import NONCE_SIZE, TAG_SIZE, AeadSuite, new_aead
from crypto.suites.signature import SignatureAlgorithm, SigningKeyPair
from crypto.suites.suite import CipherSuite, SuiteName

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Purposes whose keys `signing_key` / `public_jwks` serve (JWS: EdDSA). TLS_CA keys are
# signing keys too, but certificates need ECDSA or SM2: they come from `signer` only.
SIGNING_PURPOSES = frozenset(
    {KeyPurpose.SIGNING, KeyPurpose.TOKEN_SIGNING, KeyPurpose.LEDGER_SIGNING}
)
SIGNER_PURPOSES = SIGNING_PURPOSES | {KeyPurpose.TLS_CA, KeyPurpose.CHAIN_SIGNING}
# Purposes of keys kept in `crypto_keys` (data keys live in `crypto_data_keys`).
MANAGED_PURPOSES = SIGNER_PURPOSES | {KeyPurpose.KEY_WRAPPING}

# Stored algorithm names. Never rename one: each is bound into its keys' wraps.
ALGORITHM_AES_256_GCM = "AES-256-GCM"
ALGORITHM_SM4_GCM = "SM4-GCM"
ALGORITHM_ED25519 = "Ed25519"
ALGORITHM_ECDSA_P256 = "ECDSA-P256-SHA256"
ALGORITHM_SM2 = "SM2-SM3"
ALGORITHM_SECP256K1 = "ECDSA-secp256k1"


@dataclass(frozen=True)
class KeyAlgorithm:
    """What a stored algorithm name means: key type and length, and its primitive."""

    name: str
    kind: str  # "symmetric" or "asymmetric"
    bits: int
    aead: AeadSuite | None = None
    signature: SignatureAlgorithm | None = None


ALGORITHMS: Mapping[str, KeyAlgorithm] = MappingProxyType(
    {
        ALGORITHM_AES_256_GCM: KeyAlgorithm(
            ALGORITHM_AES_256_GCM, "symmetric", 256, aead=AeadSuite.AES_256_GCM
        ),
        ALGORITHM_SM4_GCM: KeyAlgorithm(
            ALGORITHM_SM4_GCM, "symmetric", 128, aead=AeadSuite.SM4_GCM
        ),
        ALGORITHM_ED25519: KeyAlgorithm(
            ALGORITHM_ED25519, "asymmetric", 256, signature=SignatureAlgorithm.ED25519
        ),
        ALGORITHM_ECDSA_P256: KeyAlgorithm(
            ALGORITHM_ECDSA_P256, "asymmetric", 256, signature=SignatureAlgorithm.ECDSA_P256_SHA256
        ),
        ALGORITHM_SM2: KeyAlgorithm(
            ALGORITHM_SM2, "asymmetric", 256, signature=SignatureAlgorithm.SM2_SM3
        ),
        ALGORITHM_SECP256K1: KeyAlgorithm(
            ALGORITHM_SECP256K1,
            "asymmetric",
            256,
            signature=SignatureAlgorithm.ECDSA_SECP256K1_SHA256,
        ),
    }
)
_SIGNATURE_NAMES = {a.signature: a.name for a in ALGORITHMS.values() if a.signature is not None}
_AEAD_NAMES = {a.aead: a.name for a in ALGORITHMS.values() if a.aead is not None}

DATA_KEY_SIZE = 32
_MAX_REF_LENGTH = 255  # String(255) columns: owner_org, object_ref

# Key ids are uuid5 of (purpose, owner) in this namespace, so two transactions creating
# the same organisation's first KEK collide on the primary key instead of making two.
_KEY_ID_NAMESPACE = uuid.UUID("8e1c3753-6d75-481f-91c4-e998f30fc892")
_KEY_AAD_LABEL = b"pdx crypto_keys v1"
_DATA_KEY_AAD_LABEL = b"pdx crypto_data_keys v1"
# Blob of a data key wrapped under an SM4 KEK: version 2 ‖ nonce ‖ SM4-GCM ciphertext+tag
# (version 1 is `suites.keywrap`'s AES-256-GCM blob).
_SM4_WRAP_VERSION = 2


def algorithm_info(name: str) -> KeyAlgorithm:
    """The `KeyAlgorithm` of a stored name; `UnsupportedAlgorithm` for an unknown one."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UnsupportedAlgorithm("unknown key algorithm", algorithm=name) from None


def kek_algorithm(suite: CipherSuite) -> str:
    """The KEK (and data key) algorithm of a suite: AES-256-GCM or SM4-GCM."""
    return _AEAD_NAMES[suite.aead_suite]


def signing_algorithm(suite: CipherSuite, purpose: KeyPurpose) -> str:
    """The algorithm a suite generates for a signing purpose.

    Token-signing keys are always Ed25519: access tokens are JWS (RFC 8037 EdDSA), and
    JOSE has no SM2 algorithm. TLS CA keys are ECDSA P-256 under the international
    suite (browsers do not accept Ed25519 certificates). Everything else follows the
    suite's default: Ed25519, or SM2 under the SM suite (ledger-signing included).
    """
    if purpose is KeyPurpose.TOKEN_SIGNING:
        return ALGORITHM_ED25519
    if purpose is KeyPurpose.CHAIN_SIGNING:
        return ALGORITHM_SECP256K1  # EVM accounts: secp256k1 under either suite
    if purpose is KeyPurpose.TLS_CA and suite.name is SuiteName.INTL:
        return ALGORITHM_ECDSA_P256
    return _SIGNATURE_NAMES[suite.signature_algorithm]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _thumbprint(required: dict[str, str]) -> str:
    # RFC 7638 section 3.2: the required members only, lexicographic order, no spaces.
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _ed25519_public_jwk(public_raw: bytes) -> dict[str, str]:
    """RFC 8037 section 2 public JWK with an RFC 7638 thumbprint as `kid`."""
    x = _b64url(public_raw)
    kid = _thumbprint({"crv": "Ed25519", "kty": "OKP", "x": x})
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def _p256_public_jwk(public_raw: bytes) -> dict[str, str]:
    """RFC 7518 section 6.2 EC public JWK (0x04 ‖ x ‖ y input) with an RFC 7638 `kid`."""
    x, y = _b64url(public_raw[1:33]), _b64url(public_raw[33:65])
    kid = _thumbprint({"crv": "P-256", "kty": "EC", "x": x, "y": y})
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}


def _public_jwk(algorithm: str, public_raw: bytes) -> dict[str, str]:
    if algorithm == ALGORITHM_ED25519:
        return _ed25519_public_jwk(public_raw)
    if algorithm == ALGORITHM_ECDSA_P256:
        return _p256_public_jwk(public_raw)
    raise KeyAlgorithmMismatch("JOSE has no JWK for this algorithm", algorithm=algorithm)


def _kid(algorithm: str, public_raw: bytes) -> str:
    if algorithm in (ALGORITHM_ED25519, ALGORITHM_ECDSA_P256):
        return _public_jwk(algorithm, public_raw)["kid"]
    # SM2 has no JWK form: a domain-separated SHA-256 of the raw public key instead.
    return _b64url(
        hashlib.sha256(b"pdx kid\x00" + algorithm.encode() + b"\x00" + public_raw).digest()
    )


@dataclass(frozen=True, eq=False)
class DataKey:
    """A data key in plaintext, for this process's memory only; `repr` hides the key."""

    id: str
    key: bytes
    object_ref: str
    algorithm: str = ALGORITHM_AES_256_GCM

    def __repr__(self) -> str:
        return (
            f"DataKey(id={self.id!r}, object_ref={self.object_ref!r}, "
            f"algorithm={self.algorithm!r}, key=<hidden>)"
        )

    @property
    def stream_suite(self) -> int:
        """The `crypto.stream` suite number for this key (`StreamEncryptor(suite=...)`)."""
        aead = algorithm_info(self.algorithm).aead
        if aead is None:
            raise KeyAlgorithmMismatch("not a data-encryption algorithm", algorithm=self.algorithm)
        return int(aead)


@dataclass(frozen=True, eq=False)
class SigningKey:
    """An Ed25519 signing key; `kid` is the RFC 7638 thumbprint of its public JWK.

    `private_key` is what PyJWT takes for `algorithm="EdDSA"`; `key_id` and `version`
    name the stored key version it was unwrapped from.
    """

    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: str
    version: int
    purpose: KeyPurpose
    kid: str = field(init=False)
    _public_jwk: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        jwk = _ed25519_public_jwk(self.private_key.public_key().public_bytes_raw())
        object.__setattr__(self, "_public_jwk", jwk)
        object.__setattr__(self, "kid", jwk["kid"])

    @classmethod
    def from_private_bytes(
        cls, raw: bytes, *, key_id: str, version: int, purpose: KeyPurpose
    ) -> SigningKey:
        """Build from a 32-byte RFC 8032 private key (seed)."""
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
        return cls(private_key=private_key, key_id=key_id, version=version, purpose=purpose)

    def public_jwk(self) -> dict[str, str]:
        return dict(self._public_jwk)


@dataclass(frozen=True, eq=False)
class Signer:
    """A signing key version of any algorithm (Ed25519, ECDSA P-256, SM2) from `signer`.

    `sign` gives the raw 64-byte signature of `crypto.suites.signature`; `public_key`
    is the raw public encoding, `kid` its stable name (RFC 7638 thumbprint where a JWK
    form exists).
    """

    key_id: str
    version: int
    purpose: KeyPurpose
    algorithm: str
    kid: str
    public_key: bytes
    _pair: SigningKeyPair = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        return self._pair.sign(message)

    @property
    def signature_algorithm(self) -> SignatureAlgorithm:
        return self._pair.algorithm


@dataclass(frozen=True)
class PublicKey:
    """A published verification key: one non-destroyed, uncompromised signing key version."""

    key_id: str
    version: int
    purpose: str
    algorithm: str
    state: str
    kid: str
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True only if `signature` (raw, 64 bytes) signs `message` under this key."""
        info = algorithm_info(self.algorithm)
        assert info.signature is not None
        return signatures.load_public(info.signature, self.public_key).verify(message, signature)


def require_aware(now: datetime) -> None:
    """`ValueError` for a naive datetime: every time `crypto` takes is UTC-aware."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def aware(value: datetime | None) -> datetime | None:
    """A stored time as aware UTC (SQLite hands back naive UTC, PostgreSQL aware)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def row_fields(view: type[DataclassInstance], row: CryptoBase) -> dict[str, Any]:
    """The fields of the dataclass `view` that `row` maps under the same name, times `aware`.

    How the frozen views of `crypto` (`KeyInfo`, `PublicKey`, ...) are built from their
    rows: `View(**row_fields(View, row), ...)`, naming only what the row does not hold.
    """
    mapped = sa_inspect(row).mapper.attrs
    values: dict[str, Any] = {}
    for name in (f.name for f in fields(view) if f.name in mapped):
        value = getattr(row, name)
        values[name] = aware(value) if isinstance(value, datetime) else value
    return values


def _require_ref(name: str, value: str) -> None:
    if not value or len(value) > _MAX_REF_LENGTH:
        raise ValueError(f"{name} must be 1 to {_MAX_REF_LENGTH} characters")


def _purpose(purpose: str, allowed: frozenset[KeyPurpose], what: str) -> KeyPurpose:
    try:
        chosen = KeyPurpose(purpose)
    except ValueError:
        raise KeyPurposeMismatch("unknown key purpose", purpose=purpose) from None
    if chosen not in allowed:
        raise KeyPurposeMismatch(f"not a {what} purpose", purpose=purpose)
    return chosen


def key_id_for(purpose: KeyPurpose | str, owner_org: str | None) -> str:
    """The deterministic id of the key of `purpose` owned by `owner_org` (None: platform)."""
    owner = "" if owner_org is None else f"org:{owner_org}"
    return str(uuid.uuid5(_KEY_ID_NAMESPACE, f"{KeyPurpose(purpose).value}\x00{owner}"))


def key_aad(
    key_id: str,
    version: int,
    purpose: str,
    algorithm: str,
    owner_org: str | None,
    public_material: bytes | None,
) -> bytes:
    """The associated data a key version's secret is wrapped under (see `row_aad`)."""
    # Everything that says what the wrapped material is and who owns it; not the
    # lifecycle state, which changes, nor parent_id, which the wrapping key itself is.
    return keywrap.encode_aad(
        _KEY_AAD_LABEL, key_id, version, purpose, algorithm, owner_org, public_material
    )


def row_aad(row: KeyRecord) -> bytes:
    """The associated data binding a key row's wrapped material to its identity."""
    return key_aad(
        row.id, row.version, row.purpose, row.algorithm, row.owner_org, row.public_material
    )


def data_key_aad(data_key_id: str, object_ref: str) -> bytes:
    """The associated data binding a wrapped data key to its id and object."""
    return keywrap.encode_aad(_DATA_KEY_AAD_LABEL, data_key_id, object_ref)


def kek_wrap(algorithm: str, kek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Wrap a data key under a KEK of `algorithm` (AES-256-GCM or SM4-GCM)."""
    if algorithm == ALGORITHM_AES_256_GCM:
        return keywrap.wrap(kek, plaintext, aad)
    if algorithm == ALGORITHM_SM4_GCM:
        nonce = os.urandom(NONCE_SIZE)
        sealed = new_aead(AeadSuite.SM4_GCM, kek).encrypt(nonce, plaintext, aad)
        return bytes((_SM4_WRAP_VERSION,)) + nonce + sealed
    raise KeyPurposeMismatch("not a key-wrapping algorithm", algorithm=algorithm)


def kek_unwrap(algorithm: str, kek: bytes, blob: bytes, aad: bytes) -> bytes:
    """Unwrap a blob from `kek_wrap`; `InvalidCiphertext` for any failure."""
    if algorithm == ALGORITHM_AES_256_GCM:
        return keywrap.unwrap(kek, blob, aad)
    if algorithm == ALGORITHM_SM4_GCM:
        header = 1 + NONCE_SIZE
        if len(blob) < header + TAG_SIZE or blob[0] != _SM4_WRAP_VERSION:
            raise InvalidCiphertext()
        view = memoryview(blob)
        return new_aead(AeadSuite.SM4_GCM, kek).decrypt(view[1:header], view[header:], aad)
    raise KeyPurposeMismatch("not a key-wrapping algorithm", algorithm=algorithm)


def generate_material(algorithm: str) -> tuple[bytes, bytes | None]:
    """Fresh (secret or private material, public material or None) for `algorithm`."""
    info = algorithm_info(algorithm)
    if info.aead is not None:
        return os.urandom(info.bits // 8), None
    assert info.signature is not None
    pair = signatures.generate(info.signature)
    return pair.private_bytes(), pair.public_bytes()


def in_validity(row: KeyRecord, now: datetime) -> bool:
    """Whether `now` is inside [not_before, not_after) of a key version."""
    not_before, not_after = aware(row.not_before), aware(row.not_after)
    return (not_before is None or not_before <= now) and (not_after is None or now < not_after)


def check_processable(row: KeyRecord) -> None:
    """Refuse to unwrap/verify with a key version whose state forbids processing."""
    if row.state == KeyState.DESTROYED:
        raise KeyDestroyed("key was destroyed", key_id=row.id, version=row.version)
    if row.state == KeyState.SUSPENDED:
        raise KeySuspended("key is suspended", key_id=row.id, version=row.version)
    if row.state not in PROCESS_STATES:
        raise KeyNotActive(f"key is {row.state}", key_id=row.id, version=row.version)


def event_for(
    operation: KeyOperation, row: KeyRecord, detail: str, *, actor: str | None = None
) -> KeyEvent:
    """A `KeyEvent` describing `operation` on a stored key version."""
    return KeyEvent(
        operation,
        row.id,
        row.version,
        row.purpose,
        row.algorithm,
        row.owner_org,
        detail,
        actor=actor,
        state=row.state,
    )
