"""The fixed registry of vetted operators, their declared output shape and cost, and inputs.

A request names an operator (`stats.mean`, `fl.logreg`...); only the entries below can
run, each a `module:function` of reviewed code in this package. Nothing in a request
can add an entry or point one elsewhere.

Each operator also declares, from its parameters and its inputs' recorded row counts
alone, the shape of what it outputs (values per partial and released result) and the
work it costs (rows read × passes): `estimate`. The platform checks both against its
limits when the request arrives (`check_usage`), so an oversized job is refused before
anything runs, not after the work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError
from sandbox.isolation import Limits, OperatorRegistry, OperatorSpec, Sandbox

STATS_LIMITS = Limits(cpu_seconds=120, memory_bytes=2 << 30, wall_seconds=300.0)
FL_LIMITS = Limits(cpu_seconds=900, memory_bytes=2 << 30, wall_seconds=120.0)
"""Federated nodes are sessions: CPU covers the whole job, wall-clock one round."""

REGISTRY = OperatorRegistry(
    [
        OperatorSpec(
            "stats.count",
            "sandbox.stats:node_partial",
            "row count, optionally per group; Paillier",
            STATS_LIMITS,
        ),
        OperatorSpec(
            "stats.sum",
            "sandbox.stats:node_partial",
            "exact fixed-point sum of numeric columns; Paillier",
            STATS_LIMITS,
        ),
        OperatorSpec(
            "stats.mean",
            "sandbox.stats:node_partial",
            "mean of numeric columns from exact sums and counts; Paillier",
            STATS_LIMITS,
        ),
        OperatorSpec(
            "stats.variance",
            "sandbox.stats:node_partial",
            "sample variance of numeric columns from exact sums of squares; Paillier",
            STATS_LIMITS,
        ),
        OperatorSpec(
            "stats.histogram",
            "sandbox.stats:node_partial",
            "histogram of one numeric column over declared bins; CKKS",
            STATS_LIMITS,
        ),
        OperatorSpec(
            "fl.logreg",
            "sandbox.fl:node_logreg",
            "horizontal federated logistic regression node (FedAvg, CKKS-aggregated updates)",
            FL_LIMITS,
        ),
    ]
)

STATS_OPERATORS = ("stats.count", "stats.sum", "stats.mean", "stats.variance", "stats.histogram")


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


class UsageExceeded(SandboxError):
    """A request's declared output or cost is above the limits (`which` names the limit)."""

    code = "operator-usage-exceeded"
    title = "The computation exceeds the platform's limits"

    def __init__(self, which: str, detail: str, usage: Usage, limit: int) -> None:
        super().__init__(detail, limit=which, maximum=limit, declared=usage.as_dict())
        self.which = which
        self.usage = usage


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


_USAGE: dict[str, Callable[[str, Mapping[str, Any], Sequence[InputFacts]], Usage]] = {
    **{op: _stats_usage for op in STATS_OPERATORS},
    "fl.logreg": _fl_usage,
}


def estimate(operator: str, params: Mapping[str, Any], inputs: Sequence[InputFacts]) -> Usage:
    """The declared output shape and cost of `operator` with validated `params` on `inputs`."""
    return _USAGE[operator](operator, params, inputs)


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


@dataclass(frozen=True)
class ProviderInput:
    """One provider's part of a computation: who, which catalogue dataset, which CSV file."""

    provider_id: str
    dataset_id: str
    path: Path


def default_sandbox(workdir: Path | None = None) -> Sandbox:
    """A sandbox over the production registry."""
    return Sandbox(REGISTRY, workdir=workdir)
