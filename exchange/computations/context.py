"""What computations need from the composition root, and the defaults they apply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

import crypto
import policies
from exchange.budgets import DEFAULT_LIMITS, BudgetLimits
from exchange.catalog import CatalogContext
from exchange.jobs import DbPrivacyBudget, JobRunner, ThreadRunner
from exchange.quotas import DEFAULT_QUOTAS, DEFAULT_USAGE_LIMITS, Quotas
from exchange.trail import Trail
from sandbox.isolation import Sandbox
from sandbox.nodes import NodeRegistry
from sandbox.operators import UsageLimits, default_sandbox
from sandbox.release import ReleaseObligations

__all__ = [
    "DEFAULT_MIN_COHORT",
    "DEFAULT_RETENTION",
    "MAX_INPUTS",
    "ComputeContext",
    "release_obligations",
]

DEFAULT_MIN_COHORT = 10
"""k ≥ 10 (docs/compliance.md PI-06, configurable) where the policy names no cohort."""
DEFAULT_RETENTION = timedelta(days=180)
"""How long a released output is kept (sealed) before it is crypto-shredded."""
MAX_INPUTS = 16


@dataclass
class ComputeContext:
    """What computations need from the composition root."""

    sessions: Callable[[], Session]
    catalog: CatalogContext
    nodes: NodeRegistry
    workdir: Path
    clock: Callable[[], datetime]
    runner: JobRunner = field(default_factory=ThreadRunner)
    sandbox: Callable[[], Sandbox] = default_sandbox
    retention: timedelta = DEFAULT_RETENTION
    paillier_bits: int = 2048
    budget: DbPrivacyBudget | None = None
    sandbox_runs: int = 0
    """Jobs whose operators were started (what tests count: none for a refused request)."""
    quotas: Quotas = DEFAULT_QUOTAS
    usage_limits: UsageLimits = DEFAULT_USAGE_LIMITS
    budget_limits: BudgetLimits = DEFAULT_LIMITS
    """ε/δ per dataset lineage and per requester on it, charged at acceptance (exchange.budgets)."""

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = DbPrivacyBudget(self.sessions, self.clock)

    @property
    def trail(self) -> Trail:
        return self.catalog.trail

    @property
    def keystore(self) -> crypto.KeyStore:
        return self.catalog.keystore


def release_obligations(ob: policies.Obligations) -> ReleaseObligations:
    """The release gate's part of a decision's obligations (the default cohort applied)."""
    return ReleaseObligations(
        min_cohort=ob.cohort(DEFAULT_MIN_COHORT),
        dp_epsilon=ob.dp_epsilon,
        provider_review_required=ob.release_review,
    )
