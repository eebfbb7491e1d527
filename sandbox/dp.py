"""Vetted noise samplers (OpenDP) on integers and fixed-point lattices, and range post-processing.

Why not numpy: `Generator.laplace` draws a float by inverse transform, and the set of
floats it can return around x differs from the set around x + 1, so a released value's
low bits tell which input it came from (Mironov 2012, "On Significance of the Least
Significant Bits for Differential Privacy", CCS). Here every released number is an
integer (a count), or an integer number of lattice units γ (a fixed-point sum), plus
integer noise drawn by OpenDP's exact discrete Laplace or discrete Gaussian samplers
(Canonne, Kamath & Steinke 2020), so neighbouring inputs give outputs on the same lattice.

Fixed point (`Lattice.for_measure`): counts use γ = 1. A sum with L1 sensitivity Δ (from
the declared bounds: Δ = max(|lo|, |hi|) per record) uses the power of two
γ = 2^(⌊log2 Δ⌋ − 10), so Δ/γ ∈ [1024, 2048): the lattice is at least a thousand times
finer than one record's contribution (and finer still than the noise, whose scale is at
least Δ/ε), while the integers stay far inside int64. The exact rational sum is rounded to
the lattice, which can move a neighbour's rounded sum by one more unit, so the integer
sensitivity is ⌈Δ/γ⌉ + 1 (≤ 0.1 % more noise). γ is a power of two, so γ·k is exactly a
float64 for |k| < 2^53.

OpenDP features: `contrib` is enabled, and only it. OpenDP 0.16 puts every constructor
whose proof has not finished its review under `contrib`, including `make_laplace` and
`make_gaussian` (the samplers themselves, `sample_discrete_laplace` and
`sample_discrete_gaussian`, follow CKS 2020 exactly with rational arithmetic). We do not
enable `honest-but-curious` (lets user functions claim stability properties) or
`floating-point` (no float-domain mechanism here relies on it).

OpenDP draws from the operating system's CSPRNG and cannot be seeded; `SeededNoise` is a
deterministic stand-in for unit tests that need reproducible draws, never for releases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sandbox.errors import InvalidParameters

__all__ = [
    "LATTICE_BITS",
    "Lattice",
    "NoiseSource",
    "OpenDPNoise",
    "SeededNoise",
    "clamp",
]

LATTICE_BITS = 10
_INT_LIMIT = 2**53
"""Largest |integer| released: beyond it γ·k is no longer an exact float64."""

Array = npt.NDArray[np.float64]


def _make_measurement(kind: str, scale: float) -> Any:
    """OpenDP's measurement for `kind` ("float-gaussian", "gaussian", "laplace") at `scale`.

    Imported from `opendp.domains`, `.metrics` and `.measurements`, not `opendp.prelude`:
    the prelude also imports OpenDP's optional extras (scikit-learn, polars and others,
    where installed), about 3 s in every sandbox process that draws noise. The native
    library loads on first use.
    """
    from opendp.domains import atom_domain, vector_domain  # noqa: PLC0415
    from opendp.measurements import make_gaussian, make_laplace  # noqa: PLC0415
    from opendp.metrics import l1_distance, l2_distance  # noqa: PLC0415
    from opendp.mod import enable_features  # noqa: PLC0415

    enable_features("contrib")
    if kind == "float-gaussian":
        # OpenDP's float Gaussian samples a discrete Gaussian on a fine power-of-two
        # lattice and rounds exactly, so it is not open to the float attack either.
        domain = vector_domain(atom_domain(T=float, nan=False))
        return make_gaussian(domain, l2_distance(T=float), scale=scale)
    domain = vector_domain(atom_domain(T="i64"))
    if kind == "gaussian":
        return make_gaussian(domain, l2_distance(T="i64"), scale=scale)
    return make_laplace(domain, l1_distance(T="i64"), scale=scale)


class NoiseSource(Protocol):
    """Where a mechanism's noise comes from: integer samplers and a float-vector Gaussian."""

    vetted: bool

    def laplace(self, values: Sequence[int], scale: float) -> list[int]:
        """Return values + discrete Laplace noise, P(z) ∝ exp(−|z|/scale)."""
        ...

    def gaussian(self, values: Sequence[int], sigma: float) -> list[int]:
        """Return values + discrete Gaussian noise, P(z) ∝ exp(−z²/(2σ²))."""
        ...

    def gaussian_vector(self, values: Array, sigma: float) -> Array:
        """A float vector plus Gaussian noise of scale σ per coordinate."""
        ...


