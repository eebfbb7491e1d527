"""The vetted operators' specs: code, parameters, declared output shape and cost, one per operator.

A request names an operator (`stats.mean`, `fl.logreg`...); only the entries below can
run, each a `module:function` of reviewed code in this package (`sandbox._registry`).
Nothing in a request can add an entry or point one elsewhere.

Each operator's `Operator` spec holds, in one place, the model of its parameters
(`StatsParams`, `FlParams`: validated by `validate_params`, semantic checks included),
the shape of what it outputs (values per partial and released result) and the work it
costs (rows read × passes), declared from its parameters and its inputs' recorded row
counts alone: `estimate`. The platform checks both against its limits when the request
arrives (`check_usage`), so an oversized job is refused before anything runs, not after
the work. Exchange, the routers and the sandbox all read operators from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox._registry import (
    FL_LIMITS,
    REGISTRY,
    STATS_LIMITS,
    STATS_OPERATORS,
    ProviderInput,
    default_sandbox,
)
from sandbox._stats_query import StatsQuery
from sandbox.cohort_joins import COHORT_SECURITY
from sandbox.errors import ParamsInvalid, SandboxError, UnknownOperator, UsageExceeded
from sandbox.fl import FlConfig
from sandbox.join_params import (
    JoinClause,
    PsiCardinalityParams,
    PsiIntersectionParams,
    PsiSumParams,
    RequesterCohort,
)
from sandbox.joins import JOIN_SECURITY
from sandbox.vertical_ops import HETERO_SECURITY
from sandbox.vertical_params import HeteroParams

__all__ = [
    "FL_LIMITS",
    "OPERATORS",
    "REGISTRY",
    "STATS_LIMITS",
    "STATS_OPERATORS",
    "FlParams",
    "HeteroParams",
    "InputFacts",
    "Operator",
    "OperatorParams",
    "ProviderInput",
    "PsiCardinalityParams",
    "PsiIntersectionParams",
    "PsiSumParams",
    "StatsParams",
    "Usage",
    "UsageLimits",
    "check_usage",
    "default_sandbox",
    "estimate",
    "validate_params",
]


# -- parameters -------------------------------------------------------------------------------


class StatsParams(BaseModel):
    """Parameters of `stats.*` (see `sandbox.stats.StatsQuery`)."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] = Field(default_factory=list, max_length=64, description="numeric columns")
    group_by: str | None = Field(default=None, description="a low-cardinality column")
    groups: list[str] = Field(default_factory=list, max_length=20, description="its values")
    bins: int | None = Field(default=None, ge=1, le=1000, description="histogram bins")
    range: tuple[float, float] | None = Field(default=None, description="histogram [lo, hi]")
    clip: tuple[float, float] | None = Field(
        default=None, description="clip values to [lo, hi]; needed when DP noise is required"
    )
    decimals: int = Field(default=6, ge=0, le=12, description="fixed-point digits")
    scheme: Literal["paillier", "ckks"] | None = None
    join: JoinClause | None = Field(
        default=None,
        description="over the join of inputs[0] (cohort: key, group_by) and inputs[1] "
        "(key, columns) without revealing the intersection (sandbox.join_party)",
    )
    cohort: RequesterCohort | None = Field(
        default=None,
        description="over the join of the requester's own identifiers (held in its SDK) and "
        "inputs[0] (key) without revealing the intersection (sandbox.cohort_party); "
        "stats.count only, other statistics are refused (cohort_counts_only)",
    )

    @model_validator(mode="after")
    def _one_join(self) -> StatsParams:
        if self.join is not None and self.cohort is not None:
            raise ValueError("give join or cohort, not both")
        if self.cohort is not None and self.group_by is not None:
            raise ValueError("a join with the requester's own cohort is not grouped")
        return self

    def query(self, operator: str) -> StatsQuery:
        raw = self.model_dump(exclude={"cohort"})
        return StatsQuery.from_params({"op": operator, **raw})

    def used_columns(self) -> list[str]:
        return [*self.columns, *([self.group_by] if self.group_by else [])]


