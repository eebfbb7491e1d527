"""The code registry of vetted operators, and a provider's input: what the operators' code needs.

Lower than `sandbox.operators` (which adds each operator's parameters, output shape and
cost on top), so the operator implementations (`stats`, `fl`, the node side) import
this module without importing their own specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.isolation import Limits, OperatorRegistry, OperatorSpec, Sandbox

STATS_LIMITS = Limits(cpu_seconds=120, memory_bytes=2 << 30, wall_seconds=300.0)
FL_LIMITS = Limits(cpu_seconds=900, memory_bytes=2 << 30, wall_seconds=120.0)
"""Federated nodes are sessions: CPU covers the whole job, wall-clock one round."""
JOIN_LIMITS = Limits(cpu_seconds=1800, memory_bytes=2 << 30, wall_seconds=600.0)
"""A join party is a session over the whole protocol; wall-clock per step (issue 18)."""

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
        OperatorSpec(
            "psi.cardinality",
            "sandbox.join_party:party",
            "size of the intersection of two providers' identifiers (ECDH-PSI, P-256); DP count",
            JOIN_LIMITS,
        ),
        OperatorSpec(
            "psi.sum",
            "sandbox.join_party:party",
            "sum of a provider's column over the intersection with another provider's "
            "identifiers (Private Join and Compute: ECDH-PSI and Paillier); also runs "
            "stats.* with a join clause",
            JOIN_LIMITS,
        ),
        OperatorSpec(
            "psi.intersection",
            "sandbox.join_party:party",
            "which of the requester's own identifiers (held in its SDK) a provider's dataset "
            "holds: ECDH-PSI, the SDK matching; only where the policy allows members revealed",
            JOIN_LIMITS,
        ),
        OperatorSpec(
            "fl.hetero_logreg",
            "sandbox.vertical_party:party",
            "vertical logistic regression: labels and features at inputs[0], features at the "
            "others, aligned by ECDH-PSI; residuals and gradients under the guest's Paillier key",
            JOIN_LIMITS,
        ),
    ]
)

STATS_OPERATORS = ("stats.count", "stats.sum", "stats.mean", "stats.variance", "stats.histogram")


@dataclass(frozen=True)
class ProviderInput:
    """One provider's part of a computation: who, which catalogue dataset, which CSV file."""

    provider_id: str
    dataset_id: str
    path: Path


def default_sandbox(workdir: Path | None = None) -> Sandbox:
    """A sandbox over the production registry."""
    return Sandbox(REGISTRY, workdir=workdir)
