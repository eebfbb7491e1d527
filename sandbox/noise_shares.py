"""Distributed DP noise: each of n providers adds a share so that any n − t honest shares suffice.

The central mechanism of the release gate (`sandbox.release`) adds, to each measure of a
partition on its lattice (`sandbox.dp.Lattice`), discrete Laplace noise of scale
b = k·Δ/ε (k measures share ε; pure ε-DP) or discrete Gaussian noise with
σ = `sigma_for(Δ, ρ/k)` (zCDP). Under requester-held keys nobody can add that noise after
the aggregate exists, so each provider's sandbox adds a *share* before encrypting.

Calibration (docs/privacy.md, "Distributed noise"). With n providers of which up to
t = ⌊n/2⌋ (`tolerated`) may be colluding with the requester (their shares known and
subtracted) or add nothing, the remaining m = n − t honest shares must still make the
required noise:

* Laplace: a discrete Laplace variable of parameter α = e^(−1/b) is G₁ − G₂ with Gᵢ
  geometric (failures before the first success, success probability 1 − α). The
  geometric law is the negative binomial NB(1, 1 − α), and NB is infinitely divisible:
  the sum of m independent NB(1/m, 1 − α) is NB(1, 1 − α). Each provider adds
  NB(1/m, 1 − α) − NB(1/m, 1 − α) (the difference of two Pólya shares), so any m honest
  shares sum to exactly the discrete Laplace noise, and all n to strictly more.
  (Goryczka & Xiong, "A comprehensive comparison of multiparty secure additions with
  differential privacy", IEEE TDSC 2017, §4.) When m = 1 the share is OpenDP's discrete
  Laplace itself.
* Gaussian: each provider adds OpenDP's discrete Gaussian with σ² / m. The sum of m
  discrete Gaussians is not exactly a discrete Gaussian of variance σ², but it is close
  in Rényi divergence for σ/√m ≥ 1 (Kairouz, Liu & Steinke, "The Distributed Discrete
  Gaussian Mechanism", ICML 2021, Thm. 4); its variance is at least σ² − ε_m with ε_m
  negligible here (σ ≥ 1 after the lattice). State both in the job's security model.

OpenDP has no negative-binomial sampler: the Pólya shares come from numpy's
`negative_binomial` (a gamma–Poisson mixture in floating point) on a generator seeded
from the OS CSPRNG. The output is an integer on the lattice, so the floating-point
attack on Laplace noise (Mironov 2012) does not apply, but the law is exact only to
floating-point precision; tests pass a seeded generator (`rng`) for reproducibility.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from sandbox.accounting import rho_for, sigma_for
from sandbox.dp import Lattice, OpenDPNoise, SeededNoise
from sandbox.errors import InvalidParameters

__all__ = ["NoisePlan", "noise_share", "polya_share", "tolerated"]

Mechanism = Literal["laplace", "gaussian"]


def tolerated(providers: int) -> int:
    """t: how many providers' shares may be missing or known to the requester (⌊n/2⌋)."""
    if providers < 1:
        raise InvalidParameters("a computation needs at least one provider")
    return providers // 2


@dataclass(frozen=True)
class NoisePlan:
    """Per field of one group's layout: its lattice and the total noise scale it needs.

    `scales[i]` is the Laplace scale b (or the Gaussian σ) of the *total* noise in lattice
    units; every provider adds a share of it (`noise_share`). The plan is a function of
    the query's layout, ε, δ, the mechanism and (n, t) only: never of the data.
    """

    mechanism: Mechanism
    epsilon: float
    delta: float
    providers: int
    tolerated: int
    units: tuple[Fraction, ...]
    sensitivities: tuple[int, ...]
    scales: tuple[float, ...]

    @property
    def shares(self) -> int:
        """The number m = n − t: how many honest shares make the required noise."""
        return self.providers - self.tolerated

    @classmethod
    def build(
        cls,
        fields: Sequence[str],
        *,
        clip: tuple[float, float] | None,
        epsilon: float,
        delta: float,
        mechanism: Mechanism,
        providers: int,
        per_partition: int | None = None,
    ) -> NoisePlan:
        """The plan for a statistics layout (field names as `StatsQuery.fields()` gives them).

        `per_partition` is k, the number of measures sharing ε in one partition (a group's
        fields; 1 for histogram bins, which are disjoint partitions).
        """
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise InvalidParameters("dp_epsilon must be positive and finite")
        k = per_partition or len(fields)
        b = max(abs(clip[0]), abs(clip[1])) if clip is not None else None
        units: list[Fraction] = []
        sens: list[int] = []
        scales: list[float] = []
        rho = rho_for(epsilon, delta) if mechanism == "gaussian" else 0.0
        for name in fields:
            kind = name.split(":", 1)[0]
            if kind in ("rows", "n", "bin"):
                lat = Lattice.for_measure(1.0, count=True)
            elif b is None:
                raise InvalidParameters("differential privacy needs bounded values (clip)")
            else:
                lat = Lattice.for_measure(b if kind == "sum" else b * b, count=False)
            units.append(lat.unit)
            sens.append(lat.sensitivity)
            scales.append(
                sigma_for(lat.sensitivity, rho / k)
                if mechanism == "gaussian"
                else k * lat.sensitivity / epsilon
            )
        t = tolerated(providers)
        return cls(
            mechanism, epsilon, delta, providers, t, tuple(units), tuple(sens), tuple(scales)
        )

    def encode(self, field: int, value: Fraction) -> int:
        """A provider's exact partial of one field, rounded to the field's lattice."""
        return Lattice(self.units[field], self.sensitivities[field]).encode(value)

    def params(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "providers": self.providers,
            "tolerated": self.tolerated,
            "units": [[u.numerator, u.denominator] for u in self.units],
            "sensitivities": list(self.sensitivities),
            "scales": list(self.scales),
        }


def polya_share(scale: float, shares: int, size: int, rng: np.random.Generator) -> list[int]:
    """`size` draws of NB(1/m, 1 − α) − NB(1/m, 1 − α), α = e^(−1/scale) (module docstring)."""
    if not (scale > 0 and math.isfinite(scale)) or shares < 1:
        raise InvalidParameters("noise scale must be positive and finite")
    p = -math.expm1(-1.0 / scale)  # success probability 1 − α
    g = rng.negative_binomial(1.0 / shares, p, (2, size))
    return [int(a) - int(b) for a, b in zip(g[0], g[1], strict=True)]


def noise_share(
    plan: NoisePlan, groups: int, *, rng: np.random.Generator | None = None
) -> list[int]:
    """One provider's noise share for a layout of `groups` × fields (lattice units).

    `rng` None: production samplers (OpenDP; OS-seeded numpy for Pólya shares); a seeded
    generator makes the draws reproducible (tests only).
    """
    width = len(plan.scales)
    out = [0] * (width * groups)
    m = plan.shares
    for fi, scale in enumerate(plan.scales):
        if plan.mechanism == "gaussian":
            sigma = scale / math.sqrt(m)
            src = SeededNoise(rng) if rng is not None else OpenDPNoise()
            draws = src.gaussian([0] * groups, sigma)
        elif m == 1:
            src_l = SeededNoise(rng) if rng is not None else OpenDPNoise()
            draws = src_l.laplace([0] * groups, scale)
        else:
            gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
            draws = polya_share(scale, m, groups, gen)
        for gi, z in enumerate(draws):
            out[gi * width + fi] = z
    return out
