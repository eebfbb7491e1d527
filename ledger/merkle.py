"""RFC 9162 (RFC 6962) Merkle tree: hashing, proofs from stored nodes, verification.

Proof generation reads only *perfect* subtree hashes through a `NodeReader`, so a
store that keeps every perfect node (tiles) answers any proof in O(log n) reads.
Verification follows transparency-dev/merkle's decomposition (`decomp_inclusion_proof`,
`chain_inner`, `chain_inner_right`, `chain_border_right`), which computes the same
values as the step lists of RFC 9162 2.1.3.2 and 2.1.4.2 and can be checked against
them line by line.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from crypto import sm3
from ledger.errors import ProofError

__all__ = [
    "NodeReader",
    "TreeBuilder",
    "TreeHasher",
    "consistency_proof",
    "frontier_nodes",
    "hasher",
    "inclusion_proof",
    "root",
    "root_from_inclusion",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

# RFC 9162 2.1.1: domain separation between leaves and interior nodes.
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"

NodeReader = Callable[[int, int], bytes]
"""`(level, index)` -> hash of the perfect subtree over leaves [index*2**level, (index+1)*2**level).

Level 0 is the leaf hash itself. Only ever asked for nodes inside the tree it serves.
"""


class _HashObject(Protocol):
    def digest(self) -> bytes: ...


@dataclass(frozen=True)
class TreeHasher:
    """The RFC 9162 2.1.1 hashes for one hash function (SHA-256 or SM3)."""

    name: str
    # One-shot constructor: `_new(data).digest()`. For SHA-256 it is hashlib.sha256
    # itself, bound once, so hashing a node costs no extra Python call.
    _new: Callable[[bytes], _HashObject] = field(repr=False, compare=False)
    size: int = 32

    def digest(self, data: bytes) -> bytes:
        """HASH(data), the plain hash function (for block hashes and the like)."""
        return self._new(data).digest()

    def leaf(self, data: bytes) -> bytes:
        """MTH({d}) = HASH(0x00 || d)."""
        return self._new(_LEAF_PREFIX + data).digest()

    def node(self, left: bytes, right: bytes) -> bytes:
        """HASH(0x01 || left || right)."""
        return self._new(_NODE_PREFIX + left + right).digest()

    def empty_root(self) -> bytes:
        """MTH({}) = HASH(), the root of the empty tree."""
        return self._new(b"").digest()


class _CryptoSm3:
    """hashlib-shaped one-shot SM3 over `crypto.sm3`, for OpenSSL builds without SM3."""

    __slots__ = ("_digest",)

    def __init__(self, data: bytes) -> None:
        self._digest = sm3(data)

    def digest(self) -> bytes:
        return self._digest


def _sm3_new(data: bytes) -> _HashObject:
    return hashlib.new("sm3", data)


def _make_hasher(name: str) -> TreeHasher:
    if name == "sha256":
        return TreeHasher("sha256", hashlib.sha256)
    if name == "sm3":
        if "sm3" in hashlib.algorithms_available:
            return TreeHasher("sm3", _sm3_new)
        return TreeHasher("sm3", _CryptoSm3)
    raise ValueError(f"unknown tree hash {name!r}; expected 'sha256' or 'sm3'")


_HASHERS: dict[str, TreeHasher] = {}


def hasher(name: str) -> TreeHasher:
    """The `TreeHasher` for "sha256" or "sm3" (GB/T 32905-2016)."""
    found = _HASHERS.get(name)
    if found is None:
        found = _HASHERS[name] = _make_hasher(name)
    return found


# --- Tree hashes --------------------------------------------------------------------


def root(h: TreeHasher, leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves (RFC 9162 2.1.1).

    Computed level by level, carrying an unpaired last node up unchanged: for the
    left-balanced RFC tree that is the same as splitting at the largest power of two
    smaller than n, without recursion or slicing.
    """
    if not leaf_hashes:
        return h.empty_root()
    new = h._new
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [
            new(_NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 2.1.1: the largest power of two with k < n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(h: TreeHasher, start: int, end: int, node: NodeReader) -> bytes:
    """MTH(D[start:end]) from perfect-node reads: one read per set bit of end - start.

    Valid when `start` is a multiple of the largest power of two <= end - start, which
    holds for every subtree RFC 9162 proofs name. The range then splits into perfect
    subtrees of strictly decreasing size (the bits of end - start), and the MTH split
    rule folds them right to left.
    """
    width = end - start
    if start < 0 or width <= 0:
        raise ProofError(f"empty or negative range [{start}, {end})", start=start, end=end)
    top = width.bit_length() - 1
    if start & ((1 << top) - 1):
        raise ProofError(
            f"range [{start}, {end}) is not aligned to a power of two >= half its width",
            start=start,
            end=end,
        )
    parts: list[bytes] = []
    pos = start
    for level in range(top, -1, -1):
        if width >> level & 1:
            parts.append(node(level, pos >> level))
            pos += 1 << level
    acc = parts.pop()
    while parts:
        acc = h.node(parts.pop(), acc)
    return acc


def frontier_nodes(size: int) -> list[tuple[int, int]]:
    """`(level, index)` of the perfect subtrees that tile leaves [0, size), largest first.

    These are what `TreeBuilder.from_state` needs to resume a tree of `size` leaves.
    """
    if size < 0:
        raise ValueError("tree size must be >= 0")
    out: list[tuple[int, int]] = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, (size >> level) - 1))
    return out


