"""The zCDP accountant against published formulas and an independent implementation (OpenDP)."""

from __future__ import annotations

import math

import pytest

from sandbox import accounting as acc
from sandbox import errors


def _opendp_zcdp_to_approx(rho: float, delta: float) -> float:
    """OpenDP's own ρ-zCDP → (ε, δ) conversion (make_zCDP_to_approxDP), for cross-checking."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    # A discrete Gaussian with sensitivity 1 and σ = 1/√(2ρ) is exactly ρ-zCDP.
    meas = dp.m.make_gaussian(
        dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"), scale=1 / math.sqrt(2 * rho)
    )
    curve = dp.c.make_zCDP_to_approxDP(meas).map(1)
    return float(curve.epsilon(delta))


# (ρ, δ, ε) from Bun & Steinke 2016, Prop. 1.3: ε = ρ + 2·√(ρ·ln(1/δ)), worked by hand.
STANDARD_VECTORS = [
    (0.5, 1e-5, 0.5 + 2 * math.sqrt(0.5 * math.log(1e5))),  # 5.298526
    (1.0, 1e-6, 1.0 + 2 * math.sqrt(math.log(1e6))),  # 8.4338...
    (0.01, 1e-6, 0.01 + 2 * math.sqrt(0.01 * math.log(1e6))),  # 0.7534...
]


@pytest.mark.parametrize(("rho", "delta", "eps"), STANDARD_VECTORS)
def test_standard_conversion_matches_bun_steinke(rho: float, delta: float, eps: float) -> None:
    assert acc.epsilon_standard(rho, delta) == pytest.approx(eps, rel=1e-12)
    assert acc.epsilon_standard(0.5, 1e-5) == pytest.approx(5.298526, abs=1e-6)


@pytest.mark.parametrize("rho", [0.001, 0.01, 0.1, 0.185, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-6, 1e-9])
def test_tight_conversion_matches_opendp_and_beats_the_standard_bound(
    rho: float, delta: float
) -> None:
    """CKS 2020 Prop. 12, as OpenDP implements it independently (make_zCDP_to_approxDP)."""
    ours = acc.epsilon(rho, delta)
    assert ours == pytest.approx(_opendp_zcdp_to_approx(rho, delta), rel=1e-6)
    assert ours <= acc.epsilon_standard(rho, delta)


def test_inverse_gives_the_largest_rho_within_epsilon() -> None:
    for eps, delta in [(3.0, 1e-6), (1.0, 1e-6), (0.5, 1e-5), (10.0, 1e-9)]:
        rho = acc.rho_for(eps, delta)
        assert acc.epsilon(rho, delta) <= eps
        assert acc.epsilon(rho * (1 + 1e-6), delta) > eps
    # Closed form of the standard bound: √ρ = √(ln(1/δ) + ε) − √(ln(1/δ)); the tight
    # conversion allows at least that much.
    lid = math.log(1e6)
    assert acc.rho_for(3.0, 1e-6) >= (math.sqrt(lid + 3.0) - math.sqrt(lid)) ** 2


def test_mechanism_costs() -> None:
    # Gaussian: ρ = Δ²/(2σ²) (Bun & Steinke Prop. 1.6); OpenDP's map says the same.
    assert acc.rho_gaussian(1.0, 1.0) == 0.5
    assert acc.rho_gaussian(1.0, 2.0) == 0.125
    import opendp.prelude as dp

    dp.enable_features("contrib")
    g = dp.m.make_gaussian(dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"), scale=2.0)
    assert g.map(1) == pytest.approx(acc.rho_gaussian(1.0, 2.0))
    assert acc.sigma_for(3.0, acc.rho_gaussian(3.0, 7.0)) == pytest.approx(7.0)
    # Pure ε-DP is ε²/2-zCDP (Bun & Steinke Prop. 1.4).
    assert acc.rho_pure(1.0) == 0.5
    # DP-SGD, full batch: T steps at noise multiplier z cost T/(2z²).
    assert acc.dpsgd_rho(2.0, 8) == 1.0
    assert acc.dpsgd_noise_multiplier(1.0, 8) == pytest.approx(2.0)
    with pytest.raises(errors.InvalidParameters):
        acc.epsilon(0.1, 0.0)
    with pytest.raises(errors.InvalidParameters):
        acc.rho_for(-1.0)


def test_accountant_composes_and_enforces_its_budget() -> None:
    a = acc.ZcdpAccountant(delta=1e-6, budget_epsilon=3.0)
    assert a.budget_rho == pytest.approx(acc.rho_for(3.0, 1e-6))
    a.charge(acc.rho_pure(0.3), "count")
    a.charge(acc.rho_gaussian(1.0, 5.0), "sum")
    assert a.rho == pytest.approx(0.045 + 0.02)
    assert a.epsilon == pytest.approx(acc.epsilon(0.065, 1e-6))
    with pytest.raises(errors.PrivacyBudgetExhausted):
        a.charge(1.0, "too much")
    assert [c.label for c in a.charges] == ["count", "sum"]  # the refused one left no trace
    remaining = a.remaining_rho()
    assert remaining is not None
    a.charge(remaining, "the rest")
    assert a.epsilon == pytest.approx(3.0, rel=1e-6)
