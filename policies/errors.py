"""Policy error hierarchy: every failure `policies` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import ClassVar

from crypto.problem import CodedError


class PolicyError(CodedError):
    """Root of every error `policies` raises on purpose.

    Its shape is `crypto.problem.CodedError`'s. `detail` is safe to show the security
    administrator who submitted a bundle; `extensions` holds failing tests, parse errors
    and revisions.
    """

    code: ClassVar[str] = "policy-error"
    title: ClassVar[str] = "Policy error"


class PolicyInvalid(PolicyError):
    """A bundle that cannot be activated: a module does not parse or compile.

    Also a grading matrix that fails its schema; `extensions["errors"]` lists every problem.
    """

    code = "policy-invalid"
    title = "Invalid policy bundle"


class PolicyTestsFailed(PolicyError):
    """The bundle compiles but its own tests fail (`extensions["failures"]`)."""

    code = "policy-tests-failed"
    title = "Policy tests failed"


class PolicyEngineUnavailable(PolicyError):
    """The policy engine (embedded or a remote OPA) cannot answer: fail closed."""

    code = "policy-engine-unavailable"
    title = "Policy engine unavailable"


class PolicyEvaluationFailed(PolicyError):
    """The engine answered with an error instead of a decision: fail closed."""

    code = "policy-evaluation-failed"
    title = "Policy evaluation failed"


class PolicyRevisionNotFound(PolicyError):
    code = "policy-revision-not-found"
    title = "Policy revision not found"


class PolicyConflict(PolicyError):
    """Another activation committed first; reload the active revision and retry."""

    code = "policy-conflict"
    title = "Concurrent policy activation"
