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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox._stats_query import StatsQuery
from sandbox.identifiers import IdKind

__all__ = [
    "JOIN_OPERATORS",
    "JoinClause",
    "JoinPlan",
    "PsiCardinalityParams",
    "PsiSumParams",
]

JOIN_OPERATORS = ("psi.cardinality", "psi.sum")
"""Request operators that are joins whatever their parameters (`stats.*` join with `join`)."""


class JoinClause(BaseModel):
    """Which identifier column of each input joins, and what kind of identifier it holds."""

    model_config = ConfigDict(extra="forbid")

    left_key: str = Field(min_length=1, max_length=200, description="column of inputs[0]")
    right_key: str = Field(min_length=1, max_length=200, description="column of inputs[1]")
    kind: IdKind = Field(description="id_number, phone or email (normalised before hashing)")


class PsiCardinalityParams(BaseModel):
    """`psi.cardinality`: the size of the intersection of two inputs' identifiers (DP count)."""

    model_config = ConfigDict(extra="forbid")

    join: JoinClause

    def plan(self) -> JoinPlan:
        return JoinPlan(StatsQuery.from_params({"op": "stats.count"}), self.join)

    def used_columns(self) -> list[str]:
        return []


class PsiSumParams(BaseModel):
    """`psi.sum`: inputs[1]'s `value` summed over the intersection (Private Join and Compute)."""

    model_config = ConfigDict(extra="forbid")

    join: JoinClause
    value: str = Field(min_length=1, max_length=200, description="numeric column of inputs[1]")
    clip: tuple[float, float] | None = Field(
        default=None, description="clip values to [lo, hi]; needed when DP noise is required"
    )
    decimals: int = Field(default=6, ge=0, le=12)

    def plan(self) -> JoinPlan:
        query = StatsQuery.from_params(
            {
                "op": "stats.sum",
                "columns": [self.value],
                "clip": self.clip,
                "decimals": self.decimals,
            }
        )
        return JoinPlan(query, self.join)

    def used_columns(self) -> list[str]:
        return [self.value]


@dataclass(frozen=True)
class JoinPlan:
    """What a join computes: `query` summed per group over the intersection, on `join`."""

    query: StatsQuery
    join: JoinClause

    @property
    def left_columns(self) -> list[str]:
        """Columns of the cohort input the operator reads (the key and the grouping)."""
        return [self.join.left_key, *([self.query.group_by] if self.query.group_by else [])]

    @property
    def right_columns(self) -> list[str]:
        """Columns of the value input the operator reads (the key and the values)."""
        return [self.join.right_key, *self.query.columns]

    def to_params(self) -> dict[str, Any]:
        return {"query": self.query.to_params(), "join": self.join.model_dump(mode="json")}

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> JoinPlan:
        return cls(StatsQuery.from_params(d["query"]), JoinClause.model_validate(d["join"]))
