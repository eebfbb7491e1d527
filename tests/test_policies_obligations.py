"""Obligations are typed once from a decision and merged to the strictest across inputs."""

from __future__ import annotations

import pytest

import policies


def test_strictest_takes_every_flag_the_smallest_budget_and_the_largest_cohort() -> None:
    merged = policies.strictest(
        [
            {"min_cohort": 10, "dp_epsilon": 1.0, "max_rows": 50, "release_review": False},
            {"min_cohort": 25, "dp_epsilon": 0.5, "max_rows": 80, "release_review": True},
            {"require_provider_approval": True, "dp_epsilon": None},
        ]
    )
    assert merged == {
        "min_cohort": 25,
        "dp_epsilon": 0.5,
        "max_rows": 50,
        "release_review": True,
        "require_provider_approval": True,
    }


def test_from_decision_types_each_known_obligation_and_keeps_the_object() -> None:
    raw = {"min_cohort": "12", "dp_epsilon": 1, "desensitise": 1, "max_rows": 20.0}
    ob = policies.Obligations.from_decision(raw)
    assert ob.min_cohort == 12 and ob.dp_epsilon == 1.0 and ob.max_rows == 20
    assert ob.desensitise and not ob.require_provider_approval and not ob.release_review
    assert ob.cohort(10) == 12 and policies.Obligations().cohort(10) == 10
    assert ob.as_dict() == raw
    fields = set(policies.Obligations.__dataclass_fields__) - {"raw"}
    assert fields == set(policies.KNOWN_OBLIGATIONS)
    with pytest.raises(AttributeError):
        ob.min_cohort = 1  # type: ignore[misc]
