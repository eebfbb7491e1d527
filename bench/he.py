"""`pdx bench he`: Paillier encryption throughput (pure phe, phe+gmpy2, pdx path) and CKKS sums.

Paillier. One 2048-bit key (generated once, with gmpy2). Each side encrypts the same
workload of signed 64-bit fixed-point values in a fresh child process, after a
warm-up, and reports values encrypted per second; every child returns sample
ciphertexts that the parent decrypts with phe's private key, so a fast wrong answer
cannot count.

* pure: phe with gmpy2 made unimportable. phe decides at import time
  (`phe.util.HAVE_GMP`), so the child installs a `sys.meta_path` finder that raises
  ImportError for `gmpy2` before importing phe; phe then uses Python's `pow`. The child
  asserts `HAVE_GMP is False`.
* gmpy2: phe as installed (gmpy2 powmod), `PublicKey.encrypt` per value.
* pdx: `sandbox.paillier.FastEncryptor` (g = n+1, DJN short-exponent randomness from a
  fixed-base table, packing 25 values of 64 bits + 16 bits headroom per ciphertext).
  The timed region includes deriving hs and building the table. `paillier_ct_per_s_pdx`
  reports unpacked ciphertexts/s for comparison.

CKKS. `ckks_sum_1e6_3nodes_s`: `stats.sum` over 10^6 values split across 3 provider CSV
files (333,334 / 333,333 / 333,333 rows), CKKS scheme, end to end: job keys, one sandbox
per node (parse CSV, partial, encrypt under the public context), coordinator addition,
result-party decryption, release gate. The released sum is checked against the exact
plaintext sum within the stated tolerance. `ckks_vector_sum_1e6x3_s` adds three
encrypted 10^6-element vectors element-wise (in process, no sandbox): the cost when the
partial itself is a long vector.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench import report

VALUE_BITS = 64
_BLOCK_GMPY2 = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "gmpy2" or name.startswith("gmpy2."):
            raise ImportError("gmpy2 blocked for the pure-Python measurement")
        return None
sys.meta_path.insert(0, _Block())
"""


def _child(mode: str, n: int, count: int, seed: int) -> dict[str, Any]:
    """Runs in a fresh interpreter: encrypt `count` values, return rate and samples."""
    rng = random.Random(seed)
    values = [rng.randrange(-(1 << (VALUE_BITS - 1)), 1 << (VALUE_BITS - 1)) for _ in range(count)]
    if mode in ("pure", "gmpy2"):
        import phe  # type: ignore[import-untyped]
        import phe.util  # type: ignore[import-untyped]

        assert phe.util.HAVE_GMP is (mode == "gmpy2")
        pk = phe.PaillierPublicKey(n)
        pk.encrypt(1)  # warm-up
        start = time.perf_counter()
        cts = [pk.encrypt(v).ciphertext(be_secure=True) for v in values]
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "values": count, "samples": [[values[0], cts[0]]]}
    from sandbox import paillier

    pk = paillier.public_key_from_n(n)
    packing = paillier.Packing(slot_bits=VALUE_BITS + 16, headroom_bits=16)
    paillier.FastEncryptor(pk).encrypt_raw(1)  # warm-up (imports, first powmod)
    start = time.perf_counter()
    enc = paillier.FastEncryptor(pk)
    if mode == "pdx":
        vec = enc.encrypt_packed(values, packing)
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "values": count,
            "ciphertexts": len(vec.ciphertexts),
            "packed": vec.to_bytes().hex(),
        }
    enc.precompute()
    cts = [enc.encrypt_raw(v) for v in values]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "values": count, "samples": [[values[0], cts[0]]]}


