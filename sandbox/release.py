"""The release gate: obligations enforced on a decrypted aggregate before anything leaves.

The gate runs in the result party, on aggregates only (`sandbox.coordinator`). Without
differential privacy (`open` data, `dp_epsilon` None), in order:

1. Shape: the output must be an aggregate, not rows: at most `max_cells` values, fewer
   values than records covered, every released cell covering a partition of records
   (`RowLevelOutput` otherwise).
2. Minimum cohort: the total record count of the aggregate must reach `min_cohort`
   (`CohortTooSmall`). The count checked is the sum over all providers, decrypted with
   the rest of the aggregate: no provider's own count is ever decrypted, shown to
   another party, or used in a decision on its own. Partitions (groups, histogram bins)
   below the threshold are suppressed from the output.
3. Provider review: with `provider_review_required`, the gated output is held in the
   `Release` until every provider has approved it; `Release.value()` raises
   `ProviderReviewRequired` before that.

With differential privacy (`dp_epsilon` set) no decision after acceptance looks at an
exact value (docs/privacy.md §2):

1. Data-independent checks only: the number of cells against `max_cells` (a function of
   the query's layout), every measure has a finite sensitivity, every partition a count.
2. Charge: ε (and δ) to every input dataset's `PrivacyBudget` (all or nothing), refused
   with `PrivacyBudgetExhausted` before anything else is looked at.
3. Noise (`sandbox.dp`): every measure is put on an integer lattice (counts as they are,
   sums in units γ chosen from their sensitivity) and gets OpenDP's discrete Laplace
   noise of scale k·Δ/ε (`dp_mechanism="laplace"`, pure ε-DP; k measures of a partition
   compose sequentially, disjoint partitions in parallel), or discrete Gaussian noise
   with ρ/k each of the ρ that (ε, δ) allows (`"gaussian"`, zCDP, `sandbox.accounting`).
4. Post-processing (free): counts ≥ 0, a sum of values declared in [lo, hi] clamped to
   [lo·n̂, hi·n̂] with n̂ its noisy count (so a mean lands inside the bounds).
5. Shape, cohort and suppression as above, on the noisy counts only.
6. Provider review: the reviewers see the DP value.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import numpy as np

from sandbox.accounting import rho_for, rho_pure, sigma_for
from sandbox.dp import Lattice, NoiseSource, OpenDPNoise, SeededNoise, clamp
from sandbox.errors import (
    CohortTooSmall,
    InvalidParameters,
    PrivacyBudgetExhausted,
    ProviderReviewRequired,
    RowLevelOutput,
)

if TYPE_CHECKING:
    from sandbox._registry import ProviderInput

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
    dp_mechanism: Literal["laplace", "gaussian"] = "laplace"
    """Discrete Laplace (pure ε-DP) or discrete Gaussian (zCDP at (ε, `dp_delta`))."""

    def __post_init__(self) -> None:
        if self.min_cohort < 1:
            raise InvalidParameters("min_cohort must be at least 1")
        if self.dp_epsilon is not None and not (0 < self.dp_epsilon < math.inf):
            raise InvalidParameters("dp_epsilon must be positive and finite")
        if not 0 <= self.dp_delta < 1:
            raise InvalidParameters("dp_delta must be in [0, 1)")
        if self.max_cells < 1:
            raise InvalidParameters("max_cells must be at least 1")
        if self.dp_mechanism not in ("laplace", "gaussian"):
            raise InvalidParameters("dp_mechanism must be laplace or gaussian")
        if self.dp_mechanism == "gaussian" and self.dp_epsilon is not None and self.dp_delta <= 0:
            raise InvalidParameters("the Gaussian mechanism needs dp_delta > 0")


# -- privacy budget ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetCharge:
    """One entry of a dataset's privacy ledger."""

    dataset_id: str
    job_id: str
    epsilon: float
    delta: float


