"""What computations need from the composition root, and the defaults they apply."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

import crypto
import policies
from exchange.budgets import DEFAULT_LIMITS, BudgetLimits
from exchange.catalog import CatalogContext
from exchange.computations.leases import DEFAULT_LEASE_S, LeaseKeeper
from exchange.jobqueue import JobQueue
from exchange.jobs import DbPrivacyBudget, JobRunner, ThreadRunner
from exchange.quotas import DEFAULT_QUOTAS, DEFAULT_USAGE_LIMITS, Quotas
from exchange.trail import Trail
from exchange.workdirs import DEFAULT_BASE, JobDirs
from sandbox.dp import NoiseSource
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
    # Issue 13: the queue (None: this process's `runner`), run leases, job directories.
    queue: JobQueue | None = None
    lease_s: float = DEFAULT_LEASE_S
    lease_keeper: LeaseKeeper = field(init=False)
    job_dirs: JobDirs = field(init=False)
    job_dirs_base: Path = DEFAULT_BASE
    """Memory-backed storage for decrypted inputs (`exchange.workdirs`)."""
    fl_round_timeout_s: float = 600.0
    """How long a federated run under a requester key waits for each reply (fl_rounds)."""
    noise: NoiseSource | None = None
    """The release gate's samplers (None: OpenDP's vetted ones); tests inject a seeded source."""

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = DbPrivacyBudget(self.sessions, self.clock)
        self.lease_keeper = LeaseKeeper(self.sessions, self.clock, ttl_s=self.lease_s)
        # One directory per process under the base, named after this process's lease holder.
        self.job_dirs = JobDirs(
            self.job_dirs_base / f"pdx-jobs-{os.getuid()}", self.lease_keeper.holder
        )

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
