"""The ECDH-PSI group: RFC 9380 P-256 hashing against Appendix J.1.1, x-only blinding (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto import InvalidGroupElement, psi_group
from crypto import _h2c_p256 as h2c

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "rfc9380_p256_sswu_ro.json").read_text("utf-8")
)


def _pt(d: dict[str, str]) -> tuple[int, int]:
    return int(d["x"], 16), int(d["y"], 16)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["msg"][:8] or "empty")
def test_rfc9380_j11_vectors(vector: dict[str, object]) -> None:
    dst = VECTORS["dst"].encode()
    msg = str(vector["msg"]).encode()
    u = h2c.hash_to_field(msg, dst, 2)
    assert [format(x, "064x") for x in u] == vector["u"]
    assert h2c.map_to_curve_sswu(u[0]) == _pt(vector["Q0"])  # type: ignore[arg-type]
    assert h2c.map_to_curve_sswu(u[1]) == _pt(vector["Q1"])  # type: ignore[arg-type]
    p = psi_group(dst).hash_to_point(msg)
    assert (p.x, p.y) == _pt(vector["P"])  # type: ignore[arg-type]


def test_vectors_file_is_the_rfc_suite() -> None:
    assert VECTORS["suite"] == "P256_XMD:SHA-256_SSWU_RO_"
    assert VECTORS["dst"] == "QUUX-V01-CS02-with-P256_XMD:SHA-256_SSWU_RO_"
    assert len(VECTORS["vectors"]) == 5


def test_blinding_commutes_with_x_only_encoding() -> None:
    g = psi_group()
    a, b = g.new_scalar(), g.new_scalar()
    p = g.hash_to_point(b"alice")
    ab = g.blind(g.blind(p, a), b)
    ba = g.blind(g.blind(p, b), a)
    assert ab == ba and len(ab) == 32
    # decompressing to the other root gives the same next encoding: x(k·P) = x(k·(-P))
    q = g.decode(g.blind(p, a))
    assert g.blind(q, b) == ab
    neg = type(q)(q.x, h2c.P - q.y)
    assert g.blind(neg, b) == ab


def test_openssl_path_equals_pure_python_reference() -> None:
    g = psi_group()
    k = g.new_scalar()
    for msg in (b"", b"x", b"13812345678"):
        p = g.hash_to_point(msg)
        assert g.blind(p, k) == g.blind_reference(p, k)
        assert g.hash_and_blind_many([msg], k) == [g.blind(p, k)]
    enc = g.encode(g.hash_to_point(b"y"))
    assert g.blind_many([enc], k) == [g.blind_reference(enc, k)]


def test_decode_refuses_non_points_and_scalar_round_trip() -> None:
    g = psi_group()
    bad = next(x for x in range(2, 100) if h2c.lift_x(x) is None)
    with pytest.raises(InvalidGroupElement):
        g.decode(bad.to_bytes(32, "big"))
    with pytest.raises(InvalidGroupElement):
        g.blind_many([bad.to_bytes(32, "big")], g.new_scalar())
    with pytest.raises(InvalidGroupElement):
        g.decode(b"\x01" * 31)
    with pytest.raises(InvalidGroupElement):
        g.load_scalar(h2c.N.to_bytes(32, "big"))
    k = g.new_scalar()
    p = g.hash_to_point(b"z")
    assert g.blind(p, g.load_scalar(k.export())) == g.blind(p, k)
    assert "secret" in repr(k)


def test_dst_separates_jobs() -> None:
    a = psi_group(b"PDX-PSI-TEST-job-0000000000000001").hash_to_point(b"same")
    b = psi_group(b"PDX-PSI-TEST-job-0000000000000002").hash_to_point(b"same")
    assert a != b
    with pytest.raises(ValueError):
        psi_group(b"short")
