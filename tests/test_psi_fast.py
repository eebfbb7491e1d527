"""The PSI bulk path (batched RFC 9380 hashing, libcrypto multiplication) equals the slow path."""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gmpy2  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from crypto import InvalidGroupElement, psi_group
from crypto import _h2c_p256 as h2c
from crypto import _ossl_p256 as ossl
from sandbox import psi, psi_sets
from sandbox.isolation import Limits, OperatorRegistry, OperatorSpec, Sandbox, SandboxResult

TESTS = Path(__file__).resolve().parent
VECTORS = json.loads((TESTS / "vectors" / "rfc9380_p256_sswu_ro.json").read_text("utf-8"))
DST = b"PDX-PSI-TEST-job-0000000000000042"
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
rng = random.Random(18)


def _msgs(n: int) -> list[bytes]:
    return [rng.randbytes(32) for _ in range(n)]


def _xy(p: tuple[int, int]) -> bytes:
    return p[0].to_bytes(32, "big") + p[1].to_bytes(32, "big")


def _sec1(p: tuple[int, int]) -> bytes:
    return b"\x04" + _xy(p)


def _points(packed: bytes) -> list[bytes]:
    return [packed[i : i + 65] for i in range(0, len(packed), 65)]


def _off_curve_point() -> bytes:
    """04‖x‖y with x a P-256 abscissa and y not one of its roots."""
    return _sec1((G[0], (G[1] + 1) % h2c.P))


def _exchange(k: int, point: tuple[int, int]) -> bytes:
    """x(k·P) through `cryptography`'s ECDH: the path the bulk one replaces."""
    priv = ec.derive_private_key(k, ec.SECP256R1())
    pub = ec.EllipticCurvePublicNumbers(point[0], point[1], ec.SECP256R1()).public_key()
    return priv.exchange(ec.ECDH(), pub)


def test_libcrypto_is_loaded_here() -> None:
    assert ossl.available()  # otherwise every comparison below would compare the slow path


# -- batched hash-to-curve ---------------------------------------------------------------------


def test_batched_hashing_reproduces_the_rfc9380_vectors() -> None:
    dst = VECTORS["dst"].encode()
    msgs = [str(v["msg"]).encode() for v in VECTORS["vectors"]]
    fields = h2c.hash_to_field_many(msgs, dst)
    points = h2c.hash_to_curve_many(msgs, dst)
    for v, (u0, u1), p in zip(VECTORS["vectors"], fields, points, strict=True):
        assert [format(int(u0), "064x"), format(int(u1), "064x")] == v["u"]
        assert p == (int(v["P"]["x"], 16), int(v["P"]["y"], 16))


def test_batched_hashing_equals_one_at_a_time() -> None:
    msgs = [b"", b"x", b"13812345678", *_msgs(300)]
    assert h2c.hash_to_curve_many(msgs, DST) == [h2c.hash_to_curve(m, DST) for m in msgs]
    assert h2c.hash_to_curve_many([], DST) == []


def test_batched_map_handles_the_exceptional_case_and_both_branches() -> None:
    p = h2c.P
    # den = Z²u⁴ + Z·u² = 0 for u = 0 and for Z·u² = -1 (u² = 1/10, a square mod p or not)
    specials = [0]
    root = pow(pow(10, -1, p), h2c._SQRT_EXP, p)
    if root * root % p == pow(10, -1, p):
        specials += [root, p - root]
    us = specials + [rng.randrange(p) for _ in range(200)]
    batch = h2c.map_to_curve_sswu_many([gmpy2.mpz(u) for u in us])
    single = [h2c.map_to_curve_sswu(u) for u in us]
    assert [(int(x), int(y)) for x, y in batch] == single
    # both SSWU branches (g(x1) square or not) occurred among the random inputs
    on_x1 = sum(1 for u, (x, _) in zip(us, single, strict=True) if x == _x1(u))
    assert 0 < on_x1 < len(us)


def _x1(u: int) -> int:
    p, z = h2c.P, h2c.Z
    den = (z * z * pow(u, 4, p) + z * u * u) % p
    return h2c._B_OVER_ZA if den == 0 else h2c._MINUS_B_OVER_A * (1 + pow(den, -1, p)) % p


