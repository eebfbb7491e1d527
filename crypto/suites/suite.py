"""Cipher suites chosen per deployment or tenant: international (`intl`) or ShangMi (`sm`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from crypto.digest import Buffer, sha256, sm3
from crypto.errors import InvalidKey, UnsupportedAlgorithm
from crypto.suites import signature
from crypto.suites.aead import KEY_SIZES, Aead, AeadSuite, new_aead
from crypto.suites.mac import Mac, MacAlgorithm
from crypto.suites.signature import SignatureAlgorithm, SigningKeyPair, VerifyingKey


class SuiteName(StrEnum):
    """Suite names as configured and stored (CRY-07: chosen per deployment/tenant)."""

    INTL = "intl"
    SM = "sm"


_HASHES: Final[Mapping[str, Callable[[Buffer], bytes]]] = MappingProxyType(
    {"sha256": sha256, "sm3": sm3}
)


@dataclass(frozen=True)
class CipherSuite:
    """One consistent set of algorithms: AEAD, hash, MAC and signatures.

    `signature_algorithms` lists what the suite accepts, its first entry being what it
    generates by default. `hash_name` is a key of `ContentDigest.hexdigests()`.
    """

    name: SuiteName
    aead_suite: AeadSuite
    hash_name: str
    mac_algorithm: MacAlgorithm
    signature_algorithms: tuple[SignatureAlgorithm, ...]
    _hash: Callable[[Buffer], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.hash_name not in _HASHES:
            raise ValueError(f"unknown hash {self.hash_name!r}")
        if not self.signature_algorithms:
            raise ValueError("a suite needs at least one signature algorithm")
        object.__setattr__(self, "_hash", _HASHES[self.hash_name])

    @property
    def signature_algorithm(self) -> SignatureAlgorithm:
        """The default signature algorithm: what `generate_signing_key()` makes."""
        return self.signature_algorithms[0]

    @property
    def stream_suite(self) -> int:
        """The suite number `crypto.stream` writes into stream headers."""
        return int(self.aead_suite)

    @property
    def aead_key_size(self) -> int:
        """Key length in bytes of the suite's AEAD (32 for AES-256, 16 for SM4)."""
        return KEY_SIZES[self.aead_suite]

    def aead(self, key: bytes) -> Aead:
        """The suite's AEAD under `key`; `InvalidKey` if the key has the wrong length."""
        if len(key) != self.aead_key_size:
            raise InvalidKey(f"suite {self.name.value} needs a {self.aead_key_size}-byte AEAD key")
        return new_aead(self.aead_suite, key)

    def hash(self, data: Buffer) -> bytes:
        """The suite's hash (SHA-256 or SM3) of `data`."""
        return self._hash(data)

    def mac(self, key: bytes) -> Mac:
        """The suite's HMAC under `key`."""
        return Mac(self.mac_algorithm, key)

    def _accepted(self, algorithm: SignatureAlgorithm | str | None) -> SignatureAlgorithm:
        if algorithm is None:
            return self.signature_algorithm
        for accepted in self.signature_algorithms:
            if accepted.value == algorithm:
                return accepted
        raise UnsupportedAlgorithm(
            f"signature algorithm not in suite {self.name.value}", algorithm=str(algorithm)
        )

    def generate_signing_key(
        self, algorithm: SignatureAlgorithm | str | None = None
    ) -> SigningKeyPair:
        """A fresh signing key of `algorithm` (default: the suite's default)."""
        return signature.generate(self._accepted(algorithm))

    def load_private(
        self, data: bytes, algorithm: SignatureAlgorithm | str | None = None
    ) -> SigningKeyPair:
        """`signature.load_private`, refusing algorithms outside the suite."""
        return signature.load_private(self._accepted(algorithm), data)

    def load_public(
        self, data: bytes, algorithm: SignatureAlgorithm | str | None = None
    ) -> VerifyingKey:
        """`signature.load_public`, refusing algorithms outside the suite."""
        return signature.load_public(self._accepted(algorithm), data)


INTL: Final = CipherSuite(
    name=SuiteName.INTL,
    aead_suite=AeadSuite.AES_256_GCM,
    hash_name="sha256",
    mac_algorithm=MacAlgorithm.HMAC_SHA256,
    signature_algorithms=(SignatureAlgorithm.ED25519, SignatureAlgorithm.ECDSA_P256_SHA256),
)

# The national suite of GB/T 39786-2021: SM4 (GB/T 32907), SM3 (GB/T 32905), SM2 (GB/T 32918).
SM: Final = CipherSuite(
    name=SuiteName.SM,
    aead_suite=AeadSuite.SM4_GCM,
    hash_name="sm3",
    mac_algorithm=MacAlgorithm.HMAC_SM3,
    signature_algorithms=(SignatureAlgorithm.SM2_SM3,),
)

SUITES: Final[Mapping[SuiteName, CipherSuite]] = MappingProxyType(
    {SuiteName.INTL: INTL, SuiteName.SM: SM}
)


def suite(name: SuiteName | str) -> CipherSuite:
    """The suite called `name`; `UnsupportedAlgorithm` for any other name."""
    try:
        return SUITES[SuiteName(name)]
    except ValueError:
        raise UnsupportedAlgorithm("unknown cipher suite", suite=str(name)) from None
