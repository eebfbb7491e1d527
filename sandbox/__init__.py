"""Isolated execution of vetted operators on provider data: the names other packages may use.

Other packages import these from here (`from sandbox import ReleaseGate`); the modules
behind them may move. Modules stay importable by name (`sandbox.errors`, `sandbox.ckks`,
`sandbox.paillier`, ...).

The names load on first use (PEP 562 `__getattr__`), not when the package is imported:
the sandbox worker starts as `python -I -m sandbox._worker` inside bubblewrap and must
import only what its operator needs, not PySyft, TenSEAL or `requests` (a name here
would otherwise pull its module into every worker). The `TYPE_CHECKING` imports are
the table: type checkers read them, and `__getattr__` reads them too (`_exports`).
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
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
        OutboundRefused,
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


@functools.cache
def _exports() -> dict[str, str]:
    """Name → module, read from this file's `TYPE_CHECKING` imports: the one table.

    Parsed on the first lookup, so that importing the package stays cheap for the worker.
    """
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    return {
        alias.name: node.module
        for node in guarded.body
        if isinstance(node, ast.ImportFrom) and node.module is not None
        for alias in node.names
    }


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _exports().get(name)
        if module is None:
            raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
