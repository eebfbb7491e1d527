"""One privacy accountant: zero-concentrated DP (zCDP) for every mechanism, (ε, δ) for reports.

Every mechanism on a lineage is charged in ρ (zCDP, Bun & Steinke 2016, "Concentrated
Differential Privacy: Simplifications, Extensions, and Lower Bounds", TCC 2016):

- Gaussian and discrete Gaussian with L2 sensitivity Δ and scale σ: ρ = Δ²/(2σ²)
  (Bun & Steinke Prop. 1.6; for the discrete Gaussian, Canonne, Kamath & Steinke 2020,
  "The Discrete Gaussian for Differential Privacy", Thm. 4).
- A pure ε-DP mechanism (discrete Laplace): ρ = ε²/2 (Bun & Steinke Prop. 1.4).
- Composition adds ρ (Bun & Steinke Lemma 2.3); disjoint partitions compose in parallel
  (the maximum, used by the release gate across groups and bins).
- ρ → (ε, δ): the Canonne–Kamath–Steinke bound (CKS 2020, Prop. 12 / Cor. 13),
  ε = inf_{α>1} αρ + (ln(1/δ) + (α−1)·ln(1 − 1/α) − ln α)/(α − 1), never worse than
  the standard ε = ρ + 2·√(ρ·ln(1/δ)) (Bun & Steinke Prop. 1.3), which is kept as
  `epsilon_standard` and used as a cross-check. Any α > 1 gives a valid bound, so the
  numerical minimisation can only lose tightness, never soundness.
- (ε, δ) → ρ: the largest ρ whose conversion is at most ε (bisection, rounded down).

DP-SGD / DP-FedAvg at record level (`dpsgd_rho`, `dpsgd_noise_multiplier`): each local
step is full-batch DP gradient descent on the node's own rows (every record in every
step, sampling rate q = 1): the clipped gradient sum has L2 sensitivity C under adding or
removing one record, noise σ = z·C gives ρ_step = 1/(2z²), and T = rounds × local steps
compose to ρ = T/(2z²). A record lives on one node only, so nodes compose in parallel.
No privacy amplification by subsampling is claimed: zCDP has no tight amplification
theorem (it needs Rényi-DP accounting of the sampled Gaussian, Mironov, Talwar & Zhang
2019), so this accountant stays sound by not sampling.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

from sandbox.errors import InvalidParameters, PrivacyBudgetExhausted

__all__ = [
    "DEFAULT_DELTA",
    "ZcdpAccountant",
    "ZcdpCharge",
    "dpsgd_noise_multiplier",
    "dpsgd_rho",
    "epsilon",
    "epsilon_standard",
    "rho_gaussian",
    "rho_pure",
    "rho_for",
    "sigma_for",
]

DEFAULT_DELTA = 1e-6
"""δ fixed per lineage unless configured (docs/privacy.md §4)."""


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise InvalidParameters("delta must be in (0, 1)")


def rho_gaussian(sensitivity: float, sigma: float) -> float:
    """ρ of the (discrete) Gaussian mechanism: Δ²/(2σ²)."""
    if sensitivity < 0 or sigma <= 0:
        raise InvalidParameters("sensitivity must be >= 0 and sigma > 0")
    return sensitivity * sensitivity / (2.0 * sigma * sigma)


def sigma_for(sensitivity: float, rho: float) -> float:
    """The Gaussian scale that costs exactly ρ: Δ/√(2ρ)."""
    if sensitivity <= 0 or rho <= 0:
        raise InvalidParameters("sensitivity and rho must be positive")
    return sensitivity / math.sqrt(2.0 * rho)


def rho_pure(epsilon: float) -> float:
    """ρ of a pure ε-DP mechanism: ε²/2."""
    if epsilon < 0:
        raise InvalidParameters("epsilon must be >= 0")
    return epsilon * epsilon / 2.0


def epsilon_standard(rho: float, delta: float = DEFAULT_DELTA) -> float:
    """ε = ρ + 2·√(ρ·ln(1/δ)) (Bun & Steinke 2016, Prop. 1.3)."""
    _check_delta(delta)
    if rho < 0:
        raise InvalidParameters("rho must be >= 0")
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def _cks(rho: float, log_inv_delta: float, alpha: float) -> float:
    am1 = alpha - 1.0
    return alpha * rho + (log_inv_delta + am1 * math.log1p(-1.0 / alpha) - math.log(alpha)) / am1


def epsilon(rho: float, delta: float = DEFAULT_DELTA) -> float:
    """The (ε, δ)-DP that ρ-zCDP implies (CKS 2020 Prop. 12), at least 0."""
    _check_delta(delta)
    if rho < 0:
        raise InvalidParameters("rho must be >= 0")
    if rho == 0:
        return 0.0
    lid = math.log(1.0 / delta)
    # The objective is convex in α; the minimum sits near 1 + √(ln(1/δ)/ρ). Golden-section
    # search on a log scale, then the best of the bracket and the standard bound.
    lo, hi = math.log(1.0 + 1e-9), math.log(1.0 + 10.0 * math.sqrt(lid / rho) + 10.0)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    for _ in range(120):
        c, d = b - g * (b - a), a + g * (b - a)
        if _cks(rho, lid, math.exp(c)) < _cks(rho, lid, math.exp(d)):
            b = d
        else:
            a = c
    best = min(_cks(rho, lid, math.exp((a + b) / 2.0)), epsilon_standard(rho, delta))
    return max(best, 0.0)


@lru_cache(maxsize=256)
def rho_for(eps: float, delta: float = DEFAULT_DELTA) -> float:
    """The largest ρ whose (ε, δ) conversion stays within `eps` (rounded down)."""
    _check_delta(delta)
    if not (eps > 0 and math.isfinite(eps)):
        raise InvalidParameters("epsilon must be positive and finite")
    lo, hi = 0.0, max(eps, 1.0)
    while epsilon(hi, delta) <= eps:
        hi *= 2.0
    for _ in range(64):
        mid = (lo + hi) / 2.0
        if epsilon(mid, delta) <= eps:
            lo = mid
        else:
            hi = mid
    return lo


def dpsgd_rho(noise_multiplier: float, steps: int) -> float:
    """ρ of `steps` full-batch clipped-gradient Gaussian steps with σ = z·C: T/(2z²)."""
    if steps < 1 or noise_multiplier <= 0:
        raise InvalidParameters("steps and noise multiplier must be positive")
    return steps / (2.0 * noise_multiplier * noise_multiplier)


def dpsgd_noise_multiplier(rho: float, steps: int) -> float:
    """The noise multiplier z that makes `steps` full-batch steps cost ρ: √(T/(2ρ))."""
    if steps < 1 or rho <= 0:
        raise InvalidParameters("steps and rho must be positive")
    return math.sqrt(steps / (2.0 * rho))


@dataclass(frozen=True)
class ZcdpCharge:
    """One mechanism's cost on the accountant."""

    label: str
    rho: float


