"""DP on a released vertical logistic-regression model: output perturbation with OpenDP noise.

Chaudhuri, Monteleoni and Sarwate, "Differentially private empirical risk minimization"
(JMLR 2011), §4 (output perturbation): for the L2-regularised logistic loss
(1/n)·Σ ℓ(y_i·w·x_i) + (λ/2)·‖w‖² with every row ‖x_i‖₂ ≤ 1, the minimiser's L2
sensitivity to one row is 2/(n·λ). `hetero_lr` regularises as sklearn does (λ = 1/(C·n)),
so the sensitivity is 2·C whatever n. The Gaussian mechanism with σ = Δ·√(2 ln(1.25/δ))/ε
then gives (ε, δ)-DP (Dwork and Roth 2014, Thm A.1; ε ≤ 1 there, used as the usual
calibration above it, as the issue-7 rules do for counts). The bound holds for the exact
minimiser: the released weights are those of the last round, so this is the textbook
calibration, not a proof for the approximate solver; the accuracy figure says what it costs.

The approved ε is split (`split_epsilon`): `COUNT_SHARE` of it is spent on the minimum
aligned-rows decision, taken on the aligned count plus OpenDP's discrete Laplace noise of
scale 1/ε_count (sensitivity 1: one person adds or removes at most one aligned row), and
the rest on the weights' Gaussian perturbation. By sequential composition the release
(refuse-or-release and the weights) is (ε, δ)-DP: the total charged is the approved ε, δ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sandbox.dp import NoiseSource, OpenDPNoise
from sandbox.errors import InvalidParameters

__all__ = [
    "COUNT_SHARE",
    "clip_rows",
    "gaussian_sigma",
    "perturb_weights",
    "split_epsilon",
    "weights_sigma",
]

COUNT_SHARE = 0.2
"""The fraction of the approved ε spent on the minimum aligned-rows decision (Laplace)."""


def split_epsilon(epsilon: float) -> tuple[float, float]:
    """(ε for the aligned-count decision, ε for the weights' output perturbation)."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise InvalidParameters("dp_epsilon must be positive and finite")
    return COUNT_SHARE * epsilon, (1.0 - COUNT_SHARE) * epsilon


def clip_rows(x: np.ndarray[Any, Any], scale: float) -> np.ndarray[Any, Any]:
    """Rows divided by `scale` (a public bound on every row's norm), then clipped to norm 1."""
    z = np.asarray(x, dtype=float) / scale
    norms = np.maximum(np.linalg.norm(z, axis=1), 1.0)
    out: np.ndarray[Any, Any] = z / norms[:, None]
    return out


def gaussian_sigma(c: float, epsilon: float, delta: float) -> float:
    """σ for the weights: Δ₂ = 2·C (rows of norm ≤ 1), Gaussian mechanism at (ε, δ)."""
    if not (epsilon > 0 and 0 < delta < 1 and c > 0):
        raise InvalidParameters("ε, δ and C must be positive (δ < 1)")
    return 2.0 * c * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def weights_sigma(c: float, epsilon: float, delta: float) -> float:
    """σ of the weights under the approved (ε, δ): the Gaussian mechanism at the weights' ε."""
    return gaussian_sigma(c, split_epsilon(epsilon)[1], delta)


def perturb_weights(
    weights: np.ndarray[Any, Any],
    c: float,
    epsilon: float,
    delta: float,
    noise: NoiseSource | None = None,
) -> np.ndarray[Any, Any]:
    """The weights (all parties' and the intercept, concatenated) plus calibrated noise.

    `epsilon` is the approved ε: the weights get its share (`weights_sigma`).
    """
    sigma = weights_sigma(c, epsilon, delta)
    return (noise or OpenDPNoise()).gaussian_vector(np.asarray(weights, dtype=float), sigma)
