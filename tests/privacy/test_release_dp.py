"""The release gate under DP: neighbouring-dataset games, free oracles, the float attack, ranges.

Aggregates are built exactly as the result party decrypts them (`Decrypted` in the layout
of a `StatsQuery`) and go through the real `sandbox.stats.candidate`, the gate with
OpenDP noise, and `sandbox.stats.finish`, many times in-process (the HE path is covered
by tests/test_sandbox_stats.py; the statistics need thousands of trials).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import beta  # type: ignore[import-untyped]

from sandbox import errors
from sandbox.coordinator import Decrypted
from sandbox.dp import Lattice
from sandbox.operators import ProviderInput
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from sandbox.stats import StatsQuery, StatsResult, candidate, finish

PROVIDERS = [ProviderInput("p1", "d1", Path("/nonexistent/a.csv"))]
ALPHA = 0.01  # the games' confidence level, split over the events examined (Bonferroni)


def _aggregate(query: StatsQuery, values: Sequence[float]) -> Decrypted:
    """What the result party decrypts for `values` of one column (Paillier fixed point)."""
    unit = 10**query.decimals
    fields = query.fields()
    if query.op == "stats.histogram":
        lo, hi = query.range or (0.0, 1.0)
        bins = query.bins or 1
        counts = [0.0] * (bins + 2)
        for v in values:
            i = 0 if v < lo else bins + 1 if v >= hi else 1 + int((v - lo) / (hi - lo) * bins)
            counts[i] += 1
        return Decrypted("ckks", {"fields": list(fields)}, counts, 1)
    ints = [round(Fraction(v) * unit) for v in values]
    got = {"rows": len(values)}
    for c in query.columns:
        got |= {f"n:{c}": len(values), f"sum:{c}": sum(ints)}
        got[f"sumsq:{c}"] = sum(i * i for i in ints)
    return Decrypted("paillier-packed", {"fields": list(fields)}, [got[f] for f in fields], 1)


def _release(
    gate: ReleaseGate, query: StatsQuery, values: Sequence[float], ob: ReleaseObligations
) -> StatsResult:
    gated = gate.gate(candidate(query, _aggregate(query, values), PROVIDERS), ob, "job")
    return finish(query, 0.0)(gated)


def _gate() -> ReleaseGate:
    return ReleaseGate(InMemoryPrivacyBudget(default=(math.inf, 1.0)))


def _outcomes(run: Callable[[], Any], trials: int) -> list[Any]:
    out = []
    for _ in range(trials):
        try:
            out.append(run())
        except errors.ReleaseRefused as e:
            out.append(e.code)
    return out


def _empirical_epsilon(
    a: Sequence[Any], b: Sequence[Any], events: Sequence[Callable[[Any], bool]]
) -> tuple[float, float]:
    """(point estimate, 1 − ALPHA lower confidence bound) of ε over the given events.

    For each event S and each direction: ln(P[S|A] / P[S|B]), its lower bound from
    Clopper–Pearson bounds on both probabilities, Bonferroni-corrected over the events.
    """
    level = ALPHA / (2 * len(events))
    best_point, best_lower = 0.0, 0.0
    for ev in events:
        ka, kb = sum(map(ev, a)), sum(map(ev, b))
        for k1, n1, k2, n2 in ((ka, len(a), kb, len(b)), (kb, len(b), ka, len(a))):
            p1_lo = beta.ppf(level / 2, k1, n1 - k1 + 1) if k1 > 0 else 0.0
            p2_hi = beta.ppf(1 - level / 2, k2 + 1, n2 - k2) if k2 < n2 else 1.0
            if k1 > 0:
                point = math.log((k1 / n1) / max(k2 / n2, 1e-300))
                best_point = max(best_point, point)
            if p1_lo > 0:
                best_lower = max(best_lower, math.log(p1_lo / p2_hi))
    return best_point, best_lower


def _thresholds(values: Sequence[float], count: int = 12) -> list[Callable[[Any], bool]]:
    qs = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0.05, 0.95, count))
    return [(lambda v, t=t: isinstance(v, float) and v >= t) for t in qs]


def test_count_game_stays_within_epsilon() -> None:
    """A count over n vs n + 1 rows: the best threshold test's ε is ε, not more."""
    eps, trials = 1.0, 5000
    q = StatsQuery("stats.count")
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=eps)
    gate = _gate()

    def count(n: int) -> Callable[[], Any]:
        return lambda: float(_release(gate, q, [1.0] * n, ob).group().rows or 0)

    a, b = _outcomes(count(100), trials), _outcomes(count(101), trials)
    assert all(float(v).is_integer() for v in a + b)
    point, lower = _empirical_epsilon(a, b, _thresholds(a + b))
    assert lower <= eps, (point, lower)
    assert point >= 0.6 * eps  # the game has power: the count really is noised at ε


