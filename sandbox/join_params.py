"""Parameters of the join operators (`psi.*`, `stats.*` with a `join` clause) and their plan.

A join takes exactly two inputs: `inputs[0]` is the cohort (the *matching* party of
Private Join and Compute: identifiers, and the `group_by` column if any) and `inputs[1]`
the value party (identifiers and the `columns` aggregated over the cohort). Both sides
name their identifier column and its kind (`sandbox.identifiers.IdKind`): values are
normalised and keyed per job before anything is hashed, so formatting differences join.

Every join operator is planned as one `JoinPlan`: a `StatsQuery` (what is summed per
group over the intersection) and the `JoinClause`. `psi.cardinality` is `stats.count`
over the join, `psi.sum` is `stats.sum` of one value column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox._stats_query import StatsQuery
from sandbox.identifiers import IdKind

__all__ = [
    "JOIN_OPERATORS",
    "MAX_REQUESTER_COHORT",
    "REQUESTER_KEY",
    "JoinClause",
    "RequesterCohort",
    "JoinPlan",
    "PsiCardinalityParams",
    "PsiIntersectionParams",
    "PsiSumParams",
]

JOIN_OPERATORS = ("psi.cardinality", "psi.sum", "psi.intersection")
"""Request operators that are joins whatever their parameters (`stats.*` join with `join`)."""


class JoinClause(BaseModel):
    """Which identifier column of each input joins, and what kind of identifier it holds."""

    model_config = ConfigDict(extra="forbid")

    left_key: str = Field(min_length=1, max_length=200, description="column of inputs[0]")
    right_key: str = Field(min_length=1, max_length=200, description="column of inputs[1]")
    kind: IdKind = Field(description="id_number, phone or email (normalised before hashing)")


MAX_REQUESTER_COHORT = 10_000_000
"""The largest cohort a requester may declare (its size bounds the provider's session)."""
REQUESTER_KEY = "(requester)"
"""The cohort side's key in the plan of a join whose cohort is the requester's own list."""


class RequesterCohort(BaseModel):
    """The requester's own identifiers, held in its SDK and never uploaded (issue 18).

    The join's only input (inputs[0]) is the provider's dataset, `key` its identifier
    column; the SDK blinds its identifiers on the requester's machine
    (`pdx_client.psi`) and the provider's sandbox matches (`sandbox.cohort_party`).
    """

    model_config = ConfigDict(extra="forbid")

    holder: Literal["requester"] = "requester"
    key: str = Field(min_length=1, max_length=200, description="identifier column of inputs[0]")
    kind: IdKind = Field(description="id_number, phone or email (normalised before hashing)")
    size: int = Field(
        ge=1,
        le=MAX_REQUESTER_COHORT,
        description="how many identifiers the requester's SDK sends at most (its cohort's "
        "size); the provider's sandbox refuses more",
    )

    def clause(self) -> JoinClause:
        """The plan's join: the requester's side has no column (`REQUESTER_KEY`)."""
        return JoinClause(left_key=REQUESTER_KEY, right_key=self.key, kind=self.kind)


def _one_side(join: JoinClause | None, cohort: RequesterCohort | None) -> None:
    if (join is None) == (cohort is None):
        raise ValueError(
            "give either join (two providers' datasets) or cohort (the requester's own "
            "identifiers, joined against inputs[0])"
        )


class PsiCardinalityParams(BaseModel):
    """`psi.cardinality`: the size of the intersection of two inputs' identifiers (DP count).

    With `cohort` instead of `join`: of the requester's own identifiers and inputs[0]'s.
    """

    model_config = ConfigDict(extra="forbid")

    join: JoinClause | None = None
    cohort: RequesterCohort | None = Field(
        default=None, description="the requester's own identifiers instead of inputs[0]"
    )

    @model_validator(mode="after")
    def _sides(self) -> PsiCardinalityParams:
        _one_side(self.join, self.cohort)
        return self

    def plan(self) -> JoinPlan:
        query = StatsQuery.from_params({"op": "stats.count"})
        if self.cohort is not None:
            return JoinPlan(query, self.cohort.clause(), self.cohort)
        assert self.join is not None
        return JoinPlan(query, self.join)

    def used_columns(self) -> list[str]:
        return []


class PsiSumParams(BaseModel):
    """`psi.sum`: inputs[1]'s `value` summed over the intersection (Private Join and Compute)."""

    model_config = ConfigDict(extra="forbid")

    join: JoinClause | None = None
    cohort: RequesterCohort | None = Field(
        default=None, description="the requester's own identifiers; `value` is then inputs[0]'s"
    )
    value: str = Field(min_length=1, max_length=200, description="numeric column of inputs[1]")
    clip: tuple[float, float] | None = Field(
        default=None, description="clip values to [lo, hi]; needed when DP noise is required"
    )
    decimals: int = Field(default=6, ge=0, le=12)

    @model_validator(mode="after")
    def _sides(self) -> PsiSumParams:
        _one_side(self.join, self.cohort)
        return self

    def plan(self) -> JoinPlan:
        query = StatsQuery.from_params(
            {
                "op": "stats.sum",
                "columns": [self.value],
                "clip": self.clip,
                "decimals": self.decimals,
            }
        )
        if self.cohort is not None:
            return JoinPlan(query, self.cohort.clause(), self.cohort)
        assert self.join is not None
        return JoinPlan(query, self.join)

    def used_columns(self) -> list[str]:
        return [self.value]


class PsiIntersectionParams(BaseModel):
    """`psi.intersection`: which of the requester's own identifiers are in inputs[0]'s.

    The standard ECDH-PSI direction: the requester's SDK matches and learns the members
    of its own list that the provider holds; the provider's sandbox learns |X|. Members are
    personal information: the policy (`policies/joins.rego`) refuses it unless it allows
    members to be revealed.
    """

    model_config = ConfigDict(extra="forbid")

    cohort: RequesterCohort

    def plan(self) -> JoinPlan:
        query = StatsQuery.from_params({"op": "stats.count"})
        return JoinPlan(query, self.cohort.clause(), self.cohort, reveal=True)

    def used_columns(self) -> list[str]:
        return []


@dataclass(frozen=True)
class JoinPlan:
    """What a join computes: `query` summed per group over the intersection, on `join`."""

    query: StatsQuery
    join: JoinClause
    cohort: RequesterCohort | None = None
    """Set when the cohort is the requester's own list: the plan's only input is then the
    provider's (its `right_columns`), and the SDK is the other party."""
    reveal: bool = False
    """`psi.intersection`: the requester's SDK learns the members of its own list."""

    @property
    def left_columns(self) -> list[str]:
        """Columns of the cohort input the operator reads (the key and the grouping)."""
        return [self.join.left_key, *([self.query.group_by] if self.query.group_by else [])]

    @property
    def right_columns(self) -> list[str]:
        """Columns of the value input the operator reads (the key and the values)."""
        return [self.join.right_key, *self.query.columns]

    def to_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": self.query.to_params(),
            "join": self.join.model_dump(mode="json"),
        }
        if self.cohort is not None:
            out["cohort"] = self.cohort.model_dump(mode="json")
        if self.reveal:
            out["reveal"] = True
        return out

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> JoinPlan:
        cohort = d.get("cohort")
        return cls(
            StatsQuery.from_params(d["query"]),
            JoinClause.model_validate(d["join"]),
            None if cohort is None else RequesterCohort.model_validate(cohort),
            reveal=d.get("reveal") is True,
        )
