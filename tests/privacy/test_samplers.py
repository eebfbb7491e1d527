"""OpenDP samplers: integer outputs, variance within confidence bounds of the calibrated value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sandbox import errors
from sandbox.dp import Lattice, OpenDPNoise

N = 20_000
Z = 4.5  # two-sided ~99.999 %: a correct sampler fails about once in 150 000 runs


def _discrete_laplace_variance(scale: float) -> float:
    """Var of P(z) ∝ exp(−|z|/b) on ℤ: 2e^{−1/b}/(1 − e^{−1/b})²."""
    q = math.exp(-1.0 / scale)
    return 2.0 * q / (1.0 - q) ** 2


def _discrete_gaussian_moments(sigma: float) -> tuple[float, float]:
    """Var and 4th moment of P(z) ∝ exp(−z²/2σ²) on ℤ, summed numerically (CKS 2020 §2)."""
    zs = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11, dtype=np.float64)
    w = np.exp(-(zs**2) / (2 * sigma**2))
    w /= w.sum()
    return float(np.sum(w * zs**2)), float(np.sum(w * zs**4))


def _check_variance(draws: np.ndarray, var: float, m4: float) -> None:
    assert abs(draws.mean()) <= Z * math.sqrt(var / len(draws))
    se = math.sqrt((m4 - var**2) / len(draws))
    assert abs(draws.var() - var) <= Z * se, (draws.var(), var, se)


@pytest.mark.parametrize("scale", [0.7, 3.5, 40.0])
def test_discrete_laplace_is_integer_and_calibrated(scale: float) -> None:
    out = OpenDPNoise().laplace([1000] * N, scale)
    assert all(type(v) is int for v in out)
    draws = np.asarray(out, dtype=np.float64) - 1000
    var = _discrete_laplace_variance(scale)
    # Kurtosis of the (discrete) Laplace is ≤ 6: E[z⁴] ≤ 6·Var².
    _check_variance(draws, var, 6 * var**2)


@pytest.mark.parametrize("sigma", [0.8, 3.0, 25.0])
def test_discrete_gaussian_is_integer_and_calibrated(sigma: float) -> None:
    out = OpenDPNoise().gaussian([-7] * N, sigma)
    assert all(type(v) is int for v in out)
    draws = np.asarray(out, dtype=np.float64) + 7
    var, m4 = _discrete_gaussian_moments(sigma)
    assert var <= sigma**2  # CKS 2020 Prop. 19: the discrete Gaussian has Var < σ²
    _check_variance(draws, var, m4)


def test_float_vector_gaussian_is_calibrated() -> None:
    sigma = 2.5
    x = np.linspace(-1, 1, 40)
    draws = np.concatenate([OpenDPNoise().gaussian_vector(x, sigma) - x for _ in range(250)])
    _check_variance(draws, sigma**2, 3 * sigma**4)


def test_samplers_refuse_what_they_cannot_do_exactly() -> None:
    noise = OpenDPNoise()
    with pytest.raises(errors.InvalidParameters):
        noise.laplace([1], 0.0)
    with pytest.raises(errors.InvalidParameters):
        noise.laplace([2**62], 1.0)  # would saturate at the int64 limit
    with pytest.raises(errors.InvalidParameters):
        noise.gaussian_vector(np.array([np.inf]), 1.0)


def test_lattice_is_chosen_from_the_sensitivity_only() -> None:
    count = Lattice.for_measure(1.0, count=True)
    assert count.unit == 1 and count.sensitivity == 1
    s = Lattice.for_measure(180.0, count=False)
    # γ = 2^(⌊log2 180⌋ − 10) = 2^-3; Δ/γ = 1440 ∈ [1024, 2048); +1 unit for rounding.
    assert s.unit == pytest.approx(0.125) and s.sensitivity == 1441
    assert s.decode(s.encode(s.unit * 37)) == s.unit * 37
    # Out-of-range values are clamped (no data-dependent refusal after acceptance).
    assert s.encode(s.unit * 2**60) == 2**53 - 1 and s.encode(-s.unit * 2**60) == -(2**53 - 1)
