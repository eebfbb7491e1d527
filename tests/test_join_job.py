"""Private joins in their sandboxes equal the plaintext join, and the relay sees no identifier."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from sandbox._registry import ProviderInput
from sandbox.errors import InvalidParameters
from sandbox.identifiers import IdKind
from sandbox.join_params import JoinClause, JoinPlan, PsiCardinalityParams
from sandbox.joins import IntersectionTooSmall, JoinJob
from sandbox.operators import REGISTRY, StatsParams, default_sandbox
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from tests.helpers.i18_wiring import join_data

CLAUSE = JoinClause(left_key="mobile", right_key="msisdn", kind=IdKind.PHONE)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProviderInput, ProviderInput, object]:
    where = tmp_path_factory.mktemp("join")
    data = join_data(7)
    left, right = where / "cohort.csv", where / "values.csv"
    left.write_text(data.cohort_csv)
    right.write_text(data.values_csv)
    return ProviderInput("org-a", "ds-a", left), ProviderInput("org-b", "ds-b", right), data


def _job(plan: JoinPlan, files: tuple, tmp: Path, op: str = "stats.mean") -> JoinJob:
    left, right, _ = files
    return JoinJob(
        op,
        plan,
        left,
        right,
        sandbox=default_sandbox(tmp),
        job_id="job-1",
        paillier_bits=1024,
        batch=16,
    )


def test_grouped_mean_over_the_join_equals_the_plaintext_join(files: tuple, tmp_path: Path) -> None:
    data = files[2]
    params = StatsParams(
        columns=["amount"], group_by="tier", groups=["A", "B"], decimals=2, join=CLAUSE
    )
    job = _job(JoinPlan(params.query("stats.mean"), CLAUSE), files, tmp_path)
    seen: list[tuple[str, str, bytes]] = []
    agg = job.run_protocol(lambda to, step, data: seen.append((to, step, data)))
    release = job.release(
        agg, ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=5)
    )
    out = release.review()
    assert out.intersection_size == data.count() == 40
    for tier in "AB":
        group = out.stats.group(tier)
        assert group.rows == data.count(tier)
        assert Fraction(group.exact["mean(amount)"]) == data.sum_over(tier) / data.count(tier)
    # The relay carried group elements and ciphertexts only: no phone number in any form.
    relayed = b"".join(d for _, _, d in seen)
    for p in data.common:
        assert p.encode() not in relayed and p[-8:].encode() not in relayed
    assert {step for _, step, _ in seen} == {
        "value.respond",
        "matcher.doubles",
        "matcher.pairs",
    }


def test_cardinality_below_the_minimum_is_refused(files: tuple, tmp_path: Path) -> None:
    plan = PsiCardinalityParams(join=CLAUSE).plan()
    job = _job(plan, files, tmp_path, "psi.cardinality")
    agg = job.run_protocol()
    assert agg.values[0] == 40
    gate = ReleaseGate(InMemoryPrivacyBudget())
    with pytest.raises(IntersectionTooSmall):
        job.release(agg, gate, ReleaseObligations(min_cohort=41))


def test_one_provider_cannot_join_itself(files: tuple, tmp_path: Path) -> None:
    left, _, _ = files
    with pytest.raises(InvalidParameters):
        JoinJob(
            "psi.cardinality",
            PsiCardinalityParams(join=CLAUSE).plan(),
            left,
            left,
            sandbox=default_sandbox(tmp_path),
            job_id="j",
        )
    assert "psi.sum" in REGISTRY
