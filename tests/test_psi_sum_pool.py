"""psi.sum with its Paillier encryptions spread over a process pool: same sum, fresh ciphertexts."""

from __future__ import annotations

import os
import random
from concurrent.futures import ProcessPoolExecutor

from sandbox import paillier, psi
from sandbox.identifiers import IdKind, JobDomain

KEY = paillier.generate_keypair(1024)


def _ids(start: int, stop: int) -> list[str]:
    return [f"person{i:06d}@example.cn" for i in range(start, stop)]


def test_pooled_encryptions_give_the_exact_sum_and_fresh_ciphertexts() -> None:
    d = JobDomain("job-sum-pool", os.urandom(32))
    a = [m for m in d.messages(IdKind.EMAIL, _ids(0, 300)) if m is not None]
    b = [m for m in d.messages(IdKind.EMAIL, _ids(200, 520)) if m is not None]
    rng = random.Random(7)
    values = [rng.choice([-3, 5, 5, 5, 90_000]) for _ in b]  # repeated values on purpose
    seen: list[psi.PsiMessage] = []

    def record(to: str, msg: psi.PsiMessage) -> None:
        if msg.step == "pjc.p2.pairs":
            seen.append(msg)

    with ProcessPoolExecutor(2) as pool:
        out = psi.run_sum(
            a, b, values, d.dst, KEY, batch=64, executor=pool, split=2, transcript=record
        )
    assert out.total == sum(values[:100]) and out.matcher_intersection_size == 100
    cts = [c for msg in seen for c in msg.ciphertexts]
    assert len(cts) == len(b) == sum(msg.count for msg in seen)
    # every ciphertext opens to one of P2's values (the pool encrypted under K's key) ...
    public, private = KEY
    n = int(public.n)
    opened = sorted((m - n if m > n // 2 else m) for m in (private.raw_decrypt(c) for c in cts))
    assert opened == sorted(values)
    # ... and equal values never give equal ciphertexts (each worker draws its own α)
    assert len(set(cts)) == len(cts)
    assert all(1 < c < n * n for c in cts)


def test_encrypt_async_in_process_and_on_the_pool_decrypt_alike() -> None:
    public, private = KEY
    enc = paillier.FastEncryptor(public)
    values = list(range(-20, 41))
    group = psi.PsiGroup(b"PDX-PSI-TEST-job-encrypt-async-01")
    local = psi.EcEngine(group).encrypt_async(enc, values)()
    with ProcessPoolExecutor(2) as pool:
        pooled = psi.EcEngine(group, executor=pool, split=2).encrypt_async(enc, values)()
    n = int(public.n)
    for cts in (local, pooled):
        assert [(m - n if m > n // 2 else m) for m in map(private.raw_decrypt, cts)] == values
    assert set(local).isdisjoint(pooled)