class FlParams(BaseModel):
    """Parameters of `fl.logreg` (see `sandbox.fl.FlConfig`); DP comes from the policy."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(min_length=1, max_length=64)
    label: str = "target"
    rounds: int = Field(default=50, ge=1, le=200)
    local_epochs: int = Field(default=20, ge=1, le=200)
    learning_rate: float = Field(default=0.5, gt=0, le=10)
    C: float = Field(default=1.0, gt=0)
    early_stopping: bool = True
    tol: float = Field(default=1e-4, ge=0)
    patience: int = Field(default=5, ge=1)
    clip_norm: float = Field(default=1.0, gt=0)
    feature_bounds: list[tuple[float, float]] | None = Field(
        default=None,
        description="[lo, hi] per feature; set from the providers' analysis rules",
    )

    def config(self) -> FlConfig:
        d = self.model_dump()
        d["features"] = tuple(d["features"])
        if d["feature_bounds"] is not None:
            d["feature_bounds"] = tuple(tuple(b) for b in d["feature_bounds"])
        return FlConfig(**d)

    def used_columns(self) -> list[str]:
        return [*self.features, self.label]


OperatorParams = (
    StatsParams
    | FlParams
    | PsiCardinalityParams
    | PsiSumParams
    | PsiIntersectionParams
    | HeteroParams
)


# -- declared output shape and cost ------------------------------------------------------------

STATS_PASSES = 1
"""`node_partial` reads each input once (counts, sums and squares in the same pass)."""
FL_STANDARDISE_PASSES = 2
"""`fl.logreg` standardises features first: exact secure means and variances (one pass
each) before the rounds."""


@dataclass(frozen=True)
class InputFacts:
    """What the catalogue recorded about one input at registration (never a value)."""

    rows: int


@dataclass(frozen=True)
class Usage:
    """An operator's declared output shape and cost for one request."""

    output_values: int
    """Values in each provider's partial and in the result: groups × fields, bins, weights."""
    shape: dict[str, int]
    """How `output_values` is made up (groups, fields per group, bins, weights)."""
    row_passes: int
    """Rows read summed over inputs and passes (FL: rounds × local epochs × rows)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "output_values": self.output_values,
            "shape": dict(self.shape),
            "row_passes": self.row_passes,
        }


@dataclass(frozen=True)
class UsageLimits:
    """The deployment's ceilings on one computation (settings)."""

    max_output_values: int
    max_row_passes: int


def _stats_usage(op: str, params: Mapping[str, Any], inputs: Sequence[InputFacts]) -> Usage:
    columns = len(params.get("columns") or ())
    groups = len(params.get("groups") or ()) + 1 if params.get("group_by") else 1  # + other
    if op == "stats.histogram":
        fields = int(params.get("bins") or 0) + 2  # under and over flow bins
    elif op == "stats.count":
        fields = 1
    else:
        fields = 1 + columns * (3 if op == "stats.variance" else 2)  # rows, n, sum(, sumsq)
    rows = sum(i.rows for i in inputs)
    return Usage(
        output_values=groups * fields,
        shape={"groups": groups, "fields_per_group": fields},
        row_passes=rows * STATS_PASSES,
    )


def _fl_usage(op: str, params: Mapping[str, Any], inputs: Sequence[InputFacts]) -> Usage:
    weights = len(params.get("features") or ()) + 1  # one per feature and the intercept
    rounds = int(params.get("rounds", 1))
    epochs = int(params.get("local_epochs", 1))
    rows = sum(i.rows for i in inputs)
    return Usage(
        output_values=weights,
        shape={"weights": weights, "rounds": rounds, "local_epochs": epochs},
        row_passes=rows * (FL_STANDARDISE_PASSES + rounds * epochs),
    )


# -- one spec per operator --------------------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    """Everything the platform knows about one operator: its code, parameters, shape and cost."""

    name: str
    params: type[BaseModel]
    usage: Callable[[str, Mapping[str, Any], Sequence[InputFacts]], Usage]
    technique: str
    min_providers: int
    learns: Mapping[str, str] | None = None
    """Who learns what, per party (the join and vertical operators, issue 18)."""

    @property
    def description(self) -> str:
        return REGISTRY[self.name].description

    def parameters_schema(self) -> dict[str, Any]:
        """The JSON Schema of the operator's `params`."""
        return self.params.model_json_schema()


JOIN_PASSES = 3
"""A join reads each input once and blinds every identifier twice (ECDH-PSI)."""


def _join_usage(op: str, params: Mapping[str, Any], inputs: Sequence[InputFacts]) -> Usage:
    shaped: dict[str, Any]
    if op == "psi.cardinality":
        shaped = {"op": "stats.count"}
    elif op == "psi.sum":
        shaped = {"op": "stats.sum", "columns": [params.get("value")]}
    else:
        shaped = {**params, "op": op}
    out = _stats_usage(str(shaped["op"]), shaped, inputs)
    return Usage(out.output_values, out.shape, sum(i.rows for i in inputs) * JOIN_PASSES)


def _hetero_usage(op: str, params: Mapping[str, Any], inputs: Sequence[InputFacts]) -> Usage:
    weights = sum(len(f) for f in params.get("features") or ()) + 1
    rounds = int(params.get("iterations", 1))
    rows = sum(i.rows for i in inputs)
    return Usage(
        output_values=weights,
        shape={"weights": weights, "rounds": rounds},
        row_passes=rows * (JOIN_PASSES + rounds),
    )


