"""The release gate: obligations enforced on a decrypted aggregate before anything leaves.

The gate runs in the result party, on aggregates only (`sandbox.coordinator`). In order:

1. Shape: the output must be an aggregate, not rows: at most `max_cells` values, fewer
   values than records covered, every released cell covering a partition of records
   (`RowLevelOutput` otherwise).
2. Minimum cohort: the total record count of the aggregate must reach `min_cohort`
   (`CohortTooSmall`). The count checked is the sum over all providers, decrypted with
   the rest of the aggregate: no provider's own count is ever decrypted, shown to
   another party, or used in a decision on its own, and a provider below the threshold
   can still contribute to a large enough total. (Refusing locally on each node would
   instead tell the coordinator which provider is small, and forbid legitimate small
   contributors.) Partitions (groups, histogram bins) below the threshold are suppressed
   from the output; when DP noise is applied the decision uses the noisy count.
3. Differential privacy: when `dp_epsilon` is set, ε is charged to every input dataset's
   `PrivacyBudget` (all or nothing) and refused with `PrivacyBudgetExhausted` when any
   lacks it; then Laplace noise of scale k·Δ/ε is added to each of the k measures of a
   partition (sequential composition inside a partition, parallel composition across
   disjoint partitions), Δ being the measure's L1 sensitivity to adding or removing one
   record (clip bounds make it finite).
4. Provider review: with `provider_review_required`, the gated output is held in the
   `Release` until every provider has approved it; `Release.value()` raises
   `ProviderReviewRequired` before that.
"""

from __future__ import annotations

import math
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar

import numpy as np

from sandbox.errors import (
    CohortTooSmall,
    InvalidParameters,
    PrivacyBudgetExhausted,
    ProviderReviewRequired,
    RowLevelOutput,
)

T = TypeVar("T")


# -- obligations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseObligations:
    """What the policy decision requires of this release (`min_cohort: 10`, `dp_epsilon`...)."""

    min_cohort: int = 10
    dp_epsilon: float | None = None
    dp_delta: float = 0.0
    provider_review_required: bool = False
    max_cells: int = 10_000

    def __post_init__(self) -> None:
        if self.min_cohort < 1:
            raise InvalidParameters("min_cohort must be at least 1")
        if self.dp_epsilon is not None and not (0 < self.dp_epsilon < math.inf):
            raise InvalidParameters("dp_epsilon must be positive and finite")
        if not 0 <= self.dp_delta < 1:
            raise InvalidParameters("dp_delta must be in [0, 1)")
        if self.max_cells < 1:
            raise InvalidParameters("max_cells must be at least 1")


# -- privacy budget ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetCharge:
    """One entry of a dataset's privacy ledger."""

    dataset_id: str
    job_id: str
    epsilon: float
    delta: float


class PrivacyBudget(ABC):
    """Per-dataset (ε, δ) budgets. The integrator backs this with the database."""

    @abstractmethod
    def remaining(self, dataset_id: str) -> tuple[float, float]:
        """(ε, δ) still available for `dataset_id`."""

    @abstractmethod
    def charge(self, dataset_ids: Sequence[str], epsilon: float, delta: float, job_id: str) -> None:
        """Charge every dataset atomically, or raise `PrivacyBudgetExhausted` and charge none."""


