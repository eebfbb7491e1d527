"""PSI operators equal their plaintext references on noisy identifiers (issue 18 must-show 1)."""

from __future__ import annotations

import os
import random
from concurrent.futures import ProcessPoolExecutor

import pytest

from sandbox import paillier, psi
from sandbox.errors import InvalidParameters
from sandbox.identifiers import IdKind, JobDomain, normalise
from tests.helpers.i18_psi import id_number, noisy_id, noisy_phone, phone

KEY = paillier.generate_keypair(1024)


def _population(seed: int) -> tuple[list[str], list[str], set[str]]:
    """Two sets of ID numbers sharing about a third, typed differently on each side."""
    rng = random.Random(seed)
    people = list({id_number(rng) for _ in range(900)})
    a, b = people[:500], people[300:]  # 200 in common
    side_a = [noisy_id(v, rng) for v in a]
    side_b = [noisy_id(v, rng) for v in b]
    rng.shuffle(side_b)
    return side_a, side_b, set(a) & set(b)


def _msgs(domain: JobDomain, kind: IdKind, values: list[str]) -> list[bytes]:
    return [m for m in domain.messages(kind, values) if m is not None]


def test_cardinality_equals_plaintext_intersection_size() -> None:
    side_a, side_b, truth = _population(1)
    d = JobDomain("job-card", os.urandom(32))
    out = psi.run_psi(
        _msgs(d, IdKind.ID_NUMBER, side_a), _msgs(d, IdKind.ID_NUMBER, side_b), d.dst, batch=64
    )
    assert out.cardinality == len(truth) == 200
    assert out.members is None
    assert (out.receiver_size, out.sender_size) == (len(side_a), len(side_b))


def test_intersection_reveals_the_receivers_own_rows() -> None:
    side_a, side_b, truth = _population(2)
    d = JobDomain("job-int", os.urandom(32))
    out = psi.run_psi(
        _msgs(d, IdKind.ID_NUMBER, side_a),
        _msgs(d, IdKind.ID_NUMBER, side_b),
        d.dst,
        reveal_members=True,
        batch=100,
    )
    got = {normalise(IdKind.ID_NUMBER, side_a[i]) for i in out.members or []}
    assert got == truth


def test_duplicates_and_phone_noise_count_once() -> None:
    rng = random.Random(3)
    phones = [phone(rng) for _ in range(120)]
    a = [noisy_phone(p, rng) for p in phones[:80]] + [noisy_phone(p, rng) for p in phones[:10]]
    b = [noisy_phone(p, rng) for p in phones[50:]]
    d = JobDomain("job-phone", os.urandom(32))
    ma, mb = _msgs(d, IdKind.PHONE, a), _msgs(d, IdKind.PHONE, b)
    out = psi.run_psi(ma, mb, d.dst, reveal_members=True, batch=16)
    assert out.cardinality == 30
    assert out.receiver_size == 80  # duplicates removed before anything is sent
    assert sorted(out.members or []) == list(range(50, 80))


def test_process_pool_gives_the_same_answer() -> None:
    side_a, side_b, truth = _population(4)
    d = JobDomain("job-pool", os.urandom(32))
    with ProcessPoolExecutor(2) as pool:
        out = psi.run_psi(
            _msgs(d, IdKind.ID_NUMBER, side_a),
            _msgs(d, IdKind.ID_NUMBER, side_b),
            d.dst,
            batch=128,
            executor=pool,
            split=2,
        )
    assert out.cardinality == len(truth)


def test_sum_equals_exact_sum_over_the_intersection() -> None:
    side_a, side_b, truth = _population(5)
    rng = random.Random(5)
    values = [rng.randrange(-5000, 100_000) for _ in side_b]
    expected = sum(
        v
        for raw, v in zip(side_b, values, strict=True)
        if normalise(IdKind.ID_NUMBER, raw) in truth
    )
    d = JobDomain("job-sum", os.urandom(32))
    out = psi.run_sum(
        _msgs(d, IdKind.ID_NUMBER, side_a),
        _msgs(d, IdKind.ID_NUMBER, side_b),
        values,
        d.dst,
        KEY,
        batch=97,
    )
    assert out.total == expected  # the test hook: exact before noise
    assert out.matcher_intersection_size == len(truth)


def test_sum_refusals() -> None:
    d = JobDomain("job-sum-bad", os.urandom(32))
    m = _msgs(d, IdKind.EMAIL, ["a@x.cn", "b@x.cn"])
    with pytest.raises(InvalidParameters):
        psi.run_sum(m, m, [1, 2], d.dst, KEY, matcher_holds_key=True)
    with pytest.raises(InvalidParameters):
        psi.run_sum(m, m + m[:1], [1, 2, 3], d.dst, KEY)  # duplicate value rows
    with pytest.raises(InvalidParameters):
        psi.run_psi([b"short"], m, d.dst)
