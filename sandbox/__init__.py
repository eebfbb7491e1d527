"""Isolated execution of vetted operators on provider data: the names other packages may use.

Other packages import these from here (`from sandbox import ReleaseGate`); the modules
behind them may move. Modules stay importable by name (`sandbox.errors`, `sandbox.ckks`,
`sandbox.paillier`, ...).

The names load on first use (PEP 562 `__getattr__`), not when the package is imported:
the sandbox worker starts as `python -I -m sandbox._worker` inside bubblewrap and must
import only what its operator needs, not PySyft, TenSEAL or `requests` (a name here
would otherwise pull its module into every worker). `_EXPORTS` is the table; type
checkers read the `TYPE_CHECKING` imports, which name the same modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.coordinator import (
        SECURITY_MODEL,
        Coordinator,
        Envelope,
        JobPublic,
        ResultParty,
        seal_vector,
    )
    from sandbox.errors import (
        HomomorphicMismatch,
        InvalidParameters,
        PrivacyBudgetExhausted,
        ReleaseRefused,
        SandboxError,
        ValueOutOfRange,
    )
    from sandbox.fl import FlConfig, FlJob, FlModel, gaussian_sigma, run_fl_logreg
    from sandbox.isolation import (
        Limits,
        OperatorContext,
        OperatorRegistry,
        OperatorSpec,
        Sandbox,
        SandboxFailure,
        SandboxOutcome,
        SandboxResult,
        SandboxSession,
    )
    from sandbox.node_side import (
        MOCK_OUTPUT,
        SEALED_PREFIX,
        decode_outcome,
        encode_outcome,
        sealed_aad,
    )
    from sandbox.nodes import (
        NodeGrant,
        NodeJob,
        NodeRegistry,
        NodeSandbox,
        ProviderNode,
        SyftNode,
        node_input_path,
    )
    from sandbox.operators import REGISTRY, STATS_OPERATORS, ProviderInput, default_sandbox
    from sandbox.outbound import (
        OutboundPolicy,
        OutboundRefused,
        pad_until,
        pinned_session,
        within,
    )
    from sandbox.release import (
        Candidate,
        GatedAggregate,
        InMemoryPrivacyBudget,
        Measure,
        Partition,
        PrivacyBudget,
        Release,
        ReleaseGate,
        ReleaseObligations,
    )
    from sandbox.stats import MAX_GROUPS, StatsJob, StatsQuery, partial_vector, run_stats

__all__ = [
    "MAX_GROUPS",
    "MOCK_OUTPUT",
    "REGISTRY",
    "SEALED_PREFIX",
    "SECURITY_MODEL",
    "STATS_OPERATORS",
    "Candidate",
    "Coordinator",
    "Envelope",
    "FlConfig",
    "FlJob",
    "FlModel",
    "GatedAggregate",
    "HomomorphicMismatch",
    "InMemoryPrivacyBudget",
    "InvalidParameters",
    "JobPublic",
    "Limits",
    "Measure",
    "NodeGrant",
    "NodeJob",
    "NodeRegistry",
    "NodeSandbox",
    "OperatorContext",
    "OperatorRegistry",
    "OperatorSpec",
    "OutboundPolicy",
    "OutboundRefused",
    "Partition",
    "PrivacyBudget",
    "PrivacyBudgetExhausted",
    "ProviderInput",
    "ProviderNode",
    "Release",
    "ReleaseGate",
    "ReleaseObligations",
    "ReleaseRefused",
    "ResultParty",
    "Sandbox",
    "SandboxError",
    "SandboxFailure",
    "SandboxOutcome",
    "SandboxResult",
    "SandboxSession",
    "StatsJob",
    "StatsQuery",
    "SyftNode",
    "ValueOutOfRange",
    "decode_outcome",
    "default_sandbox",
    "encode_outcome",
    "gaussian_sigma",
    "node_input_path",
    "pad_until",
    "partial_vector",
    "pinned_session",
    "run_fl_logreg",
    "run_stats",
    "seal_vector",
    "sealed_aad",
    "within",
]

_MODULE_NAMES: dict[str, tuple[str, ...]] = {
    "sandbox.coordinator": (
        "SECURITY_MODEL",
        "Coordinator",
        "Envelope",
        "JobPublic",
        "ResultParty",
        "seal_vector",
    ),
    "sandbox.errors": (
        "HomomorphicMismatch",
        "InvalidParameters",
        "PrivacyBudgetExhausted",
        "ReleaseRefused",
        "SandboxError",
        "ValueOutOfRange",
    ),
    "sandbox.fl": ("FlConfig", "FlJob", "FlModel", "gaussian_sigma", "run_fl_logreg"),
    "sandbox.isolation": (
        "Limits",
        "OperatorContext",
        "OperatorRegistry",
        "OperatorSpec",
        "Sandbox",
        "SandboxFailure",
        "SandboxOutcome",
        "SandboxResult",
        "SandboxSession",
    ),
    "sandbox.node_side": (
        "MOCK_OUTPUT",
        "SEALED_PREFIX",
        "decode_outcome",
        "encode_outcome",
        "sealed_aad",
    ),
    "sandbox.nodes": (
        "NodeGrant",
        "NodeJob",
        "NodeRegistry",
        "NodeSandbox",
        "ProviderNode",
        "SyftNode",
        "node_input_path",
    ),
    "sandbox.operators": ("REGISTRY", "STATS_OPERATORS", "ProviderInput", "default_sandbox"),
    "sandbox.outbound": (
        "OutboundPolicy",
        "OutboundRefused",
        "pad_until",
        "pinned_session",
        "within",
    ),
    "sandbox.release": (
        "Candidate",
        "GatedAggregate",
        "InMemoryPrivacyBudget",
        "Measure",
        "Partition",
        "PrivacyBudget",
        "Release",
        "ReleaseGate",
        "ReleaseObligations",
    ),
    "sandbox.stats": ("MAX_GROUPS", "StatsJob", "StatsQuery", "partial_vector", "run_stats"),
}
_EXPORTS: dict[str, str] = {
    name: module for module, names in _MODULE_NAMES.items() for name in names
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