def test_libcrypto_square_roots_equal_gmpy2(monkeypatch: pytest.MonkeyPatch) -> None:
    p = h2c.P
    values = [0, 1, 2, 3, p - 1, p - 2, *(rng.randrange(p) for _ in range(300))]
    packed = b"".join(v.to_bytes(32, "big") for v in values)
    roots = ossl.sqrt_candidates(packed)
    want = [pow(v, h2c._SQRT_EXP, p) for v in values]
    assert [int.from_bytes(roots[i : i + 32]) for i in range(0, len(roots), 32)] == want
    squares = sum(1 for v, r in zip(values, want, strict=True) if r * r % p == v)
    assert 0 < squares < len(values)  # both squares and non-squares went through
    assert ossl.sqrt_candidates(b"") == b""
    with pytest.raises(ossl.OsslError):
        ossl.sqrt_candidates(packed[:31])
    us = [gmpy2.mpz(rng.randrange(p)) for _ in range(50)]
    fast = h2c.map_to_curve_sswu_many(us)
    monkeypatch.setattr(ossl, "_LOADED", None)  # the gmpy2 path, as without libcrypto
    assert h2c.map_to_curve_sswu_many(us) == fast


def test_batched_inversion_and_point_sums_match_the_general_addition() -> None:
    p = h2c.P
    vals = [gmpy2.mpz(rng.randrange(1, p)) for _ in range(50)]
    assert [int(v * i % p) for v, i in zip(vals, h2c._invert_many(vals), strict=True)] == [1] * 50
    a = h2c.hash_to_curve(b"a", DST)
    b = h2c.hash_to_curve(b"b", DST)
    assert a is not None and b is not None
    q0 = [a, a, a, b]
    q1 = [b, a, (a[0], p - a[1]), a]  # generic, doubling, inverse (identity), generic
    want = [h2c.add(x, y) for x, y in zip(q0, q1, strict=True)]
    assert want[2] is None
    assert h2c.add_many(q0, q1) == want


# -- libcrypto multiplication --------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, h2c.N - 1, h2c.N - 2, None])
def test_libcrypto_multiplication_equals_ecdh_and_the_reference(k: int | None) -> None:
    k = k if k is not None else rng.randrange(1, h2c.N)
    pts = [G] + [h2c.hash_to_curve(m, DST) for m in _msgs(20)]
    key = ossl.Scalar(k.to_bytes(32, "big"))
    affine = ossl.mul_affine(key, b"".join(_xy(q) for q in pts if q is not None))
    x_only = ossl.mul_x_only(key, b"".join(q[0].to_bytes(32, "big") for q in pts if q))
    sec1 = b"".join(_sec1(q) for q in pts if q is not None)
    from_sec1 = ossl.mul_sec1(key, sec1, full=False)
    want = b"".join(_exchange(k, q) for q in pts if q is not None)
    assert affine == x_only == from_sec1 == want
    # full points: k·P itself (x and y), as the reference computes it
    full = _points(ossl.mul_sec1(key, sec1, full=True))
    refs = [h2c.scalar_mult(k, q) for q in pts if q is not None]
    assert full == [_sec1(r) for r in refs if r is not None]
    assert b"".join(f[1:33] for f in full) == want


def test_libcrypto_refuses_bad_input_and_names_the_element() -> None:
    key = ossl.Scalar(rng.randrange(1, h2c.N).to_bytes(32, "big"))
    bad = next(x for x in range(2, 100) if h2c.lift_x(x) is None).to_bytes(32, "big")
    good = G[0].to_bytes(32, "big")
    with pytest.raises(ossl.OsslError) as err:
        ossl.mul_x_only(key, good + good + bad + good)
    assert err.value.index == 2
    with pytest.raises(ossl.OsslError):
        ossl.mul_affine(key, G[0].to_bytes(32, "big") + (G[1] + 1).to_bytes(32, "big"))
    with pytest.raises(ossl.OsslError):
        ossl.mul_x_only(key, good[:31])
    ok = _sec1(G)
    with pytest.raises(ossl.OsslError) as err:  # off the curve: y is not a root of g(x)
        ossl.mul_sec1(key, ok + ok + ok + _off_curve_point(), full=False)
    assert err.value.index == 3
    for prefix in (b"\x02", b"\x03", b"\x06", b"\x07", b"\x00"):  # only uncompressed
        with pytest.raises(ossl.OsslError) as err:
            ossl.mul_sec1(key, ok + prefix + ok[1:], full=True)
        assert err.value.index == 1
    with pytest.raises(ossl.OsslError) as err:  # out of range coordinates: x + p
        big = b"\x04" + (G[0] + h2c.P).to_bytes(33, "big")[1:] + G[1].to_bytes(32, "big")
        ossl.mul_sec1(key, ok + big, full=False)
    with pytest.raises(ossl.OsslError):
        ossl.mul_sec1(key, ok[:64], full=False)
    assert ossl.mul_sec1(key, b"", full=True) == b""
    assert "secret" in repr(key)


