"""Dry-run a policy change: the recent decisions re-decided by the active and the changed bundle.

Nothing is recorded or loaded: both bundles are compiled into decision points of their
own, and each of the last N decision-log inputs is decided by both. The answer counts,
per action, the decisions the change would turn from allow to deny and back. It names
no subject, resource or time of any decision, so a security admin (who may not read the
audit trail: separation of duties) learns the effect of a change and nothing of who did
what.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import policies
from audit.decisions import DecisionLog

__all__ = ["MAX_DECISIONS", "ActionEffect", "DryRun", "as_json", "candidate_bundle", "dry_run"]

MAX_DECISIONS = 1000


@dataclass(frozen=True)
class ActionEffect:
    """One action's decisions: how many were re-decided and how many would flip."""

    action: str
    evaluated: int
    allow_to_deny: int
    deny_to_allow: int


@dataclass(frozen=True)
class DryRun:
    """The change's effect on the last `evaluated` decisions (per action, no identities)."""

    revision: int
    candidate_digest: str
    evaluated: int
    changed: int
    failed: int
    actions: list[ActionEffect] = field(default_factory=list)


def candidate_bundle(
    active: policies.ActivePolicy,
    modules: Mapping[str, str] | None,
    matrix: Mapping[str, Any] | None,
) -> policies.PolicyBundle:
    """The active bundle with `modules` added or replaced and `matrix` (if given) swapped."""
    return policies.PolicyBundle(
        {**active.bundle.modules, **(modules or {})},
        dict(matrix) if matrix is not None else dict(active.bundle.matrix),
    )


def _recent(session: Session, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """The newest `limit` decision-log (path, input) pairs, oldest first."""
    rows = session.execute(
        select(DecisionLog.path, DecisionLog.input)
        .order_by(DecisionLog.ts.desc(), DecisionLog.decision_id.desc())
        .limit(limit)
    ).all()
    out = []
    for path, text in reversed(rows):
        doc = json.loads(text)
        if isinstance(doc, dict):
            out.append((str(path), doc))
    return out


def _point(bundle: policies.PolicyBundle, active: policies.ActivePolicy) -> policies.DecisionPoint:
    """A decision point of its own for `bundle` (compiled now; nothing shared or cached)."""
    policy = policies.ActivePolicy(
        revision=active.revision,
        digest=bundle.digest,
        bundle=bundle,
        activated_by=active.activated_by,
        activated_at=active.activated_at,
        description="dry run",
    )
    return policies.EmbeddedDecisionPoint(policy, cache_size=0, max_programs=1)


def dry_run(
    session: Session,
    active: policies.ActivePolicy,
    candidate: policies.PolicyBundle,
    *,
    limit: int,
) -> DryRun:
    """Re-decide the last `limit` decisions under the active policy and under `candidate`.

    Raises `policies.PolicyInvalid` when the candidate does not compile. A decision the
    candidate cannot evaluate counts as `failed` (the engine would deny it).
    """
    # The inputs carry their own time (context.time): re-deciding needs no clock.
    limit = max(1, min(limit, MAX_DECISIONS))
    inputs = _recent(session, limit)
    before = _point(active.bundle, active)
    after = _point(candidate, active)
    evaluated: Counter[str] = Counter()
    to_deny: Counter[str] = Counter()
    to_allow: Counter[str] = Counter()
    failed = 0
    for path, doc in inputs:
        action = str(doc.get("action", ""))[:64]
        evaluated[action] += 1
        try:
            was = before.decide(path, doc).allow
        except policies.PolicyError:
            was = False  # the active policy denies what it cannot evaluate, too
        try:
            now_allowed = after.decide(path, doc).allow
        except policies.PolicyError:
            failed += 1
            now_allowed = False
        if was and not now_allowed:
            to_deny[action] += 1
        elif now_allowed and not was:
            to_allow[action] += 1
    actions = [ActionEffect(a, evaluated[a], to_deny[a], to_allow[a]) for a in sorted(evaluated)]
    return DryRun(
        revision=active.revision,
        candidate_digest=f"sha256:{candidate.digest}",
        evaluated=len(inputs),
        changed=sum(to_deny.values()) + sum(to_allow.values()),
        failed=failed,
        actions=actions,
    )


def as_json(result: DryRun) -> dict[str, Any]:
    """The dry run as the API answers it: its fields, and each action's, by their names."""
    return asdict(result)