class InMemoryPrivacyBudget(PrivacyBudget):
    """Budgets in a dict: `limits[dataset] = (ε, δ)`, else `default`."""

    def __init__(
        self,
        limits: dict[str, tuple[float, float]] | None = None,
        *,
        default: tuple[float, float] = (1.0, 1e-5),
    ) -> None:
        self._limits = dict(limits or {})
        self._default = default
        self._spent: dict[str, tuple[float, float]] = {}
        self.ledger: list[BudgetCharge] = []
        self._lock = threading.Lock()

    def remaining(self, dataset_id: str) -> tuple[float, float]:
        with self._lock:
            return self._remaining(dataset_id)

    def _remaining(self, dataset_id: str) -> tuple[float, float]:
        eps, delta = self._limits.get(dataset_id, self._default)
        s_eps, s_delta = self._spent.get(dataset_id, (0.0, 0.0))
        return eps - s_eps, delta - s_delta

    def charge(self, dataset_ids: Sequence[str], epsilon: float, delta: float, job_id: str) -> None:
        if epsilon < 0 or delta < 0:
            raise InvalidParameters("cannot charge a negative budget")
        with self._lock:
            short = []
            for d in dict.fromkeys(dataset_ids):
                r_eps, r_delta = self._remaining(d)
                # A little slack so that ten charges of 0.1 fit a budget of 1.0.
                if epsilon > r_eps + 1e-9 or delta > r_delta + 1e-15:
                    short.append(d)
            if short:
                raise PrivacyBudgetExhausted(
                    "privacy budget exhausted for at least one input dataset",
                    datasets=short,
                    requested_epsilon=epsilon,
                )
            for d in dict.fromkeys(dataset_ids):
                s_eps, s_delta = self._spent.get(d, (0.0, 0.0))
                self._spent[d] = (s_eps + epsilon, s_delta + delta)
                self.ledger.append(BudgetCharge(d, job_id, epsilon, delta))


# -- what the gate works on -------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One aggregate value of a partition and its L1 sensitivity (one record added/removed)."""

    name: str
    value: float
    sensitivity: float | None = None
    exact: Fraction | None = None
    """The exact rational value, when known and no noise was added."""


@dataclass(frozen=True)
class Partition:
    """A disjoint set of records (a group, a histogram bin) and the measures over it."""

    key: str
    rows: int
    measures: tuple[Measure, ...]
    rows_measure: str | None = "rows"
    """Name of the measure that counts the partition's records (noisy count for suppression)."""
    zero_releasable: bool = False
    """An exact zero may be released (empty histogram bins); other small counts are not."""


