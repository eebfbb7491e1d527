"""Sandbox error hierarchy: every failure `sandbox` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sandbox.operators import Usage


class SandboxError(Exception):
    """Root of every error `sandbox` raises on purpose.

    `code` is stable and becomes the problem `type` at the gateway edge; `detail` is
    safe to show a client (never a row, a partial aggregate or key material);
    `extensions` carries structured facts (operator name, limits, counts the caller
    is allowed to see) for the log or the problem document.

    The one root that does not subclass `crypto.problem.CodedError`, on purpose: the
    isolated worker (`python -I -m sandbox._worker`) imports this module inside a file
    system that holds only the `sandbox` package (sandbox/isolation.py), so it must not
    import `crypto`. It keeps the same shape; tests/test_error_catalogue.py checks that.
    """

    code: ClassVar[str] = "sandbox-error"
    title: ClassVar[str] = "Computation sandbox error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions: dict[str, Any] = extensions


# -- isolated execution -------------------------------------------------------------------


class IsolationUnavailable(SandboxError):
    """The isolation tool is missing or cannot create namespaces; nothing was run."""

    code = "sandbox-isolation-unavailable"
    title = "Isolated execution is not available on this host"


class SandboxMemoryLimit(SandboxError):
    code = "sandbox-memory-limit"
    title = "Operator exceeded its memory limit"


class SandboxCpuLimit(SandboxError):
    code = "sandbox-cpu-limit"
    title = "Operator exceeded its CPU-time limit"


class SandboxTimeout(SandboxError):
    code = "sandbox-timeout"
    title = "Operator exceeded its wall-clock limit"


class OperatorFailed(SandboxError):
    """The operator raised, crashed or broke the worker protocol."""

    code = "sandbox-operator-error"
    title = "Operator failed"


class OutputTooLarge(SandboxError):
    code = "sandbox-output-too-large"
    title = "Operator output exceeds the allowed size"


class UnknownOperator(SandboxError):
    """A request or a job names no vetted operator."""

    code = "sandbox-unknown-operator"
    title = "No vetted operator has this name"


class InvalidParameters(SandboxError):
    """Operator parameters or input shape are not acceptable (missing column, bad bins...)."""

    code = "sandbox-invalid-parameters"
    title = "Invalid operator parameters"


class GroupCardinalityExceeded(SandboxError):
    code = "stats-group-cardinality-exceeded"
    title = "Group-by column has too many distinct values"


class ValueOutOfRange(SandboxError):
    """A value does not fit the fixed-point encoding agreed for the job."""

    code = "he-value-out-of-range"
    title = "Value outside the encodable range"


class HomomorphicMismatch(SandboxError):
    """Ciphertexts under different keys or layouts, or a malformed envelope."""

    code = "he-ciphertext-mismatch"
    title = "Ciphertexts cannot be combined"


# -- release gate ---------------------------------------------------------------------------


class ReleaseRefused(SandboxError):
    """Root of every refusal by the release gate: nothing left the result party."""

    code = "release-refused"
    title = "Result release refused"


class CohortTooSmall(ReleaseRefused):
    code = "release-cohort-too-small"
    title = "Aggregate covers fewer records than the minimum cohort"


class IntersectionTooSmall(CohortTooSmall):
    """A private join's (noisy) intersection is below the policy's minimum (issue 18)."""

    code = "join-intersection-too-small"
    title = "The join's intersection is below the minimum size"


class RowLevelOutput(ReleaseRefused):
    code = "release-row-level-output"
    title = "Output has row-level shape"


class PrivacyBudgetExhausted(ReleaseRefused):
    code = "privacy-budget-exhausted"
    title = "Dataset privacy budget exhausted"


class ProviderReviewRequired(ReleaseRefused):
    code = "release-provider-review-required"
    title = "Every provider must review the result before release"


class MaskKeyUnverified(SandboxError):
    """A provider's node refused relayed mask keys that its pinned peer keys do not vouch for."""

    code = "mask-key-unverified"
    title = "A relayed mask key is not signed by its provider"


class JoinStopped(SandboxError):
    """The requester's SDK stopped a join with its own cohort (e.g. an unsigned node step)."""

    code = "join-stopped"
    title = "The requester's SDK stopped the join"


# -- provider nodes and operator requests --------------------------------------------------


class NodeError(SandboxError):
    """A provider node could not be reached, refused the job, or failed to run it."""

    code = "node-error"
    title = "Provider node error"


class NodeApprovalRefused(NodeError):
    code = "node-approval-refused"
    title = "The provider's node did not approve the job"


class OutboundRefused(SandboxError):
    """The node's address is not one the platform may connect to; nothing was sent."""

    code = "node-address-refused"
    title = "The node's address is not allowed"


class OutboundTimeout(SandboxError):
    """The peer did not finish within the deadline."""

    code = "node-timeout"
    title = "The node did not answer in time"


class ParamsInvalid(InvalidParameters):
    """An operator's parameters fail their model or their semantic checks (`field` says where)."""

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(detail, field=field)
        self.field = field


class UsageExceeded(SandboxError):
    """A request's declared output or cost is above the limits (`which` names the limit)."""

    code = "operator-usage-exceeded"
    title = "The computation exceeds the platform's limits"

    def __init__(self, which: str, detail: str, usage: Usage, limit: int) -> None:
        super().__init__(detail, limit=which, maximum=limit, declared=usage.as_dict())
        self.which = which
        self.usage = usage


ERRORS_BY_CODE: dict[str, type[SandboxError]] = {
    cls.code: cls
    for cls in (
        SandboxError,
        IsolationUnavailable,
        SandboxMemoryLimit,
        SandboxCpuLimit,
        SandboxTimeout,
        OperatorFailed,
        OutputTooLarge,
        UnknownOperator,
        InvalidParameters,
        GroupCardinalityExceeded,
        ValueOutOfRange,
        HomomorphicMismatch,
        ReleaseRefused,
        CohortTooSmall,
        IntersectionTooSmall,
        RowLevelOutput,
        PrivacyBudgetExhausted,
        ProviderReviewRequired,
        MaskKeyUnverified,
        JoinStopped,
    )
}
"""Every code above, so a refusal raised inside a sandbox is re-raised with its own class."""
