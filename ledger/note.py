"""Signed notes (C2SP signed-note, Go's golang.org/x/mod/sumdb/note): text plus signature lines."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from crypto import (
    CryptoError,
    SignatureAlgorithm,
    SigningKeyPair,
    VerifyingKey,
    load_key_pair,
    load_verifying_key,
)
from ledger.errors import NoteError

__all__ = [
    "ALG_ED25519",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "NoteKey",
    "NoteSigner",
    "NoteVerifier",
    "VerifierFactory",
    "b64decode_canonical",
    "key_hash",
    "open_note",
    "parse_verifier_key",
    "register_verifier_algorithm",
    "sign_note",
    "verifier_key",
]

# C2SP signed-note "Signature types": the byte that starts an encoded public key.
ALG_ED25519: Final = 0x01

# "— " (em dash U+2014, space) starts every signature line.
_SIG_PREFIX: Final = "\u2014 "
# C2SP signed-note: verifiers SHOULD cap the number of signatures and MUST accept 16;
# Go's note.Open refuses more than 100 lines, and so do we.
_MAX_SIGNATURES: Final = 100

# Go's unicode.IsSpace (the Unicode White_Space property), which Go's isValidName
# uses; Python's str.isspace() differs (it also counts U+001C..U+001F).
_SPACES: Final = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class NoteSigner(Protocol):
    """Signs note texts with one key, known to verifiers by (`name`, `key_hash`)."""

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> int: ...

    def sign(self, msg: bytes) -> bytes: ...


class NoteVerifier(Protocol):
    """Checks signatures by one key, identified by (`name`, `key_hash`)."""

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> int: ...

    def verify(self, msg: bytes, sig: bytes) -> bool: ...


VerifierFactory = Callable[[str, bytes], NoteVerifier]
"""Builds a verifier from a key name and the public key bytes after the algorithm byte.

Raises `NoteError` (or `ValueError`) if the key bytes are malformed.
"""


def _valid_name(name: str) -> bool:
    # Go isValidName: non-empty, no Unicode spaces, no "+". We also refuse control
    # characters and lone surrogates, which could never appear in an openable note.
    if not name or "+" in name:
        return False
    if any(c in _SPACES or c < " " for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise NoteError(
            "key name must be non-empty, without spaces, '+' or control characters",
            name=name,
        )


def key_hash(name: str, encoded_key: bytes) -> int:
    """C2SP key ID: SHA-256(name || 0x0A || algorithm byte || public key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + encoded_key).digest()
    return int.from_bytes(digest[:4], "big")


class _RawEd25519Private(Protocol):
    """An Ed25519 private key that gives its 32-byte seed (as `crypto.SigningKey.private_key`)."""

    def private_bytes_raw(self) -> bytes: ...


class _RawEd25519Public(Protocol):
    """An Ed25519 public key that gives its 32 raw bytes."""

    def public_bytes_raw(self) -> bytes: ...


Ed25519Private = SigningKeyPair | _RawEd25519Private
Ed25519Public = VerifyingKey | _RawEd25519Public | bytes


def ed25519_key_pair(key: Ed25519Private) -> SigningKeyPair:
    """`key` as a `crypto` Ed25519 key pair (signing goes through `crypto`'s surface)."""
    if isinstance(key, SigningKeyPair):
        if key.algorithm is not SignatureAlgorithm.ED25519:
            raise NoteError("not an Ed25519 key", algorithm=str(key.algorithm))
        return key
    return load_key_pair(SignatureAlgorithm.ED25519, key.private_bytes_raw())


def _ed25519_public_bytes(key: Ed25519Public) -> bytes:
    if isinstance(key, VerifyingKey):
        if key.algorithm is not SignatureAlgorithm.ED25519:
            raise NoteError("not an Ed25519 key", algorithm=str(key.algorithm))
        return key.public_bytes()
    raw = bytes(key) if isinstance(key, bytes) else key.public_bytes_raw()
    if len(raw) != 32:
        raise NoteError("Ed25519 public key must be 32 bytes", length=len(raw))
    return raw