def test_runs_longer_than_one_affine_batch() -> None:
    """Results are made affine 512 at a time: lengths around and past that boundary."""
    g = psi_group(DST)
    k = g.new_scalar()
    elements = g.hash_blind_packed(b"".join(_msgs(1100)), k)
    items = _points(elements)
    for n in (511, 512, 513, 1100):
        assert g.blind_packed(elements[: 65 * n], k) == b"".join(g.blind_many(items[:n], k))
    with pytest.raises(InvalidGroupElement) as err:
        g.blind_packed(elements[: 65 * 700] + _off_curve_point() + elements[:65], k)
    assert err.value.extensions["index"] == 700


def test_group_bulk_path_equals_the_per_element_path() -> None:
    g = psi_group(DST)
    k = g.new_scalar()
    msgs = _msgs(100)
    hashed = g.hash_blind_packed(b"".join(msgs), k)
    points = _points(hashed)
    assert len(hashed) == 65 * 100 and all(p[0] == 4 for p in points)
    # the abscissae are ECDH's; each y makes an on-curve point (k·H(m) itself)
    assert [p[1:33] for p in points] == g.hash_and_blind_many(msgs, k)
    assert all(h2c.on_curve(int.from_bytes(p[1:33]), int.from_bytes(p[33:])) for p in points)
    scalar = int.from_bytes(k.export(), "big")
    ref = h2c.scalar_mult(scalar, (lambda q: (q.x, q.y))(g.hash_to_point(msgs[0])))
    assert ref is not None and points[0] == _sec1(ref)
    assert g.blind_packed(hashed, k) == b"".join(g.blind_many(points, k))
    # a second blinding of either root gives the same abscissa (x-only comparison)
    negated = [p[:33] + (h2c.P - int.from_bytes(p[33:])).to_bytes(32, "big") for p in points]
    assert g.blind_packed(b"".join(negated), k) == g.blind_packed(hashed, k)
    assert g.blind_packed(b"", k) == b"" and g.hash_blind_packed(b"", k) == b""
    with pytest.raises(InvalidGroupElement):
        g.blind_packed(hashed + _off_curve_point(), k)
    with pytest.raises(InvalidGroupElement):  # an x-only element is not a point here
        g.blind_packed(hashed[1:33], k)
    with pytest.raises(InvalidGroupElement):
        g.hash_blind_packed(b"short", k)


def test_engine_on_a_process_pool_equals_in_process() -> None:
    g = psi_group(DST)
    msgs = b"".join(_msgs(101))
    local = psi.EcEngine(g)
    with ProcessPoolExecutor(2) as pool:
        pooled = psi.EcEngine(g, executor=pool, split=2)
        pooled._key = local._key  # the same party's key, once in-process, once on the pool
        once = local.hash_blind(msgs)
        assert pooled.hash_blind(msgs) == once
        assert pooled.blind(once) == local.blind(once)


# -- inside bubblewrap -----------------------------------------------------------------------------


def test_bulk_path_runs_inside_the_sandbox_with_libcrypto(tmp_path: Path) -> None:
    """The join operators' sandbox mounts `_ossl_p256` and can load libcrypto there."""
    registry = OperatorRegistry(
        [
            OperatorSpec(
                "psi_bulk_path",
                "helpers.s13_psi_speed:op_psi_bulk_path",
                limits=Limits(cpu_seconds=20, memory_bytes=512 << 20, wall_seconds=60),
                code_root=TESTS,
            )
        ]
    )
    sb = Sandbox(registry, workdir=tmp_path)
    sb.check()
    g = psi_group(DST)
    k = g.new_scalar()
    msgs = b"".join(_msgs(20))
    elements = g.hash_blind_packed(msgs, k)
    params = {"dst": DST.hex(), "key": k.export().hex(), "elements": elements.hex()}
    out = sb.run("psi_bulk_path", params={**params, "messages": msgs.hex()})
    assert isinstance(out, SandboxResult), out
    got = json.loads(out.output)
    assert got["libcrypto"] is True
    assert bytes.fromhex(got["hashed"]) == elements
    assert bytes.fromhex(got["blinded"]) == g.blind_packed(elements, k)


