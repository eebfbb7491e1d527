"""Record-level DP for `fl.logreg`: the budget plan (zCDP accountant) and the node's DP-SGD steps.

See `sandbox.fl` step 5 for the protocol; `sandbox.accounting` for the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sandbox.accounting import dpsgd_noise_multiplier, dpsgd_rho, epsilon, rho_for, sigma_for
from sandbox.dp import NoiseSource, OpenDPNoise
from sandbox.errors import InvalidParameters

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DpPlan:
    """How one DP training spends its (ε, δ): a noisy count, then T DP-SGD steps."""

    epsilon: float
    delta: float
    rho: float
    count_rho: float
    count_sigma: float
    steps: int
    noise_multiplier: float
    clip: float
    sigma: float
    """Gaussian scale added to each step's clipped gradient sum: z·C."""
    epsilon_accounted: float
    """ε of the composed ρ (count + steps) at δ: at most `epsilon`."""

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def plan_dp(
    eps: float, delta: float, *, rounds: int, local_epochs: int, clip: float, count_share: float
) -> DpPlan:
    """Split the ρ that (ε, δ) allows between the noisy count and the SGD steps."""
    if not 0 < delta < 1:
        raise InvalidParameters("record-level DP training needs 0 < dp_delta < 1")
    rho = rho_for(eps, delta)
    count_rho = count_share * rho
    steps = rounds * local_epochs
    z = dpsgd_noise_multiplier(rho - count_rho, steps)
    spent = count_rho + dpsgd_rho(z, steps)
    return DpPlan(
        epsilon=eps,
        delta=delta,
        rho=rho,
        count_rho=count_rho,
        count_sigma=sigma_for(1.0, count_rho),
        steps=steps,
        noise_multiplier=z,
        clip=clip,
        sigma=z * clip,
        epsilon_accounted=epsilon(spent, delta),
    )


def bounds_standardisation(bounds: Sequence[tuple[float, float]]) -> tuple[Array, Array]:
    """Centre and half-width of the declared bounds: values map onto [−1, 1]."""
    b = np.asarray(bounds, dtype=np.float64)
    return (b[:, 0] + b[:, 1]) / 2.0, (b[:, 1] - b[:, 0]) / 2.0


def dp_local_train(
    xb: Array,
    y: Array,
    w: Array,
    lam: float,
    lr: float,
    epochs: int,
    dp: dict[str, Any],
    noise: NoiseSource | None = None,
) -> Array:
    """`epochs` DP gradient steps: per-example clipping to C, Gaussian noise z·C on the sum.

    The sum is divided by the public denominator N̂/K, never by the node's own row count,
    so adding or removing a record changes a step's input by at most C in L2 norm.
    """
    clip, sigma, denom = float(dp["clip"]), float(dp["sigma"]), float(dp["denominator"])
    if not (clip > 0 and sigma > 0 and denom > 0 and math.isfinite(denom)):
        raise InvalidParameters("malformed DP training parameters")
    source = noise or OpenDPNoise()
    penal = np.ones_like(w)
    penal[-1] = 0.0
    row_norms = np.linalg.norm(xb, axis=1)
    for _ in range(epochs):
        residual = 1.0 / (1.0 + np.exp(-(xb @ w))) - y
        norms = np.abs(residual) * row_norms
        factor = np.minimum(1.0, clip / np.maximum(norms, 1e-300))
        clipped_sum = xb.T @ (residual * factor)
        noisy = source.gaussian_vector(clipped_sum, sigma)
        w = w - lr * (noisy / denom + lam * penal * w)
    return w
