"""Tests for ledger.merkle: RFC 6962/9162 vectors, proof properties, TreeBuilder, read counts."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle
from ledger.errors import LedgerError, ProofError
from ledger.merkle import (
    NodeReader,
    TreeBuilder,
    TreeHasher,
    consistency_proof,
    frontier_nodes,
    hasher,
    inclusion_proof,
    root,
    root_from_inclusion,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.helpers.net import flip as _flip

VECTORS = Path(__file__).parent / "vectors"
RFC6962 = json.loads((VECTORS / "rfc6962_merkle.json").read_text())
PROOF_NODES = json.loads((VECTORS / "rfc6962_proof_nodes.json").read_text())
SM3_VECTORS = json.loads((VECTORS / "sm3_gbt32905.json").read_text())

H = hasher("sha256")
LEAVES = [bytes.fromhex(x) for x in RFC6962["leaves"]]
LEAF_HASHES = [H.leaf(x) for x in LEAVES]
ROOTS = [bytes.fromhex(x) for x in RFC6962["roots"]]


def _mth(h: TreeHasher, hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH, literally: split at the largest power of two < n."""
    n = len(hashes)
    if n == 0:
        return h.empty_root()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return h.node(_mth(h, hashes[:k]), _mth(h, hashes[k:]))


def _node_store(h: TreeHasher, leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree hash of the tree, keyed by (level, index)."""
    store = {(0, i): x for i, x in enumerate(leaf_hashes)}
    level, width = 0, len(leaf_hashes)
    while width > 1:
        for i in range(width // 2):
            store[(level + 1, i)] = h.node(store[(level, 2 * i)], store[(level, 2 * i + 1)])
        level, width = level + 1, width // 2
    return store


def _reader(store: dict[tuple[int, int], bytes]) -> NodeReader:
    def read(level: int, index: int) -> bytes:
        return store[(level, index)]

    return read


def _fails(fn: Callable[..., object], *args: Any) -> bool:
    try:
        fn(*args)
    except ProofError:
        return True
    return False


# --- hashing ------------------------------------------------------------------------


def test_hasher_vectors() -> None:
    vec = RFC6962["hasher"]
    assert H.empty_root().hex() == vec["empty_root"]
    assert H.leaf(b"").hex() == vec["leaf"][0]["hash"]
    assert H.leaf(vec["leaf"][1]["data_ascii"].encode()).hex() == vec["leaf"][1]["hash"]
    node = vec["node"][0]
    assert H.node(node["left_ascii"].encode(), node["right_ascii"].encode()).hex() == node["hash"]
    assert H.digest(b"abc") == hashlib.sha256(b"abc").digest()
    assert H.size == 32 and H.name == "sha256"
    assert hasher("sha256") is H


def test_sm3_hasher_matches_gbt32905_and_the_crypto_fallback() -> None:
    sm3 = hasher("sm3")
    assert sm3.name == "sm3" and sm3.size == 32
    for case in SM3_VECTORS["tests"]:
        data = case["message_ascii"].encode() * case["repeat"]
        assert sm3.digest(data).hex() == case["digest"]
        assert merkle._CryptoSm3(data).digest().hex() == case["digest"]
    fallback = TreeHasher("sm3", merkle._CryptoSm3)
    assert fallback.leaf(b"x") == sm3.leaf(b"x")
    assert fallback.node(b"a", b"b") == sm3.node(b"a", b"b")
    assert fallback.empty_root() == sm3.empty_root()
    assert sm3.leaf(b"x") != H.leaf(b"x")


def test_unknown_hash_name() -> None:
    with pytest.raises(ValueError):
        hasher("md5")


# --- roots --------------------------------------------------------------------------


def test_rfc6962_roots_for_every_prefix() -> None:
    assert root(H, []) == H.empty_root()
    for n in range(1, 9):
        assert root(H, LEAF_HASHES[:n]) == ROOTS[n - 1]
        assert _mth(H, LEAF_HASHES[:n]) == ROOTS[n - 1]
        builder = TreeBuilder(H)
        builder.extend(LEAF_HASHES[:n])
        assert builder.root() == ROOTS[n - 1]


def test_root_matches_the_recursive_definition() -> None:
    hashes = [H.leaf(str(i).encode()) for i in range(300)]
    for n in range(0, 300):
        assert root(H, hashes[:n]) == _mth(H, hashes[:n])


# --- proofs against published vectors -----------------------------------------------


@pytest.mark.parametrize(
    "case", RFC6962["inclusion"], ids=lambda c: f"{c['index']}/{c['tree_size']}"
)
def test_rfc6962_inclusion_vectors(case: dict[str, Any]) -> None:
    index, size = case["index"], case["tree_size"]
    want = [bytes.fromhex(x) for x in case["proof"]]
    store = _node_store(H, LEAF_HASHES[:size])
    assert inclusion_proof(H, index, size, _reader(store)) == want
    leaf = LEAF_HASHES[index]
    assert root_from_inclusion(H, index, size, leaf, want) == ROOTS[size - 1]
    verify_inclusion(H, index, size, leaf, want, ROOTS[size - 1])


@pytest.mark.parametrize(
    "case", RFC6962["inclusion"][:4], ids=lambda c: f"{c['index']}/{c['tree_size']}"
)
def test_rfc6962_inclusion_corruptions(case: dict[str, Any]) -> None:
    """transparency-dev/merkle corruptInclusionProof: every probe must fail."""
    index, size = case["index"], case["tree_size"]
    proof = [bytes.fromhex(x) for x in case["proof"]]
    good_root, leaf = ROOTS[size - 1], LEAF_HASHES[index]
    some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (index - 1, size, good_root, leaf, proof),
        (index + 1, size, good_root, leaf, proof),
        (index ^ 2, size, good_root, leaf, proof),
        (index, size * 2, good_root, leaf, proof),
        (index, size // 2, good_root, leaf, proof),
        (index, size, good_root, b"WrongLeaf", proof),
        (index, size, H.empty_root(), leaf, proof),
        (index, size, some_hash, leaf, proof),
        (index, size, good_root, leaf, [*proof, b""]),
        (index, size, good_root, leaf, [*proof, good_root]),
        (index, size, good_root, leaf, [b"", *proof]),
        (index, size, good_root, leaf, [good_root, *proof]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((index, size, good_root, leaf, bad))
    if proof:
        probes.append((index, size, good_root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, good_root, leaf, [proof[0], some_hash, *proof[1:]]))
    for p_index, p_size, p_root, p_leaf, p_proof in probes:
        assert _fails(verify_inclusion, H, p_index, p_size, p_leaf, p_proof, p_root)


@pytest.mark.parametrize(
    "case", RFC6962["consistency"], ids=lambda c: f"{c['first']}-{c['second']}"
)
def test_rfc6962_consistency_vectors(case: dict[str, Any]) -> None:
    first, second = case["first"], case["second"]
    want = [bytes.fromhex(x) for x in case["proof"]]
    store = _node_store(H, LEAF_HASHES[:second])
    assert consistency_proof(H, first, second, _reader(store)) == want
    verify_consistency(H, first, second, ROOTS[first - 1], ROOTS[second - 1], want)
    if not want:
        return
    # transparency-dev/merkle corruptConsistencyProof: every probe must fail.
    r1, r2 = ROOTS[first - 1], ROOTS[second - 1]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (first - 1, second, r1, r2, want),
        (first + 1, second, r1, r2, want),
        (first ^ 2, second, r1, r2, want),
        (first, second * 2, r1, r2, want),
        (first, second // 2, r1, r2, want),
        (first, second, b"WrongRoot", r2, want),
        (first, second, r1, b"WrongRoot", want),
        (first, second, r2, r1, want),
        (first, second, r1, r2, []),
        (first, second, r1, r2, [*want, b""]),
        (first, second, r1, r2, [*want, r1]),
        (first, second, r1, r2, [*want, r2]),
        (first, second, r1, r2, [b"", *want]),
        (first, second, r1, r2, [r1, *want]),
        (first, second, r1, r2, [r2, *want]),
        (first, second, r1, r2, [want[0], *want]),
        (first, second, r1, r2, want[:-1]),
    ]
    for i in range(len(want)):
        bad = list(want)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((first, second, r1, r2, bad))
    for s1, s2, p1, p2, pr in probes:
        assert _fails(verify_consistency, H, s1, s2, p1, p2, pr)


def test_consistency_happy_path_json_vector() -> None:
    case = RFC6962["consistency_happy_path_base64"]
    proof = [base64.b64decode(x) for x in case["proof"]]
    first_root = base64.b64decode(case["first_root"])
    second_root = base64.b64decode(case["second_root"])
    assert first_root == ROOTS[0] and second_root == ROOTS[7]
    verify_consistency(H, case["first"], case["second"], first_root, second_root, proof)


@pytest.mark.parametrize(
    "case",
    RFC6962["verify_consistency_trivial"]["cases"],
    ids=lambda c: f"{c['first']}-{c['second']}-{c['first_root']}-{c['second_root']}",
)
def test_trivial_consistency_cases(case: dict[str, Any]) -> None:
    named = {
        "r1": hashlib.sha256(b"r1").digest(),
        "r2": hashlib.sha256(b"r2").digest(),
        "empty": H.empty_root(),
    }
    args = (
        case["first"],
        case["second"],
        named[case["first_root"]],
        named[case["second_root"]],
        [named[x] for x in case["proof"]],
    )
    if case["ok"]:
        verify_consistency(H, *args)
    else:
        assert _fails(verify_consistency, H, *args)


def test_consistency_from_empty_tree() -> None:
    verify_consistency(H, 0, 5, H.empty_root(), ROOTS[4], [])
    verify_consistency(H, 0, 0, H.empty_root(), H.empty_root(), [])
    # stricter than Go: the size-0 root must be the empty-tree hash
    assert _fails(verify_consistency, H, 0, 5, ROOTS[0], ROOTS[4], [])
    store = _node_store(H, LEAF_HASHES[:5])
    assert consistency_proof(H, 0, 5, _reader(store)) == []
    assert consistency_proof(H, 0, 0, _reader(store)) == []


def _rehashed(store: dict[tuple[int, int], bytes], case: dict[str, Any]) -> list[bytes]:
    hashes = [store[(level, index)] for level, index in case["ids"]]
    if "rehash" not in case:
        return hashes
    begin, end = case["rehash"]
    acc = hashes[begin]
    for i in range(begin + 1, end):
        acc = H.node(hashes[i], acc)
    return hashes[:begin] + [acc] + hashes[end:]


@pytest.mark.parametrize(
    "case", PROOF_NODES["inclusion"], ids=lambda c: f"{c['index']}/{c['size']}"
)
def test_inclusion_proof_node_structure(case: dict[str, Any]) -> None:
    hashes = [H.leaf(f"leaf {i}".encode()) for i in range(case["size"])]
    store = _node_store(H, hashes)
    proof = inclusion_proof(H, case["index"], case["size"], _reader(store))
    assert proof == _rehashed(store, case)


@pytest.mark.parametrize(
    "case", PROOF_NODES["consistency"], ids=lambda c: f"{c['first']}-{c['second']}"
)
def test_consistency_proof_node_structure(case: dict[str, Any]) -> None:
    hashes = [H.leaf(f"leaf {i}".encode()) for i in range(case["second"])]
    store = _node_store(H, hashes)
    proof = consistency_proof(H, case["first"], case["second"], _reader(store))
    assert proof == _rehashed(store, case)


def test_bad_proof_arguments() -> None:
    store = _node_store(H, LEAF_HASHES)
    for case in PROOF_NODES["inclusion_errors"]:
        with pytest.raises(ProofError):
            inclusion_proof(H, case["index"], case["size"], _reader(store))
    for case in PROOF_NODES["consistency_errors"]:
        with pytest.raises(ProofError):
            consistency_proof(H, case["first"], case["second"], _reader(store))
    with pytest.raises(ProofError):
        inclusion_proof(H, -1, 8, _reader(store))
    with pytest.raises(ProofError):
        consistency_proof(H, -1, 8, _reader(store))
    with pytest.raises(ProofError) as info:
        root_from_inclusion(H, 8, 8, LEAF_HASHES[0], [])
    assert isinstance(info.value, LedgerError)
    assert info.value.code == "ledger-proof-invalid"


def test_subtree_hash() -> None:
    hashes = [H.leaf(f"{i}".encode()) for i in range(64)]
    store = _node_store(H, hashes)
    read = _reader(store)
    for start in range(64):
        for end in range(start + 1, 65):
            width = end - start
            aligned = start % (1 << (width.bit_length() - 1)) == 0
            if aligned:
                assert subtree_hash(H, start, end, read) == _mth(H, hashes[start:end])
            else:
                with pytest.raises(ProofError):
                    subtree_hash(H, start, end, read)
    for start, end in ((3, 3), (5, 2), (-1, 1)):
        with pytest.raises(ProofError):
            subtree_hash(H, start, end, read)


# --- properties over every small tree -----------------------------------------------


@pytest.mark.slow
def test_every_inclusion_proof_up_to_70_verifies_and_any_flip_fails() -> None:
    hashes = [H.leaf(f"entry {i}".encode()) for i in range(70)]
    store = _node_store(H, hashes)
    read = _reader(store)
    for size in range(1, 71):
        tree_root = _mth(H, hashes[:size])
        for index in range(size):
            proof = inclusion_proof(H, index, size, read)
            leaf = hashes[index]
            verify_inclusion(H, index, size, leaf, proof, tree_root)
            for pos in range(32):
                assert _fails(verify_inclusion, H, index, size, _flip(leaf, pos), proof, tree_root)
                assert _fails(verify_inclusion, H, index, size, leaf, proof, _flip(tree_root, pos))
                for j in range(len(proof)):
                    bad = [*proof[:j], _flip(proof[j], pos), *proof[j + 1 :]]
                    assert _fails(verify_inclusion, H, index, size, leaf, bad, tree_root)
            if size > 1:
                assert _fails(verify_inclusion, H, (index + 1) % size, size, leaf, proof, tree_root)


@pytest.mark.slow
def test_every_consistency_proof_up_to_70_verifies_and_any_flip_fails() -> None:
    hashes = [H.leaf(f"entry {i}".encode()) for i in range(70)]
    store = _node_store(H, hashes)
    read = _reader(store)
    roots = [_mth(H, hashes[:n]) for n in range(71)]
    for second in range(1, 71):
        for first in range(0, second + 1):
            proof = consistency_proof(H, first, second, read)
            r1, r2 = roots[first], roots[second]
            verify_consistency(H, first, second, r1, r2, proof)
            if first in (0, second):
                assert proof == []
            for pos in range(32):
                assert _fails(verify_consistency, H, first, second, _flip(r1, pos), r2, proof)
                if first:
                    assert _fails(verify_consistency, H, first, second, r1, _flip(r2, pos), proof)
                for j in range(len(proof)):
                    bad = [*proof[:j], _flip(proof[j], pos), *proof[j + 1 :]]
                    assert _fails(verify_consistency, H, first, second, r1, r2, bad)


# --- O(log n) reads -----------------------------------------------------------------


def test_proofs_read_o_log_n_nodes_at_a_million() -> None:
    calls = 0

    def counting(level: int, index: int) -> bytes:
        nonlocal calls
        calls += 1
        assert index >= 0 and (index + 1) << level <= n
        return hashlib.sha256(f"{level}/{index}".encode()).digest()

    n = 10**6
    bound = 2 * n.bit_length() + 2  # 42
    rng = random.Random(6962)
    indexes = [0, 1, n // 2, n - 2, n - 1, 2**19, 2**19 - 1] + [
        rng.randrange(n) for _ in range(200)
    ]
    for index in indexes:
        calls = 0
        inclusion_proof(H, index, n, counting)
        assert 0 < calls <= bound, (index, calls)
    for first in [1, 2, 3, n // 2, n - 1, 2**19, 2**19 + 1] + [
        rng.randrange(1, n) for _ in range(200)
    ]:
        calls = 0
        consistency_proof(H, first, n, counting)
        assert 0 < calls <= bound, (first, calls)


def test_proofs_from_builder_nodes_at_100k() -> None:
    """TreeBuilder's completed nodes are a sufficient node store for every proof."""
    n = 100_003
    hashes = [H.leaf(i.to_bytes(8, "big")) for i in range(n)]
    store = {(0, i): x for i, x in enumerate(hashes)}
    builder = TreeBuilder(H)
    checkpoints: dict[int, bytes] = {}
    for i, leaf_hash in enumerate(hashes):
        for level, index, node in builder.append(leaf_hash):
            store[(level, index)] = node
        if i % 9973 == 0:
            checkpoints[i + 1] = builder.root()
    checkpoints[n] = builder.root()
    assert builder.root() == root(H, hashes)
    read = _reader(store)
    rng = random.Random(1)
    for index in [0, n - 1] + [rng.randrange(n) for _ in range(100)]:
        proof = inclusion_proof(H, index, n, read)
        verify_inclusion(H, index, n, hashes[index], proof, checkpoints[n])
    for size, size_root in checkpoints.items():
        assert subtree_hash(H, 0, size, read) == size_root
        proof = consistency_proof(H, size, n, read)
        verify_consistency(H, size, n, size_root, checkpoints[n], proof)


# --- TreeBuilder --------------------------------------------------------------------


def test_tree_builder_roots_and_completed_nodes_up_to_300() -> None:
    hashes = [H.leaf(f"b{i}".encode()) for i in range(300)]
    builder = TreeBuilder(H)
    assert builder.size == 0 and builder.root() == H.empty_root() and builder.frontier == ()
    reported: set[tuple[int, int]] = set()
    for i, leaf_hash in enumerate(hashes):
        for level, index, node in builder.append(leaf_hash):
            assert level >= 1
            assert (level, index) not in reported
            reported.add((level, index))
            assert node == root(H, hashes[index << level : (index + 1) << level])
            assert (index + 1) << level == i + 1  # completed by this very leaf
        size = i + 1
        assert builder.size == size
        assert builder.root() == root(H, hashes[:size])
        expected = {
            (level, index)
            for level in range(1, size.bit_length())
            for index in range(size >> level)
        }
        assert reported == expected
        assert builder.frontier == tuple(
            root(H, hashes[index << level : (index + 1) << level])
            for level, index in frontier_nodes(size)
        )


def test_tree_builder_resumes_from_frontier() -> None:
    hashes = [H.leaf(f"r{i}".encode()) for i in range(300)]
    full = TreeBuilder(H)
    completed_all = full.extend(hashes)
    for split in range(0, 300, 7):
        prefix = TreeBuilder(H)
        prefix.extend(hashes[:split])
        resumed = TreeBuilder.from_state(H, split, prefix.frontier)
        completed = resumed.extend(hashes[split:])
        assert resumed.root() == full.root()
        assert resumed.size == 300
        assert completed == [c for c in completed_all if (c[1] + 1) << c[0] > split]


def test_tree_builder_rejects_bad_state() -> None:
    with pytest.raises(ValueError):
        TreeBuilder.from_state(H, 3, [H.empty_root()])
    with pytest.raises(ValueError):
        TreeBuilder.from_state(H, 1, [b"short"])
    with pytest.raises(ValueError):
        TreeBuilder.from_state(H, -1, [])
    with pytest.raises(ValueError):
        TreeBuilder(H).append(b"short")
    assert frontier_nodes(0) == []
    assert frontier_nodes(13) == [(3, 0), (2, 2), (0, 12)]
    with pytest.raises(ValueError):
        frontier_nodes(-1)