def _check_ints(values: Sequence[int], scale: float) -> list[int]:
    if not (scale > 0 and math.isfinite(scale)):
        raise InvalidParameters("noise scale must be positive and finite")
    out = [int(v) for v in values]
    # OpenDP saturates at the int64 limits: keep values and 60 scales of noise inside.
    if any(abs(v) + 60 * scale >= 2**62 for v in out):
        raise InvalidParameters("value too large for the noise lattice")
    return out


class OpenDPNoise:
    """OpenDP's samplers (OS randomness, exact rational arithmetic)."""

    vetted = True

    def __init__(self) -> None:
        self._measurements: dict[tuple[str, float], Any] = {}

    def _measurement(self, kind: str, scale: float) -> Any:
        """The OpenDP measurement for (`kind`, `scale`), built once (a few are reused)."""
        key = (kind, float(scale))
        m = self._measurements.get(key)
        if m is None:
            m = _make_measurement(kind, key[1])
            if len(self._measurements) >= 64:
                self._measurements.clear()
            self._measurements[key] = m
        return m

    def laplace(self, values: Sequence[int], scale: float) -> list[int]:
        vals = _check_ints(values, scale)
        return [int(v) for v in self._measurement("laplace", scale)(vals)]

    def gaussian(self, values: Sequence[int], sigma: float) -> list[int]:
        vals = _check_ints(values, sigma)
        return [int(v) for v in self._measurement("gaussian", sigma)(vals)]

    def gaussian_vector(self, values: Array, sigma: float) -> Array:
        if not (sigma > 0 and math.isfinite(sigma)):
            raise InvalidParameters("noise scale must be positive and finite")
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise InvalidParameters("values must be finite")
        out = self._measurement("float-gaussian", sigma)([float(v) for v in x])
        return np.asarray(out, dtype=np.float64)


class SeededNoise:
    """Deterministic noise from a numpy Generator, for reproducible unit tests only.

    Discrete Laplace as the difference of two geometric variables, discrete Gaussian by
    rounding a normal draw: right in distribution to float precision, not vetted.
    """

    vetted = False

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def laplace(self, values: Sequence[int], scale: float) -> list[int]:
        vals = _check_ints(values, scale)
        p = -math.expm1(-1.0 / scale)
        g = self._rng.geometric(p, (2, len(vals)))
        return [v + int(a) - int(b) for v, a, b in zip(vals, g[0], g[1], strict=True)]

    def gaussian(self, values: Sequence[int], sigma: float) -> list[int]:
        vals = _check_ints(values, sigma)
        z = np.rint(self._rng.normal(0.0, sigma, len(vals)))
        return [v + int(n) for v, n in zip(vals, z, strict=True)]

    def gaussian_vector(self, values: Array, sigma: float) -> Array:
        x = np.asarray(values, dtype=np.float64)
        out: Array = x + self._rng.normal(0.0, sigma, x.shape)
        return out


@dataclass(frozen=True)
class Lattice:
    """Fixed-point grid γ·ℤ for one measure and its integer sensitivity on that grid."""

    unit: Fraction
    sensitivity: int

    @classmethod
    def for_measure(cls, sensitivity: float, *, count: bool) -> Lattice:
        if not (sensitivity > 0 and math.isfinite(sensitivity)):
            raise InvalidParameters("sensitivity must be positive and finite")
        if count:
            return cls(Fraction(1), math.ceil(sensitivity))
        unit = Fraction(2) ** (math.floor(math.log2(sensitivity)) - LATTICE_BITS)
        return cls(unit, math.ceil(Fraction(sensitivity) / unit) + 1)

    def encode(self, value: Fraction) -> int:
        """The nearest lattice point, clamped into ±(2^53 − 1).

        Clamping, not refusing: a refusal here would depend on the exact value after the
        query was accepted, and clamping never increases the sensitivity (it is a
        contraction: |clamp(a) − clamp(b)| ≤ |a − b|).
        """
        k = round(value / self.unit)
        return max(-(_INT_LIMIT - 1), min(_INT_LIMIT - 1, k))

    def decode(self, k: int) -> Fraction:
        return self.unit * k


def clamp(value: Fraction, lo: Fraction | None, hi: Fraction | None) -> Fraction:
    """Post-processing into [lo, hi] (either end open when None)."""
    if lo is not None and value < lo:
        return lo
    if hi is not None and value > hi:
        return hi
    return value