class NoteKey:
    """A key as signed notes name it: `name`, the encoded key and its C2SP key hash."""

    __slots__ = ("_encoded", "_key_hash", "_name")

    def __init__(self, name: str, encoded_key: bytes) -> None:
        self._name = name
        self._encoded = encoded_key
        self._key_hash = key_hash(name, encoded_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_hash(self) -> int:
        return self._key_hash

    @property
    def encoded(self) -> bytes:
        """The algorithm byte(s) followed by the public key."""
        return self._encoded

    def verifier_key(self) -> str:
        """`<name>+<8 hex key hash>+<base64(encoded key)>`, the form Go's note.NewVerifier reads."""
        encoded = base64.b64encode(self._encoded).decode("ascii")
        return f"{self._name}+{self._key_hash:08x}+{encoded}"


class Ed25519NoteVerifier(NoteKey):
    """Verifies Ed25519 (RFC 8032) note signatures, algorithm byte 0x01."""

    __slots__ = ("_public_key",)

    def __init__(self, name: str, public_key: Ed25519Public) -> None:
        _check_name(name)
        raw = _ed25519_public_bytes(public_key)
        super().__init__(name, bytes([ALG_ED25519]) + raw)
        self._public_key = load_verifying_key(SignatureAlgorithm.ED25519, raw)

    @property
    def public_key(self) -> VerifyingKey:
        return self._public_key

    def verify(self, msg: bytes, sig: bytes) -> bool:
        # crypto's verify checks the 64-byte length and never raises on a bad signature.
        return self._public_key.verify(msg, sig)


class Ed25519NoteSigner(NoteKey):
    """Signs notes with an Ed25519 key; signatures are deterministic (RFC 8032)."""

    __slots__ = ("_private_key",)

    def __init__(self, name: str, private_key: Ed25519Private) -> None:
        _check_name(name)
        self._private_key = ed25519_key_pair(private_key)
        super().__init__(name, bytes([ALG_ED25519]) + self._private_key.public_bytes())

    def sign(self, msg: bytes) -> bytes:
        return self._private_key.sign(msg)

    def verifier(self) -> Ed25519NoteVerifier:
        """The matching verifier."""
        return Ed25519NoteVerifier(self._name, self._private_key.public_key())


def _ed25519_factory(name: str, key: bytes) -> NoteVerifier:
    if len(key) != 32:
        raise NoteError("Ed25519 verifier key must be 32 bytes", name=name, length=len(key))
    return Ed25519NoteVerifier(name, key)


# Algorithm byte -> verifier factory. Other suites (SM2 later) register here.
_VERIFIER_FACTORIES: dict[int, VerifierFactory] = {ALG_ED25519: _ed25519_factory}


def register_verifier_algorithm(algorithm: int, factory: VerifierFactory) -> None:
    """Teach `parse_verifier_key` an algorithm byte (C2SP signed-note "Signature types")."""
    if not 0 <= algorithm <= 0xFF:
        raise ValueError("algorithm identifier is one byte")
    existing = _VERIFIER_FACTORIES.get(algorithm)
    if existing is not None and existing is not factory:
        raise ValueError(f"algorithm 0x{algorithm:02x} is already registered")
    _VERIFIER_FACTORIES[algorithm] = factory


def verifier_key(name: str, public_key: Ed25519Public) -> str:
    """`<name>+<8 hex key hash>+<base64(0x01 || key)>`, the form Go's note.NewVerifier reads.

    `public_key` is an Ed25519 public key (a `crypto.VerifyingKey`, or any key object
    with `public_bytes_raw()`) or its 32 raw bytes (RFC 8032).
    """
    _check_name(name)
    try:
        raw = _ed25519_public_bytes(public_key)
    except NoteError as exc:
        raise NoteError(exc.detail, name=name, **exc.extensions) from None
    return NoteKey(name, bytes([ALG_ED25519]) + raw).verifier_key()


def b64decode_canonical(text: str) -> bytes:
    """Standard base64 (RFC 4648 4) with padding, canonical only; raises ValueError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64") from exc
    # Refuse non-canonical spellings (extra data, non-zero pad bits): one signature,
    # one spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


_HEX: Final = frozenset("0123456789abcdefABCDEF")


def parse_verifier_key(text: str) -> NoteVerifier:
    """A verifier from `<name>+<hash>+<base64 key>`; the hash must match the key."""
    name, _, rest = text.partition("+")
    hash_hex, _, key_b64 = rest.partition("+")
    if len(hash_hex) != 8 or not set(hash_hex) <= _HEX or not _valid_name(name):
        raise NoteError("malformed verifier key")
    try:
        encoded = b64decode_canonical(key_b64)
    except ValueError as exc:
        raise NoteError("malformed verifier key") from exc
    if not encoded:
        raise NoteError("malformed verifier key")
    if int(hash_hex, 16) != key_hash(name, encoded):
        raise NoteError("verifier key hash does not match the key", name=name)
    factory = _VERIFIER_FACTORIES.get(encoded[0])
    if factory is None:
        raise NoteError(
            f"unknown verifier algorithm 0x{encoded[0]:02x}", name=name, algorithm=encoded[0]
        )
    try:
        verifier = factory(name, encoded[1:])
    except (ValueError, CryptoError) as exc:
        raise NoteError("malformed verifier key", name=name) from exc
    if verifier.name != name or verifier.key_hash != int(hash_hex, 16):
        raise NoteError("verifier factory returned a different key", name=name)
    return verifier


def _check_text(text: str) -> None:
    # C2SP signed-note: valid UTF-8, no ASCII control characters but newline.
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("note text contains a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError("note text is not valid Unicode") from exc


def sign_note(text: str, *signers: NoteSigner) -> bytes:
    """`text`, a blank line, then one signature line per signer, in the order given."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if not signers:
        raise NoteError("a signed note needs at least one signer")
    _check_text(text)
    msg = text.encode("utf-8")
    lines = [text, "\n"]
    for signer in signers:
        name, hash_ = signer.name, signer.key_hash
        _check_name(name)
        if not 0 <= hash_ <= 0xFFFFFFFF:
            raise NoteError("key hash must be a uint32", name=name)
        sig = hash_.to_bytes(4, "big") + signer.sign(msg)
        lines.append(f"{_SIG_PREFIX}{name} {base64.b64encode(sig).decode('ascii')}\n")
    return "".join(lines).encode("utf-8")


def open_note(msg: bytes, verifiers: Iterable[NoteVerifier]) -> tuple[str, list[str]]:
    """Parse a signed note and check its signatures; return (text, verified signer names).

    As C2SP signed-note and Go's note.Open: signatures from unknown (name, key hash)
    pairs are ignored; a signature from a known key that fails to verify rejects the
    whole note; a note with no verified signature is rejected. Repeated signatures by
    one key count once.
    """
    # 1. Well-formed: UTF-8, no control characters but newline.
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("malformed note: not UTF-8") from exc
    if any(c < " " and c != "\n" for c in decoded):
        raise NoteError("malformed note: control character")

    # 2. Text, then the last blank line, then signature lines each ending in newline.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no signature block")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("malformed note: no signature lines")

    known: dict[tuple[str, int], list[NoteVerifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_hash), []).append(verifier)

    # 3. Each signature line: parse, look up the key, verify if known.
    text_bytes = text.encode("utf-8")
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {_MAX_SIGNATURES} signatures")
    verified: list[str] = []
    seen: set[tuple[str, int]] = set()
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed note: bad signature line")
        name, _, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = b64decode_canonical(sig_b64)
        except ValueError as exc:
            raise NoteError("malformed note: signature is not base64") from exc
        if not _valid_name(name) or len(raw) < 5:
            raise NoteError("malformed note: bad signature line")
        hash_ = int.from_bytes(raw[:4], "big")
        candidates = known.get((name, hash_))
        if candidates is None:
            continue  # unknown key: ignored (C2SP signed-note "Signatures")
        if len(candidates) > 1:
            raise NoteError(f"ambiguous key {name}+{hash_:08x}", name=name)
        if (name, hash_) in seen:
            continue
        seen.add((name, hash_))
        if not candidates[0].verify(text_bytes, raw[4:]):
            raise NoteError(f"invalid signature for key {name}+{hash_:08x}", name=name)
        verified.append(name)

    # 4. At least one trusted signature.
    if not verified:
        raise NoteError("note has no verifiable signatures")
    return text, verified