def test_cohort_refusal_is_no_oracle() -> None:
    """n = min_cohort − 1 vs min_cohort rows: refused-or-not is decided on the noisy count.

    Before the fix the cohort check read the exact count: always refused on one side,
    never on the other (ε̂ = ∞).
    """
    eps, trials = 1.0, 4000
    q = StatsQuery("stats.mean", ("x",), clip=(0.0, 10.0))
    ob = ReleaseObligations(min_cohort=50, dp_epsilon=eps)
    gate = _gate()

    def mean(n: int) -> Callable[[], Any]:
        return lambda: _release(gate, q, [5.0] * n, ob).group().values["mean(x)"]

    a, b = _outcomes(mean(49), trials), _outcomes(mean(50), trials)
    refused = [lambda v: v == "release-cohort-too-small"]
    point, lower = _empirical_epsilon(a, b, refused)
    assert 0 < sum(map(refused[0], a)) < trials and 0 < sum(map(refused[0], b)) < trials
    assert lower <= eps, (point, lower)


def test_mean_game_stays_within_epsilon() -> None:
    """A mean over 200 rows at 50 vs the same plus one row at the upper bound 100."""
    eps, trials = 1.0, 4000
    q = StatsQuery("stats.mean", ("x",), clip=(0.0, 100.0))
    ob = ReleaseObligations(min_cohort=10, dp_epsilon=eps)
    gate = _gate()
    base = [50.0] * 200

    def mean(values: list[float]) -> Callable[[], Any]:
        return lambda: _release(gate, q, values, ob).group().values["mean(x)"]

    a, b = _outcomes(mean(base), trials), _outcomes(mean([*base, 100.0]), trials)
    floats = [v for v in a + b if isinstance(v, float)]
    point, lower = _empirical_epsilon(a, b, _thresholds(floats))
    assert lower <= eps, (point, lower)


def test_shape_refusal_after_the_budget_is_spent_is_no_oracle() -> None:
    """With the budget spent, n rows vs n + 1 rows give byte-identical refusals.

    Before the fix the row-level-shape check ran on the exact count before the charge:
    `release-row-level-output` for n rows, `privacy-budget-exhausted` for n + 1.
    """
    budget = InMemoryPrivacyBudget(default=(1.0, 0.0))
    gate = ReleaseGate(budget)
    q = StatsQuery("stats.histogram", ("x",), bins=38, range=(0.0, 1.0))  # 40 cells
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=1.0)
    _release(gate, q, [0.5] * 400, ob)  # spends the whole budget
    refusals = []
    for n in (40, 41):
        with pytest.raises(errors.ReleaseRefused) as info:
            _release(gate, q, [0.5] * n, ob)
        refusals.append((info.value.code, info.value.detail, info.value.extensions))
    assert refusals[0] == refusals[1]
    assert refusals[0][0] == "privacy-budget-exhausted"