# --- Proof generation (RFC 9162 2.1.3.1, 2.1.4.1) ------------------------------------


def inclusion_proof(h: TreeHasher, index: int, tree_size: int, node: NodeReader) -> list[bytes]:
    """PATH(index, D[tree_size]) (RFC 9162 2.1.3.1), leaf-side hash first.

    Walks the MTH split from the root down and reverses. Once the walk turns left its
    range is a perfect subtree, so only the first right sibling can need more than
    one read: at most ~2*log2(n) `node` calls.
    """
    if not 0 <= index < tree_size:
        raise ProofError(
            f"leaf index {index} is outside a tree of size {tree_size}",
            index=index,
            tree_size=tree_size,
        )
    path: list[bytes] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index - lo < k:
            # PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(subtree_hash(h, lo + k, hi, node))
            hi = lo + k
        else:
            # PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(node((k.bit_length() - 1), lo // k))
            lo += k
    path.reverse()
    return path


def consistency_proof(h: TreeHasher, first: int, second: int, node: NodeReader) -> list[bytes]:
    """PROOF(first, D[second]) = SUBPROOF(first, D[second], true) (RFC 9162 2.1.4.1).

    Empty when first == second or first == 0. At most ~2*log2(n) `node` calls.
    """
    if not 0 <= first <= second:
        raise ProofError(
            f"no consistency proof from size {first} to size {second}",
            first=first,
            second=second,
        )
    if first in (0, second):
        return []
    proof: list[bytes] = []
    lo, hi, whole = 0, second, True
    while True:
        m = first - lo
        if m == hi - lo:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not whole:
                proof.append(subtree_hash(h, lo, hi, node))
            break
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(subtree_hash(h, lo + k, hi, node))
            hi = lo + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(node(k.bit_length() - 1, lo // k))
            lo += k
            whole = False
    proof.reverse()
    return proof


# --- Verification (RFC 9162 2.1.3.2, 2.1.4.2) ---------------------------------------


def decomp_inclusion_proof(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof's length into (inner, border) parts.

    `inner` hashes lie below the point where the paths to `index` and to the last leaf
    (size - 1) diverge; the `border` hashes above it are all left siblings, one per set
    bit of index >> inner (the perfect subtrees to the left of that point).
    """
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def chain_inner(h: TreeHasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash `seed` up through `proof`, the side at each level chosen by a bit of `index`."""
    for i, sibling in enumerate(proof):
        if (index >> i) & 1 == 0:
            seed = h.node(seed, sibling)
        else:
            seed = h.node(sibling, seed)
    return seed


def chain_inner_right(h: TreeHasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like `chain_inner`, but uses only the left siblings (the bits of `index` set)."""
    for i, sibling in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = h.node(sibling, seed)
    return seed


def chain_border_right(h: TreeHasher, seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Hash `seed` up through `proof`, every hash a left sibling."""
    for sibling in proof:
        seed = h.node(sibling, seed)
    return seed


def _check_hash(h: TreeHasher, value: bytes, what: str) -> None:
    if len(value) != h.size:
        raise ProofError(
            f"{what} is {len(value)} bytes; {h.name} hashes are {h.size}",
            length=len(value),
        )


def _check_proof_hashes(h: TreeHasher, proof: Sequence[bytes]) -> None:
    for i, item in enumerate(proof):
        _check_hash(h, item, f"proof hash {i}")


def root_from_inclusion(
    h: TreeHasher, index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that `proof` implies for `leaf_hash` at `index` (RFC 9162 2.1.3.2 steps 1-5)."""
    if not 0 <= index < tree_size:
        raise ProofError(
            f"leaf index {index} is outside a tree of size {tree_size}",
            index=index,
            tree_size=tree_size,
        )
    _check_hash(h, leaf_hash, "leaf hash")
    _check_proof_hashes(h, proof)
    inner, border = decomp_inclusion_proof(index, tree_size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes; index {index} in a tree of size "
            f"{tree_size} needs {inner + border}",
            index=index,
            tree_size=tree_size,
        )
    acc = chain_inner(h, leaf_hash, proof[:inner], index)
    return chain_border_right(h, acc, proof[inner:])


def verify_inclusion(
    h: TreeHasher,
    index: int,
    tree_size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `tree_size` with `root`."""
    _check_hash(h, root, "root hash")
    calculated = root_from_inclusion(h, index, tree_size, leaf_hash, proof)
    if not hmac.compare_digest(calculated, root):
        raise ProofError(
            f"inclusion proof for index {index} does not lead to the root of size {tree_size}",
            index=index,
            tree_size=tree_size,
        )


def verify_consistency(
    h: TreeHasher,
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of size `first` is a prefix of the tree of size `second`.

    RFC 9162 2.1.4.2. Sizes equal: the proof must be empty and the roots equal. First
    size 0: the proof must be empty and `first_root` the empty-tree hash (stricter
    than Go's verifier, which ignores it).
    """
    if not 0 <= first <= second:
        raise ProofError(
            f"no consistency proof from size {first} to size {second}",
            first=first,
            second=second,
        )
    _check_hash(h, first_root, "first root")
    _check_hash(h, second_root, "second root")
    _check_proof_hashes(h, proof)
    if first == second or first == 0:
        if proof:
            raise ProofError(
                f"consistency proof from size {first} to {second} must be empty",
                first=first,
                second=second,
            )
        expected = second_root if first == second else h.empty_root()
        if not hmac.compare_digest(first_root, expected):
            raise ProofError(
                f"first root is not the root of size {first}", first=first, second=second
            )
        return
    if not proof:
        raise ProofError(
            f"empty consistency proof from size {first} to {second}", first=first, second=second
        )

    # RFC 9162 2.1.4.2 step 1: a power-of-two first tree is itself a node of the
    # second, so its root starts the chain; otherwise the proof's first hash does.
    inner, border = decomp_inclusion_proof(first - 1, second)
    shift = (first & -first).bit_length() - 1  # trailing zero bits of first
    inner -= shift
    if first == 1 << shift:
        seed, rest = first_root, proof
    else:
        seed, rest = proof[0], proof[1:]
    if len(rest) != inner + border:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes; sizes {first} -> {second} need "
            f"{inner + border + len(proof) - len(rest)}",
            first=first,
            second=second,
        )
    mask = (first - 1) >> shift
    calculated_first = chain_border_right(
        h, chain_inner_right(h, seed, rest[:inner], mask), rest[inner:]
    )
    _require_root(calculated_first, first_root, "first", first, second)
    calculated_second = chain_border_right(
        h, chain_inner(h, seed, rest[:inner], mask), rest[inner:]
    )
    _require_root(calculated_second, second_root, "second", first, second)


def _require_root(calculated: bytes, root: bytes, which: str, first: int, second: int) -> None:
    """Refuse a consistency proof whose chain does not end at the `which` tree's root."""
    if not hmac.compare_digest(calculated, root):
        size = first if which == "first" else second
        raise ProofError(
            f"consistency proof does not lead to the {which} root (size {size})",
            first=first,
            second=second,
        )


# --- Incremental building -----------------------------------------------------------


class TreeBuilder:
    """A compact range over leaves [0, size): one perfect-subtree hash per set bit of size.

    `append` reports every perfect subtree (level >= 1) that the new leaf completes,
    so a store can keep all interior nodes (tiles) without recomputing anything;
    `from_state` resumes from the stored frontier (see `frontier_nodes`).
    """

    __slots__ = ("_frontier", "_hasher", "_new", "_size")

    def __init__(self, h: TreeHasher) -> None:
        self._hasher = h
        self._new = h._new
        self._size = 0
        self._frontier: list[bytes] = []

    @classmethod
    def from_state(cls, h: TreeHasher, size: int, frontier: Sequence[bytes]) -> TreeBuilder:
        """Resume at `size` leaves from the hashes of `frontier_nodes(size)`, in that order."""
        if size < 0:
            raise ValueError("tree size must be >= 0")
        want = size.bit_count()
        if len(frontier) != want:
            raise ValueError(
                f"a tree of size {size} has {want} frontier hashes, got {len(frontier)}"
            )
        for item in frontier:
            if len(item) != h.size:
                raise ValueError(
                    f"frontier hash is {len(item)} bytes; {h.name} hashes are {h.size}"
                )
        builder = cls(h)
        builder._size = size
        builder._frontier = [bytes(item) for item in frontier]
        return builder

    @property
    def hasher(self) -> TreeHasher:
        return self._hasher

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """Hashes of `frontier_nodes(size)`, largest subtree first."""
        return tuple(self._frontier)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the `(level, index, hash)` of subtrees it completes."""
        if len(leaf_hash) != self._hasher.size:
            raise ValueError(
                f"leaf hash is {len(leaf_hash)} bytes; {self._hasher.name} hashes are "
                f"{self._hasher.size}"
            )
        index = self._size
        frontier = self._frontier
        new = self._new
        completed: list[tuple[int, int, bytes]] = []
        acc = leaf_hash
        level = 0
        # Each trailing 1 bit of the old size is a perfect subtree of that level that
        # the new node closes off: merge, move up one level.
        while (index >> level) & 1:
            acc = new(_NODE_PREFIX + frontier.pop() + acc).digest()
            level += 1
            completed.append((level, index >> level, acc))
        frontier.append(acc)
        self._size = index + 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """`append` each leaf hash in order; return all completed subtrees."""
        completed: list[tuple[int, int, bytes]] = []
        for leaf_hash in leaf_hashes:
            completed.extend(self.append(leaf_hash))
        return completed

    def root(self) -> bytes:
        """MTH of all leaves appended so far; the empty-tree hash for none."""
        if not self._frontier:
            return self._hasher.empty_root()
        new = self._new
        acc = self._frontier[-1]
        for item in reversed(self._frontier[:-1]):
            acc = new(_NODE_PREFIX + item + acc).digest()
        return acc
