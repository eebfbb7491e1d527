"""Cryptography for pdx: digests, streaming encryption, client secrets and the key store."""

from crypto._pem_files import write_file as write_file_atomically
from crypto.backends import RootKeyBackend
from crypto.backends.local import LocalRootKey
from crypto.chainkey import ChainKey, unsafe_export_chain_key
from crypto.digest import ContentDigest, sha256, sm3
from crypto.errors import (
    CryptoError,
    InvalidCiphertext,
    InvalidGroupElement,
    KeyNotFound,
    KeyPurposeMismatch,
    KeyStoreUnavailable,
)
from crypto.keymaterial import DataKey, SigningKey
from crypto.keystore import KeyStore
from crypto.lifecycle import KeyPurpose
from crypto.models import CryptoBase
from crypto.psi_ec import GroupPoint, PsiGroup, PsiScalar, psi_group
from crypto.secrets import dummy_verify, generate_secret, hash_secret, verify_secret
from crypto.stream import StreamEncryptor, decrypt_stream
from crypto.suites.aead import AeadSuite
from crypto.suites.signature import SignatureAlgorithm, SigningKeyPair, VerifyingKey
from crypto.suites.signature import generate as generate_key_pair
from crypto.suites.signature import load_private as load_key_pair
from crypto.suites.signature import load_public as load_verifying_key

__all__ = [
    "AeadSuite",
    "ChainKey",
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
    "SignatureAlgorithm",
    "SigningKey",
    "SigningKeyPair",
    "StreamEncryptor",
    "VerifyingKey",
    "decrypt_stream",
    "dummy_verify",
    "generate_key_pair",
    "generate_secret",
    "hash_secret",
    "load_key_pair",
    "load_verifying_key",
    "sha256",
    "sm3",
    "unsafe_export_chain_key",
    "verify_secret",
    "write_file_atomically",
    # ECDH-PSI group (issue 18)
    "GroupPoint",
    "InvalidGroupElement",
    "PsiGroup",
    "PsiScalar",
    "psi_group",
]
