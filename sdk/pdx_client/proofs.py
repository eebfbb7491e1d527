"""Offline ledger checks with hashlib and cryptography only: RFC 9162 proofs, checkpoints.

C2SP signed-note checkpoints are opened with the log's Ed25519 key; `verify_receipt`
proves one entry.

Function names follow transparency-dev/merkle (`decomp_inclusion_proof`, `chain_inner`,
`chain_border_right`) so the code can be read line by line against RFC 9162 §2.1.3-2.1.4.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdx_client.errors import VerificationError

__all__ = [
    "Checkpoint",
    "MerkleHasher",
    "NoteVerifier",
    "open_checkpoint",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_receipt",
]

_SIG_PREFIX = "\u2014 "  # C2SP signed-note: "— " starts every signature line
_ALG_ED25519 = 0x01


def _fail(detail: str, **extensions: Any) -> VerificationError:
    return VerificationError(
        detail,
        type="https://pdx.dev/problems/ledger-proof-invalid",
        title="Verification failed",
        extensions=extensions,
    )


class MerkleHasher:
    """RFC 9162 §2.1.1: leaf = H(0x00 || data), node = H(0x01 || left || right)."""

    def __init__(self, name: str = "sha256") -> None:
        try:
            hashlib.new(name)
        except ValueError:
            raise _fail(f"this Python's hashlib has no '{name}'") from None
        self.name = name

    def _h(self, data: bytes) -> bytes:
        return hashlib.new(self.name, data).digest()

    def leaf(self, data: bytes) -> bytes:
        return self._h(b"\x00" + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self._h(b"\x01" + left + right)


def decomp_inclusion_proof(index: int, size: int) -> tuple[int, int]:
    """(inner, border): proof hashes below and above the point where the paths split."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def chain_inner(h: MerkleHasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, p in enumerate(proof):
        seed = h.node(seed, p) if (index >> i) & 1 == 0 else h.node(p, seed)
    return seed


def chain_inner_right(h: MerkleHasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, p in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = h.node(p, seed)
    return seed


def chain_border_right(h: MerkleHasher, seed: bytes, proof: Sequence[bytes]) -> bytes:
    for p in proof:
        seed = h.node(p, seed)
    return seed


def root_from_inclusion_proof(
    h: MerkleHasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """RFC 9162 §2.1.3.2: the root the audit path leads to."""
    if not 0 <= index < size:
        raise _fail("index is beyond the tree", index=index, tree_size=size)
    inner, border = decomp_inclusion_proof(index, size)
    if len(proof) != inner + border:
        raise _fail("inclusion proof has the wrong length", expected=inner + border)
    res = chain_inner(h, leaf_hash, proof[:inner], index)
    return chain_border_right(h, res, proof[inner:])


def verify_inclusion(
    h: MerkleHasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raises `VerificationError` unless `leaf_hash` is at `index` in the tree `root`."""
    if root_from_inclusion_proof(h, index, size, leaf_hash, proof) != root:
        raise _fail("inclusion proof does not lead to the checkpoint's root", index=index)


def verify_consistency(
    h: MerkleHasher,
    size1: int,
    size2: int,
    root1: bytes,
    root2: bytes,
    proof: Sequence[bytes],
) -> None:
    """RFC 9162 §2.1.4.2: raises unless the tree `root1` of `size1` is a prefix of `root2`."""
    if size2 < size1:
        raise _fail("the newer tree is smaller: the log was rolled back", first=size1)
    if size1 == size2:
        if proof or root1 != root2:
            raise _fail("same size, different roots: the log forked", size=size1)
        return
    if size1 == 0:
        if proof:
            raise _fail("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise _fail("empty consistency proof")
    inner, border = decomp_inclusion_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed, start = proof[0], 1
    if size1 == 1 << shift:
        seed, start = root1, 0
    if len(proof) != start + inner + border:
        raise _fail("consistency proof has the wrong length", expected=start + inner + border)
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = chain_border_right(h, chain_inner_right(h, seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise _fail("the remembered checkpoint is not a prefix of this one: fork", first=size1)
    hash2 = chain_border_right(h, chain_inner(h, seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise _fail("consistency proof does not lead to the new root", second=size2)


class NoteVerifier:
    """An Ed25519 signed-note verifier key: `name+hash+base64(0x01 || key)`."""

    def __init__(self, vkey: str) -> None:
        # The base64 key may itself contain "+": split off the name and the hash only.
        name, _, rest = vkey.strip().partition("+")
        hash_hex, _, b64 = rest.partition("+")
        if not name or len(hash_hex) != 8 or not b64:
            raise _fail("not a signed-note verifier key")
        try:
            raw = base64.b64decode(b64, validate=True)
            key_hash = int(hash_hex, 16)
        except (binascii.Error, ValueError):
            raise _fail("not a signed-note verifier key") from None
        if not raw or raw[0] != _ALG_ED25519 or len(raw) != 33:
            raise _fail("only Ed25519 verifier keys are checked by the SDK (SM2 needs gmssl)")
        if int.from_bytes(hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]) != key_hash:
            raise _fail("verifier key hash does not match its key")
        self.name = name
        self.key_hash = key_hash
        self._key = Ed25519PublicKey.from_public_bytes(raw[1:])

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Checkpoint:
    """C2SP tlog-checkpoint body: origin, tree size, root hash (and the note it came from)."""

    origin: str
    size: int
    root: bytes
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "note": self.note,
        }


def open_checkpoint(note: str | bytes, verifier: NoteVerifier | str) -> Checkpoint:
    """Check the log's signature on a signed note and parse its checkpoint body."""
    v = NoteVerifier(verifier) if isinstance(verifier, str) else verifier
    text_all = note.decode("utf-8") if isinstance(note, bytes) else note
    split = text_all.rfind("\n\n")
    if split < 0:
        raise _fail("not a signed note")
    text, sigs = text_all[: split + 1], text_all[split + 2 :]
    signed = False
    for line in sigs.splitlines():
        if not line.startswith(_SIG_PREFIX):
            raise _fail("malformed signature line in note")
        name, _, b64 = line[len(_SIG_PREFIX) :].rpartition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise _fail("malformed signature in note") from None
        if name == v.name and len(blob) > 4 and int.from_bytes(blob[:4]) == v.key_hash:
            if not v.verify(text.encode("utf-8"), blob[4:]):
                raise _fail("checkpoint signature does not verify")
            signed = True
    if not signed:
        raise _fail("checkpoint is not signed by the log's key")
    lines = text.split("\n")
    try:
        origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError, binascii.Error):
        raise _fail("not a checkpoint body") from None
    if size < 0 or not origin:
        raise _fail("not a checkpoint body")
    return Checkpoint(origin=origin, size=size, root=root, note=text_all)


def verify_receipt(
    entry: dict[str, Any],
    checkpoint: Checkpoint,
    *,
    hash_name: str = "sha256",
) -> None:
    """An entry `{index, leaf, inclusion: {tree_size, hashes}}` is in `checkpoint`'s tree.

    The leaf's record must be what the server says it is: the JSON record is decoded
    from the proven leaf bytes, not trusted beside them.
    """
    h = MerkleHasher(hash_name)
    proof = entry.get("inclusion") or {}
    if proof.get("tree_size") != checkpoint.size:
        raise _fail("proof is for another tree size than the checkpoint", index=entry["index"])
    leaf = base64.b64decode(entry["leaf"])
    hashes = [base64.b64decode(x) for x in proof.get("hashes", [])]
    verify_inclusion(h, int(entry["index"]), checkpoint.size, h.leaf(leaf), hashes, checkpoint.root)