@dataclass(frozen=True)
class Candidate:
    """A decrypted aggregate offered for release."""

    operator: str
    partitions: tuple[Partition, ...]
    datasets: tuple[str, ...]
    providers: tuple[str, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def cells(self) -> int:
        return sum(len(p.measures) for p in self.partitions)


@dataclass(frozen=True)
class GatedAggregate:
    """The candidate after the gate: measures (noisy under DP) of the kept partitions."""

    partitions: tuple[Partition, ...]
    suppressed: tuple[str, ...]
    epsilon: float | None


class Release(Generic[T]):
    """A gated output, held until every required provider review is in."""

    def __init__(
        self,
        job_id: str,
        operator: str,
        payload: T,
        obligations: ReleaseObligations,
        providers: Sequence[str],
        *,
        epsilon_spent: float | None,
        suppressed: Sequence[str] = (),
        security_model: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.operator = operator
        self._payload = payload
        self.obligations = obligations
        self.providers = tuple(providers)
        self.epsilon_spent = epsilon_spent
        self.suppressed = tuple(suppressed)
        self.security_model = security_model or {}
        self._approved: set[str] = set()

    @property
    def pending_reviews(self) -> frozenset[str]:
        if not self.obligations.provider_review_required:
            return frozenset()
        return frozenset(self.providers) - self._approved

    def review(self) -> T:
        """The held output, for a provider to review (not a release)."""
        return self._payload

    def approve(self, provider: str) -> None:
        if provider not in self.providers:
            raise InvalidParameters("only a provider of this computation can approve it")
        self._approved.add(provider)

    @property
    def released(self) -> bool:
        return not self.pending_reviews

    def value(self) -> T:
        """The output, once every required review is in."""
        pending = self.pending_reviews
        if pending:
            raise ProviderReviewRequired(
                "result held until every provider has reviewed it", pending=sorted(pending)
            )
        return self._payload


# -- the gate ---------------------------------------------------------------------------------


class ReleaseGate:
    """Enforces `ReleaseObligations` on aggregates; see the module docstring for the steps.

    `rng` is the noise source (a numpy Generator); by default one seeded from `secrets`.
    """

    def __init__(self, budget: PrivacyBudget, *, rng: np.random.Generator | None = None) -> None:
        self.budget = budget
        self._rng = rng or np.random.default_rng(secrets.randbits(128))

    def check_shape(self, candidate: Candidate, obligations: ReleaseObligations) -> None:
        """Step 1: refuse outputs with row-level shape."""
        if candidate.cells > obligations.max_cells:
            raise RowLevelOutput(
                "output has more cells than allowed",
                cells=candidate.cells,
                max_cells=obligations.max_cells,
            )
        if candidate.cells >= max(candidate.rows, 1) and candidate.cells > 1:
            raise RowLevelOutput("output has as many values as the records it covers")

    def check_cohort(self, rows: int, obligations: ReleaseObligations) -> None:
        """Step 2: the total across all providers must reach the minimum cohort."""
        if rows < obligations.min_cohort:
            raise CohortTooSmall(
                "aggregate covers fewer records than the minimum cohort",
                min_cohort=obligations.min_cohort,
            )

    def charge(
        self, datasets: Sequence[str], obligations: ReleaseObligations, job_id: str
    ) -> float | None:
        """Step 3a: charge ε (and δ) to every input dataset; None when no DP is required."""
        if obligations.dp_epsilon is None:
            return None
        self.budget.charge(datasets, obligations.dp_epsilon, obligations.dp_delta, job_id)
        return obligations.dp_epsilon

    def laplace(self, scale: float, size: int | None = None) -> Any:
        return self._rng.laplace(0.0, scale, size)

    def gaussian(self, sigma: float, size: int | None = None) -> Any:
        return self._rng.normal(0.0, sigma, size)

    def gate(
        self, candidate: Candidate, obligations: ReleaseObligations, job_id: str
    ) -> GatedAggregate:
        """Steps 1-3 on an aggregate: shape, cohort, budget and noise, suppression."""
        self.check_shape(candidate, obligations)
        self.check_cohort(candidate.rows, obligations)
        eps = obligations.dp_epsilon
        if eps is not None:
            for p in candidate.partitions:
                if any(m.sensitivity is None for m in p.measures):
                    raise InvalidParameters(
                        "differential privacy needs bounded values (give clip bounds)"
                    )
        spent = self.charge(candidate.datasets, obligations, job_id)
        kept: list[Partition] = []
        suppressed: list[str] = []
        for p in candidate.partitions:
            measures = p.measures
            if eps is not None:
                k = len(measures)
                measures = tuple(
                    Measure(
                        m.name,
                        m.value + float(self.laplace(k * float(m.sensitivity or 0.0) / eps)),
                        m.sensitivity,
                    )
                    for m in measures
                )
            count = next((m.value for m in measures if m.name == p.rows_measure), p.rows)
            empty_ok = eps is None and p.zero_releasable and p.rows == 0
            if count < obligations.min_cohort and not empty_ok:
                suppressed.append(p.key)
                continue
            kept.append(Partition(p.key, p.rows, measures, p.rows_measure, p.zero_releasable))
        if not kept:
            raise CohortTooSmall(
                "every partition is below the minimum cohort", min_cohort=obligations.min_cohort
            )
        return GatedAggregate(tuple(kept), tuple(suppressed), spent)

    def release(
        self,
        candidate: Candidate,
        obligations: ReleaseObligations,
        job_id: str,
        finish: Callable[[GatedAggregate], T],
        *,
        security_model: dict[str, Any] | None = None,
    ) -> Release[T]:
        """Gate `candidate`, build the output with `finish`, hold it for review if required.

        `finish` only post-processes the gated aggregate, so it cannot weaken DP.
        """
        gated = self.gate(candidate, obligations, job_id)
        return Release(
            job_id,
            candidate.operator,
            finish(gated),
            obligations,
            candidate.providers,
            epsilon_spent=gated.epsilon,
            suppressed=gated.suppressed,
            security_model=security_model,
        )

    def release_model(
        self,
        candidate: Candidate,
        obligations: ReleaseObligations,
        job_id: str,
        payload: T,
        *,
        epsilon_spent: float | None,
        security_model: dict[str, Any] | None = None,
    ) -> Release[T]:
        """Gate a trained model: shape and cohort only.

        Its DP noise was added during training, and its ε charged before training.
        """
        self.check_shape(candidate, obligations)
        self.check_cohort(candidate.rows, obligations)
        return Release(
            job_id,
            candidate.operator,
            payload,
            obligations,
            candidate.providers,
            epsilon_spent=epsilon_spent,
            security_model=security_model,
        )


def measures_by_name(partition: Partition) -> dict[str, float]:
    return {m.name: m.value for m in partition.measures}


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
