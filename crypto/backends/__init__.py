"""Root-key backends: where the key at the top of the hierarchy lives and is used."""

from __future__ import annotations

from typing import Protocol


class RootKeyBackend(Protocol):
    """Holds the root key and never exports it; wraps and unwraps the keys below it.

    `key_id` names the root key (stored as `parent_id` of everything it wraps) without
    revealing it. `wrap` binds `aad` to the blob; `unwrap` raises `InvalidCiphertext`
    for any failure, including a different `aad`. `kind` says where the key lives
    ("local", "local-sealed", "pkcs11") for the key inventory. `LocalRootKey`
    (`crypto.backends.local`) and `Pkcs11RootKey` (`crypto.backends.pkcs11`) implement it.
    """

    @property
    def key_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...