_HE = "additively homomorphic encryption (Paillier or CKKS)"
_FL = "federated learning (FedAvg), CKKS secure aggregation"
_JOIN_LEARNS = {
    **JOIN_SECURITY["who_learns_what"],
    **{f"with params.cohort (the requester's own identifiers), {who}": what
       for who, what in COHORT_SECURITY["who_learns_what"].items()},
}  # fmt: skip
_SUM_LEARNS = {
    **JOIN_SECURITY["who_learns_what"],
    "with params.cohort (the requester's own identifiers)": "refused (403, "
    "cohort_counts_only): the values would travel through the requester's SDK, which could "
    "scale them past the noise, and their key's holder would see which matched; a cohort "
    "of the requester's own is joined by psi.cardinality or stats.count only",
}
_REVEAL_LEARNS = {
    "requester (SDK)": "the members of its own identifier list that inputs[0] holds, and |Y|",
    "provider (its sandbox)": "|X|, the size of the requester's list; never a member",
    "coordinator": "counts, the job salt and blinded points; never an identifier or a member",
    "policy": "members are personal information: refused unless the policy allows members "
    "to be revealed to the requester (policies/joins.rego)",
}
_PJC = "ECDH-PSI (P-256, RFC 9380) and Paillier: Private Join and Compute (sandbox.join_party)"

OPERATORS: dict[str, Operator] = {
    **{op: Operator(op, StatsParams, _stats_usage, _HE, 1) for op in STATS_OPERATORS},
    "fl.logreg": Operator("fl.logreg", FlParams, _fl_usage, _FL, 2),
    "psi.cardinality": Operator(
        "psi.cardinality", PsiCardinalityParams, _join_usage, _PJC, 2, _JOIN_LEARNS
    ),
    "psi.sum": Operator("psi.sum", PsiSumParams, _join_usage, _PJC, 2, _SUM_LEARNS),
    "psi.intersection": Operator(
        "psi.intersection",
        PsiIntersectionParams,
        _join_usage,
        "ECDH-PSI (P-256, RFC 9380), the requester's SDK matching (sandbox.cohort_party)",
        1,
        _REVEAL_LEARNS,
    ),
    "fl.hetero_logreg": Operator(
        "fl.hetero_logreg",
        HeteroParams,
        _hetero_usage,
        "vertical federated learning: ECDH-PSI alignment, Paillier-masked gradients",
        2,
        HETERO_SECURITY["who_learns_what"],
    ),
}
"""The operators a request may name, in the registry's order."""


def validate_params(operator: str, raw: Mapping[str, Any]) -> OperatorParams:
    """`raw` as the operator's parameters, checked by its model and its own semantic checks.

    Raises `UnknownOperator` or `ParamsInvalid` (with the offending field).
    """
    spec = OPERATORS.get(operator)
    if spec is None:
        raise UnknownOperator(f"no vetted operator named {operator!r}", operator=operator)
    try:
        params = spec.params.model_validate(dict(raw))
        if isinstance(params, StatsParams):
            params.query(operator)
        elif isinstance(params, FlParams):
            params.config()
        elif isinstance(params, PsiCardinalityParams | PsiSumParams | PsiIntersectionParams):
            params.plan()
        elif isinstance(params, HeteroParams):
            params.config(1024)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ParamsInvalid(f"params.{where}: {first['msg']}", f"params.{where}") from None
    except SandboxError as exc:
        raise ParamsInvalid(f"params: {exc.detail}", "params") from None
    assert isinstance(params, OperatorParams)
    return params


def estimate(operator: str, params: Mapping[str, Any], inputs: Sequence[InputFacts]) -> Usage:
    """The declared output shape and cost of `operator` with validated `params` on `inputs`."""
    if (params.get("join") or params.get("cohort")) and operator in STATS_OPERATORS:
        return _join_usage(operator, params, inputs)
    return OPERATORS[operator].usage(operator, params, inputs)


def check_usage(usage: Usage, limits: UsageLimits) -> None:
    """Refuse (`UsageExceeded`) a request whose output or cost is above the limits."""
    if usage.output_values > limits.max_output_values:
        raise UsageExceeded(
            "output",
            f"the result would hold {usage.output_values} values "
            f"({', '.join(f'{k} {v}' for k, v in usage.shape.items())}); "
            f"the limit is {limits.max_output_values}",
            usage,
            limits.max_output_values,
        )
    if usage.row_passes > limits.max_row_passes:
        raise UsageExceeded(
            "cost",
            f"the job would read {usage.row_passes} rows in all (rows × passes); "
            f"the limit is {limits.max_row_passes}",
            usage,
            limits.max_row_passes,
        )