def test_float_attack_released_values_stay_on_a_public_lattice() -> None:
    """Neighbouring sums never land in different cosets (Mironov 2012's attack).

    numpy's float Laplace put x + noise and x' + noise on different float grids, so the
    low bits of one release told which input it came from. Every released sum here is an
    integer multiple of γ, which depends only on the declared bounds, and every count an
    integer: outputs from neighbouring inputs are drawn from the same set.
    """
    q = StatsQuery("stats.sum", ("x",), clip=(0.0, 180.0))
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=1.0)
    gate = _gate()
    gamma = Lattice.for_measure(180.0, count=False).unit
    base = [33.000001 * (i % 5) for i in range(60)]
    for values in (base, [*base, 179.999999]):
        for _ in range(300):
            g = _release(gate, q, values, ob).group()
            total, n = Fraction(g.values["sum(x)"] or 0.0), Fraction(g.values["count(x)"] or 0.0)
            assert n.denominator == 1
            # Either on the lattice, or clamped to n·lo / n·hi (a function of n alone).
            assert (total / gamma).denominator == 1 or total in (0, 180 * n)


def test_outputs_are_post_processed_into_their_ranges() -> None:
    gate = _gate()
    lo, hi = 0.0, 10.0
    q = StatsQuery("stats.variance", ("x",), clip=(lo, hi))
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=0.3)
    seen = 0
    for _ in range(400):
        try:
            g = _release(gate, q, [10.0] * 6, ob).group()
        except errors.ReleaseRefused:  # decided on the noisy count
            continue
        seen += 1
        assert g.rows is not None and g.rows >= 1 and float(g.rows).is_integer()
        n = g.values["count(x)"]
        assert n is not None and n >= 0
        m, v = g.values["mean(x)"], g.values["variance(x)"]
        assert m is None or lo <= m <= hi
        if v is not None:
            assert n > 1 and 0 <= v <= (hi - lo) ** 2 / 4 * n / (n - 1) + 1e-9
    assert seen > 100
    hq = StatsQuery("stats.histogram", ("x",), bins=5, range=(0.0, 1.0))
    hob = ReleaseObligations(min_cohort=1, dp_epsilon=0.2)
    for _ in range(200):
        try:
            h = _release(gate, hq, [0.1] * 30, hob).group().histogram
        except errors.ReleaseRefused:
            continue
        assert h is not None
        assert all(c is None or (c >= 1 and float(c).is_integer()) for c in h)


def test_open_data_is_released_exactly_as_before() -> None:
    gate = _gate()
    q = StatsQuery("stats.mean", ("x",))
    g = _release(gate, q, [1.5, 2.5, 3.5] * 5, ReleaseObligations(min_cohort=10)).group()
    assert g.rows == 15 and g.exact["mean(x)"] == "2.5"
    with pytest.raises(errors.CohortTooSmall):
        _release(gate, q, [1.0] * 9, ReleaseObligations(min_cohort=10))


def test_gaussian_mechanism_is_calibrated_by_the_accountant() -> None:
    """dp_mechanism="gaussian": each of k measures gets ρ/k of the ρ that (ε, δ) allows."""
    from sandbox.accounting import rho_for, sigma_for

    gate = _gate()
    assert gate.noise.vetted
    q = StatsQuery("stats.count")
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=1.0, dp_delta=1e-6, dp_mechanism="gaussian")
    rho = rho_for(1.0, 1e-6)
    sigma = sigma_for(1.0, rho)  # one measure (the count), sensitivity 1
    draws = []
    for _ in range(3000):
        gated = gate.gate(candidate(q, _aggregate(q, [1.0] * 500), PROVIDERS), ob, "job")
        assert gated.rho == pytest.approx(rho)
        draws.append(gated.partitions[0].measures[0].value - 500)
    var = float(np.var(draws))
    # Discrete Gaussian variance ≈ σ² for σ ≥ 1; SE of a variance ≈ σ²·√(2/n).
    assert abs(var - sigma**2) <= 4.5 * sigma**2 * math.sqrt(2 / len(draws)), (var, sigma**2)
    with pytest.raises(errors.InvalidParameters):
        ReleaseObligations(dp_epsilon=1.0, dp_mechanism="gaussian")  # needs δ > 0
