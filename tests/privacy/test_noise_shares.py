"""Distributed noise: any m = n − t honest shares sum to the noise the central mechanism adds.

Seeded Monte Carlo (N draws, fixed seed), no timing. Tolerances, each at about five
standard errors so a correct sampler fails with probability < 1e-6 per check:

* variance: for discrete Laplace of scale b, Var = 2α/(1 − α)² (α = e^(−1/b)); the
  sample variance's standard error is √((μ₄ − σ⁴)/N) and the kurtosis is ≤ 6, so
  SE ≤ σ²·√(5/N): with N = 200 000, 0.5 % of σ², tolerance 2.5 %;
* P(Z = 0) = (1 − α)/(1 + α): binomial SE √(p(1 − p)/N), tolerance 5 SE;
* the empirical CDF within 1.95/√N of the exact one everywhere (the Kolmogorov
  statistic's 0.1 % critical value; conservative for a discrete law).

Each test also shows the checks would catch a wrong calibration: one share alone (what a
requester colluding with t providers would face if shares were sized for n, not n − t)
has half the variance and fails the same check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sandbox.noise_shares import NoisePlan, noise_share, polya_share, tolerated

N = 200_000


def _dlap_cdf(z: np.ndarray, b: float) -> np.ndarray:
    """Exact CDF of the discrete Laplace law P(z) ∝ α^|z| at integer points."""
    a = math.exp(-1.0 / b)
    zf = z.astype(np.float64)
    neg = a ** (-zf) / (1 + a)  # z < 0: P(Z ≤ z) = α^{-z}/(1 + α)
    pos = 1 - a ** (zf + 1) / (1 + a)
    return np.where(z < 0, neg, pos)


def _check_dlap(sample: np.ndarray, b: float) -> None:
    a = math.exp(-1.0 / b)
    var = 2 * a / (1 - a) ** 2
    assert abs(sample.var() - var) < 5 * var * math.sqrt(5 / N), (sample.var(), var)
    p0 = (1 - a) / (1 + a)
    assert abs(np.mean(sample == 0) - p0) < 5 * math.sqrt(p0 * (1 - p0) / N)
    grid = np.arange(int(-8 * b), int(8 * b) + 1)
    empirical = np.searchsorted(np.sort(sample), grid, side="right") / N
    assert np.max(np.abs(empirical - _dlap_cdf(grid, b))) < 1.95 / math.sqrt(N)


@pytest.mark.parametrize(("providers", "b"), [(3, 4.0), (4, 2.5), (5, 7.0)])
def test_m_honest_polya_shares_sum_to_the_discrete_laplace(providers: int, b: float) -> None:
    t = tolerated(providers)
    m = providers - t
    assert (providers, t) in ((3, 1), (4, 2), (5, 2))  # t = ⌊n/2⌋
    rng = np.random.default_rng(20261204 + providers)
    shares = np.array([polya_share(b, m, N, rng) for _ in range(m)])
    _check_dlap(shares.sum(axis=0), b)
    # One share fewer (a colluder's share subtracted beyond t) is not enough noise.
    if m > 1:
        with pytest.raises(AssertionError):
            _check_dlap(shares[:-1].sum(axis=0), b)


def test_gaussian_shares_sum_to_the_required_variance() -> None:
    plan = NoisePlan.build(
        ["rows"], clip=None, epsilon=1.0, delta=1e-6, mechanism="gaussian", providers=4
    )
    sigma = plan.scales[0]
    rng = np.random.default_rng(7)
    m = plan.shares
    shares = np.array([noise_share(plan, N // 10, rng=rng) for _ in range(m)])
    # The sample variance of a normal law has SE σ²·√(2/N') (N' = N/10); 5 SE, plus the
    # variance rounding to integers adds (1/12 per share).
    tol = 5 * sigma**2 * math.sqrt(2 / (N // 10)) + m / 12
    assert m == 2 and abs(shares.sum(axis=0).var() - sigma**2) < tol
    assert abs(shares[0].var() - sigma**2) > tol  # one share alone is too little noise


def test_the_plan_matches_the_central_gate_per_field() -> None:
    """k measures of a group share ε: each field's total scale is k·Δ/ε on its lattice."""
    plan = NoisePlan.build(
        ["rows", "n:age", "sum:age"],
        clip=(0.0, 100.0),
        epsilon=0.5,
        delta=0.0,
        mechanism="laplace",
        providers=3,
    )
    assert plan.sensitivities[:2] == (1, 1)
    assert plan.scales[0] == pytest.approx(3 * 1 / 0.5)
    # Sum: lattice γ = 2^(⌊log2 100⌋ − 10) = 2^-4, Δ/γ = 1600, +1 for rounding.
    assert plan.units[2] == 2**-4 and plan.sensitivities[2] == 1601
    assert plan.scales[2] == pytest.approx(3 * 1601 / 0.5)
    assert (plan.providers, plan.tolerated, plan.shares) == (3, 1, 2)
