"""Fair use of computations: per-organisation quotas and the operators' limits, before any work.

Both checks run inside the request's transaction, before anything is written, so a
refused request leaves no computation, no ledger entry and no budget charge:

* `admit`: an organisation may have at most `running` computations running and
  `queued` more waiting (requested, awaiting approval or approved). Counted from the
  computations' states in the database, under a lock on the organisation's row, so the
  quota holds across gateway processes and concurrent requests.
* `check_usage`: the operator's declared output shape and cost
  (`sandbox.operators.estimate`, from the parameters and the inputs' recorded row
  counts) must be within the deployment's limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.errors import ComputationTooCostly, OutputTooLarge, QuotaExceeded
from exchange.models import Computation, Dataset, Organisation
from sandbox.errors import UsageExceeded
from sandbox.operators import InputFacts, Usage, UsageLimits, estimate
from sandbox.operators import check_usage as check_operator_usage

__all__ = [
    "DEFAULT_QUOTAS",
    "DEFAULT_USAGE_LIMITS",
    "ComputationTooCostly",
    "OutputTooLarge",
    "QuotaExceeded",
    "Quotas",
    "admit",
    "check_usage",
]

WAITING_STATES = ("requested", "awaiting_approval", "approved")
RUNNING_STATE = "running"


@dataclass(frozen=True)
class Quotas:
    """Per-organisation limits on computations (settings `PDX_QUOTA_*_PER_ORG`)."""

    queued: int = 20
    running: int = 1
    """Below the default two job workers: jobs are not preempted, so an organisation
    that could hold every worker would make the next one wait for a whole job."""

    def __post_init__(self) -> None:
        if self.queued < 0 or self.running < 1:
            raise ValueError("quotas: queued ≥ 0 and running ≥ 1")


DEFAULT_QUOTAS = Quotas()
DEFAULT_USAGE_LIMITS = UsageLimits(max_output_values=10_000, max_row_passes=2_000_000_000)


def in_flight(session: Session, org_id: str) -> tuple[int, int]:
    """(waiting, running) computations requested by `org_id`, from their states."""
    rows = session.execute(
        select(Computation.state, func.count())
        .where(
            Computation.requester_org == org_id,
            Computation.state.in_((*WAITING_STATES, RUNNING_STATE)),
        )
        .group_by(Computation.state)
    ).all()
    counts: dict[str, int] = {str(state): int(n) for state, n in rows}
    running = counts.pop(RUNNING_STATE, 0)
    return sum(counts.values()), running


def admit(session: Session, org_id: str, quotas: Quotas) -> None:
    """Refuse (`QuotaExceeded`) a new computation of `org_id` beyond its quotas.

    Its `running` slots run at once; `queued` more may wait. The organisation's row is
    locked first (PostgreSQL `FOR NO KEY UPDATE`; SQLite write transactions are serial),
    so two concurrent requests cannot both take the last slot.
    """
    # FOR NO KEY UPDATE: serialises this check per organisation without blocking the
    # FOR KEY SHARE that inserts referencing the organisation take (a job's data keys,
    # whose transactions hold the ledger's sequence row: FOR UPDATE deadlocked with them).
    session.get(Organisation, org_id, with_for_update={"key_share": True})
    waiting, running = in_flight(session, org_id)
    if waiting + running < quotas.running + quotas.queued:
        return
    # Which limit binds: every run slot busy and no waiting allowed, or the queue is full.
    which = "running" if waiting == 0 else "queued"
    raise QuotaExceeded(
        f"the organisation has {running} computation(s) running (quota {quotas.running}) "
        f"and {waiting} waiting (quota {quotas.queued}); retry when one has finished",
        quota=which,
        running=running,
        waiting=waiting,
        running_quota=quotas.running,
        queued_quota=quotas.queued,
    )


def check_usage(
    operator: str,
    params: Mapping[str, Any],
    datasets: Sequence[Dataset],
    limits: UsageLimits,
) -> Usage:
    """The request's declared output and cost, refused if above `limits` (nothing has run)."""
    usage = estimate(operator, params, [InputFacts(rows=int(d.rows)) for d in datasets])
    try:
        check_operator_usage(usage, limits)
    except UsageExceeded as exc:
        cls = OutputTooLarge if exc.which == "output" else ComputationTooCostly
        raise cls(exc.detail, field="params", **exc.extensions) from None
    return usage
