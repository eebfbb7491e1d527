"""The release gate: shape, cohort, privacy budget and noise, provider review."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sandbox import errors
from sandbox.coordinator import SECURITY_MODEL
from sandbox.release import (
    Candidate,
    GatedAggregate,
    InMemoryPrivacyBudget,
    Measure,
    Partition,
    ReleaseGate,
    ReleaseObligations,
)


def _candidate(*groups: tuple[str, int], extra: int = 0) -> Candidate:
    parts = tuple(
        Partition(
            key,
            rows,
            (
                Measure("rows", rows, 1.0),
                Measure("sum:x", rows * 2.5, 10.0),
                *(Measure(f"m{i}", 0.0, 1.0) for i in range(extra)),
            ),
        )
        for key, rows in groups
    )
    return Candidate("stats.sum", parts, ("d1", "d2"), ("p1", "p2"))


def _gate(budget: InMemoryPrivacyBudget | None = None) -> ReleaseGate:
    return ReleaseGate(budget or InMemoryPrivacyBudget(), rng=np.random.default_rng(0))


def _identity(g: GatedAggregate) -> GatedAggregate:
    return g


def test_released_without_noise_when_no_dp() -> None:
    release = _gate().release(
        _candidate(("a", 40), ("b", 30)), ReleaseObligations(min_cohort=10), "job", _identity
    )
    out = release.value()
    assert [p.key for p in out.partitions] == ["a", "b"]
    assert out.partitions[0].measures[1].value == 100.0
    assert release.epsilon_spent is None and out.suppressed == ()


def test_total_below_cohort_is_refused() -> None:
    with pytest.raises(errors.CohortTooSmall) as info:
        _gate().gate(_candidate(("a", 4), ("b", 5)), ReleaseObligations(min_cohort=10), "job")
    assert info.value.code == "release-cohort-too-small"


def test_small_partitions_are_suppressed_and_all_small_is_refused() -> None:
    gated = _gate().gate(_candidate(("a", 40), ("b", 3)), ReleaseObligations(min_cohort=10), "job")
    assert [p.key for p in gated.partitions] == ["a"] and gated.suppressed == ("b",)
    with pytest.raises(errors.CohortTooSmall):
        _gate().gate(
            _candidate(("a", 9), ("b", 9), ("c", 9)), ReleaseObligations(min_cohort=10), "job"
        )


def test_row_level_shapes_are_refused() -> None:
    with pytest.raises(errors.RowLevelOutput):  # as many values as records
        _gate().gate(_candidate(("a", 12), extra=10), ReleaseObligations(min_cohort=1), "job")
    with pytest.raises(errors.RowLevelOutput):  # more cells than allowed
        _gate().gate(
            _candidate(("a", 1000), extra=10), ReleaseObligations(min_cohort=1, max_cells=5), "j"
        )


def test_dp_charges_every_dataset_and_adds_calibrated_noise() -> None:
    budget = InMemoryPrivacyBudget({"d1": (1.0, 0.0)}, default=(0.5, 0.0))
    gate = _gate(budget)
    ob = ReleaseObligations(min_cohort=10, dp_epsilon=0.25)
    cand = _candidate(("a", 1000))
    noises = []
    for _ in range(2):
        gated = gate.gate(cand, ob, "job")
        noises.append(gated.partitions[0].measures[1].value - 2500.0)
        assert gated.epsilon == 0.25
    assert all(n != 0 for n in noises)
    assert budget.remaining("d1") == (0.5, 0.0)
    assert budget.remaining("d2") == (0.0, 0.0)
    assert [(c.dataset_id, c.epsilon) for c in budget.ledger] == [
        ("d1", 0.25),
        ("d2", 0.25),
        ("d1", 0.25),
        ("d2", 0.25),
    ]
    # d2 is exhausted: refused, and d1 is not charged either (all or nothing).
    with pytest.raises(errors.PrivacyBudgetExhausted) as info:
        gate.gate(cand, ob, "job")
    assert info.value.extensions["datasets"] == ["d2"]
    assert budget.remaining("d1") == (0.5, 0.0)


def test_laplace_scale_follows_sensitivity_and_epsilon() -> None:
    gate = _gate(InMemoryPrivacyBudget(default=(1e9, 0.0)))
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=1.0)
    cand = _candidate(("a", 10_000))
    draws = np.array(
        [gate.gate(cand, ob, "j").partitions[0].measures[1].value - 25_000 for _ in range(4000)]
    )
    # Two measures share ε: Laplace scale b = 2·Δ/ε = 20, so mean |noise| = 20.
    assert np.mean(np.abs(draws)) == pytest.approx(20.0, rel=0.08)


def test_dp_requires_bounded_sensitivity() -> None:
    cand = Candidate("stats.sum", (Partition("a", 50, (Measure("sum:x", 1.0, None),)),), (), ())
    with pytest.raises(errors.InvalidParameters):
        _gate().gate(cand, ReleaseObligations(dp_epsilon=1.0), "job")


def test_budget_charges_are_atomic_under_concurrency() -> None:
    budget = InMemoryPrivacyBudget(default=(1.0, 0.0))
    ok, refused = [], []

    def charge() -> None:
        try:
            budget.charge(["d"], 0.1, 0.0, "job")
            ok.append(1)
        except errors.PrivacyBudgetExhausted:
            refused.append(1)

    threads = [threading.Thread(target=charge) for _ in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 10 and len(refused) == 15


def test_provider_review() -> None:
    ob = ReleaseObligations(min_cohort=1, provider_review_required=True)
    release = _gate().release(_candidate(("a", 40)), ob, "job", _identity)
    assert release.pending_reviews == {"p1", "p2"}
    with pytest.raises(errors.ProviderReviewRequired) as info:
        release.value()
    assert info.value.code == "release-provider-review-required"
    release.approve("p1")
    with pytest.raises(errors.InvalidParameters):
        release.approve("someone-else")
    with pytest.raises(errors.ProviderReviewRequired):
        release.value()
    release.approve("p2")
    assert release.released and release.value().partitions


def test_obligations_validate() -> None:
    with pytest.raises(errors.InvalidParameters):
        ReleaseObligations(min_cohort=0)
    with pytest.raises(errors.InvalidParameters):
        ReleaseObligations(dp_epsilon=0.0)
    with pytest.raises(errors.InvalidParameters):
        ReleaseObligations(dp_delta=1.0)


def test_error_codes_are_stable() -> None:
    codes = {cls.code for cls in errors.ERRORS_BY_CODE.values()}
    assert {
        "sandbox-memory-limit",
        "sandbox-cpu-limit",
        "sandbox-timeout",
        "sandbox-operator-error",
        "sandbox-isolation-unavailable",
        "release-cohort-too-small",
        "release-row-level-output",
        "privacy-budget-exhausted",
        "release-provider-review-required",
        "stats-group-cardinality-exceeded",
    } <= codes
    err = errors.CohortTooSmall("too small", min_cohort=10)
    assert isinstance(err, errors.ReleaseRefused) and isinstance(err, errors.SandboxError)
    assert err.detail == "too small" and err.extensions == {"min_cohort": 10}


def test_security_model_is_displayable() -> None:
    model = SECURITY_MODEL.as_dict()
    assert model["adversary"].startswith("semi-honest")
    assert any("do not collude" in a for a in model["assumptions"])
    roles = {p["role"] for p in model["parties"]}
    assert roles == {"provider node", "coordinator", "result party", "requester"}


def test_default_noise_is_opendp_and_seeded_noise_is_marked_unvetted() -> None:
    assert ReleaseGate(InMemoryPrivacyBudget()).noise.vetted
    assert not _gate().noise.vetted


def test_under_dp_cohort_is_decided_on_the_noisy_count_after_charging() -> None:
    """Exact total 9 < min_cohort 10: refused or released by the noise, charged either way."""
    budget = InMemoryPrivacyBudget(default=(1e9, 0.0))
    gate = _gate(budget)
    ob = ReleaseObligations(min_cohort=10, dp_epsilon=1.0)
    cand = _candidate(("a", 9))
    outcomes = []
    for _ in range(200):
        try:
            gated = gate.gate(cand, ob, "job")
            outcomes.append(gated.partitions[0].rows)
        except errors.ReleaseRefused as e:
            outcomes.append(e.code)
    released = [o for o in outcomes if isinstance(o, int)]
    assert released and all(r >= 10 for r in released)  # the noisy count, never the exact 9
    assert "release-cohort-too-small" in outcomes
    assert len(budget.ledger) == 2 * 200  # every attempt charged both datasets