def _measure(mode: str, n: int, count: int, seed: int) -> dict[str, Any]:
    prelude = _BLOCK_GMPY2 if mode == "pure" else ""
    code = prelude + (
        f"import json, bench.he as b\nprint(json.dumps(b._child({mode!r}, {n}, {count}, {seed})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=3600
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _verify(result: dict[str, Any], pk: Any, sk: Any, mode: str, count: int, seed: int) -> None:
    """Decrypt the child's samples with phe's private key."""
    from sandbox import paillier

    if mode == "pdx":
        vec = paillier.PackedVector.from_bytes(bytes.fromhex(result["packed"]), expect_n=pk.n)
        rng = random.Random(seed)
        lo, hi = -(1 << (VALUE_BITS - 1)), 1 << (VALUE_BITS - 1)
        expected = [rng.randrange(lo, hi) for _ in range(count)]
        if vec.decrypt(sk) != expected:
            raise SystemExit("pdx packed ciphertexts do not decrypt to the inputs")
        return
    for value, ct in result["samples"]:
        if sk.decrypt(paillier.to_phe(pk, int(ct))) != value:
            raise SystemExit(f"{mode} ciphertext does not decrypt to its input")


def values_csv(index: int, rows: int) -> Path:
    report.WORK.mkdir(parents=True, exist_ok=True)
    path = report.WORK / f"he_values_{rows}_{index}.csv"
    if not path.exists():
        rng = random.Random(1000 + index)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write("value\n")
            for _ in range(rows):
                f.write(f"{rng.randrange(-100_000, 10_000_000) / 100:.2f}\n")
        tmp.rename(path)
    return path


def _exact_sum(paths: list[Path]) -> Fraction:
    total = Fraction(0)
    for p in paths:
        with open(p) as f:
            next(f)
            total += sum((Fraction(Decimal(line)) for line in f), Fraction(0))
    return total


def _ckks_stats_sum(paths: list[Path]) -> tuple[float, float, float]:
    from sandbox.operators import ProviderInput
    from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
    from sandbox.stats import StatsQuery, run_stats

    providers = [ProviderInput(f"p{i}", f"d{i}", p) for i, p in enumerate(paths)]
    start = time.perf_counter()
    release = run_stats(
        StatsQuery("stats.sum", ("value",), scheme="ckks"),
        providers,
        gate=ReleaseGate(InMemoryPrivacyBudget()),
        obligations=ReleaseObligations(min_cohort=10),
    )
    result = release.value()
    seconds = time.perf_counter() - start
    value = result.group().values["sum(value)"]
    assert value is not None
    return seconds, float(value), result.tolerance


def _ckks_vector_sum(length: int) -> tuple[float, float]:
    import numpy as np

    from sandbox.coordinator import Coordinator, ResultParty, seal_vector

    rng = np.random.default_rng(0)
    parts = [rng.uniform(-1000, 1000, length) for _ in range(3)]
    start = time.perf_counter()
    rp = ResultParty("ckks")
    coordinator = Coordinator(rp.public)
    for i, p in enumerate(parts):
        env = seal_vector(rp.public, "bench.vector", {"length": length}, p)
        coordinator.submit(f"node{i}", env.to_bytes())
    total = rp.decrypt(coordinator.aggregate()).values
    seconds = time.perf_counter() - start
    err = float(np.max(np.abs(np.asarray(total) - sum(parts))))
    return seconds, err


def run(quick: bool = False) -> Path:
    from sandbox import paillier

    pk, sk = paillier.generate_keypair(2048)
    n = int(pk.n)
    runs = 1 if quick else 3
    counts = {
        "pure": 10 if quick else 40,
        "gmpy2": 60 if quick else 400,
        "pdx_ct": 200 if quick else 2000,
        "pdx": 2000 if quick else 50_000,
    }
    rates: dict[str, list[float]] = {k: [] for k in counts}
    for r in range(runs):
        for mode, count in counts.items():  # interleaved: same machine conditions
            res = _measure(mode, n, count, seed=r)
            _verify(res, pk, sk, mode, count, r)
            rates[mode].append(res["values"] / res["seconds"])
    pure, gmp, pdx = (report.median(rates[k]) for k in ("pure", "gmpy2", "pdx"))
    pdx_ct = report.median(rates["pdx_ct"])
    speedup = pdx / pure

    rows = 100_000 if quick else 1_000_000
    split = [rows - 2 * (rows // 3), rows // 3, rows // 3]
    paths = [values_csv(i, k) for i, k in enumerate(split)]
    exact = _exact_sum(paths)
    _ckks_stats_sum(paths)  # warm-up
    sums = []
    for _ in range(runs):
        seconds, value, tol = _ckks_stats_sum(paths)
        # Stated tolerance: CKKS absolute bound plus float64 rounding of the total.
        bound = tol + 2.0**-50 * abs(float(exact))
        if abs(value - float(exact)) > bound:
            raise SystemExit(f"CKKS sum {value} differs from {float(exact)} beyond {bound}")
        sums.append(seconds)
    ckks_s = report.median(sums)
    vec_s, vec_err = _ckks_vector_sum(rows)

    return report.write(
        "he",
        {
            "paillier_key_bits": 2048,
            "value_bits": VALUE_BITS,
            "pdx_packing": {"slot_bits": VALUE_BITS + 16, "headroom_bits": 16, "slots": 25},
            "values_encrypted": counts,
            "runs": runs,
            "ckks_rows": split,
            "ckks_params": "stats: N=8192 q=(60,40,60) scale 2^40",
            "ckks_exact_sum": str(exact),
            "ckks_vector_max_abs_error": vec_err,
        },
        {
            "paillier_enc_per_s_pure": report.Metric(round(pure, 2), "values/s"),
            "paillier_enc_per_s_gmpy2": report.Metric(round(gmp, 1), "values/s"),
            "paillier_enc_per_s_pdx": report.Metric(round(pdx, 1), "values/s"),
            "paillier_ct_per_s_pdx": report.Metric(round(pdx_ct, 1), "ciphertexts/s"),
            "paillier_speedup_vs_pure": report.Metric(
                round(speedup, 1), "x", ">= 10", speedup >= 10
            ),
            "paillier_speedup_vs_gmpy2": report.Metric(round(pdx / gmp, 1), "x"),
            "ckks_sum_1e6_3nodes_s": report.Metric(
                round(ckks_s, 3), "s", None if quick else "< 10", None if quick else ckks_s < 10
            ),
            "ckks_vector_sum_1e6x3_s": report.Metric(round(vec_s, 3), "s"),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
