"""Rego policies and the policy decision point: embedded rego-cpp or a remote OPA server.

The gateway builds a decision input (`authz_input`), asks a `DecisionPoint` for
`decide(AUTHZ_DECISION, input)`, has the decision stored in `audit`'s decision log
(`gateway.decision_logs`) and enforces `allow` and every obligation. Policies and the grading matrix
are versioned bundles (`activate`, `active`); see policies/README.md.
"""

from __future__ import annotations

from typing import Any

from policies.bundle import AUTHZ_DECISION, ActivePolicy, PolicyBundle, default_bundle
from policies.checks import TestReport, TestResult, validate
from policies.decision import (
    KNOWN_OBLIGATIONS,
    Decision,
    DecisionPoint,
    EmbeddedDecisionPoint,
    authz_input,
)
from policies.errors import (
    PolicyConflict,
    PolicyEngineUnavailable,
    PolicyError,
    PolicyEvaluationFailed,
    PolicyInvalid,
    PolicyRevisionNotFound,
    PolicyTestsFailed,
)
from policies.models import PolicyBase, PolicyRevision
from policies.obligations import Obligations, strictest
from policies.store import (
    Activation,
    RevisionSummary,
    activate,
    active,
    describe_changes,
    history,
    install_default,
    revision,
)

__all__ = [
    "AUTHZ_DECISION",
    "KNOWN_OBLIGATIONS",
    "Activation",
    "ActivePolicy",
    "Decision",
    "DecisionPoint",
    "EmbeddedDecisionPoint",
    "Obligations",
    "PolicyBase",
    "PolicyBundle",
    "PolicyConflict",
    "PolicyEngineUnavailable",
    "PolicyError",
    "PolicyEvaluationFailed",
    "PolicyInvalid",
    "PolicyRevision",
    "PolicyRevisionNotFound",
    "PolicyTestsFailed",
    "RevisionSummary",
    "TestReport",
    "TestResult",
    "activate",
    "active",
    "authz_input",
    "decision_point",
    "default_bundle",
    "describe_changes",
    "history",
    "install_default",
    "revision",
    "strictest",
    "validate",
]


def decision_point(
    policy: ActivePolicy, *, opa_url: str | None = None, **options: Any
) -> DecisionPoint:
    """The embedded decision point, or a remote OPA one when `opa_url` (PDX_OPA_URL) is set."""
    if opa_url:
        from policies.remote import RemoteDecisionPoint

        return RemoteDecisionPoint(opa_url, policy, **options)
    return EmbeddedDecisionPoint(policy, **options)
