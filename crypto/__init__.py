"""Cryptography for pdx: digests, streaming encryption, client secrets and the key store."""

from crypto.backends import RootKeyBackend
from crypto.backends.local import LocalRootKey
from crypto.digest import ContentDigest, sha256, sm3
from crypto.errors import (
    CryptoError,
    InvalidCiphertext,
    KeyNotFound,
    KeyPurposeMismatch,
    KeyStoreUnavailable,
)
from crypto.keymaterial import DataKey, SigningKey
from crypto.keystore import KeyStore
from crypto.lifecycle import KeyPurpose
from crypto.models import CryptoBase
from crypto.secrets import dummy_verify, generate_secret, hash_secret, verify_secret
from crypto.stream import StreamEncryptor, decrypt_stream
from crypto.suites.aead import AeadSuite

__all__ = [
    "AeadSuite",
    "ContentDigest",
    "CryptoBase",
    "CryptoError",
    "DataKey",
    "InvalidCiphertext",
    "KeyNotFound",
    "KeyPurpose",
    "KeyPurposeMismatch",
    "KeyStore",
    "KeyStoreUnavailable",
    "LocalRootKey",
    "RootKeyBackend",
    "SigningKey",
    "StreamEncryptor",
    "decrypt_stream",
    "dummy_verify",
    "generate_secret",
    "hash_secret",
    "sha256",
    "sm3",
    "verify_secret",
]
