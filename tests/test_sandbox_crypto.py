"""Paillier (pdx fast path, checked against phe) and CKKS (TenSEAL) building blocks."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import phe  # type: ignore[import-untyped]
import pytest

from sandbox import ckks, paillier
from sandbox.errors import HomomorphicMismatch, InvalidParameters, ValueOutOfRange


@pytest.fixture(scope="module")
def keys() -> tuple[Any, Any]:
    return paillier.generate_keypair()


# -- Paillier ---------------------------------------------------------------------------------


def test_default_key_is_2048_bits(keys: tuple[Any, Any]) -> None:
    pk, _ = keys
    assert pk.n.bit_length() == 2048
    with pytest.raises(InvalidParameters):
        paillier.generate_keypair(512)


@pytest.mark.parametrize("table", [False, True])
def test_fast_path_ciphertexts_decrypt_with_phe(keys: tuple[Any, Any], table: bool) -> None:
    pk, sk = keys
    enc = paillier.FastEncryptor(pk, rand_bits=random.Random(7).getrandbits)
    if table:
        enc.precompute()
    for m in (0, 1, -1, 123456789, -(10**30), pk.max_int):
        c = enc.encrypt_raw(m)
        assert 0 < c < pk.nsquare
        assert sk.decrypt(paillier.to_phe(pk, c)) == m  # phe's decoding, signed
    # Fresh randomness every time: equal plaintexts, different ciphertexts.
    assert enc.encrypt_raw(5) != enc.encrypt_raw(5)


def test_fast_path_and_phe_ciphertexts_add(keys: tuple[Any, Any]) -> None:
    pk, sk = keys
    enc = paillier.FastEncryptor(pk)
    total = paillier.to_phe(pk, enc.encrypt_raw(40)) + pk.encrypt(2)
    assert sk.decrypt(total) == 42
    assert isinstance(total, phe.EncryptedNumber)


def test_obfuscator_is_an_nth_residue(keys: tuple[Any, Any]) -> None:
    """hs^α decrypts to 0: it is a valid Paillier randomness r^n."""
    pk, sk = keys
    enc = paillier.FastEncryptor(pk)
    assert sk.raw_decrypt(int(enc.obfuscator())) == 0


def test_packed_sums_are_exact_across_parties(keys: tuple[Any, Any]) -> None:
    pk, sk = keys
    packing = paillier.Packing(slot_bits=128, headroom_bits=16)
    rng = random.Random(1)
    bound = packing.bias
    parties = [[rng.randrange(-bound, bound) for _ in range(40)] for _ in range(5)]
    vectors = [paillier.FastEncryptor(pk).encrypt_packed(v, packing) for v in parties]
    assert len(vectors[0].ciphertexts) == 3  # 15 slots of 128 bits in a 2048-bit n
    total = vectors[0]
    for v in vectors[1:]:
        total = total + paillier.PackedVector.from_bytes(v.to_bytes(), expect_n=pk.n)
    assert total.addends == 5
    assert total.decrypt(sk) == [sum(col) for col in zip(*parties, strict=True)]


def test_packing_refuses_overflow_and_too_many_addends(keys: tuple[Any, Any]) -> None:
    pk, _ = keys
    packing = paillier.Packing(slot_bits=64, headroom_bits=8)
    enc = paillier.FastEncryptor(pk)
    with pytest.raises(ValueOutOfRange):
        enc.encrypt_packed([packing.bias], packing)
    v = enc.encrypt_packed([1, 2], packing)
    many = paillier.PackedVector(v.n, v.ciphertexts, v.length, packing.max_addends, packing)
    with pytest.raises(HomomorphicMismatch):
        _ = many + v


def test_packed_vector_parsing_checks_key_and_shape(keys: tuple[Any, Any]) -> None:
    pk, _ = keys
    other, _ = paillier.generate_keypair(1024)
    data = paillier.FastEncryptor(pk).encrypt_packed([1, 2, 3], paillier.Packing()).to_bytes()
    with pytest.raises(HomomorphicMismatch):
        paillier.PackedVector.from_bytes(data, expect_n=other.n)
    for bad in (data[:-1], b"{}\n", b"garbage", data.replace(b'"length":3', b'"length":99')):
        with pytest.raises(HomomorphicMismatch):
            paillier.PackedVector.from_bytes(bad)


def test_fixed_point_is_exact() -> None:
    values = ["0.1", "0.2", "-0.3", "1e-6", "123456.654321"]
    total = sum(paillier.encode_fixed(v, 6) for v in values)
    assert paillier.decode_fixed(total, 6) == sum(Fraction(Decimal(v)) for v in values)
    assert paillier.encode_fixed("0.0000005", 6) == 0  # half to even
    assert paillier.encode_fixed("0.0000015", 6) == 2
    with pytest.raises(InvalidParameters):
        paillier.encode_fixed("abc", 6)
    with pytest.raises(InvalidParameters):
        paillier.encode_fixed("inf", 6)


# -- CKKS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["COMPACT", "WIDE"])
def secret_ctx(request: pytest.FixtureRequest) -> ckks.CkksSecretContext:
    return ckks.CkksSecretContext(getattr(ckks.CkksParams, request.param))


def test_public_context_has_no_secret_key(secret_ctx: ckks.CkksSecretContext) -> None:
    pub = ckks.load_public_context(secret_ctx.public_bytes())
    assert pub.is_public() and not pub.has_secret_key()
    vec = ckks.CkksVector.encrypt(pub, [1.0, 2.0])
    with pytest.raises(ValueError):
        vec.chunks[0].decrypt()  # a node or the coordinator cannot decrypt


def test_ckks_sum_is_within_stated_tolerance(secret_ctx: ckks.CkksSecretContext) -> None:
    params = secret_ctx.params
    pub = ckks.load_public_context(secret_ctx.public_bytes())
    rng = np.random.default_rng(3)
    length = params.slots * 2 + 17  # three chunks
    big = min(params.max_abs / 8, 1e5)
    parts = [rng.uniform(-big, big, length) for _ in range(3)]
    total = None
    for p in parts:
        v = ckks.CkksVector.from_bytes(pub, ckks.CkksVector.encrypt(pub, p).to_bytes())
        total = v if total is None else total + v
    assert total is not None and total.addends == 3 and len(total.chunks) == 3
    out = secret_ctx.decrypt(total)
    assert out.shape == (length,)
    assert np.max(np.abs(out - sum(parts))) <= params.tolerance(3)


def test_zero_pool_encrypts_like_fresh(secret_ctx: ckks.CkksSecretContext) -> None:
    pub = ckks.load_public_context(secret_ctx.public_bytes())
    pool = ckks.ZeroPool(pub, 40, 2)
    values = np.linspace(-3, 3, 40)
    a, b = pool.encrypt(values), pool.encrypt(values)
    assert len(pool) == 0
    assert a.to_bytes() != b.to_bytes()  # each pooled zero is used once
    c = pool.encrypt(values)  # empty pool: fresh encryption
    for v in (a, b, c):
        assert np.max(np.abs(secret_ctx.decrypt(v) - values)) <= secret_ctx.params.tolerance(1)
    with pytest.raises(InvalidParameters):
        pool.encrypt(values[:3])


def test_ckks_refuses_mismatches() -> None:
    a = ckks.CkksSecretContext(ckks.CkksParams.COMPACT)
    b = ckks.CkksSecretContext(ckks.CkksParams.WIDE)
    pub_a = ckks.load_public_context(a.public_bytes())
    pub_b = ckks.load_public_context(b.public_bytes())
    data = ckks.CkksVector.encrypt(pub_a, [1.0]).to_bytes()
    with pytest.raises(HomomorphicMismatch):
        ckks.CkksVector.from_bytes(pub_b, data)
    with pytest.raises(HomomorphicMismatch):
        ckks.CkksVector.from_bytes(pub_a, data[:-10])
    with pytest.raises(HomomorphicMismatch):
        _ = ckks.CkksVector.encrypt(pub_a, [1.0]) + ckks.CkksVector.encrypt(pub_a, [1.0, 2.0])
    with pytest.raises(HomomorphicMismatch):
        ckks.load_public_context(b"not a context")
    with pytest.raises(ValueOutOfRange):
        ckks.check_range(np.array([1e6]), ckks.CkksParams.COMPACT)
    with pytest.raises(InvalidParameters):
        ckks.CkksVector.encrypt(pub_a, [float("nan")])