class ZcdpAccountant:
    """Composes ρ over every mechanism of one lineage; ε reported at the lineage's δ.

    `budget_rho` (or `budget_epsilon`, converted with `rho_for`) caps the total; a charge
    that would exceed it raises `PrivacyBudgetExhausted` and is not recorded.
    """

    def __init__(
        self,
        *,
        delta: float = DEFAULT_DELTA,
        budget_rho: float | None = None,
        budget_epsilon: float | None = None,
    ) -> None:
        _check_delta(delta)
        if budget_rho is not None and budget_epsilon is not None:
            raise InvalidParameters("give the budget as rho or as epsilon, not both")
        self.delta = delta
        self.budget_rho = rho_for(budget_epsilon, delta) if budget_epsilon else budget_rho
        self.charges: list[ZcdpCharge] = []
        self._lock = threading.Lock()

    @property
    def rho(self) -> float:
        with self._lock:
            return math.fsum(c.rho for c in self.charges)

    @property
    def epsilon(self) -> float:
        return epsilon(self.rho, self.delta)

    def remaining_rho(self) -> float | None:
        return None if self.budget_rho is None else max(self.budget_rho - self.rho, 0.0)

    def charge(self, rho: float, label: str) -> ZcdpCharge:
        if not (rho >= 0 and math.isfinite(rho)):
            raise InvalidParameters("rho must be finite and >= 0")
        with self._lock:
            total = math.fsum(c.rho for c in self.charges) + rho
            if self.budget_rho is not None and total > self.budget_rho * (1 + 1e-12):
                raise PrivacyBudgetExhausted(
                    "privacy budget exhausted", requested_epsilon=epsilon(rho, self.delta)
                )
            entry = ZcdpCharge(label, rho)
            self.charges.append(entry)
            return entry
