"""Rego policies and the policy decision point: embedded rego-cpp or a remote OPA server.

The gateway builds a decision input (`authz_input`), asks a `DecisionPoint` for
`decide(AUTHZ_DECISION, input)`, stores the decision (`log_decision`) in the request's
transaction and enforces `allow` and every obligation. Policies and the grading matrix
are versioned bundles (`activate`, `active`); see policies/README.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from audit.decisions import DecisionLog, DecisionLogEntry, record_decision, record_decisions
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
    "decision_log_entry",
    "log_decision",
    "log_decisions",
    "revision",
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


def decision_log_entry(decision: Decision, *, request_id: str | None = None) -> DecisionLogEntry:
    """The decision as `audit` stores it."""
    subject = decision.input.get("subject") if hasattr(decision.input, "get") else None
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    return DecisionLogEntry(
        decision_id=decision.decision_id,
        path=decision.path,
        input=decision.input,
        result=decision.result,
        defined=decision.defined,
        revision=decision.revision,
        bundle_digest=decision.digest,
        timestamp=decision.timestamp,
        allow=decision.allow,
        subject_id=subject_id if isinstance(subject_id, str) else None,
        request_id=request_id,
    )


def log_decisions(session: Session, decisions: list[tuple[Decision, str | None]]) -> int:
    """Store many (decision, request id) pairs in one INSERT."""
    return record_decisions(
        session, [decision_log_entry(d, request_id=rid) for d, rid in decisions]
    )


def log_decision(
    session: Session, decision: Decision, *, request_id: str | None = None
) -> DecisionLog:
    """Store `decision` (allowed or denied) in `session`'s transaction as a decision log."""
    return record_decision(session, decision_log_entry(decision, request_id=request_id))
