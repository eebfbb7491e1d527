"""PSI's second blinding on crypto_mb's IFMA lanes equals libcrypto's and refuses what it does."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from crypto import InvalidGroupElement, psi_group
from crypto import _h2c_p256 as h2c
from crypto import _mb_p256 as mb
from crypto import _ossl_p256 as ossl

DST = b"PDX-PSI-TEST-job-0000000000000018"
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
rng = random.Random(1818)


def _ifma() -> bool:
    try:
        return "avx512ifma" in Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return False


needs_lanes = pytest.mark.skipif(not _ifma(), reason="this CPU has no AVX-512 IFMA")


def _sec1(p: tuple[int, int]) -> bytes:
    return b"\x04" + p[0].to_bytes(32, "big") + p[1].to_bytes(32, "big")


def _points(n: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(n):
        p = h2c.hash_to_curve(rng.randbytes(32), DST)
        assert p is not None
        out.append(p)
    return out


def _exchange(k: int, point: tuple[int, int]) -> bytes:
    priv = ec.derive_private_key(k, ec.SECP256R1())
    pub = ec.EllipticCurvePublicNumbers(point[0], point[1], ec.SECP256R1()).public_key()
    return priv.exchange(ec.ECDH(), pub)


@needs_lanes
def test_crypto_mb_loads_on_an_ifma_cpu() -> None:
    assert mb.available()  # otherwise PSI silently runs at libcrypto's speed


@needs_lanes
@pytest.mark.parametrize("k", [1, 2, 3, h2c.N - 1, None])
def test_lanes_equal_libcrypto_and_ecdh_for_every_group_size(k: int | None) -> None:
    k = k if k is not None else rng.randrange(1, h2c.N)
    lanes, lib = mb.Scalar(k.to_bytes(32, "big")), ossl.Scalar(k.to_bytes(32, "big"))
    pts = [G, *_points(24)]
    for n in (0, 1, 7, 8, 9, 16, 17, 25):  # part groups, whole groups, one past
        sec1 = b"".join(_sec1(p) for p in pts[:n])
        got = mb.mul_sec1_x(lanes, sec1)
        assert got == ossl.mul_sec1(lib, sec1, full=False)
        assert got == b"".join(_exchange(k, p) for p in pts[:n])
    # either root of a point gives the same abscissa (PSI compares x-only)
    neg = b"".join(_sec1((p[0], h2c.P - p[1])) for p in pts)
    assert mb.mul_sec1_x(lanes, neg) == mb.mul_sec1_x(lanes, b"".join(_sec1(p) for p in pts))
    assert "secret" in repr(lanes)


@needs_lanes
def test_lanes_refuse_bad_points_and_name_the_element() -> None:
    key = mb.Scalar(rng.randrange(1, h2c.N).to_bytes(32, "big"))
    ok = [_sec1(p) for p in _points(20)]
    off = _sec1((G[0], (G[1] + 1) % h2c.P))  # x on the curve, y not its root
    for at in (0, 3, 7, 8, 13, 19):  # first lane, inside, last lane, a later group, the tail
        with pytest.raises(mb.MbError) as err:
            mb.mul_sec1_x(key, b"".join(ok[:at] + [off] + ok[at + 1 :]))
        assert err.value.index == at
    for prefix in (b"\x02", b"\x03", b"\x06", b"\x00"):  # only uncompressed points
        with pytest.raises(mb.MbError) as err:
            mb.mul_sec1_x(key, ok[0] + prefix + ok[1][1:])
        assert err.value.index == 1
    # x + p and y + p name the same point modulo p: refused, as libcrypto refuses them
    x_big = b"\x04" + (G[0] + h2c.P).to_bytes(33, "big")[1:] + G[1].to_bytes(32, "big")
    y_big = _sec1(G)[:33] + (h2c.P + 5).to_bytes(33, "big")[1:]
    for bad in (x_big, y_big):
        with pytest.raises(mb.MbError) as err:
            mb.mul_sec1_x(key, ok[0] + ok[1] + bad)
        assert err.value.index == 2
    with pytest.raises(mb.MbError):
        mb.mul_sec1_x(key, ok[0][:64])


@needs_lanes
def test_group_second_blinding_runs_on_the_lanes_and_keeps_its_errors() -> None:
    g = psi_group(DST)
    k = g.new_scalar()
    hashed = g.hash_blind_packed(rng.randbytes(32 * 700), k)
    lane_key = k._mb()
    assert lane_key is not None  # a fresh key goes to the lanes
    lanes = mb.mul_sec1_x(lane_key, hashed)
    assert g.blind_packed(hashed, k) == lanes == ossl.mul_sec1(k._ossl(), hashed, full=False)
    off = _sec1((G[0], (G[1] + 1) % h2c.P))
    with pytest.raises(InvalidGroupElement) as err:
        g.blind_packed(hashed[: 65 * 300] + off + hashed[:65], k)
    assert err.value.extensions["index"] == 300


@needs_lanes
def test_the_join_sandbox_blinds_on_the_lanes(tmp_path: Path) -> None:
    """Operators run in bubblewrap: crypto_mb and its runtime must load there too."""
    from sandbox.isolation import Limits, OperatorRegistry, OperatorSpec, Sandbox, SandboxResult

    tests = Path(__file__).resolve().parent
    spec = OperatorSpec(
        "psi_lanes",
        "helpers.s14_psi:op_psi_lanes",
        limits=Limits(cpu_seconds=20, memory_bytes=512 << 20, wall_seconds=60),
        code_root=tests,
    )
    sb = Sandbox(OperatorRegistry([spec]), workdir=tmp_path)
    sb.check()
    g = psi_group(DST)
    k = g.new_scalar()
    elements = g.hash_blind_packed(rng.randbytes(32 * 20), k)
    params = {"dst": DST.hex(), "key": k.export().hex(), "elements": elements.hex()}
    out = sb.run("psi_lanes", params=params)
    assert isinstance(out, SandboxResult), out
    got = json.loads(out.output)
    assert got["lanes"] is True
    assert bytes.fromhex(got["blinded"]) == ossl.mul_sec1(k._ossl(), elements, full=False)


@needs_lanes
@pytest.mark.parametrize("k", [1, 2, 3, h2c.N - 2, h2c.N - 1, None])
def test_first_blinding_on_the_lanes_is_exactly_k_times_the_hash(k: int | None) -> None:
    """x(k·H) and x((k+1)·H) on the lanes, y recovered: the very point libcrypto computes.

    Keys within 2^64 of 0 or n take libcrypto (crypto_mb misses for some, e.g. n − 2; and
    k ≡ ±1 cannot recover y): the same bytes either way.
    """
    g = psi_group(DST)
    key = g.new_scalar() if k is None else g.load_scalar(k.to_bytes(32, "big"))
    assert (key._mb_pair() is None) == (k is not None) == (key._mb() is None)
    msgs = [rng.randbytes(32) for _ in range(37)]
    hashed = h2c.hash_to_curve_many(msgs, DST)
    sec1 = b"".join(_sec1(p) for p in hashed if p is not None)
    want = ossl.mul_sec1(key._ossl(), sec1, full=True)
    assert g.hash_blind_packed(b"".join(msgs), key) == want
    assert g.blind_packed(want, key) == ossl.mul_sec1(key._ossl(), want, full=False)


def test_y_recovery_refuses_what_is_not_on_the_curve() -> None:
    p = _points(3)
    k = 5
    q = [h2c.scalar_mult(k, pt) for pt in p]
    r = [h2c.scalar_mult(k + 1, pt) for pt in p]
    xq = b"".join(v[0].to_bytes(32, "big") for v in q if v is not None)
    xr = b"".join(v[0].to_bytes(32, "big") for v in r if v is not None)
    assert h2c.recover_sec1(p, xq, xr) == b"".join(_sec1(v) for v in q if v is not None)
    wrong = xr[:32] + xr[:32] + xr[64:]  # the second point's x((k+1)·P) is the first one's
    with pytest.raises(ValueError):
        h2c.recover_sec1(p, xq, wrong)
    with pytest.raises(ValueError):
        h2c.recover_sec1(p, xq[:64], xr)