def test_psi_on_the_bulk_path_equals_the_set_intersection() -> None:
    x = [os.urandom(32) for _ in range(300)]
    y = x[:120] + [os.urandom(32) for _ in range(200)]
    out = psi.run_psi(x, y, DST, reveal_members=True, batch=64)
    assert out.cardinality == 120 and out.members == list(range(120))


# -- what travels: singly blinded points as SEC1, doubly blinded values x-only ----------------


def test_singly_blinded_elements_travel_as_uncompressed_points() -> None:
    x = [os.urandom(32) for _ in range(90)]
    y = x[:30] + [os.urandom(32) for _ in range(70)]
    seen: list[psi.PsiMessage] = []
    out = psi.run_psi(x, y, DST, batch=40, transcript=lambda _to, m: seen.append(m))
    assert out.cardinality == 30
    by_step: dict[str, list[psi.PsiMessage]] = {}
    for m in seen:
        by_step.setdefault(m.step, []).append(m)
    for step, width, total in (("psi.r.blinded", 65, 90), ("psi.s.blinded", 65, 100)):
        msgs = by_step[step]
        assert sum(m.count for m in msgs) == total
        assert all(len(m.elements) == width * m.count and m.width == width for m in msgs)
        assert all(p[0] == 4 for m in msgs for p in _points(m.elements))
        assert all(json.loads(m.to_bytes().split(b"\n")[0])["count"] == m.count for m in msgs)
    doubled = by_step["psi.s.doubled"]
    assert sum(m.count for m in doubled) == 90
    assert all(len(m.elements) == 32 * m.count for m in doubled)


def test_a_peer_sending_an_off_curve_point_is_refused_with_its_index() -> None:
    g = psi_group(DST)
    good = [os.urandom(32) for _ in range(10)]
    r = psi.PsiReceiver(good, psi.EcEngine(g), reveal_members=False, batch=10)
    s = psi.PsiSender(good, psi.EcEngine(g), reveal_members=False, batch=10)
    (req,) = list(r.requests())
    pts = _points(req.elements)
    forged = psi.PsiMessage(req.step, 0, b"".join(pts[:6]) + _off_curve_point() + pts[7])
    with pytest.raises(InvalidGroupElement) as err:
        s.respond(forged)
    assert err.value.extensions["index"] == 6
    with pytest.raises(InvalidGroupElement):  # x-only elements are no longer accepted here
        s.respond(psi.PsiMessage(req.step, 0, b"".join(p[1:33] for p in pts)))


def test_sorted_set_and_unique_fall_back_when_prefixes_collide() -> None:
    """Membership and dedup sort on 8-byte prefixes; equal prefixes use the full bytes."""
    import numpy as np

    base = [os.urandom(32) for _ in range(200)]
    tied = [base[0][:8] + os.urandom(24) for _ in range(5)]  # same prefix, other bytes
    for elems in (base, base + tied):
        arr = np.frombuffer(b"".join(elems), dtype="S32")
        s = psi_sets.SortedSet(arr)
        want_sorted = b"".join(sorted(elems))  # (S32 items drop trailing NULs: compare bytes)
        assert s.sorted.tobytes() == want_sorted == arr[s.order].tobytes()
        probes = elems[::3] + [os.urandom(32), base[0][:8] + os.urandom(24)] + tied[:2]
        mask = s.hits(np.frombuffer(b"".join(probes), dtype="S32"))
        assert list(mask) == [p in set(elems) for p in probes]
        rows = elems + elems[:7]  # duplicates too
        uniq, inverse = psi.unique_messages(rows)
        want, want_inv = np.unique(np.frombuffer(b"".join(rows), dtype="S32"), return_inverse=True)
        assert uniq.tobytes() == want.tobytes() and list(inverse) == list(want_inv)
    empty = psi_sets.SortedSet(np.empty(0, dtype="S32"))
    assert list(empty.hits(np.frombuffer(base[0], dtype="S32"))) == [False]