def refuse_overdraw(
    remaining: Iterable[tuple[str, float, float]], epsilon: float, delta: float
) -> None:
    """`PrivacyBudgetExhausted` naming each (dataset, ε left, δ left) the charge would exceed.

    A little slack, so that ten charges of 0.1 fit a budget of 1.0.
    """
    short = [d for d, eps, dlt in remaining if epsilon > eps + 1e-9 or delta > dlt + 1e-15]
    if short:
        raise PrivacyBudgetExhausted(
            "privacy budget exhausted for at least one input dataset",
            datasets=short,
            requested_epsilon=epsilon,
        )


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
            refuse_overdraw(
                ((d, *self._remaining(d)) for d in dict.fromkeys(dataset_ids)), epsilon, delta
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
    kind: Literal["count", "sum", "value"] = "value"
    """Counts are noised on the integers and kept ≥ 0; a partition's `rows_measure` is one."""
    bounds: tuple[float, float] | None = None
    """For a sum: the declared range of one record's contribution (from the clip bounds)."""
    per: str | None = None
    """For a sum: the count measure of the records it adds up (for post-processing)."""


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

    @classmethod
    def model(
        cls,
        operator: str,
        key: str,
        rows: int,
        weights: Iterable[float],
        inputs: Sequence[ProviderInput],
    ) -> Candidate:
        """A trained model over `inputs`: its weights w0, w1, ... as one partition of `rows`."""
        measures = tuple(Measure(f"w{i}", float(v)) for i, v in enumerate(weights))
        return cls(
            operator,
            (Partition(key, rows, measures),),
            unique(p.dataset_id for p in inputs),
            unique(p.provider_id for p in inputs),
        )

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
    rho: float | None = None
    """The zCDP cost of the noise (`sandbox.accounting`), None without DP."""


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

    `noise` is where DP noise comes from: OpenDP's samplers by default. `rng` (a seeded
    numpy Generator) selects `SeededNoise` instead, for reproducible unit tests only.
    """

    def __init__(
        self,
        budget: PrivacyBudget,
        *,
        rng: np.random.Generator | None = None,
        noise: NoiseSource | None = None,
    ) -> None:
        self.budget = budget
        self.noise: NoiseSource = noise or (SeededNoise(rng) if rng is not None else OpenDPNoise())

    def check_cells(self, candidate: Candidate, obligations: ReleaseObligations) -> None:
        """Step 1a: the number of cells (a function of the query's layout) is bounded."""
        if candidate.cells > obligations.max_cells:
            raise RowLevelOutput(
                "output has more cells than allowed",
                cells=candidate.cells,
                max_cells=obligations.max_cells,
            )

    def check_shape(
        self, candidate: Candidate, obligations: ReleaseObligations, rows: int | None = None
    ) -> None:
        """Step 1: refuse outputs with row-level shape (`rows`: the noisy total under DP)."""
        self.check_cells(candidate, obligations)
        total = candidate.rows if rows is None else rows
        if candidate.cells >= max(total, 1) and candidate.cells > 1:
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
        """Charge ε (and δ) to every input dataset; None when no DP is required."""
        if obligations.dp_epsilon is None:
            return None
        self.budget.charge(datasets, obligations.dp_epsilon, obligations.dp_delta, job_id)
        return obligations.dp_epsilon

    def gate(
        self, candidate: Candidate, obligations: ReleaseObligations, job_id: str
    ) -> GatedAggregate:
        """Shape, cohort, budget and noise, suppression (the module docstring's order)."""
        if obligations.dp_epsilon is None:
            return self._gate_exact(candidate, obligations)
        self.check_cells(candidate, obligations)
        for p in candidate.partitions:
            if any(m.sensitivity is None for m in p.measures):
                raise InvalidParameters(
                    "differential privacy needs bounded values (give clip bounds)"
                )
            if not any(m.name == p.rows_measure for m in p.measures):
                raise InvalidParameters("differential privacy needs a count in every partition")
        spent = self.charge(candidate.datasets, obligations, job_id)
        # Accepted and charged: from here on only noisy values are looked at.
        noisy, rho = self.noisy_partitions(candidate.partitions, obligations)
        counts = [int(_measure(p, p.rows_measure).value) for p in noisy]
        self.check_shape(candidate, obligations, rows=sum(counts))
        self.check_cohort(sum(counts), obligations)
        small = [count < obligations.min_cohort for count in counts]
        kept, suppressed = _suppress_small(zip(noisy, small, strict=True), obligations)
        return GatedAggregate(kept, suppressed, spent, rho)

    def _gate_exact(self, candidate: Candidate, obligations: ReleaseObligations) -> GatedAggregate:
        """Without DP (`open` data): exact values, exact counts, as before."""
        self.check_shape(candidate, obligations)
        self.check_cohort(candidate.rows, obligations)

        def small(p: Partition) -> bool:
            count = next((m.value for m in p.measures if m.name == p.rows_measure), p.rows)
            return count < obligations.min_cohort and not (p.zero_releasable and p.rows == 0)

        kept, suppressed = _suppress_small(
            ((p, small(p)) for p in candidate.partitions), obligations
        )
        return GatedAggregate(kept, suppressed, None)

    def noisy_partitions(
        self, partitions: Sequence[Partition], obligations: ReleaseObligations
    ) -> tuple[tuple[Partition, ...], float]:
        """Steps 3-4: noise every measure on its lattice, post-process; returns ρ spent.

        Each partition's k measures share the budget equally; disjoint partitions compose
        in parallel, so ρ is the largest partition's.
        """
        eps = obligations.dp_epsilon
        if eps is None:
            raise InvalidParameters("no dp_epsilon to noise with")
        gaussian = obligations.dp_mechanism == "gaussian"
        rho_total = rho_for(eps, obligations.dp_delta) if gaussian else 0.0
        # Batch the draws by scale: one OpenDP call per distinct scale.
        draws: dict[float, list[tuple[int, int, int]]] = {}
        lattices: list[list[Lattice]] = []
        rho = 0.0
        for pi, p in enumerate(partitions):
            k = len(p.measures)
            rho = max(rho, rho_total if gaussian else k * rho_pure(eps / k))
            row: list[Lattice] = []
            for mi, m in enumerate(p.measures):
                lat = Lattice.for_measure(float(m.sensitivity or 0.0), count=_is_count(p, m))
                row.append(lat)
                scale = (
                    sigma_for(lat.sensitivity, rho_total / k)
                    if gaussian
                    else k * lat.sensitivity / eps
                )
                exact = m.exact if m.exact is not None else Fraction(m.value)
                draws.setdefault(scale, []).append((pi, mi, lat.encode(exact)))
            lattices.append(row)
        noisy: dict[tuple[int, int], int] = {}
        for scale, items in draws.items():
            values = [v for _, _, v in items]
            sample = self.noise.gaussian if gaussian else self.noise.laplace
            out = sample(values, scale)
            for (pi, mi, _), z in zip(items, out, strict=True):
                noisy[(pi, mi)] = z
        result = []
        for pi, p in enumerate(partitions):
            vals = {
                m.name: lattices[pi][mi].decode(noisy[(pi, mi)]) for mi, m in enumerate(p.measures)
            }
            for m in p.measures:  # counts first: sums are clamped by their noisy count
                if _is_count(p, m):
                    vals[m.name] = max(vals[m.name], Fraction(0))
            for m in p.measures:
                if not _is_count(p, m) and m.bounds is not None and m.per in vals:
                    n = vals[m.per]
                    lo, hi = Fraction(m.bounds[0]), Fraction(m.bounds[1])
                    vals[m.name] = clamp(vals[m.name], lo * n, hi * n)
            measures = tuple(replace(m, value=float(vals[m.name]), exact=None) for m in p.measures)
            rows = int(vals[p.rows_measure]) if p.rows_measure in vals else 0
            result.append(replace(p, rows=rows, measures=measures))
        return tuple(result), rho

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

        Its DP noise was added during training, and its ε charged before training; under
        DP `candidate.rows` must be a noisy count (`sandbox.fl` passes its noisy N).
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


def _is_count(p: Partition, m: Measure) -> bool:
    return m.kind == "count" or m.name == p.rows_measure


def _measure(p: Partition, name: str | None) -> Measure:
    return next(m for m in p.measures if m.name == name)


def measures_by_name(partition: Partition) -> dict[str, float]:
    return {m.name: m.value for m in partition.measures}


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _suppress_small(
    partitions: Iterable[tuple[Partition, bool]], obligations: ReleaseObligations
) -> tuple[tuple[Partition, ...], tuple[str, ...]]:
    """(kept, keys of the suppressed) of (partition, small); `CohortTooSmall` if none is kept."""
    kept: list[Partition] = []
    suppressed: list[str] = []
    for p, small in partitions:
        if small:
            suppressed.append(p.key)
        else:
            kept.append(p)
    if not kept:
        raise CohortTooSmall(
            "every partition is below the minimum cohort", min_cohort=obligations.min_cohort
        )
    return tuple(kept), tuple(suppressed)
